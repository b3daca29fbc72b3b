"""Every input of a corpus build as one stream of raw records, in a fixed order.

    >>> for record in iter_records([Path("dump.xml.bz2"), Path("notes/")], options):
    ...     print(record if isinstance(record, str) else (record.doc_id, record.markup))

Records are numbered across all inputs as they are read; with `--num-shards n` a machine keeps
the records whose number is `shard_index` modulo n, before any cleaning, so n machines split one
dump evenly and each record lands on exactly one of them. Pages that can never become documents
(redirects, other namespaces, empty pages) are not cleaned: they stand in the stream as their drop
reason, so they are counted in input order with everything else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pretrain_cli.samples import resolve_input
from pretrain_cli.stages.corpus import readers
from pretrain_cli.stages.corpus.mediawiki import iter_pages


@dataclass(frozen=True)
class Record:
    """One raw document; `source` is its input format. `markup` says how to turn `text` into
    paragraphs: "wikitext", "blocks" (hard-wrapped text: blank lines end paragraphs) or "lines"
    (every line is a paragraph)."""

    doc_id: str
    title: str
    source: str
    markup: str
    text: str


@dataclass(frozen=True)
class InputOptions:
    """How to read the inputs (the corpus config's reading options)."""

    format: str = "auto"
    text_field: str = "text"
    id_field: str = ""
    text_split: str = "file"
    encoding_errors: str = "strict"
    shard_index: int = 0
    num_shards: int = 1


def iter_records(inputs: list[Path], options: InputOptions) -> Iterator[Record | str]:
    """This machine's share of the records of every input, in input order; a page dropped before
    cleaning is its drop reason ("redirect", "non_article_namespace", "empty_page")."""
    number = 0
    for value in inputs:
        for record in _records(resolve_input(value), options):
            number += 1
            if (number - 1) % options.num_shards == options.shard_index:
                yield record


def _records(path: Path, options: InputOptions) -> Iterator[Record | str]:
    """The records of one input; a page dropped here stands as its drop reason, so record numbers
    (and with them the split between machines) do not depend on what is dropped."""
    kind = readers.detect_format(path, options.format)
    if kind == "mediawiki":
        for page in iter_pages(path):
            reason = ("redirect" if page.redirect else "non_article_namespace" if page.ns != 0
                      else "empty_page" if not page.text.strip() else None)
            if reason:
                yield reason
            else:
                yield Record(f"{path.name}:{page.page_id}", page.title, kind, "wikitext", page.text)
        return
    id_field = options.id_field or None
    if kind == "text":
        raws = readers.iter_text_documents(path, encoding_errors=options.encoding_errors,
                                           split=options.text_split)
    elif kind == "tagged":
        raws = readers.iter_tagged_documents(path, encoding_errors=options.encoding_errors)
    elif kind == "wikiextractor":
        raws = readers.iter_wikiextractor_documents(path, encoding_errors=options.encoding_errors)
    elif kind == "jsonl":
        raws = readers.iter_jsonl_documents(path, text_field=options.text_field, id_field=id_field,
                                            encoding_errors=options.encoding_errors)
    elif kind == "json":
        raws = readers.iter_json_documents(path, text_field="extract" if options.text_field == "text"
                                           else options.text_field)
    elif kind == "parquet":
        raws = readers.iter_parquet_documents(path, text_field=options.text_field, id_field=id_field)
    else:
        raws = readers.iter_saved_dataset_documents(path, text_field=options.text_field, id_field=id_field)
    # A text file read whole is hard-wrapped prose; every other source marks paragraphs by newlines.
    markup = "blocks" if kind == "text" and options.text_split == "file" else "lines"
    for raw in raws:
        yield Record(raw.doc_id, raw.title, kind, markup, raw.text)
