"""The tokenize stage on real Wikipedia lead sections: deterministic training, shards, resume, reuse."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import build_corpus

from pretrain_cli.errors import UserError
from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.build import CorpusConfig
from pretrain_cli.stages.tokenize.stage import TokenizeConfig, encode_table, run, train_tokenizer
from pretrain_cli.store import Manifest, StageOutput, read_manifest, read_shard, shard_name


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return build_corpus(tmp_path_factory.mktemp("corpus") / "docs", 1200, 400)


@pytest.fixture(scope="module")
def tokens(corpus: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return run(TokenizeConfig(docs=corpus.directory, out=tmp_path_factory.mktemp("tok") / "tokens",
                              vocab_size=1000))


def test_training_is_deterministic(corpus: Manifest) -> None:
    cfg = TokenizeConfig(docs=corpus.directory, vocab_size=1000)
    first, second = train_tokenizer(cfg, corpus), train_tokenizer(cfg, corpus)
    assert first.get_vocab() == second.get_vocab()
    assert len(first) == 1000
    assert first.convert_ids_to_tokens(list(range(5))) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_shards_manifest_and_tokenizer(corpus: Manifest, tokens: Manifest) -> None:
    from transformers import AutoTokenizer

    assert tokens.extra["vocab_size"] == 1000 and tokens.extra["id_dtype"] == "uint16"
    assert tokens.extra["special_ids"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert tokens.extra["lowercase"] is True and len(tokens.extra["tokenizer_sha256"]) == 64
    assert tokens.stats["documents"] == 1200 and tokens.stats["tokens"] > 100_000
    assert tokens.stats["unk_rate"] < 0.01
    assert [s.file for s in tokens.shards_of("train")] == [shard_name(i) for i in range(3)]

    table = read_shard(tokens.directory / shard_name(1))
    assert table.schema.field("sentences").type == pa.list_(pa.list_(pa.uint16()))
    assert table.schema.field("n_tokens").type == pa.int32()
    source = read_shard(corpus.directory / shard_name(1))
    assert table.column("id").to_pylist() == source.column("id").to_pylist()
    row, text = table.slice(7, 1).to_pylist()[0], source.slice(7, 1).to_pylist()[0]
    assert len(row["sentences"]) == len(text["sentences"])
    assert row["n_tokens"] == sum(len(s) for s in row["sentences"])

    # The saved directory is a plain HF tokenizer, loadable offline, encoding like the shards.
    hf = AutoTokenizer.from_pretrained(str(tokens.directory / "tokenizer"), local_files_only=True)
    assert hf(text["sentences"][0], add_special_tokens=False)["input_ids"] == row["sentences"][0]
    assert hf(text["sentences"][0])["input_ids"][0] == hf.cls_token_id == 2


def test_interrupted_run_resumes_to_identical_shards(corpus: Manifest, tokens: Manifest, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write_shard = StageOutput.write_shard
    written: list[str] = []

    def stop_after_first(self: StageOutput, name: str, *args: object, **kwargs: object) -> object:
        if written:
            raise KeyboardInterrupt
        written.append(name)
        return write_shard(self, name, *args, **kwargs)

    monkeypatch.setattr(StageOutput, "write_shard", stop_after_first)
    cfg = TokenizeConfig(docs=corpus.directory, out=tmp_path / "tokens", vocab_size=1000)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    assert not (tmp_path / "tokens" / "manifest.json").exists()
    assert [p.name for p in (tmp_path / "tokens").glob("*.arrow")] == [shard_name(0)]
    monkeypatch.setattr(StageOutput, "write_shard", write_shard)
    resumed = run(dataclasses.replace(cfg, workers=2))  # workers change speed, never bytes
    assert [(s.file, s.sha256) for s in resumed.shards] == [(s.file, s.sha256) for s in tokens.shards]
    assert resumed.extra == tokens.extra and resumed.stats == tokens.stats


def test_reuses_an_existing_tokenizer_whole_sentences(corpus: Manifest, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    small = build_corpus(tmp_path / "docs", 100, 100)
    cfg = TokenizeConfig(docs=small.directory, out=tmp_path / "tokens", tokenizer=Path("sample:minilm"))
    manifest = run(cfg)
    assert manifest.extra["vocab_size"] == 30522
    assert manifest.extra["special_ids"] == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    saved = json.loads((tmp_path / "tokens" / "tokenizer" / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None  # MiniLM's file truncates at 128

    original = Tokenizer.from_file(str(sample_path("minilm") / "tokenizer.json"))
    original.no_truncation()
    original.no_padding()
    first = read_shard(small.directory / shard_name(0)).column("sentences")[0].as_py()[0]
    stored = read_shard(tmp_path / "tokens" / shard_name(0)).column("sentences")[0].as_py()[0]
    assert stored == original.encode(first, add_special_tokens=False).ids

    long_sentence = " ".join(["tokenization"] * 200)
    docs = pa.table({"id": ["long"], "sentences": [[long_sentence, "", "Short."]]})
    saved_tokenizer = Tokenizer.from_file(str(tmp_path / "tokens" / "tokenizer" / "tokenizer.json"))
    table, count = encode_table(saved_tokenizer, docs, "int32", 2)
    assert table.schema.field("sentences").type == pa.list_(pa.list_(pa.int32()))
    lengths = [len(s) for s in table.column("sentences")[0].as_py()]
    assert lengths[0] > 200 and lengths[1] == 0 and count == sum(lengths)


def test_vocab_smaller_than_the_alphabet_is_refused(corpus: Manifest, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="alphabet"):
        run(TokenizeConfig(docs=corpus.directory, out=tmp_path / "tokens", vocab_size=128))
    assert not (tmp_path / "tokens" / "manifest.json").exists()


def test_unloadable_tokenizer_and_empty_corpus(corpus: Manifest, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match=f"--tokenizer {broken}: cannot load"):
        run(TokenizeConfig(docs=corpus.directory, out=tmp_path / "a", tokenizer=broken))
    empty = build_corpus(tmp_path / "empty", 0, 10)
    with pytest.raises(UserError, match="0 documents"):
        run(TokenizeConfig(docs=empty.directory, out=tmp_path / "b"))
    blank = StageOutput(CorpusConfig(inputs=[tmp_path], out=tmp_path / "blank"), tmp_path / "blank")
    blank.up_to_date()
    blank.write_shard(shard_name(0), pa.table({"id": ["a", "b"], "sentences": [[], [""]]}))
    blank.finish()
    with pytest.raises(UserError, match="hold no text"):
        run(TokenizeConfig(docs=tmp_path / "blank", out=tmp_path / "c", tokenizer=sample_path("minilm")))
    assert not (tmp_path / "a" / "manifest.json").exists() and not (tmp_path / "b").exists()
    assert not (tmp_path / "c" / "manifest.json").exists()
    assert read_manifest(corpus.directory, "corpus").rows == 1200


def test_problems_are_reported_together(tmp_path: Path) -> None:
    cfg = TokenizeConfig(docs=tmp_path, vocab_size=10, min_frequency=0, workers=0,
                         tokenizer=tmp_path / "nope")
    problems = " | ".join(cfg.problems())
    for needle in ("--vocab-size 10", "--min-frequency", "--workers", "no such directory"):
        assert needle in problems
    (tmp_path / "empty").mkdir()
    problems = " ".join(TokenizeConfig(docs=tmp_path, tokenizer=tmp_path / "empty").problems())
    assert "no tokenizer.json or vocab.txt" in problems
