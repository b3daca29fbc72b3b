"""A task from the user's own files: CSV, TSV, JSON lines, Arrow, Parquet, or CoNLL for NER.

    >>> data = load_user_files(TaskSource("reviews.csv", label_column="stars"))
    >>> data.name, data.kind, data.labels                 # labels: the train file's distinct values
    ('reviews', 'classification', ('1', '2', '3', '4', '5'))
    >>> load_user_files(TaskSource("ner/train.conll", dev_file=Path("ner/dev.conll"))).kind
    'tokens'

Columns come from --text-column/--text-pair-column/--label-column. A CoNLL file (`word<TAB>tag`, a
blank line between sentences) is a tokens task; in JSON lines, Arrow and Parquet a tokens task's text
column holds each sentence's words and its label column their BIO tag names. With `task_type="auto"`
list-valued labels make a tokens task, numeric labels with any non-integer value a regression task,
anything else classification. Without --dev-file, 10% of the train file (by text hash, per label for
classification) becomes dev. Every malformed record is a user error naming the file and its line or
record number.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pretrain_cli.errors import UserError
from pretrain_cli.tasks.data import (
    DEV_FRACTION,
    Example,
    TaskData,
    TaskKind,
    TaskSource,
    bio_problem,
    default_metric,
    hash_split,
    tag_names,
)

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".arrow", ".parquet")
CONLL_SUFFIXES = (".conll", ".txt")
LIST_SUFFIXES = (".jsonl", ".json", ".arrow", ".parquet")  # the tables that can hold word and tag lists


@dataclasses.dataclass(frozen=True)
class Row:
    """One record as read, before the task kind decides what its label means."""

    where: str  # "train.csv line 4": the file and the line or record, for error messages
    text: Any  # a string; for tokens: the words
    text_pair: str | None
    label: Any  # str, number or bool as the format stores it; for tokens: the tag names


def looks_like_file(task: str) -> bool:
    """Whether a task argument names a file rather than a known task."""
    path = Path(task)
    known_type = path.suffix.lower() in (*TABLE_SUFFIXES, *CONLL_SUFFIXES)
    return known_type or path.parent != Path(".") or path.exists()


def user_file_problems(source: TaskSource) -> list[str]:
    """Cheap checks of a user-file task: the files exist, their types are readable, options fit."""
    problems = []
    train = Path(source.task)
    for flag, path in (("train file", train), ("--dev-file", source.dev_file)):
        if path is None:
            continue
        if path.suffix.lower() not in (*TABLE_SUFFIXES, *CONLL_SUFFIXES):
            problems.append(f"{flag} {path}: cannot read {path.suffix or 'a file without an extension'}; "
                            f"use one of {', '.join(TABLE_SUFFIXES + CONLL_SUFFIXES)}")
        elif not path.is_file():
            problems.append(f"{flag} {path}: no such file")
    if source.data_dir is not None or source.hub:
        problems.append("--data-dir and --hub are for GLUE tasks; a train file's dev split comes from "
                        "--dev-file (default: 10% of the train file); drop them")
    conll = train.suffix.lower() in CONLL_SUFFIXES
    if conll and source.task_type in ("classification", "regression"):
        problems.append(f"train file {train}: a CoNLL file is a tokens task, not {source.task_type}; "
                        f"drop --task-type or give a table (.csv, .jsonl, ...)")
    if source.task_type == "tokens" and train.suffix.lower() in (".csv", ".tsv"):
        problems.append(f"train file {train}: a tokens task reads CoNLL ({', '.join(CONLL_SUFFIXES)}) or "
                        f"word and tag lists from {', '.join(LIST_SUFFIXES)}")
    if source.text_pair_column and (conll or source.task_type == "tokens"):
        problems.append("a tokens task tags the words of one text; drop --text-pair-column")
    return problems


def load_user_files(source: TaskSource) -> TaskData:
    train_path = Path(source.task)
    train_rows = read_rows(train_path, source)
    if not train_rows:
        raise UserError(f"{train_path}: no examples; the train file needs at least one labelled record")
    kind = task_kind(train_rows, source)
    labels = label_set(train_rows, kind)
    train = [example(row, kind, labels) for row in train_rows]
    files: tuple[Path, ...] = (train_path,)
    if source.dev_file is not None:
        dev_rows = read_rows(source.dev_file, source)
        dev = [example(row, kind, labels) for row in dev_rows]
        files += (source.dev_file,)
        if not dev:
            raise UserError(f"{source.dev_file}: no examples; the dev file needs at least one labelled "
                            f"record")
    else:
        train, dev = hash_split(train, DEV_FRACTION, stratify=kind == "classification")
        if not dev or not train:
            empty = "dev" if not dev else "train"
            raise UserError(f"{train_path}: a 10% dev split of {len(train_rows)} example(s) leaves {empty} "
                            f"empty; add records or pass --dev-file")
    return TaskData(name=train_path.stem, kind=kind, labels=labels, train=train, dev=dev, files=files,
                    metric=default_metric(kind))


# -- reading: every format becomes Rows ---------------------------------------------------------------


def read_rows(path: Path, source: TaskSource) -> list[Row]:
    if path.suffix.lower() in CONLL_SUFFIXES:
        return [Row(where, words, None, tags) for where, words, tags in read_conll(path)]
    columns, records = read_table(path)
    wanted = {source.text_column: "--text-column", source.label_column: "--label-column"}
    if source.text_pair_column:
        wanted[source.text_pair_column] = "--text-pair-column"
    if columns is not None:
        check_columns(str(path), columns, wanted)
    rows = []
    for where, record in records:
        if columns is None:
            check_columns(where, list(record), wanted)
        pair = record[source.text_pair_column] if source.text_pair_column else None
        if source.text_pair_column and not isinstance(pair, str):
            raise UserError(f"{where}: no text in the pair column {source.text_pair_column!r}; "
                            f"fill it in or remove the record")
        rows.append(Row(where, record[source.text_column], pair, record[source.label_column]))
    return rows


def check_columns(where: str, columns: list[str], wanted: dict[str, str]) -> None:
    for column, flag in wanted.items():
        if column not in columns:
            raise UserError(f"{where}: no column {column!r} (the columns are "
                            f"{', '.join(columns) or 'none'}); name the right one with {flag}")


def read_table(path: Path) -> tuple[list[str] | None, Iterator[tuple[str, dict[str, Any]]]]:
    """The column names (None where each record has its own, as in JSON) and (where, record) pairs."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return read_delimited(path, suffix == ".tsv")
    if suffix in (".jsonl", ".json"):
        return None, read_json(path)
    return read_columnar(path)


def read_delimited(path: Path, tabs: bool) -> tuple[list[str], Iterator[tuple[str, dict[str, Any]]]]:
    records = []
    # utf-8-sig: spreadsheet exports start with a byte-order mark that would hide the first column name
    with open(path, newline="", encoding="utf-8-sig") as handle:
        # TSV text often holds bare quotes, so tabs split fields with no quoting at all (as in GLUE)
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if tabs else csv.reader(handle)
        header = next(reader, [])
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            where = f"{path} line {reader.line_num}"
            # a field count off the header means a stray separator inside a text: reading on would
            # shift every column after it, so stop here
            if len(row) != len(header):
                hint = "a tab inside a text" if tabs else "a comma inside an unquoted text"
                raise UserError(f"{where}: {len(row)} field(s) but the header has {len(header)} "
                                f"({', '.join(header)}); look for {hint}")
            records.append((where, dict(zip(header, row, strict=True))))
    return header, iter(records)


def read_json(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """JSON lines, one object per line; a `.json` file holding one array of objects also reads."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: not valid JSON ({error}); fix the file or write one object per line") \
                from error
        numbered = ((f"{path} record {n}", item) for n, item in enumerate(items, 1))
    else:
        # split on newlines only: str.splitlines would also break at U+2028 and other separators that
        # JSON strings may hold raw
        lines = text.split("\n")
        numbered = ((f"{path} line {n}", line) for n, line in enumerate(lines, 1) if line.strip())
    for where, item in numbered:
        if isinstance(item, str):
            try:
                item = json.loads(item)
            except json.JSONDecodeError as error:
                raise UserError(f"{where}: not valid JSON ({error.msg} at column {error.colno}); each line "
                                f"must be one JSON object") from error
        if not isinstance(item, dict):
            raise UserError(f"{where}: a JSON {type(item).__name__}, expected an object with the task's "
                            f"columns")
        yield where, item


def read_columnar(path: Path) -> tuple[list[str], Iterator[tuple[str, dict[str, Any]]]]:
    """Arrow (IPC file, or the stream `datasets` writes) or Parquet, read whole with pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
        else:
            with pa.memory_map(str(path)) as source:
                try:
                    table = pa.ipc.open_file(source).read_all()
                except pa.ArrowInvalid:
                    source.seek(0)
                    table = pa.ipc.open_stream(source).read_all()
    except (pa.ArrowInvalid, OSError) as error:
        kind = "Parquet" if path.suffix.lower() == ".parquet" else "Arrow IPC (file or stream)"
        raise UserError(f"{path}: not a readable {kind} file ({error}); write it with pyarrow or datasets") \
            from error
    rows = ((f"{path} row {n}", record) for n, record in enumerate(table.to_pylist(), 1))
    return table.column_names, rows


def read_conll(path: Path) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(where, words, tags) per sentence of a `word<TAB>tag` file; sentences end at blank lines.

    Lines without a tab split on spaces, taking the first field as the word and the last as the tag,
    so CoNLL-2003's `word POS chunk tag` lines read too (and its -DOCSTART- lines are skipped).
    """
    sentences = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    with open(path, encoding="utf-8-sig") as handle:
        for line_number, line in enumerate([*handle, ""], 1):  # the trailing "" ends the last sentence
            line = line.rstrip("\r\n")
            if not line.strip():
                if words:
                    sentences.append((f"{path} line {start}", tuple(words), tuple(tags)))
                words, tags = [], []
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            if fields[0] == "-DOCSTART-":
                continue
            if len(fields) < 2 or not fields[0] or not fields[-1].strip():
                raise UserError(f"{path} line {line_number}: expected a word and its tag separated by a tab, "
                                f"got {line!r}")
            if not words:
                start = line_number
            words.append(fields[0])
            tags.append(fields[-1].strip())
    return sentences


# -- meaning: the task kind, the label set, and examples ----------------------------------------------


def number(value: Any) -> float | None:
    """A label as a number, if it is one (bools are not, though Python says they are ints)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def task_kind(rows: list[Row], source: TaskSource) -> TaskKind:
    """--task-type, or the kind the train file's labels say: tag lists, fractional scores, or classes."""
    if source.task_type != "auto":
        return source.task_type
    lists = [isinstance(row.label, (list, tuple)) for row in rows]
    if any(lists):
        if not all(lists):
            where = rows[lists.index(False)].where
            raise UserError(f"{where}: the label is not a list of tags though other records' labels are; "
                            f"a tokens task needs a tag list in every record")
        return "tokens"
    numbers = [number(row.label) for row in rows]
    if all(n is not None for n in numbers) and any(not math.isfinite(n) or n != int(n) for n in numbers):
        return "regression"
    return "classification"


def class_name(value: Any) -> str | None:
    """The class a scalar label names: 1, 1.0, "1" and "1.0" are all class "1", so a JSON file and a
    CSV export of the same data agree."""
    if isinstance(value, bool):
        return str(value).lower()
    if not isinstance(value, (int, float, str)):
        return None
    score = number(value)
    if score is not None and math.isfinite(score) and score == int(score):
        return str(int(score))
    return str(value).strip() or None


def label_set(rows: list[Row], kind: TaskKind) -> tuple[str, ...]:
    """Classification: the train file's distinct labels, in numeric order when all are numbers, else
    sorted; tokens: its tags, "O" first; regression: none."""
    if kind == "regression":
        return ()
    if kind == "tokens":
        return tag_names({tag for row in rows if isinstance(row.label, (list, tuple)) for tag in row.label
                          if isinstance(tag, str)})
    names = {name for row in rows if (name := class_name(row.label)) is not None}
    numeric = all(number(name) is not None for name in names)
    return tuple(sorted(names, key=float) if numeric else sorted(names))


def example(row: Row, kind: TaskKind, labels: tuple[str, ...]) -> Example:
    """One Row as an Example of `kind`; `labels` is the train file's label set."""
    if kind == "tokens":
        return tokens_example(row.where, row.text, row.label, labels)
    if not isinstance(row.text, str):
        raise UserError(f"{row.where}: the text is {describe(row.text)}, expected a string; fix or remove "
                        f"the record")
    if isinstance(row.label, (list, tuple, dict)):
        raise UserError(f"{row.where}: the label is {describe(row.label)}, expected one value; a list of "
                        f"tags makes a tokens task (--task-type auto or tokens)")
    if kind == "regression":
        score = number(row.label)
        if score is None or not math.isfinite(score):
            raise UserError(f"{row.where}: label {row.label!r} is not a finite number; a regression task "
                            f"needs a score in every record")
        return Example(row.text, row.text_pair, score)
    name = class_name(row.label)
    if name is None:
        raise UserError(f"{row.where}: no label; fill it in or remove the record")
    if name not in labels:
        raise UserError(f"{row.where}: label {row.label!r} is not one of the train file's labels "
                        f"({', '.join(labels)}); fix or remove the record")
    return Example(row.text, row.text_pair, labels.index(name))


def tokens_example(where: str, words: Any, tags: Any, labels: tuple[str, ...]) -> Example:
    if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) for w in words):
        raise UserError(f"{where}: the text is {describe(words)}; a tokens task needs a list of words")
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise UserError(f"{where}: the label is {describe(tags)}; a tokens task needs a list of tag names "
                        f"(O, B-type, I-type)")
    if not words:
        raise UserError(f"{where}: no words; remove the record")
    if len(words) != len(tags):
        raise UserError(f"{where}: {len(words)} words but {len(tags)} tags; give one tag per word")
    for tag in tags:
        problem = bio_problem(tag)
        if problem:
            raise UserError(f"{where}: {problem}; fix the tag")
        if tag not in labels:
            raise UserError(f"{where}: tag {tag!r} is not one of the train file's tags "
                            f"({', '.join(labels)}); fix the tag or add it to the train file")
    return Example(tuple(words), None, tuple(labels.index(t) for t in tags))


def describe(value: Any) -> str:
    if value is None:
        return "empty"
    return f"a {type(value).__name__} ({str(value)[:40]!r})"
