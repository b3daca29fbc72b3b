"""Learning-rate schedules as pure functions of (step, elapsed seconds), and the optimizers.

The loop sets the rate itself before every optimizer step, so a schedule holds no state: nothing
about it goes into a checkpoint, and a wall-clock budget can drive it as easily as a step count.

    schedule = LrSchedule(peak=5e-4, kind="linear", warmup=warmup_steps(0.1, 1000), max_steps=1000)
    optimizer = build_optimizer(model, name="adamw", learning_rate=5e-4, weight_decay=0.01)
    for step in range(1000):
        set_learning_rate(optimizer, schedule.learning_rate(step))
        ...  # forward, backward
        optimizer.step()

    # budget mode: warm up over the first 10% of eight hours, then decay to 0 when they are spent
    budget = LrSchedule(peak=1e-3, kind="cosine", warmup=0, max_steps=0, budget_s=8 * 3600,
                        warmup_fraction=0.1)
    budget.learning_rate(step, elapsed_s=time.perf_counter() - started)
"""

from __future__ import annotations

import dataclasses
import math

import torch

from pretrain_cli.training.lamb import Lamb

SCHEDULES = ("linear", "cosine", "constant")
OPTIMIZERS = ("adamw", "lamb")

# Budget mode reads the clock before a step, so the first step sees elapsed ~0 and a warmup of
# p / warmup_fraction would give it a rate of exactly 0: a step spent for nothing. Progress is read
# as at least this fraction of the budget (0.03 s of 8 h), which keeps that first rate positive but
# tiny, and is overtaken by the real clock almost at once. Only the warmup reads it this way.
MIN_BUDGET_PROGRESS = 1e-6


def warmup_steps(value: float, max_steps: int) -> int:
    """`--warmup-steps`: below 1 it is a fraction of max_steps, from 1 up a number of steps."""
    return round(value * max_steps) if value < 1 else int(value)


@dataclasses.dataclass(frozen=True)
class LrSchedule:
    """Warmup then decay, by optimizer steps, or by elapsed training seconds in budget mode."""

    peak: float  # the peak learning rate, reached at the end of the warmup
    kind: str  # after the warmup: linear or cosine down to 0, or constant at the peak
    warmup: int  # step mode: warmup steps; the first step already trains at peak / warmup
    max_steps: int  # step mode: where linear and cosine reach 0, one past the last step
    budget_s: float = 0.0  # > 0: budget mode, progress = elapsed_s / budget_s and steps are ignored
    warmup_fraction: float = 0.0  # budget mode: the warmup as a fraction of the budget, in [0, 1)

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in SCHEDULES:
            problems.append(f"kind {self.kind!r} is not one of {', '.join(SCHEDULES)}")
        if self.budget_s < 0:
            problems.append(f"budget_s {self.budget_s} is negative")
        if not 0 <= self.warmup_fraction < 1:
            problems.append(f"warmup_fraction {self.warmup_fraction} is outside [0, 1)")
        if problems:
            raise ValueError("LrSchedule: " + "; ".join(problems))

    def learning_rate(self, step: int, elapsed_s: float = 0.0) -> float:
        """The rate for 0-based optimizer step `step`, taken `elapsed_s` training seconds into the run."""
        if self.budget_s > 0:
            return self.peak * self._budget_multiplier(elapsed_s)
        if step < self.warmup:
            return self.peak * ((step + 1) / self.warmup)
        if self.kind == "linear":
            # this exact expression (not 1 - t) keeps the rates bit for bit those of earlier releases
            return self.peak * max(0.0, (self.max_steps - step) / max(1, self.max_steps - self.warmup))
        t = min(1.0, max(0.0, (step - self.warmup) / max(1, self.max_steps - self.warmup)))
        return self.peak * self._decay(t)

    def _budget_multiplier(self, elapsed_s: float) -> float:
        progress = min(1.0, max(0.0, elapsed_s / self.budget_s))
        if progress < self.warmup_fraction:
            return min(1.0, max(progress, MIN_BUDGET_PROGRESS) / self.warmup_fraction)
        return self._decay((progress - self.warmup_fraction) / (1 - self.warmup_fraction))

    def _decay(self, t: float) -> float:
        """The multiplier at fraction `t` in [0, 1] of the way from the end of the warmup to the end."""
        if self.kind == "linear":
            return 1.0 - t
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group the rate `lr`, in place where the rate is a tensor."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            # a tensor rate (for a compiled or capturable step) is read by reference: replacing it
            # with a float would make torch.compile recompile the step whenever the rate changes
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay the matrices; biases and LayerNorm weights (all 1-d tensors in BERT) are left alone."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, *, name: str, learning_rate: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """AdamW or LAMB over `param_groups(model, weight_decay)`, every group starting at `learning_rate`."""
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        # eps 1e-6 as in the BERT recipe. On CUDA the fused kernel is one launch per step; elsewhere
        # fused=False is torch's per-tensor path, the same arithmetic as every earlier release
        on_cuda = next(model.parameters()).is_cuda
        return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.999), eps=1e-6, fused=on_cuda)
    if name == "lamb":
        return Lamb(groups, lr=learning_rate, betas=(0.9, 0.999), eps=1e-6)
    raise ValueError(f"optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}")
