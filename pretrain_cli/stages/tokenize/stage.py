"""`ptk tokenize`: train (or reuse) a tokenizer and encode every sentence of a corpus.

    ptk tokenize work/docs --out work/tokens --vocab-size 8192
    ptk tokenize work/docs --out work/tokens --model unigram --vocab-size 30000 --reserved 100
    ptk tokenize work/docs --out work/tokens --tokenizer sample:minilm   # bert-base-uncased's vocab
    ptk tokenize work/docs --out work/tokens --tokenizer path/to/bert-model-dir

Writes `tokens/tokenizer/` (an HF directory: `AutoTokenizer.from_pretrained` loads it offline) and
one shard per corpus shard, same index, so an interrupted run resumes shard by shard (the schema is
in `encode.py` and docs/tokenize.md). Sentences are encoded without special tokens; `ptk mask`
adds them. The pieces: `sample.py` picks the training text, `train.py` and `unigram.py` train,
`directory.py` loads, saves and describes the tokenizer, `encode.py` writes the shards.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import progress_bar, say
from pretrain_cli.errors import UserError
from pretrain_cli.samples import resolve_input
from pretrain_cli.stages.tokenize.directory import RESERVED
from pretrain_cli.stages.tokenize.encode import ShardEncoder, shard_chunks
from pretrain_cli.stages.tokenize.train import ROLE_TOKENS
from pretrain_cli.workers import ordered_map

if TYPE_CHECKING:
    from pretrain_cli.store import Manifest, StageOutput


TOKENIZER_DIR = "tokenizer"
# The files of an HF tokenizer directory that decide how text is encoded.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")
# A user special token is one bracketed name, as [BOS] or <s>: brackets are punctuation to BERT's
# pre-tokenizer, so text can never spell the token as a single word.
SPECIAL_TOKEN = re.compile(r"\[[^\s\[\],]+\]|<[^\s<>,]+>")


@dataclasses.dataclass(kw_only=True)
class TokenizeConfig(StageConfig):
    """Train a WordPiece or Unigram tokenizer on a corpus (or reuse one) and encode its sentences.

        ptk tokenize work/docs --out work/tokens --vocab-size 8192
    """

    stage: ClassVar[str] = "tokenize"

    # Not hashed: the corpus's manifest fingerprint is part of the output's key, so moving or
    # renaming the directory does not make a finished output stale.
    docs: Path = option(help="Corpus directory written by `ptk corpus build`.", argument=True, hashed=False)
    out: Path = option(Path("work/tokens"), "Output directory (shards + tokenizer/).", hashed=False)
    model: Literal["wordpiece", "unigram"] = option(
        "wordpiece", "Tokenizer to train: wordpiece (BERT) or unigram (SentencePiece-style, as ALBERT).")
    vocab_size: int = option(8192, "Vocabulary size to train, special and reserved tokens included.")
    min_frequency: int = option(2, "Fewest occurrences for a WordPiece merge to enter the vocabulary.")
    lowercase: bool = option(True, "Lowercase the text (uncased model); --no-lowercase keeps case.")
    strip_accents: Literal["auto", "yes", "no"] = option(
        "auto", "Remove accents (café → cafe); auto strips them exactly when lowercasing, as BERT does.")
    split_cjk: bool = option(True, "Make every CJK ideograph its own word, as BERT does (WordPiece).")
    special_tokens: str = option("", "Extra special tokens after [PAD] [UNK] [CLS] [SEP] [MASK], comma-"
                                     "separated bracketed names, e.g. \"[BOS],[EOS]\".")
    reserved: int = option(0, "Reserved slots [unused0] .. [unusedN-1] in the vocabulary, to repurpose "
                              "later; text never produces them.")
    limit_alphabet: int = option(0, "Keep only this many most frequent characters (0: all); the others "
                                    "encode as [UNK] (with WordPiece, their whole word).")
    tokenizer: Path | None = option(None, "Reuse this HF tokenizer directory (tokenizer.json or vocab.txt; "
                                          "sample:minilm for bert-base-uncased's) as it is, instead of "
                                          "training one; the training options are then unused.")
    train_bytes: int = option(200_000_000, "Train on a sample of at most this many bytes of sentences: "
                                           "whole documents picked by a hash of their id, spread over the "
                                           "whole corpus, the same for any sharding or --workers.")
    batch_size: int = option(1000, "Sentences per encode_batch call.")
    workers: int = option(1, "Processes encoding in parallel, sharing big shards by chunks, each with "
                             "cores/workers Rust threads (output is identical for any value).", hashed=False)

    def problems(self) -> list[str]:
        found = []
        if self.vocab_size < 128:
            found.append(f"--vocab-size {self.vocab_size} is too small; use at least 128")
        if self.vocab_size > 1 << 32:
            found.append(f"--vocab-size {self.vocab_size} does not fit uint32 token ids")
        for name in ("min_frequency", "train_bytes", "batch_size", "workers"):
            if getattr(self, name) < 1:
                found.append(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("reserved", "limit_alphabet"):
            if getattr(self, name) < 0:
                found.append(f"--{name.replace('_', '-')} must be 0 or more")
        found += self._special_token_problems()
        if self.tokenizer is None:
            fixed = len(ROLE_TOKENS) + len(self.extra_special_tokens()) + max(self.reserved, 0)
            if self.vocab_size >= 128 and fixed >= self.vocab_size:
                extra = fixed - self.reserved - len(ROLE_TOKENS)
                found.append(f"--reserved {self.reserved} and {extra} extra special token(s) need {fixed} "
                             f"vocabulary slots with the five roles, and --vocab-size {self.vocab_size} "
                             f"leaves none for text; raise --vocab-size or lower --reserved")
        else:
            found += self._reuse_problems()
        return found

    def extra_special_tokens(self) -> list[str]:
        """The --special-tokens, in order."""
        if not self.special_tokens.strip():
            return []
        return [token.strip() for token in self.special_tokens.split(",")]

    def accent_stripping(self) -> bool:
        """Whether accents are removed: `auto` follows `lowercase`, as in uncased and cased BERT."""
        return self.lowercase if self.strip_accents == "auto" else self.strip_accents == "yes"

    def tokenizer_dir(self) -> Path:
        """The --tokenizer directory, with `sample:NAME` resolved to the installed sample."""
        assert self.tokenizer is not None
        return resolve_input(self.tokenizer)

    def _special_token_problems(self) -> list[str]:
        tokens = self.extra_special_tokens()
        bad = [token for token in tokens if not SPECIAL_TOKEN.fullmatch(token)]
        taken = [token for token in tokens if token in ROLE_TOKENS or RESERVED.fullmatch(token)]
        repeated = sorted({token for token in tokens if tokens.count(token) > 1})
        found = []
        if bad:
            found.append(f"--special-tokens {self.special_tokens!r}: {', '.join(map(repr, bad))} is not one "
                         f"bracketed name such as [BOS] or <s>; give a comma-separated list, e.g. "
                         f"\"[BOS],[EOS]\"")
        if taken:
            found.append(f"--special-tokens: {', '.join(taken)} already exist (the five roles and "
                         f"[unusedN] from --reserved); remove them")
        if repeated:
            found.append(f"--special-tokens: {', '.join(repeated)} given twice; list each token once")
        return found

    def _reuse_problems(self) -> list[str]:
        found = []
        if self.model != "wordpiece" or self.reserved or self.special_tokens:
            found.append("--model, --reserved and --special-tokens shape a trained vocabulary; --tokenizer "
                         "reuses one as it is: drop them or drop --tokenizer")
        try:
            directory = self.tokenizer_dir()
        except UserError as error:  # a sample whose package is not installed
            return [*found, f"--tokenizer {self.tokenizer}: {error}"]
        if not directory.is_dir():
            found.append(f"--tokenizer {directory}: no such directory; point it at an HF tokenizer "
                         f"directory (e.g. a BERT model directory)")
        elif not any((directory / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
            found.append(f"--tokenizer {directory}: no tokenizer.json or vocab.txt in it; point it at an "
                         f"HF tokenizer directory")
        elif not any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
            # Google's checkpoints ship vocab.txt alone, which does not say whether to lowercase.
            found.append(f"--tokenizer {directory}: vocab.txt without tokenizer_config.json does not say "
                         f"whether the vocabulary is cased; save it once with transformers: "
                         f"BertTokenizerFast(vocab_file=..., do_lower_case=True or False)"
                         f".save_pretrained(DIR)")
        return found

    def hashed_dict(self) -> dict[str, Any]:
        # A reused tokenizer counts by its files' contents, not its path: edited in place, the
        # output is stale; moved, it is not.
        from pretrain_cli.store import file_sha256

        values = super().hashed_dict()
        if self.tokenizer is not None:
            directory = self.tokenizer_dir()
            values["tokenizer"] = {path.name: file_sha256(path) for path in sorted(directory.iterdir())
                                   if path.name in TOKENIZER_FILES and path.is_file()}
        return values


def run(cfg: TokenizeConfig) -> Manifest:
    """Tokenize `cfg.docs` into `cfg.out`; returns the manifest (the existing one if up to date)."""
    import pyarrow as pa

    from pretrain_cli.stages.tokenize.directory import load_tokenizer, save_tokenizer, tokenizer_facts
    from pretrain_cli.stages.tokenize.train import train_tokenizer
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

    # Output shard i is input shard i: resuming skips exactly the finished ones. Processes share
    # the work by chunks, so one big shard keeps every worker busy.
    todo = {shard_name(i): shard_chunks(str(docs.directory / info.file), table)
            for i, (info, table) in enumerate(iter_shards(docs)) if not out.has_shard(shard_name(i))}
    encoder = ShardEncoder(str(tokenizer_dir / "tokenizer.json"), facts.extra["id_dtype"], cfg.batch_size,
                           unk_id=facts.extra["special_ids"]["unk"], control_ids=facts.control_ids,
                           threads=max(1, _cores() // cfg.workers))
    chunks = [chunk for shard in todo.values() for chunk in shard]
    parts = ordered_map(encoder, chunks, cfg.workers)
    with progress_bar("tokenize", len(chunks)) as advance:
        for name, shard in todo.items():
            encoded = []
            for part in itertools.islice(parts, len(shard)):
                encoded.append(part)
                advance()
            table = pa.concat_tables(part for part, _ in encoded).combine_chunks()
            out.write_shard(name, table, tokens=sum(tokens for _, tokens in encoded))

    stats = _stats(out, facts.extra["special_ids"]["unk"])
    if stats["tokens"] == 0:
        raise UserError(f"{cfg.docs}: its {stats['documents']:,} documents hold no text to tokenize; "
                        f"rebuild the corpus from non-empty input")
    say(f"tokenize: {stats['documents']:,} documents, {stats['tokens']:,} tokens "
        f"({facts.extra['model']} vocabulary {facts.extra['vocab_size']:,}, unknown {stats['unk_rate']:.3%}) "
        f"→ {cfg.out}")
    extra = {**facts.extra, "tokenizer_sha256": file_sha256(tokenizer_dir / "tokenizer.json")}
    return out.finish(stats=stats, extra=extra)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
