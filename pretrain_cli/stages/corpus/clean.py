"""The per-document work of a corpus build, run in worker processes on batches of records.

    >>> settings = CleanSettings(policy=DEFAULT_POLICY, limits=QualityThresholds(min_words=30))
    >>> [doc] = clean_batch([Record("1", "Paris", "x.xml", "wikitext", "'''Paris''' is …")], settings)
    >>> doc.drop or (doc.lang, doc.sentences)

Everything that needs only the document itself happens here: wikitext to paragraphs, language,
quality filters, sentence splitting, and the 64-bit keys the parent uses for deduplication. What
needs the whole corpus (which documents and paragraphs were seen before) stays in the parent, so
the result never depends on how records were spread over workers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from pretrain_cli.stages.corpus.dedup import MinHasher, text_key
from pretrain_cli.stages.corpus.inputs import Record
from pretrain_cli.stages.corpus.quality import QualityThresholds, language_of, quality_problem
from pretrain_cli.stages.corpus.sentences import split_sentences
from pretrain_cli.stages.corpus.templates import TemplatePolicy
from pretrain_cli.stages.corpus.wikitext import is_disambiguation, wikitext_to_paragraphs

_BLANK_LINES = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class CleanSettings:
    """What a worker needs to clean a document; picklable, sent with every batch."""

    policy: TemplatePolicy
    limits: QualityThresholds
    near_dedup_threshold: float = 0.0  # 0: no MinHash keys


@dataclass
class CleanDocument:
    """A cleaned document, or the reason it was dropped (then every other field is empty)."""

    doc_id: str
    title: str
    source: str
    input_characters: int
    drop: str | None = None
    lang: str = ""
    paragraphs: list[str] = field(default_factory=list)
    sentences: list[list[str]] = field(default_factory=list)  # per paragraph
    key: int = 0
    paragraph_keys: list[int] = field(default_factory=list)
    band_keys: np.ndarray | None = None


def clean_batch(records: list[Record | str], settings: CleanSettings) -> list[CleanDocument]:
    """Each record cleaned; a drop reason standing for a record (a redirect …) stays a dropped one."""
    hasher = MinHasher.for_threshold(settings.near_dedup_threshold) if settings.near_dedup_threshold else None
    return [CleanDocument("", "", "", 0, drop=record) if isinstance(record, str)
            else clean_record(record, settings, hasher) for record in records]


def clean_record(record: Record, settings: CleanSettings, hasher: MinHasher | None) -> CleanDocument:
    doc = CleanDocument(record.doc_id, record.title, record.source, len(record.text))
    if record.markup == "wikitext" and is_disambiguation(record.text, record.title):
        doc.drop = "disambiguation"
        return doc
    paragraphs = to_paragraphs(record.text, record.markup, settings.policy)
    if not paragraphs:
        doc.drop = "empty"
        return doc
    text = "\n".join(paragraphs)
    lang, score = language_of(text)
    doc.drop = quality_problem(paragraphs, lang, score, settings.limits)
    if doc.drop:
        return doc
    doc.lang, doc.paragraphs = lang, paragraphs
    doc.sentences = [split_sentences(paragraph, lang) for paragraph in paragraphs]
    doc.key = text_key(text)
    doc.paragraph_keys = [text_key(paragraph) for paragraph in paragraphs]
    if hasher is not None:
        doc.band_keys = hasher.band_keys(text)
    return doc


def to_paragraphs(text: str, markup: str, policy: TemplatePolicy) -> list[str]:
    """Paragraphs of plain text: "blocks" are hard-wrapped (only blank lines end a paragraph);
    in "lines" every line is one (how exported lead sections and most dumps mark paragraphs)."""
    if markup == "wikitext":
        return wikitext_to_paragraphs(text, policy)
    if markup == "blocks":
        return [" ".join(block.split()) for block in _BLANK_LINES.split(text) if block.strip()]
    return [" ".join(line.split()) for line in text.split("\n") if line.strip()]
