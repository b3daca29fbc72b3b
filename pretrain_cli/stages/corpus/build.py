"""`ptk corpus build`: raw dumps and text files → clean documents split into sentences.

    ptk corpus build sample:enwiki sample:wiki_summaries --out work/docs
    ptk corpus build dump.xml.bz2 notes/ extra.jsonl --text-field body --out work/docs

Inputs are read in the order given, streaming (a dump is never held in memory). Kept documents are
cut into shards of `--docs-per-shard` in input order, so the partition depends on the input alone
and a rerun after an interruption skips the shards it already wrote and writes identical bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

import pyarrow as pa

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import say
from pretrain_cli.errors import UserError
from pretrain_cli.samples import resolve_input
from pretrain_cli.store import Manifest, StageOutput, shard_name

Format = Literal["auto", "mediawiki", "text", "jsonl", "json"]
WIKI_SUFFIXES = (".xml", ".bz2", ".gz")

SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("source", pa.string()),
                    ("text", pa.string()), ("sentences", pa.list_(pa.string()))])


@dataclasses.dataclass(kw_only=True)
class CorpusConfig(StageConfig):
    """Build a clean document corpus from MediaWiki dumps, text files/directories and JSON(L)."""

    stage: ClassVar[str] = "corpus"

    inputs: list[Path] = option(help="Input files or directories, read in order; `sample:enwiki` and "
                                "`sample:wiki_summaries` name the shipped samples.", argument=True)
    out: Path = option(help="Output directory for the document shards and manifest.json.", hashed=False)
    format: Format = option("auto", "Input format; auto decides per input: .xml/.bz2/.gz MediaWiki, "
                            ".jsonl JSON lines, .json a title→text dict, directories and .txt text.")
    text_field: str = option("text", "Field holding the text in JSONL records (in .json dicts: the "
                             "value itself, or its 'extract' field).")
    min_chars: int = option(200, "Drop documents shorter than this many characters after cleaning.")
    dedup: bool = option(True, "Drop exact duplicate documents (same text after cleaning).")
    docs_per_shard: int = option(2000, "Documents per output shard (fixes the partition).")
    encoding_errors: Literal["strict", "replace"] = option(
        "strict", "Undecodable bytes in text inputs: strict stops with the file and offset, replace "
        "substitutes U+FFFD.")
    limit: int = option(0, "Stop after this many kept documents (0 = no limit); for quick trials.")

    def problems(self) -> list[str]:
        found = []
        if not self.inputs:
            found.append("give at least one input file or directory")
        if self.min_chars < 0:
            found.append("--min-chars must be 0 or more")
        if self.docs_per_shard < 1:
            found.append("--docs-per-shard must be at least 1")
        if self.limit < 0:
            found.append("--limit must be 0 (no limit) or more")
        return found


@dataclasses.dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    source: str
    paragraphs: list[str]


def detect_format(path: Path, configured: str) -> str:
    if configured != "auto":
        return configured
    if path.is_dir() or path.suffix == ".txt":
        return "text"
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".json":
        return "json"
    if path.suffix in WIKI_SUFFIXES:
        return "mediawiki"
    raise UserError(f"{path}: cannot tell the input format from the name; pass --format "
                    f"mediawiki|text|jsonl|json")


def read_documents(path: Path, cfg: CorpusConfig, drops: Counter) -> Iterator[Document]:
    """Every document of one input, as paragraphs of plain text; drops are counted by reason."""
    from pretrain_cli.stages.corpus import readers
    from pretrain_cli.stages.corpus.mediawiki import iter_pages
    from pretrain_cli.stages.corpus.wikitext import wikitext_to_paragraphs

    if not path.exists():
        raise UserError(f"{path}: no such file or directory; check the path")
    kind = detect_format(path, cfg.format)
    if kind == "mediawiki":
        for page in iter_pages(path):
            if page.redirect:
                drops["redirect"] += 1
            elif page.ns != 0:
                drops["non_article_namespace"] += 1
            elif not page.text.strip():
                drops["empty_page"] += 1
            else:
                yield Document(f"{path.name}:{page.page_id}", page.title, "mediawiki",
                               wikitext_to_paragraphs(page.text))
        return
    if kind == "text":
        raws = readers.iter_text_documents(path, encoding_errors=cfg.encoding_errors)
    elif kind == "jsonl":
        raws = readers.iter_jsonl_documents(path, text_field=cfg.text_field,
                                            encoding_errors=cfg.encoding_errors)
    else:
        raws = readers.iter_json_documents(path, text_field="extract" if cfg.text_field == "text"
                                           else cfg.text_field)
    for raw in raws:
        yield Document(raw.doc_id, raw.title, raw.source, paragraphs_of(raw.text, kind))


def paragraphs_of(text: str, kind: str) -> list[str]:
    """Text files are hard-wrapped, so only blank lines end a paragraph there; in JSON(L) records
    every newline does (that is how exported lead sections and most dumps mark paragraphs)."""
    if kind == "text":
        blocks = re.split(r"\n\s*\n", text)
        return [" ".join(block.split()) for block in blocks if block.strip()]
    return [line.strip() for line in text.split("\n") if line.strip()]


def clean_documents(cfg: CorpusConfig, drops: Counter) -> Iterator[dict[str, object]]:
    """Rows of kept documents in input order: filtered, deduplicated, sentence-split."""
    from pretrain_cli.stages.corpus.sentences import split_sentences

    seen: set[bytes] = set()
    kept = 0
    for value in cfg.inputs:
        for doc in read_documents(resolve_input(value), cfg, drops):
            text = "\n".join(doc.paragraphs)
            if len(text) < cfg.min_chars:
                drops["too_short"] += 1
                continue
            if cfg.dedup:
                digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
                if digest in seen:
                    drops["duplicate"] += 1
                    continue
                seen.add(digest)
            sentences = [s for p in doc.paragraphs for s in split_sentences(p)]
            yield {"id": doc.doc_id, "title": doc.title, "source": doc.source, "text": text,
                   "sentences": sentences}
            kept += 1
            if cfg.limit and kept >= cfg.limit:
                return


def run(cfg: CorpusConfig) -> Manifest:
    out = StageOutput(cfg, cfg.out)
    if (done := out.up_to_date()) is not None:
        return done
    drops: Counter = Counter()
    totals: Counter = Counter()
    batch: list[dict[str, object]] = []
    index = 0

    def flush() -> None:
        nonlocal batch, index
        name = shard_name(index)
        if not out.has_shard(name):  # on resume, finished shards are recomputed but not rewritten
            out.write_shard(name, pa.Table.from_pylist(batch, schema=SCHEMA))
        batch, index = [], index + 1

    for row in clean_documents(cfg, drops):
        totals["documents"] += 1
        totals["sentences"] += len(row["sentences"])  # type: ignore[arg-type]
        totals["characters"] += len(row["text"])  # type: ignore[arg-type]
        batch.append(row)
        if len(batch) == cfg.docs_per_shard:
            flush()
    if batch:
        flush()
    if totals["documents"] == 0:
        raise UserError(f"no documents left from {', '.join(map(str, cfg.inputs))} after cleaning "
                        f"(dropped: {dict(drops) or 'none'}); check the inputs or lower --min-chars")
    stats = {**totals, "dropped": dict(sorted(drops.items()))}
    manifest = out.finish(stats=stats)
    say(f"corpus: {totals['documents']:,} documents, {totals['sentences']:,} sentences, "
        f"{totals['characters'] / 1e6:.1f} M characters → {cfg.out} (dropped: {stats['dropped']})")
    return manifest
