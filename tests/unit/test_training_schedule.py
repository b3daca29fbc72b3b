"""Warmup/decay schedules by step and by wall-clock budget, the optimizers, and the weight-decay split."""

from __future__ import annotations

import math

import pytest
import torch

from pretrain_cli.modeling.presets import PRESETS, bert_config, padded_vocab_size
from pretrain_cli.training.lamb import Lamb
from pretrain_cli.training.schedule import (
    MIN_BUDGET_PROGRESS,
    LrSchedule,
    build_optimizer,
    param_groups,
    set_learning_rate,
    warmup_steps,
)


def old_linear_multiplier(warmup: int, max_steps: int, step: int) -> float:
    """The multiplier that earlier releases handed to LambdaLR, copied verbatim as the reference."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (max_steps - step) / max(1, max_steps - warmup))


def test_warmup_is_steps_or_a_fraction() -> None:
    assert warmup_steps(0.1, 1000) == 100
    assert warmup_steps(250, 1000) == 250
    assert warmup_steps(0, 1000) == 0


def test_linear_is_bit_for_bit_the_old_schedule() -> None:
    for peak in (5e-4, 1e-3, 3e-5, 0.1):
        for warmup, max_steps in ((0, 1), (0, 4), (4, 10), (100, 1000), (7, 93), (10, 5), (3, 3)):
            schedule = LrSchedule(peak=peak, kind="linear", warmup=warmup, max_steps=max_steps)
            for step in range(max_steps + 3):
                expected = peak * old_linear_multiplier(warmup, max_steps, step)
                assert schedule.learning_rate(step) == expected, (peak, warmup, max_steps, step)


def test_linear_warmup_then_linear_decay_to_zero_at_max_steps() -> None:
    f = LrSchedule(peak=1.0, kind="linear", warmup=4, max_steps=10).learning_rate
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0
    assert f(7) == pytest.approx(0.5)
    assert f(9) == pytest.approx(1 / 6) and f(10) == 0.0
    no_warmup = LrSchedule(peak=1.0, kind="linear", warmup=0, max_steps=4).learning_rate
    assert [no_warmup(s) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_cosine_shares_the_warmup_then_falls_as_a_half_cosine_to_zero() -> None:
    peak, warmup, max_steps = 2e-3, 10, 110
    cosine = LrSchedule(peak=peak, kind="cosine", warmup=warmup, max_steps=max_steps)
    linear = LrSchedule(peak=peak, kind="linear", warmup=warmup, max_steps=max_steps)
    assert [cosine.learning_rate(s) for s in range(warmup + 1)] == [linear.learning_rate(s)
                                                                    for s in range(warmup + 1)]
    rates = [cosine.learning_rate(s) for s in range(warmup, max_steps + 5)]
    assert rates[0] == peak
    assert all(a > b for a, b in zip(rates[:100], rates[1:101], strict=True))  # strictly falling to the end
    assert cosine.learning_rate(warmup + 50) == pytest.approx(peak / 2)
    assert cosine.learning_rate(warmup + 25) == pytest.approx(peak * (1 + math.cos(math.pi / 4)) / 2)
    assert cosine.learning_rate(max_steps) == 0.0 and cosine.learning_rate(max_steps + 4) == 0.0
    # a cosine stays above the straight line over the first half of the decay, below it after
    assert cosine.learning_rate(warmup + 20) > linear.learning_rate(warmup + 20)
    assert cosine.learning_rate(warmup + 80) < linear.learning_rate(warmup + 80)


def test_constant_holds_the_peak_after_the_warmup() -> None:
    constant = LrSchedule(peak=1e-3, kind="constant", warmup=4, max_steps=10)
    assert [constant.learning_rate(s) for s in range(4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert {constant.learning_rate(s) for s in range(3, 50)} == {1e-3}


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_budget_mode_warms_up_over_a_fraction_of_the_time_then_decays_to_zero(kind: str) -> None:
    budget = LrSchedule(peak=1e-3, kind=kind, warmup=0, max_steps=0, budget_s=100.0, warmup_fraction=0.1)
    times = [i * 0.5 for i in range(241)]  # past the end of the budget
    rates = [budget.learning_rate(0, elapsed_s=t) for t in times]
    peak_at = times.index(10.0)
    assert rates[peak_at] == 1e-3 and max(rates) == 1e-3
    assert all(a < b for a, b in zip(rates[:peak_at], rates[1:peak_at + 1], strict=True))
    after = rates[peak_at:times.index(100.0) + 1]
    assert all(a > b for a, b in zip(after, after[1:], strict=False))
    assert budget.learning_rate(0, elapsed_s=100.0) == 0.0 and budget.learning_rate(0, elapsed_s=1e6) == 0.0
    assert budget.learning_rate(0, elapsed_s=5.0) == pytest.approx(5e-4)
    assert budget.learning_rate(0, elapsed_s=55.0) == pytest.approx(5e-4)  # halfway through the decay


def test_budget_mode_first_step_is_tiny_but_not_zero_and_steps_do_not_matter() -> None:
    budget = LrSchedule(peak=1e-3, kind="linear", warmup=10, max_steps=20, budget_s=3600.0,
                        warmup_fraction=0.05)
    first = budget.learning_rate(0, elapsed_s=0.0)
    assert first == pytest.approx(1e-3 * MIN_BUDGET_PROGRESS / 0.05) and 0 < first < 1e-7
    assert budget.learning_rate(0, elapsed_s=90.0) == budget.learning_rate(15, elapsed_s=90.0)
    assert budget.learning_rate(0, elapsed_s=90.0) == pytest.approx(5e-4)


def test_budget_mode_without_warmup_and_constant() -> None:
    straight = LrSchedule(peak=1.0, kind="linear", warmup=0, max_steps=0, budget_s=10.0)
    assert straight.learning_rate(0, elapsed_s=0.0) == 1.0  # no warmup: the floor plays no part
    assert straight.learning_rate(0, elapsed_s=2.5) == pytest.approx(0.75)
    blink = LrSchedule(peak=1.0, kind="constant", warmup=0, max_steps=0, budget_s=10.0, warmup_fraction=1e-7)
    assert blink.learning_rate(0, elapsed_s=0.0) == 1.0  # a warmup shorter than the floor: capped
    constant = LrSchedule(peak=1.0, kind="constant", warmup=0, max_steps=0, budget_s=10.0,
                          warmup_fraction=0.5)
    assert constant.learning_rate(0, elapsed_s=2.5) == pytest.approx(0.5)
    assert constant.learning_rate(0, elapsed_s=5.0) == constant.learning_rate(0, elapsed_s=50.0) == 1.0


def test_bad_schedule_settings_are_refused_together() -> None:
    with pytest.raises(ValueError, match="'step'.*budget_s -1.*warmup_fraction 1.0"):
        LrSchedule(peak=1.0, kind="step", warmup=0, max_steps=1, budget_s=-1, warmup_fraction=1.0)


def test_set_learning_rate_sets_every_group_and_tensor_rates_in_place() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    optimizer = build_optimizer(model, name="adamw", learning_rate=1e-3, weight_decay=0.01)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-3]
    set_learning_rate(optimizer, 4e-4)
    assert [g["lr"] for g in optimizer.param_groups] == [4e-4, 4e-4]

    rate = torch.tensor(1e-3)
    tensor_lr = torch.optim.AdamW(model.parameters(), lr=rate)
    set_learning_rate(tensor_lr, 2.5e-4)
    assert tensor_lr.param_groups[0]["lr"] is rate and rate.item() == pytest.approx(2.5e-4)


def test_build_optimizer_names() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    adamw = build_optimizer(model, name="adamw", learning_rate=1e-3, weight_decay=0.01)
    assert type(adamw) is torch.optim.AdamW
    assert adamw.defaults["eps"] == 1e-6 and adamw.defaults["betas"] == (0.9, 0.999)
    lamb = build_optimizer(model, name="lamb", learning_rate=2e-3, weight_decay=0.01)
    assert type(lamb) is Lamb
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in lamb.param_groups] == [
        (2e-3, 0.01, 1), (2e-3, 0.0, 3)]
    with pytest.raises(ValueError, match="'sgd'"):
        build_optimizer(model, name="sgd", learning_rate=1e-3, weight_decay=0.0)


def test_setting_the_rate_each_step_trains_exactly_as_the_old_lambda_scheduler() -> None:
    def run(new: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        data = torch.randn(32, 8), torch.randn(32, 1)
        if new:
            optimizer = build_optimizer(model, name="adamw", learning_rate=1e-2, weight_decay=0.01)
            schedule = LrSchedule(peak=1e-2, kind="linear", warmup=3, max_steps=12)
        else:
            optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-2, betas=(0.9, 0.999), eps=1e-6,
                                          fused=False)
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: old_linear_multiplier(3, 12, step))
        for step in range(12):
            loss = torch.nn.functional.mse_loss(model(data[0]), data[1])
            loss.backward()
            if new:
                set_learning_rate(optimizer, schedule.learning_rate(step))
            optimizer.step()
            if not new:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(run(new=True), run(new=False), strict=True))


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
