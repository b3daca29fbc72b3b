"""Task examples → token ids → padded batches: dynamic padding over length-grouped batches.

    encoded = encode(tokenizer, data.train, max_length=128)
    for indices in train_batches(encoded.lengths, batch_size=32, rng=random.Random(seed)):
        loss = model(**collate(encoded, indices, pad_id=tokenizer.pad_token_id)).loss

Sentences run from 3 to 60+ tokens, and a batch drawn at random pads to its longest member, so most
of its compute goes to padding. Sorting by length inside a shuffled window of 50 batches (as HF's
`group_by_length`) keeps neighbours alike while the order stays random and fixed by the seed;
on rotten_tomatoes it cuts the padded tokens per epoch by a third to a half.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import torch

from pretrain_cli.tasks.data import Example

GROUP_WINDOW = 50  # batches per length-sorted window


@dataclasses.dataclass(frozen=True)
class Encoded:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: list[int]

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


def encode(tokenizer: Any, examples: list[Example], max_length: int) -> Encoded:
    """Tokenize once, up front: a pair task's two texts become `[CLS] a [SEP] b [SEP]` with segment ids."""
    pairs = [e.text_pair or "" for e in examples] if examples[0].text_pair is not None else None
    out = tokenizer([e.text for e in examples], pairs, truncation=True, max_length=max_length,
                    return_token_type_ids=True, return_attention_mask=False)
    return Encoded(out["input_ids"], out["token_type_ids"], [e.label for e in examples])


def train_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch's batches of example indices: shuffled, length-grouped per window, shuffled again."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * GROUP_WINDOW
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def eval_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Batches for inference: sorted by length (least padding); callers put results back by index."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[b:b + batch_size] for b in range(0, len(order), batch_size)]


def collate(encoded: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(encoded.input_ids[i]) for i in indices)
    input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(indices), width), dtype=torch.long)
    attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(encoded.input_ids[i])
        input_ids[row, :n] = torch.tensor(encoded.input_ids[i])
        token_type_ids[row, :n] = torch.tensor(encoded.token_type_ids[i])
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
            "labels": torch.tensor([encoded.labels[i] for i in indices])}
