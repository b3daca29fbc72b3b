"""The optimisation loop: accumulate micro-batches, clip, step, log, checkpoint.

    state = train(model, optimizer, scheduler, iter(loader), state=TrainerState(), settings=settings,
                  monitor=monitor, save=save_step, last_checkpoint=None)

Losses are normalised by the counts of the whole optimizer step (masked tokens for MLM, pairs for
NSP), not per micro-batch, so `--grad-accum 4` computes the gradient of one 4× larger batch; with
several processes the two counts become all-reduced sums and nothing else here changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from pretrain_cli.errors import UserError
from pretrain_cli.modeling.pretraining import pretraining_loss_sums
from pretrain_cli.training.checkpoint import TrainerState
from pretrain_cli.training.data import Batch
from pretrain_cli.training.monitor import Monitor


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    max_steps: int
    grad_accum: int
    samples_per_step: int  # micro × accum × world size: how far one step moves the data cursor
    max_grad_norm: float  # 0 turns clipping off
    log_every: int
    save_every: int
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: plain fp32


@dataclasses.dataclass
class Window:
    """Sums over the steps since the last log line."""

    steps: int = 0
    loss: float = 0.0
    mlm: float = 0.0
    nsp: float = 0.0
    tokens: int = 0
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def record(self, state: TrainerState) -> dict[str, float | int]:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        return {"step": state.step, "tokens": state.tokens, "loss": self.loss / self.steps,
                "mlm_loss": self.mlm / self.steps, "nsp_loss": self.nsp / self.steps,
                "lr": state.learning_rate, "tokens_per_s": self.tokens / seconds,
                "elapsed_s": round(state.elapsed_s, 3)}


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
          scheduler: torch.optim.lr_scheduler.LRScheduler, batches: Iterator[Batch], *, state: TrainerState,
          settings: LoopSettings, monitor: Monitor, save: Callable[[TrainerState], Path],
          last_checkpoint: Path | None) -> tuple[TrainerState, dict[str, float | int] | None]:
    """Train from `state` to `settings.max_steps`; returns the final state and the last log record."""
    device = settings.device
    autocast = (torch.autocast(device.type, dtype=settings.autocast_dtype) if settings.autocast_dtype
                else contextlib.nullcontext())
    model.train()
    window, last_record = Window(), None
    resumed_at, elapsed_before = time.perf_counter(), state.elapsed_s
    while state.step < settings.max_steps:
        micro = [next(batches).to(device) for _ in range(settings.grad_accum)]
        masked = max(1, sum(b.masked for b in micro))
        pairs = max(1, sum(b.nsp_labels.numel() for b in micro))  # 0 labels: MLM-only examples
        mlm_sum = torch.zeros((), device=device)
        nsp_sum = torch.zeros((), device=device)
        for batch in micro:
            with autocast:
                mlm, nsp = pretraining_loss_sums(model, batch)
            (mlm / masked + nsp / pairs).backward()
            mlm_sum += mlm.detach()
            nsp_sum += nsp.detach()
        mlm_loss, nsp_loss = mlm_sum.item() / masked, nsp_sum.item() / pairs
        loss, step = mlm_loss + nsp_loss, state.step + 1
        if not math.isfinite(loss):
            kept = (f"the last good checkpoint is {last_checkpoint}" if last_checkpoint
                    else "no checkpoint was saved yet")
            raise UserError(f"step {step}: the loss is {loss} (mlm {mlm_loss}, nsp {nsp_loss}); stopped "
                            f"before updating the weights, {kept}; lower --learning-rate or raise "
                            f"--warmup-steps and rerun with --force")
        if settings.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        tokens = sum(b.tokens for b in micro)
        state = TrainerState(step=step, tokens=state.tokens + tokens,
                             samples=state.samples + settings.samples_per_step,
                             elapsed_s=elapsed_before + time.perf_counter() - resumed_at, learning_rate=lr)
        window.steps, window.tokens = window.steps + 1, window.tokens + tokens
        window.loss, window.mlm, window.nsp = window.loss + loss, window.mlm + mlm_loss, window.nsp + nsp_loss
        monitor.step(step, loss=loss, lr=lr)
        if step % settings.log_every == 0 or step == settings.max_steps:
            last_record = window.record(state)
            monitor.log(last_record)
            window = Window()
        if step % settings.save_every == 0 and step < settings.max_steps:
            last_checkpoint = save(state)
            if window.steps == 0:  # keep the save's time out of the next tokens/s
                window = Window()
    return state, last_record
