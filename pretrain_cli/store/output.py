"""A stage's output directory: up-to-date skip, refusal to overwrite, shard-level resume, manifest last.

States of a directory, as `StageOutput` sees them:
- `manifest.json` with the same config hash and inputs: up to date, nothing to do;
- `manifest.json` or `_progress.json` from other options/inputs: refused unless `--force`;
- `_progress.json` with the same key: an interrupted run; finished shards are kept and skipped;
- `_progress.json` with another key and nothing written yet: a failed start, silently replaced;
- anything else in a non-empty directory that is not ptk's: refused, even with `--force`.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

from pretrain_cli.config import StageConfig
from pretrain_cli.console import say
from pretrain_cli.errors import UserError
from pretrain_cli.store.files import atomic_write_json, file_sha256
from pretrain_cli.store.manifest import MANIFEST, Manifest, ShardInfo, read_manifest
from pretrain_cli.store.shards import write_table

PROGRESS = "_progress.json"


def shard_name(index: int, split: str = "train") -> str:
    return f"{split}-{index:05d}.arrow"


class StageOutput:
    """The output directory of one stage run.

    cfg: the validated stage config (its hash and `force` flag decide skip/refuse/resume).
    directory: where the stage writes.
    inputs: upstream manifests by role ("docs", "tokens", ...); their fingerprints join the key.
    owned: glob patterns of the other names in `directory` the stage writes ("tokenizer",
        "step-*"), removed with the rest on `--force`; user files are never touched.
    """

    def __init__(self, cfg: StageConfig, directory: Path, inputs: dict[str, Manifest] | None = None,
                 owned: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.directory = Path(directory)
        self.inputs = {role: m.fingerprint for role, m in (inputs or {}).items()}
        self.owned = owned
        self.shards: dict[str, ShardInfo] = {}
        self._checked = False

    @property
    def key(self) -> dict[str, Any]:
        return {"stage": self.cfg.stage, "config_hash": self.cfg.config_hash(), "inputs": self.inputs}

    def finished(self) -> Manifest | None:
        """The manifest of this exact run if it already finished, without touching anything."""
        if not (self.directory / MANIFEST).is_file():
            return None
        existing = read_manifest(self.directory, self.cfg.stage)
        if existing.config_hash == self.key["config_hash"] and existing.inputs == self.inputs:
            say(f"{self.cfg.stage}: {self.directory} is up to date")
            return existing
        return None

    def up_to_date(self) -> Manifest | None:
        """The existing manifest if this exact run already finished; otherwise prepare to (re)write."""
        self._checked = True
        manifest_path = self.directory / MANIFEST
        written_by_ptk = manifest_path.is_file() or (self.directory / PROGRESS).is_file()
        if (existing := self.finished()) is not None:
            return existing
        if manifest_path.is_file():
            self._refuse_or_clear("a finished run made with other options or inputs")
        progress = self._read_progress()
        if progress is not None:
            same_run = {k: progress.get(k) for k in self.key} == self.key
            started = progress.get("shards") or any(map(self._is_owned, self.directory.iterdir()))
            if not same_run and not started:
                pass  # a run that failed before writing anything: nothing worth keeping
            elif same_run:
                self.shards = {s["file"]: ShardInfo(**s) for s in progress["shards"]
                               if (self.directory / s["file"]).is_file()}
                if self.shards:
                    say(f"{self.cfg.stage}: resuming {self.directory} ({len(self.shards)} finished "
                        f"shard(s) kept)")
            else:
                self._refuse_or_clear("an interrupted run made with other options or inputs")
        elif not written_by_ptk and self.directory.is_dir() and any(self.directory.iterdir()):
            raise UserError(f"{self.directory} is not empty and was not written by `ptk {self.cfg.stage}`; "
                            f"choose an empty or new output directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_progress()
        return None

    def has_shard(self, name: str) -> bool:
        return name in self.shards

    def write_shard(self, name: str, table: pa.Table, *, tokens: int = 0, split: str = "train") -> ShardInfo:
        assert self._checked, "call up_to_date() before writing"
        info = write_table(self.directory / name, table, tokens=tokens, split=split)
        self.shards[name] = info
        self._write_progress()
        return info

    def record_file(self, relpath: str, *, rows: int = 0, tokens: int = 0) -> ShardInfo:
        """List a non-shard artefact (a model file, a report) in the manifest with its hash."""
        path = self.directory / relpath
        info = ShardInfo(file=relpath, rows=rows, tokens=tokens, sha256=file_sha256(path),
                         bytes=path.stat().st_size, split="file")
        self.shards[relpath] = info
        return info

    def finish(self, stats: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Manifest:
        """Write `manifest.json` last: from here on the directory is complete."""
        manifest = Manifest(stage=self.cfg.stage, config=self.cfg.to_dict(),
                            config_hash=self.key["config_hash"], inputs=self.inputs,
                            shards=[self.shards[name] for name in sorted(self.shards)],
                            stats=stats or {}, extra=extra or {}, directory=self.directory)
        atomic_write_json(self.directory / MANIFEST, manifest.to_json())
        (self.directory / PROGRESS).unlink(missing_ok=True)
        return manifest

    def _read_progress(self) -> dict[str, Any] | None:
        path = self.directory / PROGRESS
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {}  # torn by a crash of an older writer: treat as foreign, --force clears it

    def _write_progress(self) -> None:
        atomic_write_json(self.directory / PROGRESS,
                          {**self.key, "shards": [vars(s) for s in self.shards.values()]})

    def _is_owned(self, path: Path) -> bool:
        return any(fnmatch.fnmatchcase(path.name, pattern) for pattern in self.owned)

    def _refuse_or_clear(self, what: str) -> None:
        if not self.cfg.force:
            raise UserError(f"{self.directory} already holds {what}; pass --force to replace it, "
                            f"or choose another output directory")
        for path in self.directory.iterdir():
            ours = (path.name in (MANIFEST, PROGRESS) or path.suffix == ".arrow"
                    or self._is_owned(path) or ".tmp-" in path.name)
            if not ours:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        self.shards = {}
