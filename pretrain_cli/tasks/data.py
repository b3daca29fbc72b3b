"""What a task loader returns (labelled train/dev examples, the label names, the metric that picks a
model) and what the user asked for (a `TaskSource`).

    >>> data = load_task(TaskSource("wnut_ner"))
    >>> data.kind, data.labels[:2], data.train[0].text[:3], data.train[0].label[:3]
    ('tokens', ('O', 'B-company'), ('@paulwalk', 'It', "'s"), (0, 0, 0))

Examples are ordered and subset by a hash of their text, never by a random draw or by file
position, so a split or a `--train-limit` subset is the same on every machine and every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Literal, NamedTuple

TaskKind = Literal["classification", "regression", "tokens"]  # tokens = NER: one BIO tag per word
DEV_FRACTION = 0.1  # of a file or sample that ships without a dev split


class Example(NamedTuple):
    text: str | tuple[str, ...]  # a sentence; for kind "tokens": its words
    text_pair: str | None  # the second text of a pair task, else None
    label: int | float | tuple[int, ...]  # class index | score | one tag index per word


@dataclasses.dataclass(frozen=True)
class TaskData:
    name: str  # "sst2", "wnut_ner", or the train file's stem for user files
    kind: TaskKind
    labels: tuple[str, ...]  # class names / tag names ("O" first); () for regression
    train: list[Example]
    dev: list[Example]
    files: tuple[Path, ...]  # every file read, so a stage can fingerprint its input data
    metric: str  # the dev metric that picks the best checkpoint and early-stops (higher is better)

    @property
    def is_pair(self) -> bool:
        return self.train[0].text_pair is not None


@dataclasses.dataclass(frozen=True)
class TaskSource:
    """What the user said on the command line about the task and its data."""

    task: str  # a known task name, or a train file (.csv .tsv .jsonl .json .arrow .parquet .conll .txt)
    data_dir: Path | None = None  # GLUE directory (train.tsv, dev.tsv)
    hub: bool = False  # GLUE from the Hugging Face hub (nyu-mll/glue); needs network
    dev_file: Path | None = None  # a user file's dev split; default: 10% of the train file, by text hash
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    task_type: Literal["auto", "classification", "regression", "tokens"] = "auto"


def text_hash(example: Example, salt: str) -> str:
    """The stable key that splits and subsets go by; each use has its own salt, so a subset of a
    hash-split train set is not biased by the split's per-label cut-offs."""
    text = " ".join(example.text) if isinstance(example.text, tuple) else example.text
    blob = text if example.text_pair is None else f"{text}\t{example.text_pair}"
    return hashlib.sha256(f"{salt}\n{blob}".encode()).hexdigest()


def hash_split(examples: list[Example], dev_fraction: float,
               stratify: bool) -> tuple[list[Example], list[Example]]:
    """A train/dev split: the examples with the smallest hashes go to dev, per label when `stratify`
    (classification), so dev keeps the label mix of the whole.

    File order is kept within each side, so the split reads like the source.
    """
    groups: dict[object, list[int]] = {}
    for i, example in enumerate(examples):
        groups.setdefault(example.label if stratify else None, []).append(i)
    dev_ids: set[int] = set()
    for members in groups.values():
        members.sort(key=lambda i: text_hash(examples[i], "split"))
        dev_ids.update(members[:round(len(members) * dev_fraction)])
    train = [e for i, e in enumerate(examples) if i not in dev_ids]
    dev = [e for i, e in enumerate(examples) if i in dev_ids]
    return train, dev


def hash_subset(examples: list[Example], limit: int) -> list[Example]:
    """`limit` examples chosen by hash (so labels mix even when the file is sorted by label); 0 = all."""
    if limit <= 0 or limit >= len(examples):
        return examples
    keep = set(sorted(range(len(examples)), key=lambda i: text_hash(examples[i], "subset"))[:limit])
    return [e for i, e in enumerate(examples) if i in keep]


def default_metric(kind: TaskKind) -> str:
    """The dev metric a task is judged by unless its benchmark names another (CoLA: mcc, MRPC: f1)."""
    return {"classification": "accuracy", "regression": "spearman", "tokens": "entity_f1"}[kind]


def bio_problem(tag: str) -> str | None:
    """Why `tag` is not a BIO tag (O, B-type, I-type), or None when it is one."""
    if tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2):
        return None
    return f"tag {tag!r} is not a BIO tag (O, B-type or I-type)"


def tag_names(tags: set[str]) -> tuple[str, ...]:
    """A tokens task's label set: "O" first (words cut by truncation are predicted "O"), then sorted."""
    return ("O", *sorted(tags - {"O"}))
