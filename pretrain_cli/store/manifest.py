"""`manifest.json`: the record that makes a stage directory complete and tells what made it.

A directory without a manifest is unfinished (or not ptk's); readers refuse it before reading a
byte. The fingerprint of a manifest (stage, config hash, inputs, shard hashes: no timestamps) is
what downstream stages record as their input, so a changed upstream invalidates everything below it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from pretrain_cli import __version__
from pretrain_cli.errors import UserError
from pretrain_cli.store.files import file_sha256

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """One output file: an Arrow shard (`split` train/valid) or another artefact (`split` "file")."""

    file: str
    rows: int
    tokens: int
    sha256: str
    bytes: int
    split: str = "train"


@dataclasses.dataclass
class Manifest:
    stage: str
    config: dict[str, Any]
    config_hash: str
    inputs: dict[str, str]
    shards: list[ShardInfo]
    stats: dict[str, Any]
    extra: dict[str, Any]
    schema_version: int = SCHEMA_VERSION
    ptk_version: str = __version__
    directory: Path | None = dataclasses.field(default=None, compare=False)

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({"stage": self.stage, "config_hash": self.config_hash, "inputs": self.inputs,
                           "shards": [s.sha256 for s in self.shards]}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def shards_of(self, split: str) -> list[ShardInfo]:
        return [s for s in self.shards if s.split == split]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards if s.split != "file")

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.shards if s.split != "file")

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record.pop("directory")
        record["fingerprint"] = self.fingerprint
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any], directory: Path) -> Manifest:
        record = dict(record)
        record.pop("fingerprint", None)
        record["shards"] = [ShardInfo(**s) for s in record["shards"]]
        return cls(**record, directory=directory)


def read_manifest(directory: Path, stage: str) -> Manifest:
    """The complete output of `ptk <stage>` in `directory`, or a UserError saying what it is instead."""
    path = Path(directory) / MANIFEST
    if not Path(directory).is_dir():
        raise UserError(f"{directory}: no such directory; run `ptk {stage}` to create it, or fix the path")
    if not path.is_file():
        raise UserError(f"{directory}: no {MANIFEST}, so it is not a complete `ptk {stage}` output; "
                        f"run (or finish) `ptk {stage}` into it first")
    try:
        record = json.loads(path.read_text())
        found_stage, version = record["stage"], record["schema_version"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: unreadable manifest ({exc}); rerun `ptk {stage}` with --force") from None
    if found_stage != stage:
        raise UserError(f"{directory} holds `ptk {found_stage}` output, but `ptk {stage}` output is "
                        f"expected here; point to the directory `ptk {stage}` wrote")
    if version != SCHEMA_VERSION:
        raise UserError(f"{path}: schema version {version}, this ptk reads version {SCHEMA_VERSION}; "
                        f"rerun `ptk {stage}` with this ptk ({__version__})")
    return Manifest.from_json(record, Path(directory))


def files_input(kind: str, paths: list[Path]) -> Manifest:
    """Files that no ptk stage wrote (a model directory, task data, a pair file) as an input
    manifest, so the up-to-date check covers their content: a retrained model or edited data means
    a new run."""
    shards = [ShardInfo(file=str(p), rows=0, tokens=0, sha256=file_sha256(p), bytes=p.stat().st_size,
                        split="file") for p in paths]
    return Manifest(stage=kind, config={}, config_hash="", inputs={}, shards=shards, stats={}, extra={})
