"""LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning") as NVIDIA apex's FusedLAMB.

    optimizer = Lamb(param_groups(model, weight_decay=0.01), lr=1e-3)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()

With apex's defaults (bias correction, gradient averaging, AdamW-style decay), per tensor w at step t:

    m = β1·m + (1-β1)·g        v = β2·v + (1-β2)·g²
    u = (m / (1-β1^t)) / (sqrt(v / (1-β2^t)) + eps) + wd·w
    w = w - lr·r·u             r = ||w|| / ||u|| where both norms are > 0, else 1

The trust ratio r applies to groups with weight decay only, as in apex unless its use_nvlamb is set:
the no-decay group (biases, LayerNorm weights) takes plain Adam steps, which is what the paper's
"exclude from layer adaptation" advice and BERT's LAMB recipe do.

Two deliberate departures from apex. apex clips gradients to a global norm of 1.0 inside its step;
here clipping stays with the loop (clip_grad_norm_ before step(), the same effect). apex counts steps
per group; here, like torch's own optimizers, per parameter, so a tensor that missed a gradient in
some step is bias-corrected by its own count.

"Fused" means multi-tensor here: a step is a handful of torch._foreach_* launches per group, each
over every tensor of the group. It is not a single hand-written kernel as apex's is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments; state per parameter: step (int), exp_avg, exp_avg_sq."""

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.01) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"Lamb: lr {lr}, eps {eps} and weight_decay {weight_decay} must be >= 0 "
                             f"and betas {betas} in [0, 1)")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter that has a gradient; those whose grad is None are left alone."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for param in group["params"]:
            if param.grad is None:
                continue
            if param.grad.is_sparse:
                raise RuntimeError("Lamb does not support sparse gradients")
            state = self.state[param]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["step"] += 1
            params.append(param)
            grads.append(param.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        beta1, beta2 = group["betas"]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)

        # One scratch list, to hold a single extra copy of the parameters: it becomes the bias-corrected
        # denominators times (1-β1^t), then their reciprocals, then m̂ / (sqrt(v̂) + eps).
        updates = torch._foreach_div(exp_avg_sqs, [1 - beta2**step for step in steps])
        torch._foreach_sqrt_(updates)
        torch._foreach_add_(updates, group["eps"])
        torch._foreach_mul_(updates, [1 - beta1**step for step in steps])
        torch._foreach_reciprocal_(updates)
        torch._foreach_mul_(updates, exp_avgs)

        if group["weight_decay"] != 0:
            torch._foreach_add_(updates, params, alpha=group["weight_decay"])
            # norms in fp32 even for half-precision tensors, as apex; stacked so that the ratios take
            # a few launches and no host sync, however many tensors the group holds
            weight_norms = torch.stack(torch._foreach_norm(params, dtype=torch.float32))
            update_norms = torch.stack(torch._foreach_norm(updates, dtype=torch.float32))
            ratios = torch.where((weight_norms > 0) & (update_norms > 0), weight_norms / update_norms,
                                 torch.ones_like(weight_norms))
            torch._foreach_mul_(updates, ratios.unbind())
        torch._foreach_add_(params, updates, alpha=-group["lr"])
