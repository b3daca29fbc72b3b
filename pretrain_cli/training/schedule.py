"""AdamW without decay on biases and LayerNorm, and a linear warmup then linear decay to 0.

    optimizer, scheduler = build_optimizer(model, learning_rate=5e-4, weight_decay=0.01,
                                           warmup=warmup_steps(0.1, 1000), max_steps=1000)
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def warmup_steps(value: float, max_steps: int) -> int:
    """`--warmup-steps`: below 1 it is a fraction of max_steps, from 1 up a number of steps."""
    return round(value * max_steps) if value < 1 else int(value)


def linear_schedule(warmup: int, max_steps: int) -> Callable[[int], float]:
    """The learning-rate multiplier of step `step` (0-based): up to 1 over `warmup`, then down to 0.

    The first step already trains at 1/warmup of the peak rather than at 0, and the multiplier
    reaches 0 exactly at `max_steps`, one past the last step.
    """

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (max_steps - step) / max(1, max_steps - warmup))

    return multiplier


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay the matrices; biases and LayerNorm weights (all 1-d tensors in BERT) are left alone."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, *, learning_rate: float, weight_decay: float, warmup: int,
                    max_steps: int) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    on_cuda = next(model.parameters()).is_cuda
    # eps 1e-6 as in the BERT recipe; the fused kernel is one launch per step on CUDA
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=learning_rate, betas=(0.9, 0.999),
                                  eps=1e-6, fused=on_cuda)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(warmup, max_steps))
    return optimizer, scheduler
