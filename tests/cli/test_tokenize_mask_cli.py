"""`ptk tokenize` and `ptk mask` through the CLI: real text in, shards out; bad input → one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from conftest import assert_clean_failure, build_corpus
from typer.testing import CliRunner

from pretrain_cli.cli.app import app
from pretrain_cli.store import StageOutput, read_manifest, read_shard, shard_name

runner = CliRunner()




@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/ → tokens/ → examples/ through the CLI, once for the module."""
    root = tmp_path_factory.mktemp("pipeline")
    build_corpus(root / "docs", 600, 300)
    result = runner.invoke(app, ["tokenize", str(root / "docs"), "--out", str(root / "tokens"),
                                 "--vocab-size", "800"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["mask", str(root / "tokens"), "--out", str(root / "examples"),
                                 "--dupe-factor", "2", "--valid-fraction", "0.1"])
    assert result.exit_code == 0, result.output
    return root


def test_tokenize_then_mask(pipeline: Path) -> None:
    from transformers import AutoTokenizer

    examples = read_manifest(pipeline / "examples", "mask")
    assert examples.inputs == {"tokens": read_manifest(pipeline / "tokens", "tokenize").fingerprint}
    assert [s.file for s in examples.shards_of("train")] == [shard_name(0), shard_name(1)]
    assert [s.file for s in examples.shards_of("valid")] == [shard_name(0, "valid")]
    assert examples.extra["objective"] == "mlm+nsp" and examples.extra["max_seq_length"] == 128
    assert examples.extra["vocab_size"] == 800 and examples.extra["special_ids"]["mask"] == 4
    masking = examples.extra["masking"]
    assert masking["strategy"] == "token" and masking["max_predictions"] == 20
    assert examples.stats["instances"]["train"] > 1000 and examples.stats["instances"]["valid"] > 0
    assert 0.49 <= examples.stats["negative_share"]["train"] <= 0.51
    assert abs(examples.stats["masked_share"]["train"] - 0.15) < 0.003
    assert not (pipeline / "examples" / ".scatter").exists()
    table = read_shard(pipeline / "examples" / shard_name(0))
    assert table.schema.field("masked_labels").type == pa.list_(pa.uint16())
    assert table.schema.field("next_sentence_label").type == pa.int8()
    hf = AutoTokenizer.from_pretrained(str(pipeline / "examples" / "tokenizer"), local_files_only=True)
    assert hf.decode(table.column("input_ids")[0].as_py()).startswith("[CLS]")
    # Shuffled across shards: each output shard holds examples of both input shards' documents.
    train = [read_shard(pipeline / "examples" / shard_name(i)) for i in range(2)]
    assert sum(t.num_rows for t in train) == examples.stats["instances"]["train"]
    assert abs(train[0].num_rows - train[1].num_rows) < 0.1 * train[0].num_rows

    # The input is known by its manifest's fingerprint, not its path: a moved corpus is still current.
    (pipeline / "moved").symlink_to(pipeline / "docs")
    moved = runner.invoke(app, ["tokenize", str(pipeline / "moved"), "--out", str(pipeline / "tokens"),
                                "--vocab-size", "800"])
    assert moved.exit_code == 0 and "up to date" in moved.output
    again = runner.invoke(app, ["mask", str(pipeline / "tokens"), "--out", str(pipeline / "examples"),
                                "--dupe-factor", "2", "--valid-fraction", "0.1", "--workers", "3"])
    assert again.exit_code == 0 and "up to date" in again.output
    other = runner.invoke(app, ["mask", str(pipeline / "tokens"), "--out", str(pipeline / "examples")])
    assert_clean_failure(other, pipeline / "nowhere", "--force")


@pytest.mark.parametrize("options", [["--objective", "sop", "--masking", "whole-word"],
                                     ["--objective", "none", "--masking", "span", "--dynamic"]])
def test_worker_count_does_not_change_examples(pipeline: Path, tmp_path: Path, options: list[str]) -> None:
    manifests = []
    for workers in ("1", "2"):
        out = tmp_path / f"examples-{workers}"
        result = runner.invoke(app, ["mask", str(pipeline / "tokens"), "--out", str(out), "--dupe-factor",
                                     "2", "--valid-fraction", "0.1", "--workers", workers, *options])
        assert result.exit_code == 0, result.output
        manifests.append(read_manifest(out, "mask"))
    assert manifests[0].fingerprint == manifests[1].fingerprint
    assert manifests[0].stats["instances"]["train"] > 500


def test_interrupted_mask_resumes_to_the_same_examples(pipeline: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed in the gather pass: the scattered files and finished shards are kept and reused."""
    write_shard = StageOutput.write_shard
    written: list[str] = []

    def die_after_one(self: StageOutput, name: str, *args: object, **kwargs: object) -> object:
        if len(written) == 1:
            raise KeyboardInterrupt
        written.append(name)
        return write_shard(self, name, *args, **kwargs)

    args = ["mask", str(pipeline / "tokens"), "--out", str(tmp_path / "examples"), "--dupe-factor", "2",
            "--valid-fraction", "0.1"]
    monkeypatch.setattr(StageOutput, "write_shard", die_after_one)
    assert runner.invoke(app, args).exit_code != 0
    assert written == [shard_name(0)]
    assert not (tmp_path / "examples" / "manifest.json").exists()
    assert sorted(p.name for p in (tmp_path / "examples" / ".scatter").iterdir()) == [
        shard_name(0), shard_name(1), shard_name(0, "valid"), shard_name(1, "valid")]
    monkeypatch.setattr(StageOutput, "write_shard", write_shard)
    resumed = runner.invoke(app, args)
    assert resumed.exit_code == 0 and "resuming" in resumed.output
    assert read_manifest(tmp_path / "examples", "mask").fingerprint == \
        read_manifest(pipeline / "examples", "mask").fingerprint


def test_mask_bad_input(pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    tokens = str(pipeline / "tokens")

    def mask(*args: str):
        return runner.invoke(app, ["mask", *args, "--out", str(out)])

    assert_clean_failure(mask(str(pipeline / "docs")), out, "`ptk corpus` output",
                         "`ptk tokenize` output is expected")
    assert_clean_failure(mask(str(tmp_path / "missing")), out, "missing", "no such directory")
    assert_clean_failure(mask(tokens, "--max-seq-length", "4"), out, "--max-seq-length 4", "--objective nsp",
                         "at least 5")
    assert_clean_failure(mask(tokens, "--objective", "none", "--max-seq-length", "2"), out,
                         "--max-seq-length 2", "at least 3")
    assert_clean_failure(mask(tokens, "--masked-lm-prob", "0.05"), out, "--masked-lm-prob 0.05",
                         "0.10 to 0.40")
    assert_clean_failure(mask(tokens, "--masked-lm-prob", "0.5"), out, "--masked-lm-prob 0.5")
    assert_clean_failure(mask(tokens, "--masking", "sentence"), out, "--masking")
    assert_clean_failure(mask(tokens, "--valid-fraction", "0.6", "--random-token-prob", "0.5"), out,
                         "--valid-fraction 0.6", "must not exceed 1")
    assert_clean_failure(mask(tokens, "--valid-fraction", "-0.1"), out, "--valid-fraction -0.1")
    assert_clean_failure(mask(tokens, "--span-p", "0"), out, "--span-p 0")
    assert_clean_failure(mask(tokens, "--seed", "-1"), out, "--seed -1", "2^32")
    assert_clean_failure(mask(tokens, "--masks-per-seq", "60"), out, "--masks-per-seq 60", "at most 51")
    assert_clean_failure(mask(tokens, "--masks-per-seq", "10", "--max-predictions-per-seq", "5"), out,
                         "--max-predictions-per-seq 5 is below --masks-per-seq 10")
    assert_clean_failure(mask(tokens, "--max-span-words", "500"), out, "--max-span-words 500")
    assert not out.exists()


def test_tokens_from_another_ptk_version_are_refused(pipeline: Path, tmp_path: Path) -> None:
    """A tokens directory written before word starts existed: one line saying to re-tokenize."""
    import json
    import shutil

    old = tmp_path / "old-tokens"
    shutil.copytree(pipeline / "tokens", old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["extra"]["never_mask_ids"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert_clean_failure(runner.invoke(app, ["mask", str(old), "--out", str(tmp_path / "out")]),
                         tmp_path / "out", "never_mask_ids", "ptk tokenize` with --force")
    manifest["schema_version"] = 0
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert_clean_failure(runner.invoke(app, ["mask", str(old), "--out", str(tmp_path / "out")]),
                         tmp_path / "out", "schema version 0")
