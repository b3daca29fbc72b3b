"""Supervised SimCSE pairs from real text: each Wikipedia article's short description and the first
sentence of its lead section, for the `wiki_topics` *train* articles only, so the dev articles that
`ptk evaluate --embeddings` measures alignment and probes on stay unseen.

    python scripts/wiki_pairs.py work/simcse/wiki-pairs.csv
    ptk pretrain work/examples --out work/simcse-sup --objective simcse --pairs work/simcse/wiki-pairs.csv

The CSV has the columns anchor (the description) and positive (the first sentence); the other
pairs of a batch are the negatives.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the CSV to write")
    args = parser.parse_args()

    from pretrain_cli.stages.embedding_eval import description_pairs
    from pretrain_cli.tasks import TaskSource, load_task

    train = load_task(TaskSource(task="wiki_topics")).train
    pairs = description_pairs(train)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["anchor", "positive"])
        writer.writerows(pairs)
    print(f"wiki_pairs: {len(pairs):,} pairs from {len(train):,} train articles in {args.out}")


if __name__ == "__main__":
    main()
