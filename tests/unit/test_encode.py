"""Encoding real task examples with the shipped MiniLM tokenizer: segments for pairs, float scores for
regression, and for NER one label per word on its first piece, read back word for word; plus the
length-grouped batching and the padding of every label kind."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from pretrain_cli.samples import sample_path
from pretrain_cli.tasks import Example, TaskSource, load_task
from pretrain_cli.tasks.encode import Encoded, collate, encode, eval_batches, train_batches, word_predictions


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(sample_path("minilm"))


@pytest.fixture(scope="module")
def ner() -> Any:
    return load_task(TaskSource("wnut_ner"))


def test_single_texts_and_pairs(tokenizer: Any) -> None:
    reviews = load_task(TaskSource("rotten_tomatoes")).dev[:64]
    single = encode(tokenizer, reviews, "classification", max_length=24)
    assert single.labels == [e.label for e in reviews] and single.word_starts is None
    assert max(single.lengths) == 24 and all(ids[0] == tokenizer.cls_token_id for ids in single.input_ids)
    assert all(set(types) == {0} for types in single.token_type_ids)
    pairs = [Example("A plane is taking off.", "An air plane is taking off.", 5.0),
             Example("A man is playing a flute.", "A man is eating.", 0.6)]
    encoded = encode(tokenizer, pairs, "regression", max_length=32)
    first = tokenizer.convert_ids_to_tokens(encoded.input_ids[0])
    assert first[:3] == ["[CLS]", "a", "plane"] and first.count("[SEP]") == 2
    second_segment = first.index("[SEP]") + 1
    assert encoded.token_type_ids[0] == [0] * second_segment + [1] * (len(first) - second_segment)
    batch = collate(encoded, [0, 1], tokenizer.pad_token_id)
    assert batch["labels"].dtype == torch.float and batch["labels"].tolist() == pytest.approx([5.0, 0.6])


def test_ner_labels_sit_on_each_words_first_piece(tokenizer: Any, ner: Any) -> None:
    dev = ner.dev
    encoded = encode(tokenizer, dev, "tokens", max_length=128)
    assert encoded.num_words == [len(e.text) for e in dev]
    for i, example in enumerate(dev):
        starts = encoded.word_starts[i]
        assert len(starts) == len(example.text)  # no tweet is cut at 128 pieces
        assert [encoded.labels[i][p] for p in starts] == list(example.label)
        others = set(range(len(encoded.input_ids[i]))) - set(starts)
        assert all(encoded.labels[i][p] == -100 for p in others)  # other pieces and [CLS]/[SEP]
        pieces = tokenizer.convert_ids_to_tokens(encoded.input_ids[i])
        assert all(not pieces[p].startswith("##") for p in starts)
    # gold labels, read back through the first pieces, give each word its tag again
    outside = ner.labels.index("O")
    assert [word_predictions(encoded, i, encoded.labels[i], outside) for i in range(len(dev))] == \
        [list(e.label) for e in dev]


def test_words_cut_by_truncation_are_predicted_outside(tokenizer: Any, ner: Any) -> None:
    long = max(ner.train, key=lambda e: len(e.text))
    encoded = encode(tokenizer, [long], "tokens", max_length=16)
    kept = len(encoded.word_starts[0])
    assert len(encoded.input_ids[0]) == 16 and 0 < kept < len(long.text) == encoded.num_words[0]
    predicted = word_predictions(encoded, 0, [7] * 16, outside=0)
    assert predicted == [7] * kept + [0] * (len(long.text) - kept)


def test_a_word_with_no_pieces_becomes_unknown(tokenizer: Any) -> None:
    words = ("Hello", "\u200b", "world", "")  # a zero-width space and an empty string tokenize to nothing
    encoded = encode(tokenizer, [Example(words, None, (1, 2, 1, 2))], "tokens", max_length=32)
    pieces = tokenizer.convert_ids_to_tokens(encoded.input_ids[0])
    assert pieces == ["[CLS]", "hello", "[UNK]", "world", "[UNK]", "[SEP]"]
    assert encoded.word_starts[0] == [1, 2, 3, 4]
    assert encoded.labels[0] == [-100, 1, 2, 1, 2, -100]


def test_collate_pads_tag_labels_with_ignore(tokenizer: Any, ner: Any) -> None:
    encoded = encode(tokenizer, ner.dev[:8], "tokens", max_length=64)
    batch = collate(encoded, [3, 5], tokenizer.pad_token_id)
    width = max(encoded.lengths[3], encoded.lengths[5])
    assert batch["labels"].shape == batch["input_ids"].shape == (2, width)
    assert batch["labels"].dtype == torch.long
    for row, i in enumerate((3, 5)):
        n = encoded.lengths[i]
        assert batch["labels"][row, :n].tolist() == encoded.labels[i]
        assert (batch["labels"][row, n:] == -100).all() and batch["attention_mask"][row].sum() == n


def test_collate_pads_and_marks_the_second_segment() -> None:
    encoded = Encoded(input_ids=[[2, 7, 3, 8, 3], [2, 9, 3]], token_type_ids=[[0, 0, 0, 1, 1], [0, 0, 0]],
                      labels=[1, 0])
    batch = collate(encoded, [1, 0], pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 9, 3, 0, 0], [2, 7, 3, 8, 3]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [0, 1] and batch["labels"].dtype == torch.long


def test_batches_cover_every_example_once_and_group_lengths() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(5, 64) for _ in range(5000)]
    batches = train_batches(lengths, 32, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(5000))
    assert batches == train_batches(lengths, 32, random.Random(1))
    assert batches != train_batches(lengths, 32, random.Random(2))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    shuffled = list(range(5000))
    random.Random(1).shuffle(shuffled)
    padded_at_random = sum(32 * max(lengths[i] for i in shuffled[s:s + 32]) for s in range(0, 5000, 32))
    assert padded < 0.7 * padded_at_random
    ordered = eval_batches(lengths, 100)
    assert [lengths[i] for b in ordered for i in b] == sorted(lengths)
