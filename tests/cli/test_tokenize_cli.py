"""`ptk tokenize` through the CLI: real text in, token shards out; bad input → one line, exit 2.

    pytest tests/cli/test_tokenize_cli.py -q
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import assert_clean_failure, build_corpus
from typer.testing import CliRunner

from pretrain_cli.cli.app import app
from pretrain_cli.samples import sample_path
from pretrain_cli.store import read_manifest, read_shard, shard_name

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/ (300 Wikipedia lead sections) and tokens/ (a Unigram vocabulary) through the CLI."""
    root = tmp_path_factory.mktemp("tokenize")
    build_corpus(root / "docs", 300, 150)
    result = runner.invoke(app, ["tokenize", str(root / "docs"), "--out", str(root / "tokens"), "--model",
                                 "unigram", "--vocab-size", "700", "--reserved", "2", "--special-tokens",
                                 "[BOS],[EOS]", "--no-lowercase", "--workers", "2"])
    assert result.exit_code == 0, result.output
    return root


def test_unigram_with_reserved_slots(root: Path) -> None:
    from transformers import AutoTokenizer

    tokens = read_manifest(root / "tokens", "tokenize")
    assert tokens.inputs == {"docs": read_manifest(root / "docs", "corpus").fingerprint}
    assert tokens.extra["model"] == "unigram" and tokens.extra["lowercase"] is False
    assert tokens.extra["vocab_size"] == 700 and tokens.extra["padded_vocab_size"] == 704
    assert tokens.extra["never_mask_ids"] == list(range(9)) and tokens.extra["id_dtype"] == "uint16"
    assert [s.file for s in tokens.shards_of("train")] == [shard_name(0), shard_name(1)]
    table = read_shard(root / "tokens" / shard_name(0))
    assert table.schema.field("word_starts").type == pa.list_(pa.list_(pa.bool_()))
    hf = AutoTokenizer.from_pretrained(str(root / "tokens" / "tokenizer"), local_files_only=True)
    assert hf.convert_ids_to_tokens(list(range(9))) == \
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]", "[unused0]", "[unused1]"]
    first = table.column("sentences")[0].as_py()[0]
    starts = table.column("word_starts")[0].as_py()[0]
    assert starts == [piece.startswith("▁") for piece in hf.convert_ids_to_tokens(first)]

    again = runner.invoke(app, ["tokenize", str(root / "docs"), "--out", str(root / "tokens"), "--model",
                                "unigram", "--vocab-size", "700", "--reserved", "2", "--special-tokens",
                                "[BOS],[EOS]", "--no-lowercase"])
    assert again.exit_code == 0 and "up to date" in again.output  # --workers is not part of the key


def test_tokenize_bad_input(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    docs = str(root / "docs")

    def tokenize(*args: str):
        return runner.invoke(app, ["tokenize", *args, "--out", str(out)])

    assert_clean_failure(tokenize(str(tmp_path / "missing")), out, "missing", "no such directory")
    assert_clean_failure(tokenize(str(root / "tokens")), out, "`ptk tokenize` output",
                         "`ptk corpus` output is expected")
    future = tmp_path / "future"
    shutil.copytree(root / "docs", future)
    manifest = json.loads((future / "manifest.json").read_text())
    (future / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    assert_clean_failure(tokenize(str(future)), out, "schema version 99", "rerun `ptk corpus`")

    assert_clean_failure(tokenize(docs, "--tokenizer", str(tmp_path / "none")), out, "--tokenizer",
                         "no such directory")
    (tmp_path / "bare").mkdir()
    assert_clean_failure(tokenize(docs, "--tokenizer", str(tmp_path / "bare")), out, "no tokenizer.json")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text('{"model": 3}')
    assert_clean_failure(tokenize(docs, "--tokenizer", str(tmp_path / "bad")), out, "cannot load")
    no_mask = _tokenizer_without_mask(tmp_path / "nomask")
    assert_clean_failure(tokenize(docs, "--tokenizer", str(no_mask)), out, "no mask token", "[MASK] roles")
    assert_clean_failure(tokenize(docs, "--tokenizer", "sample:minilm", "--reserved", "4"), out,
                         "drop them or drop --tokenizer")
    (tmp_path / "google").mkdir()  # Google's checkpoint layout: vocab.txt alone
    shutil.copyfile(sample_path("minilm") / "vocab.txt", tmp_path / "google" / "vocab.txt")
    assert_clean_failure(tokenize(docs, "--tokenizer", str(tmp_path / "google")), out,
                         "vocab.txt without tokenizer_config.json", "do_lower_case")
    gapped = tmp_path / "gapped"
    shutil.copytree(sample_path("minilm"), gapped)
    lines = (gapped / "vocab.txt").read_text(encoding="utf-8").splitlines()
    record = json.loads((gapped / "tokenizer.json").read_text(encoding="utf-8"))
    record["model"]["vocab"] = {t: i for i, t in enumerate(lines) if not 1000 <= i < 1050}
    (gapped / "tokenizer.json").write_text(json.dumps(record), encoding="utf-8")
    assert_clean_failure(tokenize(docs, "--tokenizer", str(gapped)), out, "skips ids", "renumber")

    assert_clean_failure(tokenize(docs, "--vocab-size", "50", "--batch-size", "0"), out,
                         "--vocab-size 50", "--batch-size")
    assert_clean_failure(tokenize(docs, "--vocab-size", "1000", "--reserved", "995", "--special-tokens",
                                  "[BOS],[EOS]"), out, "need 1002 vocabulary slots",
                         "raise --vocab-size or lower --reserved")
    assert_clean_failure(tokenize(docs, "--special-tokens", "[BOS],,EOS"), out, "'', 'EOS' is not one",
                         "comma-separated")
    assert_clean_failure(tokenize(docs, "--special-tokens", "[CLS]"), out, "[CLS] already exist")
    assert_clean_failure(tokenize(docs, "--strip-accents", "maybe"), out, "--strip-accents", "maybe")
    assert_clean_failure(tokenize(docs, "--model", "bpe"), out, "--model", "bpe")
    assert_clean_failure(tokenize(docs, "--vocab-size", "130", "--force"), out, "alphabet")
    build_corpus(tmp_path / "empty", 0, 10)
    assert_clean_failure(tokenize(str(tmp_path / "empty")), out, "0 documents")


def _tokenizer_without_mask(directory: Path) -> Path:
    """An HF tokenizer directory with [PAD] [UNK] [CLS] [SEP] but no [MASK] role."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat"])}
    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordPiece(vocab, unk_token="[UNK]")),
                                 pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    hf.save_pretrained(str(directory))
    return directory


def test_a_reused_tokenizer_counts_by_its_contents(tmp_path: Path) -> None:
    """Edited in place, a reused tokenizer makes the output stale; moved, it does not."""
    from pretrain_cli.stages.tokenize.stage import TokenizeConfig

    first = tmp_path / "first"
    shutil.copytree(sample_path("minilm"), first)
    before = TokenizeConfig(docs=tmp_path, tokenizer=first).config_hash()
    moved = first.rename(tmp_path / "moved")
    assert TokenizeConfig(docs=tmp_path, tokenizer=moved).config_hash() == before
    config = json.loads((moved / "tokenizer_config.json").read_text())
    (moved / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": False}))
    assert TokenizeConfig(docs=tmp_path, tokenizer=moved).config_hash() != before
