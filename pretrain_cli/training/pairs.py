"""Supervised contrastive pairs: the user's (anchor, positive[, hard negative]) texts, tokenized once.

    pairs = ContrastPairs.from_file(Path("nli.csv"), tokenizer_dir, max_length=128)
    ids, mask = pairs.collate(np.array([4, 0, 9]), pad_id=0)   # (views × 3, L): anchors, positives, negatives

A CSV, TSV, JSON lines or Parquet/Arrow file with the columns `anchor` and `positive`, and optionally
`negative` (SimCSE's NLI file names them `sent0`, `sent1` and `hard_neg`; both spellings read).
Every text is tokenized with the examples' tokenizer as `[CLS] text [SEP]`, truncated to the
examples' length, and kept as one flat int32 array per column with offsets, like the example shards.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pretrain_cli.errors import UserError
from pretrain_cli.tasks.files import read_table
from pretrain_cli.training.data import padded

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".arrow", ".parquet")
# role → the column names that hold it, ptk's first
COLUMNS = {"anchor": ("anchor", "sent0"), "positive": ("positive", "sent1"),
           "negative": ("negative", "hard_neg")}


def _column(columns: list[str], role: str) -> str | None:
    return next((name for name in COLUMNS[role] if name in columns), None)


def read_pairs(path: Path) -> tuple[list[str], list[list[str]]]:
    """(the roles present, one list of texts per role), every record checked."""
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"--pairs {path}: cannot read {path.suffix or 'a file without an extension'}; write "
                        f"the pairs as one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise UserError(f"--pairs {path}: no such file")
    header, records = read_table(path)
    names: dict[str, str | None] | None = None
    texts: list[list[str]] = []
    for where, record in records:
        columns = list(record) if header is None else header
        if names is None:
            names = {role: _column(columns, role) for role in COLUMNS}
            for role in ("anchor", "positive"):
                if names[role] is None:
                    raise UserError(f"{where}: no {role} column (the columns are "
                                    f"{', '.join(columns) or 'none'}); name it {' or '.join(COLUMNS[role])}")
            texts = [[] for role in COLUMNS if names[role] is not None]
        roles = [role for role in COLUMNS if names[role] is not None]
        for column, role in zip(texts, roles, strict=True):
            value = record.get(names[role])  # type: ignore[arg-type]
            if not isinstance(value, str) or not value.strip():
                raise UserError(f"{where}: no text in the {role} column {names[role]!r}; fill it in or "
                                f"remove the record")
            column.append(value)
    if names is None:
        raise UserError(f"--pairs {path}: no records; give at least one (anchor, positive) pair")
    return [role for role in COLUMNS if names[role] is not None], texts


@dataclasses.dataclass
class ContrastPairs:
    """Tokenized pairs: per view (anchor, positive[, negative]) a flat id array and its offsets."""

    views: list[tuple[np.ndarray, np.ndarray]]

    @classmethod
    def from_file(cls, path: Path, tokenizer_dir: Path, max_length: int) -> ContrastPairs:
        from transformers import AutoTokenizer

        _, texts = read_pairs(path)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        views = []
        for column in texts:
            encoded = tokenizer(column, truncation=True, max_length=max_length)["input_ids"]
            lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
            flat = np.fromiter((i for ids in encoded for i in ids), dtype=np.int32, count=int(lengths.sum()))
            views.append((flat, np.concatenate([[0], np.cumsum(lengths)])))
        return cls(views)

    def __len__(self) -> int:
        return len(self.views[0][1]) - 1

    @property
    def view_count(self) -> int:
        return len(self.views)

    def collate(self, indices: np.ndarray, pad_id: int,
                pad_multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(ids, attention mask) of shape (views × len(indices), L), view-major, padded to the longest."""
        return padded([flat[offsets[i]:offsets[i + 1]] for flat, offsets in self.views for i in indices],
                      pad_id, pad_multiple)
