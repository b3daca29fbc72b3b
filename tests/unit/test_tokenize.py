"""The tokenize stage on real text: reproducible WordPiece and Unigram training, the training sample,
the token shards (narrowest ids, word starts), resume, reuse, and Chinese."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import build_corpus

from pretrain_cli.errors import UserError
from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.build import SCHEMA, CorpusConfig
from pretrain_cli.stages.tokenize import encode
from pretrain_cli.stages.tokenize.directory import save_tokenizer
from pretrain_cli.stages.tokenize.encode import encode_table, word_starts
from pretrain_cli.stages.tokenize.sample import sample_batches, sample_buckets
from pretrain_cli.stages.tokenize.stage import TokenizeConfig, run
from pretrain_cli.stages.tokenize.train import rare_characters, train_tokenizer
from pretrain_cli.stages.tokenize.unigram import canonical_pieces
from pretrain_cli.store import Manifest, StageOutput, read_manifest, read_shard, shard_name


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return build_corpus(tmp_path_factory.mktemp("corpus") / "docs", 1200, 400)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return build_corpus(tmp_path_factory.mktemp("small") / "docs", 200, 200)


@pytest.fixture(scope="module")
def tokens(corpus: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return run(TokenizeConfig(docs=corpus.directory, out=tmp_path_factory.mktemp("tok") / "tokens",
                              vocab_size=1000))


def saved_bytes(cfg: TokenizeConfig, docs: Manifest, directory: Path) -> bytes:
    save_tokenizer(train_tokenizer(cfg, docs), directory)
    return (directory / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("model", ["wordpiece", "unigram"])
def test_training_is_reproducible(model: str, corpus: Manifest, tmp_path: Path) -> None:
    """The trainers iterate hash maps seeded afresh for every map; the saved file must not show it."""
    from transformers import AutoTokenizer

    cfg = TokenizeConfig(docs=corpus.directory, model=model, vocab_size=700, train_bytes=120_000)
    first = saved_bytes(cfg, corpus, tmp_path / "a")
    assert first == saved_bytes(cfg, corpus, tmp_path / "b")
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "a"), local_files_only=True)
    assert len(hf) == 700
    assert hf.convert_ids_to_tokens(list(range(5))) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pair = hf("The first segment.", "The second one.")
    assert pair["input_ids"][0] == hf.cls_token_id and pair["input_ids"][-1] == hf.sep_token_id
    assert pair["token_type_ids"][-1] == 1 and pair["input_ids"].count(hf.sep_token_id) == 2


def test_unigram_canonical_pieces_ignore_hash_order() -> None:
    """Coverage characters come at `lowest + k·1e-4` in hash-set order, scores carry float noise."""
    specials = ["[PAD]", "[UNK]"]
    trained = [["▁the", -2.5], ["s", -3.25], ["▁of", -3.5], ["q", -9.0]]
    coverage = ["ж", "道", "ψ"]
    orders = []
    for seed in range(4):
        random.Random(seed).shuffle(coverage)
        noise = 1e-15 * seed
        pieces = [[token, 0.0] for token in specials] + [[p, s + noise] for p, s in trained]
        pieces += [[c, -9.0 + k * 1e-4] for k, c in enumerate(coverage)]
        orders.append(canonical_pieces(pieces, specials))
    assert all(order == orders[0] for order in orders)
    # Ties go by code point.
    assert [p for p, _ in orders[0]] == ["[PAD]", "[UNK]", "▁the", "s", "▁of", "q", "ψ", "ж", "道"]
    assert {s for p, s in orders[0][-4:]} == {-9.0}


def test_shards_manifest_and_tokenizer(corpus: Manifest, tokens: Manifest) -> None:
    from transformers import AutoTokenizer

    assert tokens.extra["vocab_size"] == tokens.extra["padded_vocab_size"] == 1000
    assert tokens.extra["id_dtype"] == "uint16" and tokens.extra["model"] == "wordpiece"
    assert tokens.extra["special_ids"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert tokens.extra["never_mask_ids"] == [0, 1, 2, 3, 4]
    assert tokens.extra["lowercase"] is True and len(tokens.extra["tokenizer_sha256"]) == 64
    assert tokens.stats["documents"] == 1200 and tokens.stats["tokens"] > 100_000
    assert tokens.stats["unk_rate"] < 0.01
    assert [s.file for s in tokens.shards_of("train")] == [shard_name(i) for i in range(3)]

    table = read_shard(tokens.directory / shard_name(1))
    assert table.schema.field("sentences").type == pa.list_(pa.list_(pa.uint16()))
    assert table.schema.field("word_starts").type == pa.list_(pa.list_(pa.bool_()))
    assert table.schema.field("n_tokens").type == pa.int32()
    source = read_shard(corpus.directory / shard_name(1))
    assert table.column("id").to_pylist() == source.column("id").to_pylist()
    row, text = table.slice(7, 1).to_pylist()[0], source.slice(7, 1).to_pylist()[0]
    assert len(row["sentences"]) == len(text["sentences"])
    assert [len(s) for s in row["word_starts"]] == [len(s) for s in row["sentences"]]
    assert row["n_tokens"] == sum(len(s) for s in row["sentences"])

    # The saved directory is a plain HF tokenizer, loadable offline, encoding like the shards; a
    # token starts a word exactly when it is not a ## continuation.
    hf = AutoTokenizer.from_pretrained(str(tokens.directory / "tokenizer"), local_files_only=True)
    assert hf(text["sentences"][0], add_special_tokens=False)["input_ids"] == row["sentences"][0]
    assert hf(text["sentences"][0])["input_ids"][0] == hf.cls_token_id == 2
    pieces = hf.convert_ids_to_tokens(row["sentences"][0])
    assert row["word_starts"][0] == [not piece.startswith("##") for piece in pieces]


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
    # Workers change speed, never bytes; nor do chunks of a shard encoded by different processes.
    monkeypatch.setattr(encode, "CHUNK_SENTENCES", 300)
    resumed = run(dataclasses.replace(cfg, workers=2))
    assert [(s.file, s.sha256) for s in resumed.shards] == [(s.file, s.sha256) for s in tokens.shards]
    assert resumed.extra == tokens.extra and resumed.stats == tokens.stats


def test_training_sample_is_spread_and_independent_of_sharding(corpus: Manifest, tmp_path: Path) -> None:
    resharded = build_corpus(tmp_path / "docs", 1200, 250)
    budget = 150_000
    sample = [s for batch in sample_batches(corpus, sample_buckets(corpus, budget), 64) for s in batch]
    assert sample == [s for batch in sample_batches(resharded, sample_buckets(resharded, budget), 1000)
                      for s in batch]
    assert 0.9 * budget < sum(len(s.encode()) for s in sample) <= budget
    # Whole documents from every part of the corpus, not its first bytes.
    sampled = set(sample)
    documents = [doc for i in range(3)
                 for doc in read_shard(corpus.directory / shard_name(i)).column("sentences").to_pylist()]
    chosen = [any(s in sampled for s in doc) for doc in documents]
    assert all(sum(chosen[i:i + 400]) > 60 for i in range(0, 1200, 400))
    cfg = TokenizeConfig(docs=corpus.directory, vocab_size=600, train_bytes=budget)
    assert saved_bytes(cfg, corpus, tmp_path / "a") == \
        saved_bytes(dataclasses.replace(cfg, docs=resharded.directory), resharded, tmp_path / "b")


def test_reused_tokenizer_whole_sentences_and_word_starts(small: Manifest, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    cfg = TokenizeConfig(docs=small.directory, out=tmp_path / "tokens", tokenizer=Path("sample:minilm"))
    manifest = run(cfg)
    assert manifest.extra["vocab_size"] == 30522 and manifest.extra["padded_vocab_size"] == 30528
    assert manifest.extra["id_dtype"] == "uint16" and manifest.extra["model"] == "wordpiece"
    assert manifest.extra["special_ids"] == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    never = manifest.extra["never_mask_ids"]  # the roles and bert-base's [unused0] .. [unused993]
    assert len(never) == 5 + 994 and {0, 1, 99, 100, 103, 104, 998} <= set(never) and 999 not in never
    saved = json.loads((tmp_path / "tokens" / "tokenizer" / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None  # MiniLM's file truncates at 128

    original = Tokenizer.from_file(str(sample_path("minilm") / "tokenizer.json"))
    original.no_truncation()
    original.no_padding()
    first = read_shard(small.directory / shard_name(0)).column("sentences")[0].as_py()[0]
    stored = read_shard(tmp_path / "tokens" / shard_name(0)).column("sentences")[0].as_py()[0]
    assert stored == original.encode(first, add_special_tokens=False).ids

    original.encode_special_tokens = True  # as the stage encodes: "[MASK]" in text is text
    long_sentence = " ".join(["tokenization"] * 200)
    docs = pa.table({"id": ["long"], "sentences": [[long_sentence, "", "Unaffable, as [MASK]."]]})
    table, count = encode_table(original, docs, "uint32", 2, unk_id=100, control_ids=(0, 101, 102, 103))
    assert table.schema.field("sentences").type == pa.list_(pa.list_(pa.uint32()))
    sentences, starts = table.column("sentences")[0].as_py(), table.column("word_starts")[0].as_py()
    assert len(sentences[0]) == 400 and sentences[1] == [] == starts[1] and count == 400 + len(sentences[2])
    assert original.decode(sentences[2][:3]) == "unaffable"  # una ##ffa ##ble: one word
    assert starts[2][:4] == [True, False, False, True]  # then "," starts the next word
    assert [original.id_to_token(i) for i in sentences[2][-4:]] == ["[", "mask", "]", "."]


def test_word_start_table_agrees_with_word_ids(corpus: Manifest, tokens: Manifest, small: Manifest,
                                               tmp_path: Path) -> None:
    """The fast path (encode_batch_fast + a table over the vocabulary) stores what word_ids say."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tricky = ["##abc #hash ##", "a  b   c ", "naïve Café 中文字 ✓✓x", "[MASK] [unused0] <s> ▁lit▁eral",
              "x" * 150, "tab\tsep 😀 word", "", "Tokenization, unaffable!"]
    real = read_shard(corpus.directory / shard_name(0)).column("sentences").to_pylist()[:300]
    docs = pa.table({"id": [str(i) for i in range(len(real) + 1)], "sentences": [tricky, *real]})
    cfg = TokenizeConfig(docs=small.directory, model="unigram", vocab_size=400, train_bytes=60_000)
    save_tokenizer(train_tokenizer(cfg, small), tmp_path / "unigram")
    for directory in (sample_path("minilm"), tokens.directory / "tokenizer", tmp_path / "unigram"):
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.encode_special_tokens = True
        tokenizer.no_padding()
        tokenizer.no_truncation()
        table = encode.word_start_table(tokenizer)
        assert table is not None
        slow = encode_table(tokenizer, docs, "uint16", 64)[0]
        fast, count = encode_table(tokenizer, docs, "uint16", 64, start_table=table)
        marked, _ = encode_table(tokenizer, docs, "uint16", 64, start_table=table,
                                 marked=encode.marked_copy(tokenizer))
        assert fast.equals(slow) and marked.equals(slow) and count > 10_000
    other = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    other.pre_tokenizer = pre_tokenizers.Whitespace()
    assert encode.word_start_table(other) is None  # "##a" could begin a word: word_ids decide


def test_word_starts_restart_in_every_sentence() -> None:
    word_ids = np.array([0, 0, 1, 0, 0, 2, -1, -1])  # sentences [0, 3), [3, 3), [3, 8)
    assert word_starts(word_ids, np.array([0, 3, 3, 8])).tolist() == \
        [True, False, True, True, False, True, True, True]


def test_specials_reserved_slots_and_padding(small: Manifest, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    text = "[unused1] and [MASK] or [BOS] <eos> [SEP] stay text"
    for model in ("wordpiece", "unigram"):
        out = tmp_path / model
        manifest = run(TokenizeConfig(docs=small.directory, out=out, model=model, vocab_size=605, reserved=3,
                                      special_tokens="[BOS], <eos>"))
        assert manifest.extra["vocab_size"] == 605 and manifest.extra["padded_vocab_size"] == 608
        assert manifest.extra["never_mask_ids"] == list(range(10))
        tokenizer = Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json"))
        assert [tokenizer.id_to_token(i) for i in range(5, 10)] == \
            ["[BOS]", "<eos>", "[unused0]", "[unused1]", "[unused2]"]
        stored = (read_shard(out / shard_name(0)).column("sentences").combine_chunks()
                  .flatten().flatten().to_numpy())
        assert not np.isin(stored, [0, 2, 3, 4, 5, 6, 7, 8, 9]).any()
        table, _ = encode.ShardEncoder(str(out / "tokenizer" / "tokenizer.json"), "uint16", 10, unk_id=1,
                                       control_ids=(0, 2, 3, 4, 5, 6, 7, 8, 9), threads=1)(
            _chunk_of(tmp_path / f"{model}-text", text))
        ids = table.column("sentences")[0].as_py()[0]
        assert len(ids) > 12 and not set(ids) & set(range(10)) - {1}, tokenizer.decode(ids)


def _chunk_of(directory: Path, sentence: str) -> encode.Chunk:
    """One corpus shard of one document holding `sentence`, as an encoding chunk."""
    output = StageOutput(CorpusConfig(inputs=[directory], out=directory), directory)
    output.up_to_date()
    output.write_shard(shard_name(0), pa.table({"id": ["doc"], "sentences": [[sentence]]}))
    return encode.Chunk(str(directory / shard_name(0)), 0, 1)


def test_case_accents_alphabet_and_narrow_ids(small: Manifest, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    def tokenize(**options: object) -> list[str]:
        cfg = TokenizeConfig(docs=small.directory, vocab_size=400, train_bytes=60_000, **options)
        save_tokenizer(train_tokenizer(cfg, small), tmp_path / "tok")
        return AutoTokenizer.from_pretrained(str(tmp_path / "tok"), local_files_only=True).tokenize("Café")

    assert "".join(tokenize()).replace("##", "") == "cafe"
    assert "".join(tokenize(strip_accents="no")).replace("##", "") == "café"
    assert "".join(tokenize(lowercase=False)).replace("##", "") == "Café"  # cased keeps accents too
    assert "".join(tokenize(lowercase=False, strip_accents="yes")).replace("##", "") == "Cafe"
    assert "".join(tokenize(model="unigram", lowercase=False)).lstrip("▁") == "Café"

    manifest = run(TokenizeConfig(docs=small.directory, out=tmp_path / "narrow", vocab_size=200,
                                  limit_alphabet=40))
    assert manifest.extra["id_dtype"] == "uint8" and manifest.extra["vocab_size"] == 200
    table = read_shard(tmp_path / "narrow" / shard_name(0))
    assert table.schema.field("sentences").type == pa.list_(pa.list_(pa.uint8()))
    vocab = json.loads((tmp_path / "narrow" / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    assert len({token.removeprefix("##") for token in vocab if len(token.removeprefix("##")) == 1}) <= 40
    assert 0 < manifest.stats["unk_rate"] < 0.02  # words with a dropped character


def test_rare_characters_break_ties_by_code_point() -> None:
    from tokenizers import normalizers

    batches = [["b a a c", "B d"], ["e"]]
    assert rare_characters(batches, normalizers.Lowercase(), 2) == {"c", "d", "e"}


def test_chinese_wordpiece_splits_every_han_character(tmp_path: Path) -> None:
    """People's Daily (January 1998), POS tags stripped: every Han character is its own word."""
    lines = [re.sub(r"/[a-zA-Z]+\s*", "", line).strip()
             for line in sample_path("zh_news").read_text(encoding="utf-8").splitlines()[:1200]]
    lines = [line for line in lines if line]
    rows = [{"id": f"199801:{i}", "title": "", "source": "text", "lang": "zh", "text": "\n".join(doc),
             "sentences": doc} for i, doc in enumerate(lines[i:i + 20] for i in range(0, len(lines), 20))]
    output = StageOutput(CorpusConfig(inputs=[tmp_path], out=tmp_path / "docs"), tmp_path / "docs")
    output.up_to_date()
    output.write_shard(shard_name(0), pa.Table.from_pylist(rows, schema=SCHEMA))
    docs = output.finish(stats={"documents": len(rows)})
    half = sum(len(s.encode()) for row in rows for s in row["sentences"]) // 2

    wordpiece = run(TokenizeConfig(docs=docs.directory, out=tmp_path / "wp", vocab_size=3000,
                                   train_bytes=half))
    table = read_shard(tmp_path / "wp" / shard_name(0))
    ids = table.column("sentences").combine_chunks().flatten().flatten().to_numpy()
    starts = table.column("word_starts").combine_chunks().flatten().flatten().to_numpy(zero_copy_only=False)
    vocab = json.loads((tmp_path / "wp" / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    tokens = np.array(sorted(vocab, key=vocab.get), dtype=object)[ids]
    han = np.array([bool(re.fullmatch(r"[\u4e00-\u9fff]", t)) for t in tokens])
    assert han.sum() > 50_000 and starts[han].all()
    assert not any(re.fullmatch(r"##[\u4e00-\u9fff]", t) for t in vocab)
    assert wordpiece.stats["unk_rate"] < 0.015  # characters of the half unseen in training

    unigram = run(TokenizeConfig(docs=docs.directory, out=tmp_path / "uni", model="unigram", vocab_size=3000,
                                 train_bytes=half))
    pieces = [p for p, _ in json.loads((tmp_path / "uni" / "tokenizer" / "tokenizer.json").read_text())
              ["model"]["vocab"]]
    assert sum(bool(re.fullmatch(r"▁?[\u4e00-\u9fff]{2,}", p)) for p in pieces) > 300  # words, not characters
    assert unigram.stats["unk_rate"] < 0.015 and unigram.stats["tokens"] < wordpiece.stats["tokens"]


def test_refusals(corpus: Manifest, small: Manifest, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="alphabet"):
        run(TokenizeConfig(docs=corpus.directory, out=tmp_path / "a", vocab_size=128))
    with pytest.raises(UserError, match="Unigram vocabulary .* must hold"):
        run(TokenizeConfig(docs=small.directory, out=tmp_path / "b", model="unigram", vocab_size=128,
                           reserved=100))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match=f"--tokenizer {broken}: cannot load"):
        run(TokenizeConfig(docs=small.directory, out=tmp_path / "c", tokenizer=broken))
    empty = build_corpus(tmp_path / "empty", 0, 10)
    with pytest.raises(UserError, match="0 documents"):
        run(TokenizeConfig(docs=empty.directory, out=tmp_path / "d"))
    blank = StageOutput(CorpusConfig(inputs=[tmp_path], out=tmp_path / "blank"), tmp_path / "blank")
    blank.up_to_date()
    blank.write_shard(shard_name(0), pa.table({"id": ["a", "b"], "sentences": [[], [""]]}))
    blank.finish()
    with pytest.raises(UserError, match="hold no text"):
        run(TokenizeConfig(docs=tmp_path / "blank", out=tmp_path / "e", tokenizer=sample_path("minilm")))
    for name in "abce":
        assert not (tmp_path / name / "manifest.json").exists()
    assert not (tmp_path / "d").exists() and read_manifest(corpus.directory, "corpus").rows == 1200


def test_problems_are_reported_together(tmp_path: Path) -> None:
    cfg = TokenizeConfig(docs=tmp_path, vocab_size=10, min_frequency=0, workers=0, reserved=-1,
                         limit_alphabet=-2, special_tokens="[BOS],EOS,[BOS],[MASK]")
    problems = " | ".join(cfg.problems())
    for needle in ("--vocab-size 10", "--min-frequency", "--workers", "--reserved must be 0",
                   "--limit-alphabet must be 0", "'EOS' is not one bracketed name", "[MASK] already exist",
                   "[BOS] given twice"):
        assert needle in problems
    crowded = TokenizeConfig(docs=tmp_path, vocab_size=200, reserved=195)
    assert "leaves none for text" in " ".join(crowded.problems())
    reuse = TokenizeConfig(docs=tmp_path, tokenizer=tmp_path / "nope", model="unigram", reserved=2)
    problems = " | ".join(reuse.problems())
    assert "drop them or drop --tokenizer" in problems and "no such directory" in problems
    (tmp_path / "empty").mkdir()
    problems = " ".join(TokenizeConfig(docs=tmp_path, tokenizer=tmp_path / "empty").problems())
    assert "no tokenizer.json or vocab.txt" in problems


def test_text_holding_the_sentence_mark_is_encoded_sentence_by_sentence() -> None:
    """The fast path joins a document's sentences with a private-use mark, in a copy of the
    tokenizer; text that contains the mark itself takes the per-sentence path, and the tokenizer it
    uses never learns the mark, whatever chunk came before."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(sample_path("minilm") / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    table, marked = encode.word_start_table(tokenizer), encode.marked_copy(tokenizer)
    plain = pa.table({"id": ["p"], "sentences": [["plain text.", "more of it"]]})
    odd = pa.table({"id": ["a", "b"], "sentences": [["one \ue000 two", "three"], ["", "four five"]]})
    for docs in (plain, odd):
        fast, _ = encode_table(tokenizer, docs, "uint16", 64, start_table=table, marked=marked)
        assert fast.equals(encode_table(tokenizer, docs, "uint16", 64)[0])
    assert [len(s) for s in fast.column("sentences")[0].as_py()] == [2, 1]  # the mark is no token
    assert tokenizer.token_to_id("\ue000") is None
