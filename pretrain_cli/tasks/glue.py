"""GLUE, from the `train.tsv`/`dev.tsv` files of the GLUE distribution or from the Hugging Face hub.

    >>> data = load_glue("rte", Path("glue_data/RTE"))
    >>> data.labels, data.is_pair, data.metric
    (('entailment', 'not_entailment'), True, 'accuracy')
    >>> load_glue_hub("stsb").kind                       # needs network: nyu-mll/glue
    'regression'

Each task keeps its real column layout: columns are found by their header names (CoLA has no header,
so its columns are positional), fields are split on tabs with no quoting (GLUE text contains bare
quotes), and a label must be one the task defines: a stray value is a user error, never a new class.
The hub's copy stores labels as integers; they map to the same label names, so a model trained on
either source reads the same.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

from pretrain_cli.errors import UserError
from pretrain_cli.tasks.data import Example, TaskData, TaskKind

HUB_DATASET = "nyu-mll/glue"
STSB_RANGE = (0.0, 5.0)  # STS-B similarity scores


@dataclasses.dataclass(frozen=True)
class GlueLayout:
    text: str  # column names in the GLUE files
    text_pair: str | None
    label: str
    raw_labels: tuple[str, ...]  # the values written in the file; raw_labels[i] means labels[i]; () for STS-B
    labels: tuple[str, ...]  # the label names, in the hub's ClassLabel order
    hub_text: str  # column names in the hub's copy
    hub_pair: str | None
    kind: TaskKind = "classification"
    metric: str = "accuracy"  # what the GLUE leaderboard reports first
    dev_file: str = "dev.tsv"
    hub_dev_split: str = "validation"
    columns: tuple[str, ...] = ()  # the column names of a file without a header row

    def describe(self) -> str:
        """The expected files, for error messages that say how to fix the data directory."""
        names = [c for c in (self.text, self.text_pair, self.label) if c]
        shape = (f"tab-separated, no header, columns {', '.join(self.columns)}" if self.columns
                 else f"tab-separated with a header row naming the columns {', '.join(names)}")
        values = f"labels {'/'.join(self.raw_labels)}" if self.raw_labels else "scores 0-5"
        return f"train.tsv and {self.dev_file} ({shape}; {values})"


_NLI = ("entailment", "not_entailment")
GLUE: dict[str, GlueLayout] = {
    "cola": GlueLayout("sentence", None, "label", ("0", "1"), ("unacceptable", "acceptable"),
                       "sentence", None, metric="mcc",
                       columns=("source", "label", "original_label", "sentence")),
    "sst2": GlueLayout("sentence", None, "label", ("0", "1"), ("negative", "positive"), "sentence", None),
    "mrpc": GlueLayout("#1 String", "#2 String", "Quality", ("0", "1"), ("not_equivalent", "equivalent"),
                       "sentence1", "sentence2", metric="f1"),
    "qqp": GlueLayout("question1", "question2", "is_duplicate", ("0", "1"), ("not_duplicate", "duplicate"),
                      "question1", "question2", metric="f1"),
    "stsb": GlueLayout("sentence1", "sentence2", "score", (), (), "sentence1", "sentence2",
                       kind="regression", metric="spearman"),
    "mnli": GlueLayout("sentence1", "sentence2", "gold_label", ("entailment", "neutral", "contradiction"),
                       ("entailment", "neutral", "contradiction"), "premise", "hypothesis",
                       dev_file="dev_matched.tsv", hub_dev_split="validation_matched"),
    "qnli": GlueLayout("question", "sentence", "label", _NLI, _NLI, "question", "sentence"),
    "rte": GlueLayout("sentence1", "sentence2", "label", _NLI, _NLI, "sentence1", "sentence2"),
    "wnli": GlueLayout("sentence1", "sentence2", "label", ("0", "1"), ("not_entailment", "entailment"),
                       "sentence1", "sentence2"),
}


def load_glue(task: str, data_dir: Path) -> TaskData:
    layout = GLUE[task]
    train = read_tsv(data_dir / "train.tsv", layout, task)
    dev = read_tsv(data_dir / layout.dev_file, layout, task)
    return TaskData(name=task, kind=layout.kind, labels=layout.labels, train=train, dev=dev,
                    files=(data_dir / "train.tsv", data_dir / layout.dev_file), metric=layout.metric)


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
            where = f"{path} line {reader.line_num}"
            if len(row) < needed:
                raise UserError(f"{where}: {len(row)} tab-separated field(s), expected {len(header)} "
                                f"({', '.join(header)})")
            value = glue_label(row[label].strip(), layout, task, where)
            examples.append(Example(row[text], row[pair] if pair is not None else None, value))
    if not examples:
        raise UserError(f"{path}: no examples; task {task} needs labelled rows in {layout.describe()}")
    return examples


def glue_label(raw: str, layout: GlueLayout, task: str, where: str) -> int | float:
    """A class index, or for STS-B a score checked to be a number in 0-5."""
    if layout.kind == "regression":
        try:
            score = float(raw)
        except ValueError:
            score = math.nan
        if not STSB_RANGE[0] <= score <= STSB_RANGE[1]:  # NaN fails every comparison
            raise UserError(f"{where}: score {raw!r} is not a number in 0-5, as {task} scores are; "
                            f"fix or remove the line")
        return score
    if raw not in layout.raw_labels:
        raise UserError(f"{where}: label {raw!r} is not a {task} label "
                        f"(expected one of {', '.join(layout.raw_labels)}); fix or remove the line")
    return layout.raw_labels.index(raw)


def load_glue_hub(task: str) -> TaskData:
    """Train and dev from the hub's copy of GLUE; any failure (no network, offline mode, no `datasets`)
    is a user error that points at the offline route."""
    layout = GLUE[task]
    try:
        import datasets

        splits = {split: datasets.load_dataset(HUB_DATASET, task, split=split)
                  for split in ("train", layout.hub_dev_split)}
    except Exception as error:  # datasets has many ways to say "cannot reach or find it"; all mean the same
        raise UserError(f"task {task}: could not load {HUB_DATASET} from the Hugging Face hub "
                        f"({type(error).__name__}: {error}); download GLUE and pass --data-dir DIR "
                        f"with {layout.describe()}") from error
    train, dev = (hub_examples(splits[split], layout) for split in ("train", layout.hub_dev_split))
    return TaskData(name=task, kind=layout.kind, labels=layout.labels, train=train, dev=dev, files=(),
                    metric=layout.metric)


def hub_examples(rows: Any, layout: GlueLayout) -> list[Example]:
    """The hub's rows as examples; class ids go through the hub's own label names, so a reordered
    ClassLabel could never swap ours."""
    names = rows.features["label"].names if layout.kind == "classification" else None
    examples = []
    for row in rows:
        if layout.kind == "regression":
            label: int | float = float(row["label"])
        else:
            label = layout.labels.index(names[row["label"]])
        pair = row[layout.hub_pair] if layout.hub_pair else None
        examples.append(Example(row[layout.hub_text], pair, label))
    return examples
