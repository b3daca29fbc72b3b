"""The store contracts: atomic shards, manifests, up-to-date skip, refusal, resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pytest

from pretrain_cli.config import StageConfig, option
from pretrain_cli.errors import UserError
from pretrain_cli.store import StageOutput, iter_shards, read_manifest, shard_name


@dataclasses.dataclass(kw_only=True)
class ToyConfig(StageConfig):
    stage: ClassVar[str] = "toy"
    out: Path = option(Path("out"), "Output directory.", hashed=False)
    scale: int = option(1, "Multiplier.")
    workers: int = option(1, "Processes.", hashed=False)


def run_toy(cfg: ToyConfig, shards: int = 3, crash_after: int | None = None):
    out = StageOutput(cfg, cfg.out)
    if (done := out.up_to_date()) is not None:
        return done
    for i in range(shards):
        if out.has_shard(shard_name(i)):
            continue
        if crash_after is not None and i == crash_after:
            raise KeyboardInterrupt
        table = pa.table({"x": pa.array([cfg.scale * (i * 10 + j) for j in range(10)], pa.int32())})
        out.write_shard(shard_name(i), table, tokens=10)
    return out.finish(stats={"shards": shards})


def test_manifest_written_last_and_readable(tmp_path: Path) -> None:
    m = run_toy(ToyConfig(out=tmp_path / "o"))
    again = read_manifest(tmp_path / "o", "toy")
    assert again.fingerprint == m.fingerprint
    assert [s.rows for s in again.shards] == [10, 10, 10]
    assert sum(t.num_rows for _, t in iter_shards(again)) == 30


def test_shards_open_with_datasets(tmp_path: Path) -> None:
    import datasets

    run_toy(ToyConfig(out=tmp_path / "o"))
    ds = datasets.Dataset.from_file(str(tmp_path / "o" / shard_name(0)))
    assert ds["x"][:3] == [0, 1, 2]


def test_up_to_date_ignores_unhashed_fields(tmp_path: Path) -> None:
    first = run_toy(ToyConfig(out=tmp_path / "o"))
    mtime = (tmp_path / "o" / "manifest.json").stat().st_mtime_ns
    second = run_toy(ToyConfig(out=tmp_path / "o", workers=4))
    assert second.fingerprint == first.fingerprint
    assert (tmp_path / "o" / "manifest.json").stat().st_mtime_ns == mtime


def test_other_options_refused_without_force(tmp_path: Path) -> None:
    run_toy(ToyConfig(out=tmp_path / "o"))
    with pytest.raises(UserError, match="--force"):
        run_toy(ToyConfig(out=tmp_path / "o", scale=2))
    m = run_toy(ToyConfig(out=tmp_path / "o", scale=2, force=True))
    assert m.config["scale"] == 2


def test_interrupted_run_resumes_to_identical_shards(tmp_path: Path) -> None:
    whole = run_toy(ToyConfig(out=tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        run_toy(ToyConfig(out=tmp_path / "b"), crash_after=2)
    assert not (tmp_path / "b" / "manifest.json").exists()
    with pytest.raises(UserError, match="no manifest.json"):
        read_manifest(tmp_path / "b", "toy")
    resumed = run_toy(ToyConfig(out=tmp_path / "b"))
    assert [s.sha256 for s in resumed.shards] == [s.sha256 for s in whole.shards]


def test_foreign_directories_refused(tmp_path: Path) -> None:
    run_toy(ToyConfig(out=tmp_path / "o"))
    with pytest.raises(UserError, match="`ptk toy` output, but `ptk tokenize`"):
        read_manifest(tmp_path / "o", "tokenize")
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        run_toy(ToyConfig(out=tmp_path / "user", force=True))
    assert (tmp_path / "user" / "notes.txt").read_text() == "mine"


def test_changed_shard_detected(tmp_path: Path) -> None:
    m = run_toy(ToyConfig(out=tmp_path / "o"))
    (tmp_path / "o" / shard_name(1)).write_bytes(b"garbage")
    with pytest.raises(UserError, match="changed since"):
        list(iter_shards(read_manifest(m.directory, "toy")))


def test_failed_start_does_not_need_force(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_toy(ToyConfig(out=tmp_path / "o", scale=3), crash_after=0)
    assert run_toy(ToyConfig(out=tmp_path / "o")).config["scale"] == 1


def test_force_clears_owned_patterns_and_keeps_user_files(tmp_path: Path) -> None:
    cfg = ToyConfig(out=tmp_path / "o")
    out = StageOutput(cfg, cfg.out, owned=("step-*",))
    out.up_to_date()
    (cfg.out / "step-00000010").mkdir()
    (cfg.out / "notes.txt").write_text("mine")
    out.finish()
    with pytest.raises(UserError, match="--force"):
        StageOutput(ToyConfig(out=cfg.out, scale=2), cfg.out, owned=("step-*",)).up_to_date()
    StageOutput(ToyConfig(out=cfg.out, scale=2, force=True), cfg.out, owned=("step-*",)).up_to_date()
    assert not (cfg.out / "step-00000010").exists()
    assert (cfg.out / "notes.txt").read_text() == "mine"
