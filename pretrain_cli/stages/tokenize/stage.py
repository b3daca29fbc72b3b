"""`ptk tokenize`: train (or reuse) a BERT WordPiece tokenizer and encode every sentence of a corpus.

    ptk tokenize work/docs --out work/tokens --vocab-size 8192
    ptk tokenize work/docs --out work/tokens --tokenizer sample:minilm   # bert-base-uncased's vocab
    ptk tokenize work/docs --out work/tokens --tokenizer path/to/bert-model-dir

Writes `tokens/tokenizer/` (an HF directory: `AutoTokenizer.from_pretrained` loads it offline) and
one shard per corpus shard, same index, so an interrupted run resumes shard by shard:
`id: string`, `sentences: list<list<uint16>>` (int32 when the vocabulary exceeds 65,536),
`n_tokens: int32`. Sentences are encoded without special tokens; `ptk mask` adds them.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import progress_bar, say
from pretrain_cli.errors import UserError
from pretrain_cli.samples import resolve_input
from pretrain_cli.workers import ordered_map

if TYPE_CHECKING:
    import pyarrow as pa
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

    from pretrain_cli.store import Manifest, StageOutput

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 in a trained vocabulary
SPECIAL_ROLES = ("pad", "unk", "cls", "sep", "mask")
TOKENIZER_DIR = "tokenizer"
UINT16_VOCAB = 1 << 16


@dataclasses.dataclass(kw_only=True)
class TokenizeConfig(StageConfig):
    """Train a WordPiece tokenizer on a corpus (or reuse one) and encode its sentences.

        ptk tokenize work/docs --out work/tokens --vocab-size 8192
    """

    stage: ClassVar[str] = "tokenize"

    # Not hashed: the corpus's manifest fingerprint is part of the output's key, so moving or
    # renaming the directory does not make a finished output stale.
    docs: Path = option(help="Corpus directory written by `ptk corpus build`.", argument=True, hashed=False)
    out: Path = option(Path("work/tokens"), "Output directory (shards + tokenizer/).", hashed=False)
    vocab_size: int = option(8192, "WordPiece vocabulary size to train, special tokens included.")
    min_frequency: int = option(2, "Fewest occurrences for a merge to enter the trained vocabulary.")
    lowercase: bool = option(True, "Lowercase and strip accents before training (uncased BERT).")
    tokenizer: Path | None = option(None, "Reuse this HF tokenizer directory (tokenizer.json or vocab.txt; "
                                          "sample:minilm for bert-base-uncased's) instead of training; "
                                          "the training options are then unused.")
    train_bytes: int = option(200_000_000, "Train on at most this many bytes of sentences, taken from "
                                           "the start of the corpus in shard order.")
    batch_size: int = option(1000, "Sentences per encode_batch call.")
    workers: int = option(1, "Processes encoding shards in parallel (output is identical for any value).",
                          hashed=False)

    def problems(self) -> list[str]:
        found = []
        if self.vocab_size < 128:
            found.append(f"--vocab-size {self.vocab_size} is too small; use at least 128")
        if self.vocab_size >= 1 << 31:
            found.append(f"--vocab-size {self.vocab_size} does not fit int32 token ids")
        if self.min_frequency < 1:
            found.append("--min-frequency must be at least 1")
        if self.train_bytes < 1:
            found.append("--train-bytes must be positive")
        if self.batch_size < 1:
            found.append("--batch-size must be positive")
        if self.workers < 1:
            found.append("--workers must be at least 1")
        if self.tokenizer is not None:
            try:
                directory = self.tokenizer_dir()
            except UserError as error:  # a sample whose package is not installed
                found.append(f"--tokenizer {self.tokenizer}: {error}")
            else:
                if not directory.is_dir():
                    found.append(f"--tokenizer {directory}: no such directory; point it at an HF "
                                 f"tokenizer directory (e.g. a BERT model directory)")
                elif not any((directory / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
                    found.append(f"--tokenizer {directory}: no tokenizer.json or vocab.txt in it; point it "
                                 f"at an HF tokenizer directory")
        return found

    def tokenizer_dir(self) -> Path:
        """The --tokenizer directory, with `sample:NAME` resolved to the installed sample."""
        assert self.tokenizer is not None
        return resolve_input(self.tokenizer)


def run(cfg: TokenizeConfig) -> Manifest:
    """Tokenize `cfg.docs` into `cfg.out`; returns the manifest (the existing one if up to date)."""
    from pretrain_cli.store import StageOutput, file_sha256, iter_shards, read_manifest, shard_name

    cfg.validate()
    docs = read_manifest(cfg.docs, "corpus")
    if docs.rows == 0:
        raise UserError(f"{cfg.docs}: the corpus has 0 documents, so there is nothing to tokenize; "
                        f"rebuild it with `ptk corpus build` from non-empty input")
    out = StageOutput(cfg, cfg.out, inputs={"docs": docs}, owned=(TOKENIZER_DIR,))
    if (done := out.up_to_date()) is not None:
        return done

    tokenizer_dir = cfg.out / TOKENIZER_DIR
    if not (tokenizer_dir / "tokenizer.json").is_file():  # kept from an interrupted run of this config
        hf = load_tokenizer(cfg.tokenizer_dir()) if cfg.tokenizer else train_tokenizer(cfg, docs)
        save_tokenizer(hf, tokenizer_dir)
    facts = tokenizer_facts(tokenizer_dir)
    for path in sorted(tokenizer_dir.iterdir()):
        out.record_file(f"{TOKENIZER_DIR}/{path.name}")

    # Output shard i is input shard i: resuming skips exactly the finished ones.
    todo = {shard_name(i): str(docs.directory / info.file)
            for i, (info, _) in enumerate(iter_shards(docs)) if not out.has_shard(shard_name(i))}
    encode = partial(encode_shard_file, str(tokenizer_dir / "tokenizer.json"), facts["id_dtype"],
                     cfg.batch_size)
    with progress_bar("tokenize", len(todo)) as advance:
        for name, (table, tokens) in zip(todo, ordered_map(encode, todo.values(), cfg.workers), strict=True):
            out.write_shard(name, table, tokens=tokens)
            advance()

    stats = _stats(out, facts["special_ids"]["unk"])
    if stats["tokens"] == 0:
        raise UserError(f"{cfg.docs}: its {stats['documents']:,} documents hold no text to tokenize; "
                        f"rebuild the corpus from non-empty input")
    say(f"tokenize: {stats['documents']:,} documents, {stats['tokens']:,} tokens "
        f"(vocabulary {facts['vocab_size']:,}, unknown {stats['unk_rate']:.3%}) → {cfg.out}")
    facts["tokenizer_sha256"] = file_sha256(tokenizer_dir / "tokenizer.json")
    return out.finish(stats=stats, extra=facts)


# ---------------------------------------------------------------------------------------------------
# The tokenizer: trained deterministically, or loaded from a directory; saved as an HF directory.

def train_tokenizer(cfg: TokenizeConfig, docs: Manifest) -> PreTrainedTokenizerBase:
    """A BERT WordPiece tokenizer trained on the first `train_bytes` of the corpus.

    The `tokenizers` trainer numbers the `##x` continuation characters in hash-map order, and ties
    between equally frequent merges are broken by those numbers, so two trainings on the same text
    can give different vocabularies. A first, merge-free pass finds the continuation characters;
    the real pass gets them (sorted) as fixed entries, which makes every id reproducible.
    """
    from tokenizers.trainers import WordPieceTrainer

    base = _wordpiece(cfg.lowercase)
    base.train_from_iterator(_training_text(cfg, docs), trainer=WordPieceTrainer(
        vocab_size=0, special_tokens=list(SPECIAL_TOKENS), show_progress=False))
    alphabet = base.get_vocab()
    if cfg.vocab_size <= len(alphabet):
        raise UserError(f"--vocab-size {cfg.vocab_size} leaves no room for merges: {cfg.docs} has an "
                        f"alphabet of {len(alphabet):,} entries (characters, ## continuations and special "
                        f"tokens); use a --vocab-size above {len(alphabet):,}")
    continuations = sorted(token for token in alphabet if token.startswith("##"))
    trained = _wordpiece(cfg.lowercase)
    trained.train_from_iterator(_training_text(cfg, docs), trainer=WordPieceTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *continuations], show_progress=False))
    # Rebuild from the vocabulary alone so the continuations are ordinary entries, not special tokens.
    tokenizer = _wordpiece(cfg.lowercase, trained.get_vocab(with_added_tokens=False))
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return _as_hf(tokenizer, cfg.lowercase)


def _wordpiece(lowercase: bool, vocab: dict[str, int] | None = None) -> Tokenizer:
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]") if vocab else WordPiece(unk_token="[UNK]"))
    # strip_accents=None follows `lowercase`, as in the original uncased/cased BERT.
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                      strip_accents=None, lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    cls, sep = SPECIAL_TOKENS.index("[CLS]"), SPECIAL_TOKENS.index("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tokenizer


def _as_hf(tokenizer: Tokenizer, lowercase: bool) -> PreTrainedTokenizerBase:
    from transformers import BertTokenizerFast

    # The normaliser options are repeated as kwargs: a reload rebuilds the backend from them.
    return BertTokenizerFast(tokenizer_object=tokenizer, do_lower_case=lowercase, strip_accents=None,
                             tokenize_chinese_chars=True)


def _training_text(cfg: TokenizeConfig, docs: Manifest) -> Iterator[list[str]]:
    """Batches of sentences, in shard order, until `train_bytes` of UTF-8 text have been given."""
    from pretrain_cli.store import iter_shards

    budget = cfg.train_bytes
    for info, table in iter_shards(docs):
        sentences = _column(table, "sentences", docs.directory / info.file).flatten().to_pylist()
        for start in range(0, len(sentences), cfg.batch_size):
            batch = []
            for sentence in sentences[start:start + cfg.batch_size]:
                batch.append(sentence)
                budget -= len(sentence.encode())
                if budget <= 0:
                    yield batch
                    return
            yield batch


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """An existing HF tokenizer with BERT's five special-token roles, or a UserError naming what is wrong."""
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:  # a user's file: any parse failure is theirs to fix
        detail = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
        raise UserError(f"--tokenizer {directory}: cannot load it as an HF tokenizer ({reason}); check "
                        f"tokenizer.json / tokenizer_config.json or point at another directory") from None
    missing = [role for role in SPECIAL_ROLES if getattr(hf, f"{role}_token_id", None) is None]
    if missing or not getattr(hf, "is_fast", False):
        what = f"no {', '.join(missing)} token" if missing else "no fast (tokenizers) backend"
        raise UserError(f"--tokenizer {directory}: {what}; a BERT tokenizer needs [PAD] [UNK] [CLS] [SEP] "
                        f"[MASK] roles and a tokenizer.json or vocab.txt")
    return hf


def save_tokenizer(hf: PreTrainedTokenizerBase, directory: Path) -> None:
    """Save `hf` as `directory`, whole or not at all (a crash leaves only a temporary name)."""
    # A reused tokenizer may carry the padding/truncation its model used; tokens are stored unpadded
    # and whole, and every later stage sets its own lengths.
    hf.backend_tokenizer.no_truncation()
    hf.backend_tokenizer.no_padding()
    for stale in directory.parent.glob(f".{directory.name}.tmp-*"):
        shutil.rmtree(stale)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    hf.save_pretrained(str(tmp))
    os.replace(tmp, directory)


def tokenizer_facts(directory: Path) -> dict[str, Any]:
    """What later stages need to know about the tokenizer in `directory` (the manifest's `extra`)."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    vocab_size = len(hf)
    normalizer = json.loads(hf.backend_tokenizer.to_str()).get("normalizer")
    return {
        "vocab_size": vocab_size,
        "id_dtype": "uint16" if vocab_size <= UINT16_VOCAB else "int32",
        "special_ids": {role: getattr(hf, f"{role}_token_id") for role in SPECIAL_ROLES},
        "lowercase": _lowercases(normalizer),
    }


def _lowercases(normalizer: dict[str, Any] | None) -> bool:
    if not normalizer:
        return False
    kind = normalizer.get("type")
    if kind == "Sequence":
        return any(_lowercases(part) for part in normalizer.get("normalizers", []))
    return kind == "Lowercase" or (kind == "BertNormalizer" and bool(normalizer.get("lowercase")))


# ---------------------------------------------------------------------------------------------------
# Encoding: one corpus shard in, one token shard out.

def encode_shard_file(tokenizer_file: str, id_dtype: str, batch_size: int,
                      shard: str) -> tuple[pa.Table, int]:
    """Encode the corpus shard at `shard` (a path, so it can run in a worker process)."""
    from tokenizers import Tokenizer

    from pretrain_cli.store import read_shard

    tokenizer = Tokenizer.from_file(tokenizer_file)
    # Whole sentences, unpadded, whatever a reused tokenizer's model used to cut them to.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return encode_table(tokenizer, read_shard(Path(shard)), id_dtype, batch_size, where=shard)


def encode_table(tokenizer: Tokenizer, docs: pa.Table, id_dtype: str, batch_size: int,
                 where: str = "corpus shard") -> tuple[pa.Table, int]:
    """Token ids of every sentence of every document (no special tokens), and the token count."""
    import numpy as np
    import pyarrow as pa

    sentences = _column(docs, "sentences", where)
    texts = sentences.flatten()
    if texts.null_count:
        raise UserError(f"{where}: {texts.null_count} null sentence(s); rebuild it with `ptk corpus build`")
    texts = texts.to_pylist()
    lengths, ids = [], []
    for start in range(0, len(texts), batch_size):
        encodings = tokenizer.encode_batch(texts[start:start + batch_size], add_special_tokens=False)
        lengths.extend(len(e.ids) for e in encodings)
        ids.append(np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64))
    values = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    sentence_offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=sentence_offsets[1:])
    doc_offsets = sentences.offsets.to_numpy().astype(np.int64)
    doc_offsets -= doc_offsets[0]
    dtype = pa.uint16() if id_dtype == "uint16" else pa.int32()
    inner = pa.ListArray.from_arrays(pa.array(sentence_offsets, pa.int32()), pa.array(values, dtype))
    table = pa.table({
        "id": docs.column("id").combine_chunks().cast(pa.string()),
        "sentences": pa.ListArray.from_arrays(pa.array(doc_offsets, pa.int32()), inner),
        "n_tokens": pa.array(np.diff(sentence_offsets[doc_offsets]), pa.int32()),
    })
    return table, int(values.size)


def _column(table: pa.Table, name: str, where: Path | str) -> pa.ListArray:
    import pyarrow as pa

    if name not in table.column_names or "id" not in table.column_names:
        raise UserError(f"{where}: no `id`/`{name}` column (found {', '.join(table.column_names)}); "
                        f"it is not a `ptk corpus build` shard, rebuild it with that command")
    column = table.column(name).combine_chunks()
    if not (pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type)):
        raise UserError(f"{where}: column `{name}` is {column.type}, expected list<string>; rebuild it "
                        f"with `ptk corpus build`")
    return column


def _stats(out: StageOutput, unk_id: int) -> dict[str, Any]:
    """Counts read back from the written shards, so a resumed run reports the same numbers."""
    import numpy as np

    from pretrain_cli.store import read_shard

    documents = sentences = tokens = unknown = 0
    for info in out.shards.values():
        if info.split == "file":
            continue
        column = read_shard(out.directory / info.file).column("sentences").combine_chunks()
        ids = column.flatten().flatten().to_numpy()
        documents += len(column)
        sentences += len(column.flatten())
        tokens += ids.size
        unknown += int(np.count_nonzero(ids == unk_id))
    return {"documents": documents, "sentences": sentences, "tokens": tokens,
            "unk_rate": unknown / tokens if tokens else 0.0}


# ---------------------------------------------------------------------------------------------------
# Plumbing shared with `ptk mask`: ordered parallel map and a progress bar.
