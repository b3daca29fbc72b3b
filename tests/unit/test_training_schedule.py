"""Warmup/decay schedule and the weight-decay split."""

from __future__ import annotations

import pytest

from pretrain_cli.modeling.presets import PRESETS, bert_config, padded_vocab_size
from pretrain_cli.training.schedule import linear_schedule, param_groups, warmup_steps


def test_warmup_is_steps_or_a_fraction() -> None:
    assert warmup_steps(0.1, 1000) == 100
    assert warmup_steps(250, 1000) == 250
    assert warmup_steps(0, 1000) == 0


def test_linear_warmup_then_linear_decay_to_zero_at_max_steps() -> None:
    f = linear_schedule(warmup=4, max_steps=10)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0
    assert f(7) == pytest.approx(0.5)
    assert f(9) == pytest.approx(1 / 6) and f(10) == 0.0
    no_warmup = linear_schedule(warmup=0, max_steps=4)
    assert [no_warmup(s) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_no_decay_on_biases_and_layer_norm() -> None:
    from transformers import BertForPreTraining

    model = BertForPreTraining(bert_config(PRESETS["tiny"], vocab_size=64, pad_token_id=0))
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert {names[id(p)] for p in no_decay["params"]} >= {"bert.embeddings.LayerNorm.weight",
                                                          "cls.predictions.bias"}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_presets_and_vocab_padding() -> None:
    assert padded_vocab_size(30522) == 30528 and padded_vocab_size(8192) == 8192
    base = bert_config(PRESETS["base"], vocab_size=30528, pad_token_id=0)
    assert (base.num_hidden_layers, base.hidden_size, base.num_attention_heads, base.intermediate_size) == (
        12, 768, 12, 3072)
    assert bert_config(PRESETS["tiny"], vocab_size=8, pad_token_id=0).intermediate_size == 512
