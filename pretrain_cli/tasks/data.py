"""What a task loader returns: labelled train/dev examples and the label names.

Examples are ordered and subset by a hash of their text, never by a random draw or by file
position, so a split or a `--train-limit` subset is the same on every machine and every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import NamedTuple


class Example(NamedTuple):
    text: str
    text_pair: str | None
    label: int  # index into TaskData.labels


@dataclasses.dataclass(frozen=True)
class TaskData:
    name: str
    labels: tuple[str, ...]
    train: list[Example]
    dev: list[Example]
    files: tuple[Path, ...]  # the files read, so a stage can fingerprint its input data

    @property
    def is_pair(self) -> bool:
        return self.train[0].text_pair is not None


def text_hash(example: Example, salt: str) -> str:
    """The stable key that splits and subsets go by; each use has its own salt, so a subset of a
    hash-split train set is not biased by the split's per-label cut-offs."""
    blob = example.text if example.text_pair is None else f"{example.text}\t{example.text_pair}"
    return hashlib.sha256(f"{salt}\n{blob}".encode()).hexdigest()


def hash_split(examples: list[Example], dev_fraction: float) -> tuple[list[Example], list[Example]]:
    """A stratified train/dev split: per label, the examples with the smallest hashes go to dev.

    File order is kept within each side, so the split reads like the source.
    """
    dev_ids: set[int] = set()
    for label in sorted({e.label for e in examples}):
        members = [i for i, e in enumerate(examples) if e.label == label]
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
