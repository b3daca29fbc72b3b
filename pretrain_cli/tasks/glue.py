"""GLUE classification tasks, read from the `train.tsv`/`dev.tsv` files of the GLUE distribution.

    >>> data = load_glue("rte", Path("glue_data/RTE"))
    >>> data.labels, data.train[0].text_pair is not None
    (('entailment', 'not_entailment'), True)

Each task keeps its real column layout: columns are found by their header names (CoLA has no header,
so its columns are positional), fields are split on tabs with no quoting (GLUE text contains bare
quotes), and a label must be one the task defines: a stray value is a user error, never a new class.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from pretrain_cli.errors import UserError
from pretrain_cli.tasks.data import Example, TaskData


@dataclasses.dataclass(frozen=True)
class GlueLayout:
    text: str
    text_pair: str | None
    label: str
    raw_labels: tuple[str, ...]  # the values written in the file; raw_labels[i] means labels[i]
    labels: tuple[str, ...]
    dev_file: str = "dev.tsv"
    columns: tuple[str, ...] = ()  # the column names of a file without a header row

    def describe(self) -> str:
        """The expected files, for error messages that say how to fix the data directory."""
        names = [c for c in (self.text, self.text_pair, self.label) if c]
        shape = (f"tab-separated, no header, columns {', '.join(self.columns)}" if self.columns
                 else f"tab-separated with a header row naming the columns {', '.join(names)}")
        return f"train.tsv and {self.dev_file} ({shape}; labels {'/'.join(self.raw_labels)})"


_NLI = ("entailment", "not_entailment")
GLUE: dict[str, GlueLayout] = {
    "sst2": GlueLayout("sentence", None, "label", ("0", "1"), ("negative", "positive")),
    "cola": GlueLayout("sentence", None, "label", ("0", "1"), ("unacceptable", "acceptable"),
                       columns=("source", "label", "original_label", "sentence")),
    "mrpc": GlueLayout("#1 String", "#2 String", "Quality", ("0", "1"), ("not_equivalent", "equivalent")),
    "qqp": GlueLayout("question1", "question2", "is_duplicate", ("0", "1"), ("not_duplicate", "duplicate")),
    "qnli": GlueLayout("question", "sentence", "label", _NLI, _NLI),
    "rte": GlueLayout("sentence1", "sentence2", "label", _NLI, _NLI),
    "wnli": GlueLayout("sentence1", "sentence2", "label", ("0", "1"), ("not_entailment", "entailment")),
    "mnli": GlueLayout("sentence1", "sentence2", "gold_label", ("entailment", "neutral", "contradiction"),
                       ("entailment", "neutral", "contradiction"), dev_file="dev_matched.tsv"),
}


def load_glue(task: str, data_dir: Path) -> TaskData:
    layout = GLUE[task]
    train = read_tsv(data_dir / "train.tsv", layout, task)
    dev = read_tsv(data_dir / layout.dev_file, layout, task)
    return TaskData(name=task, labels=layout.labels, train=train, dev=dev,
                    files=(data_dir / "train.tsv", data_dir / layout.dev_file))


def read_tsv(path: Path, layout: GlueLayout, task: str) -> list[Example]:
    if not path.is_file():
        raise UserError(f"{path}: no such file; task {task} reads {layout.describe()} from --data-dir")
    examples = []
    # utf-8-sig: some GLUE files (MRPC) start with a byte-order mark that would hide the first column name
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = list(layout.columns) or next(reader, [])
        wanted = [c for c in (layout.text, layout.text_pair, layout.label) if c]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise UserError(f"{path}: no column {', '.join(repr(c) for c in missing)} in the header "
                            f"({', '.join(header) or 'empty file'}); task {task} expects {layout.describe()}")
        text, label = header.index(layout.text), header.index(layout.label)
        pair = header.index(layout.text_pair) if layout.text_pair else None
        needed = max(i for i in (text, pair, label) if i is not None) + 1
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            if len(row) < needed:
                raise UserError(f"{path} line {reader.line_num}: {len(row)} tab-separated field(s), "
                                f"expected {len(header)} ({', '.join(header)})")
            raw = row[label].strip()
            if raw not in layout.raw_labels:
                raise UserError(f"{path} line {reader.line_num}: label {raw!r} is not a {task} label "
                                f"(expected one of {', '.join(layout.raw_labels)}); fix or remove the line")
            examples.append(Example(row[text], row[pair] if pair is not None else None,
                                    layout.raw_labels.index(raw)))
    if not examples:
        raise UserError(f"{path}: no examples; task {task} needs labelled rows in {layout.describe()}")
    return examples
