"""Stream the pages of a MediaWiki XML export (`pages-articles.xml[.bz2|.gz]`) in constant memory.

    >>> for page in iter_pages(Path("enwiki-latest-pages-articles.xml.bz2")):
    ...     if page.ns == 0 and not page.redirect:
    ...         print(page.title, len(page.text))

The compression is recognised from the file's first bytes, not its name, so `.xml`, `.xml.bz2`,
`.bz2` and `.gz` all work. Pages are parsed one at a time and freed as soon as they are yielded.
Entity expansion is off: a document that declares a DOCTYPE or an ENTITY is refused outright,
which rules out "billion laughs" and external-entity attacks (real exports never declare either).
The text is decoded as UTF-8 here and fed to the parser as str, which makes expat ignore any
encoding the document declares, so no UTF-16 or other re-encoding can hide a declaration.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError, XMLPullParser

from pretrain_cli.errors import UserError

CHUNK_BYTES = 1 << 20
# Declarations that could make the parser expand entities. In an export every "<" in page text is
# escaped as "&lt;", so these strings can only appear as real markup.
_FORBIDDEN = ("<!DOCTYPE", "<!ENTITY")
_OVERLAP = max(len(marker) for marker in _FORBIDDEN) - 1


@dataclass(frozen=True)
class Page:
    """One `<page>`: `text` is the wikitext of its last revision, "" when the page has none."""

    title: str
    ns: int
    page_id: str
    redirect: bool
    text: str


def iter_pages(path: Path) -> Iterator[Page]:
    """Yield every page of the export at `path`, in file order."""
    if not path.is_file():
        raise UserError(f"{path}: no such file; pass the path of a MediaWiki XML export (.xml, .bz2 or .gz)")
    parser = XMLPullParser(events=("start", "end"))
    root: Element | None = None
    last_title: str | None = None
    with path.open("rb") as raw:
        stream = _decompressed(raw)
        decoder = codecs.getincrementaldecoder("utf-8")()
        decoded = 0  # bytes of XML decoded so far, for error messages
        tail = ""
        while True:
            try:
                # read1 hands over what is decompressed so far, so a damaged file still yields
                # every page before the damage.
                chunk = stream.read1(CHUNK_BYTES)
            except (EOFError, OSError, zlib.error) as err:
                raise UserError(
                    f"{path}: compressed data is truncated or corrupt near byte {raw.tell():,} of "
                    f"{path.stat().st_size:,} ({err}); last complete page: {last_title!r}. "
                    "Download the file again and check its checksum") from None
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                raise UserError(f"{path}: not valid UTF-8 at byte {decoded + err.start:,} of the XML; "
                                f"last complete page: {last_title!r}. MediaWiki exports are UTF-8: "
                                "download or export the file again") from None
            decoded += len(chunk)
            window = tail + text
            if any(marker in window for marker in _FORBIDDEN):
                raise UserError(f"{path}: the XML declares a DOCTYPE or ENTITY, which a MediaWiki export "
                                "never does; refusing to parse it (entity expansion is disabled for safety)")
            tail = window[-_OVERLAP:]
            try:
                if chunk:
                    parser.feed(text)
                else:
                    parser.close()
                for event, elem in parser.read_events():
                    if event == "start":
                        root = elem if root is None else root
                    elif _local(elem.tag) == "page":
                        page = _page(elem)
                        last_title = page.title
                        # Drop the finished page from the tree so memory stays flat over the dump.
                        assert root is not None
                        root.clear()
                        yield page
            except ParseError as err:
                line, column = err.position
                raise UserError(f"{path}: malformed XML at line {line}, column {column} ({err.msg}); "
                                f"last complete page: {last_title!r}. The file is not a complete MediaWiki "
                                "export: download or export it again") from None
            if not chunk:
                return


def _decompressed(raw: io.BufferedReader) -> io.BufferedIOBase:
    magic = raw.read(3)
    raw.seek(0)
    if magic == b"BZh":
        return bz2.BZ2File(raw)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)
    return raw


def _local(tag: str) -> str:
    # Export schema versions (0.3 … 0.11) differ only in the namespace URI; match on the local name.
    return tag.rpartition("}")[2]


def _page(elem: Element) -> Page:
    fields: dict[str, str] = {}
    redirect = False
    text = ""
    for child in elem:
        name = _local(child.tag)
        if name == "redirect":
            redirect = True
        elif name == "revision":
            # Full-history dumps hold many revisions; the last one is the current text.
            for part in child:
                if _local(part.tag) == "text":
                    text = part.text or ""
        elif name not in fields:
            fields[name] = (child.text or "").strip()
    ns = fields.get("ns", "0")
    return Page(title=fields.get("title", ""), ns=int(ns) if ns.lstrip("-").isdigit() else 0,
                page_id=fields.get("id", ""), redirect=redirect, text=text)
