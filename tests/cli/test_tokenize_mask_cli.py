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
    assert [s.file for s in examples.shards_of("valid")] == [shard_name(0, "valid"), shard_name(1, "valid")]
    assert examples.extra["objective"] == "mlm+nsp" and examples.extra["max_seq_length"] == 128
    assert examples.extra["vocab_size"] == 800 and examples.extra["special_ids"]["mask"] == 4
    assert examples.stats["instances"]["train"] > 1000 and examples.stats["instances"]["valid"] > 0
    assert 0.4 < examples.stats["random_next_share"]["train"] < 0.6
    table = read_shard(pipeline / "examples" / shard_name(0))
    assert table.schema.field("masked_labels").type == pa.list_(pa.uint16())
    assert table.schema.field("next_sentence_label").type == pa.int8()
    hf = AutoTokenizer.from_pretrained(str(pipeline / "examples" / "tokenizer"), local_files_only=True)
    assert hf.decode(table.column("input_ids")[0].as_py()).startswith("[CLS]")

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


def test_worker_count_does_not_change_examples(pipeline: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["mask", str(pipeline / "tokens"), "--out", str(tmp_path / "examples"),
                                 "--dupe-factor", "2", "--valid-fraction", "0.1", "--workers", "2"])
    assert result.exit_code == 0, result.output
    parallel = read_manifest(tmp_path / "examples", "mask")
    assert parallel.fingerprint == read_manifest(pipeline / "examples", "mask").fingerprint


def test_interrupted_mask_resumes_to_the_same_examples(pipeline: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    write_shard = StageOutput.write_shard
    written: list[str] = []

    def die_after_three(self: StageOutput, name: str, *args: object, **kwargs: object) -> object:
        if len(written) == 3:  # valid-0, train-0, valid-1: killed before train-1
            raise KeyboardInterrupt
        written.append(name)
        return write_shard(self, name, *args, **kwargs)

    args = ["mask", str(pipeline / "tokens"), "--out", str(tmp_path / "examples"), "--dupe-factor", "2",
            "--valid-fraction", "0.1"]
    monkeypatch.setattr(StageOutput, "write_shard", die_after_three)
    assert runner.invoke(app, args).exit_code != 0
    assert written == [shard_name(0, "valid"), shard_name(0), shard_name(1, "valid")]
    assert not (tmp_path / "examples" / "manifest.json").exists()
    monkeypatch.setattr(StageOutput, "write_shard", write_shard)
    resumed = runner.invoke(app, args)
    assert resumed.exit_code == 0 and "resuming" in resumed.output
    assert read_manifest(tmp_path / "examples", "mask").fingerprint == \
        read_manifest(pipeline / "examples", "mask").fingerprint


def test_tokenize_bad_input(pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    docs = str(pipeline / "docs")

    def tokenize(*args: str):
        return runner.invoke(app, ["tokenize", *args, "--out", str(out)])

    assert_clean_failure(tokenize(str(tmp_path / "missing")), out, "missing", "no such directory")
    assert_clean_failure(tokenize(str(pipeline / "tokens")), out, "`ptk tokenize` output",
                         "`ptk corpus` output is expected")
    assert_clean_failure(tokenize(docs, "--tokenizer", str(tmp_path / "none")), out, "--tokenizer", "none")
    (tmp_path / "bare").mkdir()
    assert_clean_failure(tokenize(docs, "--tokenizer", str(tmp_path / "bare")), out, "no tokenizer.json")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text('{"model": 3}')
    assert_clean_failure(tokenize(docs, "--tokenizer", str(tmp_path / "bad")), out, "cannot load")
    assert_clean_failure(tokenize(docs, "--vocab-size", "50", "--batch-size", "0"), out,
                         "--vocab-size 50", "--batch-size")
    assert_clean_failure(tokenize(docs, "--vocab-size", "130", "--force"), out, "alphabet")
    build_corpus(tmp_path / "empty", 0, 10)
    assert_clean_failure(tokenize(str(tmp_path / "empty")), out, "0 documents")


def test_mask_bad_input(pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    tokens = str(pipeline / "tokens")

    def mask(*args: str):
        return runner.invoke(app, ["mask", *args, "--out", str(out)])

    assert_clean_failure(mask(str(pipeline / "docs")), out, "`ptk corpus` output",
                         "`ptk tokenize` output is expected")
    assert_clean_failure(mask(tokens, "--max-seq-length", "7"), out, "--max-seq-length 7", "at least 8")
    assert_clean_failure(mask(tokens, "--masked-lm-prob", "0"), out, "--masked-lm-prob 0")
    assert_clean_failure(mask(tokens, "--masked-lm-prob", "1.5"), out, "--masked-lm-prob 1.5")
    assert_clean_failure(mask(tokens, "--valid-fraction", "0.6", "--random-token-prob", "0.5"), out,
                         "--valid-fraction 0.6", "must not exceed 1")
    assert_clean_failure(mask(tokens, "--valid-fraction", "-0.1"), out, "--valid-fraction -0.1")
    assert not out.exists()
