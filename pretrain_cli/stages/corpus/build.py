"""`ptk corpus build`: raw dumps and text files → clean, filtered, deduplicated documents in sentences.

    ptk corpus build sample:enwiki sample:wiki_summaries --out work/docs
    ptk corpus build enwiki-*.xml.bz2 --workers 8 --languages en --out work/docs
    ptk corpus build dump.xml.bz2 --shard-index 3 --num-shards 16 --out work/docs-3   # machine 3 of 16
    ptk corpus build sample:zh_news --format tagged --languages zh --out work/zh/docs  # 迈向/v … → 迈向…

The parent process streams the inputs (a dump is never held in memory) in batches to `--workers`
processes, which clean, identify the language, filter and sentence-split each document and hash it
(clean.py); results come back in input order, and the parent drops exact, paragraph and near
duplicates against everything kept so far (dedup.py). Kept documents are cut into shards of
`--docs-per-shard` in input order, so the partition depends on the input alone, `--workers` changes
only the speed, and a rerun after an interruption skips the shards it already wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pyarrow as pa

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import console, say
from pretrain_cli.errors import UserError
from pretrain_cli.samples import resolve_input
from pretrain_cli.store import Manifest, StageOutput, shard_name

if TYPE_CHECKING:
    from pretrain_cli.stages.corpus.dedup import Deduplicator

Format = Literal["auto", "mediawiki", "wikiextractor", "text", "tagged", "jsonl", "json", "parquet",
                 "dataset"]
BATCH_CHARS = 1 << 20  # records sent to a worker at a time: large enough to amortise the hand-off
# A shard also closes at this much text, so a shard of long documents (books, big articles) cannot
# grow memory beyond a fixed bound; both limits depend on the input alone, never on timing.
SHARD_CHARACTERS = 16_000_000

SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("source", pa.string()),
                    ("lang", pa.string()), ("text", pa.string()), ("sentences", pa.list_(pa.string()))])


@dataclasses.dataclass(kw_only=True)
class CorpusConfig(StageConfig):
    """Build a clean document corpus from MediaWiki dumps, WikiExtractor output, text, JSON(L), Parquet."""

    stage: ClassVar[str] = "corpus"

    inputs: list[Path] = option(help="Input files or directories, read in order; `sample:enwiki` and "
                                "`sample:wiki_summaries` name the shipped samples.", argument=True)
    out: Path = option(help="Output directory for the document shards and manifest.json.", hashed=False)
    format: Format = option("auto", "Input format; auto decides per input from its name and first bytes "
                            "(see docs/corpus.md). `tagged` reads word/POS-tagged text such as "
                            "sample:zh_news, one document per line, and is never chosen by auto.")
    text_field: str = option("text", "Field holding the text in JSONL, Parquet and saved `datasets` records "
                             "(in .json dicts: the value itself, or its 'extract' field).")
    id_field: str = option("", "Field holding a record's id (default: file and line or row).")
    text_split: Literal["file", "blank-line"] = option(
        "file", "Text files: one document per file, or documents separated by blank lines with one "
        "paragraph or sentence per line (the input format of BERT's create_pretraining_data.py).")
    templates: Path | None = option(None, "YAML file extending or overriding the wikitext template "
                                    "policy: `templates: {NAME: RULE}` (see docs/corpus.md).")
    languages: str = option("", "Keep only documents in these languages, comma-separated ISO 639-1 codes "
                            "(e.g. en,zh); empty keeps every language.")
    min_language_score: float = option(0.0, "Drop documents whose language probability is below this.")
    min_words: int = option(30, "Drop documents with fewer words (CJK characters count as words).")
    max_words: int = option(100_000, "Drop documents with more words (0 = no limit).")
    min_mean_word_length: float = option(3.0, "Drop documents whose mean word length is below this.")
    max_mean_word_length: float = option(10.0, "Drop documents whose mean word length is above this.")
    max_symbol_ratio: float = option(0.1, "Drop documents with more '#' or ellipses per word than this.")
    max_repeated_lines: float = option(0.3, "Drop documents where more than this share of paragraphs "
                                       "are repeats of another paragraph of the same document.")
    dedup: bool = option(True, "Drop exact duplicate documents (same text after cleaning).")
    dedup_paragraphs: bool = option(True, "Remove paragraphs already kept in an earlier document.")
    near_dedup: bool = option(True, "Drop near-duplicate documents (MinHash LSH on word 5-grams).")
    near_dedup_threshold: float = option(0.8, "Estimated Jaccard similarity above which a document is a "
                                         "near duplicate of an earlier one.")
    workers: int = option(1, "Worker processes for cleaning; the output does not depend on it.", hashed=False)
    shard_index: int = option(0, "Which part of the input this run builds, with --num-shards.")
    num_shards: int = option(1, "Split the input records round-robin into this many parts, so that "
                             "several machines can each build one part of the same dump.")
    docs_per_shard: int = option(2000, f"Documents per output shard, at most (a shard also closes at "
                                 f"{SHARD_CHARACTERS / 1e6:.0f} M characters); fixes the partition.")
    encoding_errors: Literal["strict", "replace"] = option(
        "strict", "Undecodable bytes in text inputs: strict stops with the file and offset, replace "
        "substitutes U+FFFD.")
    limit: int = option(0, "Stop after this many kept documents (0 = no limit); for quick trials.")

    def problems(self) -> list[str]:
        found = []
        if not self.inputs:
            found.append("give at least one input file or directory")
        for name in ("min_words", "max_words", "min_mean_word_length", "max_mean_word_length",
                     "max_symbol_ratio", "max_repeated_lines", "limit"):
            if getattr(self, name) < 0:
                found.append(f"--{name.replace('_', '-')} must be 0 (off) or more")
        if self.max_words and self.min_words > self.max_words:
            found.append("--min-words is above --max-words: every document would be dropped")
        if self.max_mean_word_length and self.min_mean_word_length > self.max_mean_word_length:
            found.append("--min-mean-word-length is above --max-mean-word-length")
        if not 0 <= self.min_language_score <= 1:
            found.append("--min-language-score must be between 0 and 1")
        if not 0 < self.near_dedup_threshold < 1:
            found.append("--near-dedup-threshold must be between 0 and 1 (exclusive)")
        if self.docs_per_shard < 1:
            found.append("--docs-per-shard must be at least 1")
        if self.workers < 1:
            found.append("--workers must be at least 1")
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            found.append("--shard-index must be in 0 … --num-shards - 1")
        if self.templates is not None and not self.templates.is_file():
            found.append(f"--templates {self.templates}: no such file")
        from pretrain_cli.stages.corpus.readers import detect_format

        for value in self.inputs:
            try:
                path = resolve_input(value)
                if not path.exists():
                    found.append(f"{value}: no such file or directory; check the path")
                else:  # a later input that cannot be read should not wait for the earlier ones
                    detect_format(path, self.format)
            except UserError as error:  # a sample whose package is missing, an unknown format
                found.append(str(error))
        return found

    def hashed_dict(self) -> dict[str, Any]:
        # The template rules in force (the defaults with the file's changes), not the file's path,
        # decide the output.
        from pretrain_cli.stages.corpus.templates import load_template_policy

        values = super().hashed_dict()
        policy = load_template_policy(self.templates if self.templates and self.templates.is_file() else None)
        blob = json.dumps(policy.as_dict(), sort_keys=True).encode()
        values["templates"] = hashlib.sha256(blob).hexdigest()[:16]
        return values

    def language_set(self) -> frozenset[str]:
        return frozenset(code.strip().lower() for code in self.languages.split(",") if code.strip())


def run(cfg: CorpusConfig) -> Manifest:
    out = StageOutput(cfg, cfg.out)
    if (done := out.up_to_date()) is not None:
        return done
    drops: Counter = Counter()
    totals: Counter = Counter()
    languages: Counter = Counter()
    shard = ShardBuffer()
    index = 0
    started = time.monotonic()

    def flush() -> None:
        nonlocal index
        name = shard_name(index)
        table = shard.take()
        if not out.has_shard(name):  # on resume, finished shards are recomputed but not rewritten
            out.write_shard(name, table)
        index += 1

    from pretrain_cli.stages.corpus.dedup import Deduplicator

    dedup = Deduplicator(documents=cfg.dedup, paragraphs=cfg.dedup_paragraphs, near=cfg.near_dedup)
    for row in kept_documents(cfg, dedup, drops, totals):
        totals["documents"] += 1
        totals["sentences"] += len(row["sentences"])  # type: ignore[arg-type]
        totals["characters"] += len(row["text"])  # type: ignore[arg-type]
        languages[row["lang"]] += 1
        shard.add(row)
        if shard.documents == cfg.docs_per_shard or shard.characters >= SHARD_CHARACTERS:
            flush()
    if shard.documents:
        flush()
    if totals["documents"] == 0 and cfg.num_shards == 1:
        raise UserError(f"no documents left from {', '.join(map(str, cfg.inputs))} after cleaning "
                        f"(dropped: {dict(drops) or 'none'}); check the inputs, --languages or lower "
                        "--min-words")
    seconds = time.monotonic() - started
    counts = ("records", "input_characters", "documents", "sentences", "characters",
              "duplicate_paragraphs_removed")
    stats = {**{name: totals[name] for name in counts}, "languages": dict(languages.most_common()),
             "dropped": dict(sorted(drops.items())),
             "dedup_memory_mb": round(dedup.nbytes / 2**20, 1)}
    manifest = out.finish(stats=stats)
    say(f"corpus: {totals['documents']:,} documents, {totals['sentences']:,} sentences, "
        f"{totals['characters'] / 1e6:.1f} M characters from {totals['input_characters'] / 1e6:.1f} M "
        f"in {seconds:.1f} s → {cfg.out} (dropped: {stats['dropped']})")
    return manifest


class ShardBuffer:
    """The documents of the shard being filled, held as Arrow record batches: compact, where
    thousands of documents as Python strings and lists would cost several times their text."""

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.rows: list[dict[str, object]] = []
        self.documents = self.characters = 0

    def add(self, row: dict[str, object]) -> None:
        self.rows.append(row)
        self.documents += 1
        self.characters += len(row["text"])  # type: ignore[arg-type]
        if len(self.rows) == 64:
            self.batches.append(pa.RecordBatch.from_pylist(self.rows, schema=SCHEMA))
            self.rows = []

    def take(self) -> pa.Table:
        """The shard's table; the buffer starts empty again."""
        batches = [*self.batches, pa.RecordBatch.from_pylist(self.rows, schema=SCHEMA)]
        self.batches, self.rows = [], []
        self.documents = self.characters = 0
        return pa.Table.from_batches(batches, schema=SCHEMA).combine_chunks()


def kept_documents(cfg: CorpusConfig, dedup: Deduplicator, drops: Counter,
                   totals: Counter) -> Iterator[dict[str, object]]:
    """Rows of the kept documents in input order; drops and read totals are counted as they happen."""
    from functools import partial

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from pretrain_cli.stages.corpus.clean import CleanSettings, clean_batch
    from pretrain_cli.stages.corpus.inputs import InputOptions, iter_records
    from pretrain_cli.stages.corpus.quality import QualityThresholds, count_words
    from pretrain_cli.stages.corpus.templates import load_template_policy
    from pretrain_cli.workers import ordered_map

    limits = QualityThresholds(
        languages=cfg.language_set(), min_language_score=cfg.min_language_score, min_words=cfg.min_words,
        max_words=cfg.max_words, min_mean_word_length=cfg.min_mean_word_length,
        max_mean_word_length=cfg.max_mean_word_length, max_symbol_ratio=cfg.max_symbol_ratio,
        max_repeated_lines=cfg.max_repeated_lines)
    settings = CleanSettings(policy=load_template_policy(cfg.templates), limits=limits,
                             near_dedup_threshold=cfg.near_dedup_threshold if cfg.near_dedup else 0.0)
    options = InputOptions(format=cfg.format, text_field=cfg.text_field, id_field=cfg.id_field,
                           text_split=cfg.text_split, encoding_errors=cfg.encoding_errors,
                           shard_index=cfg.shard_index, num_shards=cfg.num_shards)

    def batches() -> Iterator[list]:
        batch, size = [], 0
        records = iter_records(cfg.inputs, options)
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except UserError:
                # A damaged input: clean what was read before the damage, so that every shard
                # completed before it is written and kept, then report the damage.
                if batch:
                    yield batch
                raise
            batch.append(record)
            # the per-record overhead counts too, so a stream of empty records still makes small batches
            size += 200 + (len(record.text) if not isinstance(record, str) else 0)
            if size >= BATCH_CHARS:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    with Progress(SpinnerColumn(), TextColumn("corpus {task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("")
        for docs in ordered_map(partial(clean_batch, settings=settings), batches(), cfg.workers):
            for doc in docs:
                totals["records"] += 1  # counted here, not when read: workers read ahead of --limit
                totals["input_characters"] += doc.input_characters
                if doc.drop is None:
                    doc.drop = dedup.check(doc.key, doc.band_keys)
                if doc.drop is None:
                    keep = dedup.new_paragraphs(doc.paragraph_keys)
                    paragraphs = [p for p, new in zip(doc.paragraphs, keep, strict=True) if new]
                    if not paragraphs or (len(paragraphs) < len(keep)
                                          and count_words("\n".join(paragraphs)) < cfg.min_words):
                        doc.drop = "duplicate_paragraphs"
                if doc.drop is not None:
                    drops[doc.drop] += 1
                    continue
                dedup.remember(doc.key, doc.band_keys, doc.paragraph_keys)
                totals["duplicate_paragraphs_removed"] += len(keep) - len(paragraphs)
                sentences = [s for ss, new in zip(doc.sentences, keep, strict=True) if new for s in ss]
                yield {"id": doc.doc_id, "title": doc.title, "source": doc.source, "lang": doc.lang,
                       "text": "\n".join(paragraphs), "sentences": sentences}
                if cfg.limit and totals["documents"] >= cfg.limit:
                    return
            progress.update(task, description=f"{totals['records']:,} records, "
                            f"{totals['input_characters'] / 1e6:,.0f} M characters read")
