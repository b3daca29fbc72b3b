"""Task examples → token ids → padded batches: dynamic padding over length-grouped batches.

    encoded = encode(tokenizer, data.train, data.kind, max_length=128)
    for indices in train_batches(encoded.lengths, batch_size=32, rng=random.Random(seed)):
        batch = collate(encoded, indices, pad_id=tokenizer.pad_token_id)
    tags = word_predictions(encoded, 0, logits[0].argmax(-1).tolist(), outside=data.labels.index("O"))

Sentences run from 3 to 60+ tokens, and a batch drawn at random pads to its longest member, so most
of its compute goes to padding. Sorting by length inside a shuffled window of 50 batches (as HF's
`group_by_length`) keeps neighbours alike while the order stays random and fixed by the seed;
on rotten_tomatoes it cuts the padded tokens per epoch by a third to a half.

A tokens (NER) task labels words, but the model sees word pieces: each word's tag goes on its first
piece, every other position gets -100 (ignored by the loss), and a prediction is read back from the
first pieces. Words past `max_length` are cut; they count as predicted "O", so truncation costs recall
instead of silently shrinking the gold set.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Any

from pretrain_cli.tasks.data import Example, TaskKind

if TYPE_CHECKING:
    import torch

GROUP_WINDOW = 50  # batches per length-sorted window
IGNORE = -100  # the label position that cross-entropy skips


@dataclasses.dataclass(frozen=True)
class Encoded:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: list[Any]  # int | float per example; tokens: per-token list with -100 off word starts
    word_starts: list[list[int]] | None = None  # tokens: per example, each kept word's first-piece position
    num_words: list[int] | None = None  # tokens: the example's word count (words past max_length were cut)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


def encode(tokenizer: Any, examples: list[Example], kind: TaskKind, max_length: int) -> Encoded:
    """Tokenize once, up front: a pair task's two texts become `[CLS] a [SEP] b [SEP]` with segment ids."""
    if kind == "tokens":
        return encode_words(tokenizer, examples, max_length)
    pairs = [e.text_pair or "" for e in examples] if examples[0].text_pair is not None else None
    out = tokenizer([e.text for e in examples], pairs, truncation=True, max_length=max_length,
                    return_token_type_ids=True, return_attention_mask=False)
    labels = [float(e.label) if kind == "regression" else e.label for e in examples]
    return Encoded(out["input_ids"], out["token_type_ids"], labels)


def encode_words(tokenizer: Any, examples: list[Example], max_length: int) -> Encoded:
    words = [list(e.text) for e in examples]
    out = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length,
                    return_token_type_ids=True, return_attention_mask=False)
    input_ids, token_type_ids = out["input_ids"], out["token_type_ids"]
    word_ids = [out.word_ids(i) for i in range(len(examples))]
    # A word the tokenizer turns into no pieces at all (a zero-width space, an empty string) would
    # have no position to carry its tag: it becomes the unknown token and its example is encoded
    # again, after which a word is missing only when truncation cut it.
    for i, pieceless in pieceless_words(tokenizer, words, word_ids).items():
        words[i] = [tokenizer.unk_token if w in pieceless else word for w, word in enumerate(words[i])]
        again = tokenizer([words[i]], is_split_into_words=True, truncation=True, max_length=max_length,
                          return_token_type_ids=True, return_attention_mask=False)
        input_ids[i], token_type_ids[i] = again["input_ids"][0], again["token_type_ids"][0]
        word_ids[i] = again.word_ids(0)
    labels, word_starts = [], []
    for example, ids in zip(examples, word_ids, strict=True):
        starts = [p for p, w in enumerate(ids) if w is not None and (p == 0 or ids[p - 1] != w)]
        token_labels = [IGNORE] * len(ids)
        for p in starts:
            token_labels[p] = example.label[ids[p]]
        labels.append(token_labels)
        word_starts.append(starts)
    return Encoded(input_ids, token_type_ids, labels, word_starts, [len(e.text) for e in examples])


def pieceless_words(tokenizer: Any, words: list[list[str]],
                    word_ids: list[list[int | None]]) -> dict[int, set[int]]:
    """Per example, the words with no piece in the encoding that get none on their own either (the
    others were cut by truncation)."""
    missing = [(i, w) for i, ids in enumerate(word_ids) for w in sorted(set(range(len(words[i]))) - set(ids))]
    if not missing:
        return {}
    pieces = tokenizer([words[i][w] for i, w in missing], add_special_tokens=False)["input_ids"]
    out: dict[int, set[int]] = {}
    for (i, w), ids in zip(missing, pieces, strict=True):
        if not ids:
            out.setdefault(i, set()).add(w)
    return out


def word_predictions(encoded: Encoded, index: int, token_tags: list[int], outside: int) -> list[int]:
    """One tag index per word of example `index`, read at each word's first piece from the per-token
    argmaxes `token_tags`; words cut by truncation get `outside`."""
    assert encoded.word_starts is not None and encoded.num_words is not None, "a tokens task's encoding"
    tags = [token_tags[p] for p in encoded.word_starts[index]]
    return tags + [outside] * (encoded.num_words[index] - len(tags))


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
    """Pad to the batch's longest member; labels are long (classes, and tags padded with -100) or
    float (regression scores)."""
    import torch

    width = max(len(encoded.input_ids[i]) for i in indices)
    input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(indices), width), dtype=torch.long)
    attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(encoded.input_ids[i])
        input_ids[row, :n] = torch.tensor(encoded.input_ids[i])
        token_type_ids[row, :n] = torch.tensor(encoded.token_type_ids[i])
        attention_mask[row, :n] = 1
    if encoded.word_starts is not None:
        labels = torch.full((len(indices), width), IGNORE, dtype=torch.long)
        for row, i in enumerate(indices):
            labels[row, :len(encoded.labels[i])] = torch.tensor(encoded.labels[i])
    else:
        values = [encoded.labels[i] for i in indices]
        labels = torch.tensor(values, dtype=torch.float if isinstance(values[0], float) else torch.long)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
            "labels": labels}
