"""The optimisation loop: accumulate micro-batches, agree across processes, clip, step, log, save.

    state, record = train(Engine(loss_model, wrapped, optimizer, scaler, dist), iter(loader),
                          state=TrainerState(), settings=settings, monitor=monitor, save=save_step)

Losses are normalised by the counts of the whole optimizer step on every process (masked tokens
for MLM, pairs for NSP/SOP, anchors for SimCSE), all-reduced before the first forward, and each
process's loss is scaled by the world size to undo DDP's gradient averaging. So `--grad-accum 4`
or 4 processes compute the gradient of one 4× larger batch, not a mean of micro-means (SimCSE's
negatives, though, are the micro-batches of every process, not the accumulated ones). The same all-reduce
carries process 0's training clock, so the learning rate in budget mode, time-based saves and
the budget's end are decided identically everywhere.
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
from pretrain_cli.modeling.pretraining import PretrainingLoss, batch_inputs
from pretrain_cli.training.checkpoint import TrainerState
from pretrain_cli.training.data import Batch
from pretrain_cli.training.distributed import Dist, all_reduce_sum
from pretrain_cli.training.monitor import Monitor
from pretrain_cli.training.parallel import sync_gradients
from pretrain_cli.training.schedule import LrSchedule, set_learning_rate


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    max_steps: int  # stop after this step (in budget mode: at the budget or here, whichever is first)
    grad_accum: int
    samples_per_step: int  # micro × accum × world size: how far one step moves the data cursor
    max_grad_norm: float  # 0 turns clipping off (the norm is still logged)
    log_every: int
    save_every: int  # steps between checkpoints (0: not by steps)
    save_every_s: float  # training seconds between checkpoints (0: not by time)
    budget_s: float  # > 0: stop when training time reaches it
    schedule: LrSchedule
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: plain fp32
    simcse_weight: float = 1.0  # the contrastive loss's weight in the sum that is minimised


@dataclasses.dataclass
class Engine:
    """The model, as trained and as wrapped for the processes, with its optimizer and loss scaler."""

    loss_model: PretrainingLoss
    wrapped: torch.nn.Module  # DDP/FSDP/compiled around loss_model, or loss_model itself
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # enabled for fp16 only
    dist: Dist


@dataclasses.dataclass
class Window:
    """Sums over the steps since the last log line (global: every process's share included)."""

    steps: int = 0
    loss: float = 0.0
    mlm: float = 0.0
    nsp: float = 0.0
    simcse: float = 0.0
    grad_norm: float = 0.0
    tokens: int = 0
    positions: int = 0
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def record(self, state: TrainerState) -> dict[str, float | int]:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        return {"step": state.step, "tokens": state.tokens, "loss": self.loss / self.steps,
                "mlm_loss": self.mlm / self.steps, "nsp_loss": self.nsp / self.steps,
                "simcse_loss": self.simcse / self.steps,
                "lr": state.learning_rate, "grad_norm": self.grad_norm / self.steps,
                "padding": 1 - self.tokens / max(1, self.positions), "tokens_per_s": self.tokens / seconds,
                "elapsed_s": round(state.elapsed_s, 3)}


def _step_counts(micro: list[Batch], dist: Dist, elapsed_s: float) -> list[float]:
    """[masked, pairs, anchors, tokens, padded positions] of the whole step, and process 0's clock.

    Reduced on the CPU (gloo beside NCCL), so reading them never waits for the GPU.
    """
    counts = torch.tensor([sum(b.masked for b in micro), sum(b.nsp_labels.numel() for b in micro),
                           sum(b.anchors for b in micro), sum(b.tokens for b in micro),
                           sum(b.positions for b in micro),
                           elapsed_s if dist.is_main else 0.0], dtype=torch.float64)
    return all_reduce_sum(counts).tolist()


def _diverged(step: int, what: str, last_checkpoint: Path | None) -> None:
    """Stop before a non-finite update reaches the weights (and so any checkpoint)."""
    if last_checkpoint is None:
        raise UserError(f"step {step}: {what}; stopped before updating the weights, no checkpoint was saved "
                        f"yet; lower --learning-rate or raise --warmup-steps and rerun with --force")
    raise UserError(f"step {step}: {what}; stopped before updating the weights, the last good checkpoint is "
                    f"{last_checkpoint}; continue from it with a lower --learning-rate (or more "
                    f"--warmup-steps) in a new directory: --resume {last_checkpoint} --out NEW_DIR")


def train(engine: Engine, batches: Iterator[Batch], *, state: TrainerState, settings: LoopSettings,
          monitor: Monitor, save: Callable[[TrainerState], Path],
          last_checkpoint: Path | None) -> tuple[TrainerState, dict[str, float | int] | None]:
    """Train from `state` to the end of the run; returns the final state and the last log record."""
    device, dist, optimizer, scaler = settings.device, engine.dist, engine.optimizer, engine.scaler
    autocast = (torch.autocast(device.type, dtype=settings.autocast_dtype) if settings.autocast_dtype
                else contextlib.nullcontext())
    params = [p for p in engine.loss_model.parameters() if p.requires_grad]
    engine.wrapped.train()
    window, last_record = Window(), None
    resumed_at, elapsed_before, saved_at = time.perf_counter(), state.elapsed_s, state.elapsed_s
    while state.step < settings.max_steps:
        micro = [next(batches).to(device) for _ in range(settings.grad_accum)]
        masked, pairs, anchors, tokens, positions, elapsed = _step_counts(micro, dist, state.elapsed_s)
        if settings.budget_s and elapsed >= settings.budget_s:
            break
        lr = settings.schedule.learning_rate(state.step, elapsed)
        set_learning_rate(optimizer, lr)
        sums = torch.zeros(3, device=device)
        for i, batch in enumerate(micro):
            with sync_gradients(engine.wrapped, i == len(micro) - 1), autocast:
                mlm, nsp, simcse = engine.wrapped(*batch_inputs(batch))
            loss = (mlm / max(1.0, masked) + nsp / max(1.0, pairs)
                    + settings.simcse_weight * simcse / max(1.0, anchors)) * dist.world_size
            scaler.scale(loss).backward()
            sums += torch.stack([mlm.detach(), nsp.detach(), simcse.detach()]).float()
        counts = torch.tensor([max(1.0, masked), max(1.0, pairs), max(1.0, anchors)], device=device)
        mlm_loss, nsp_loss, simcse_loss = (all_reduce_sum(sums) / counts).tolist()
        loss, step = mlm_loss + nsp_loss + settings.simcse_weight * simcse_loss, state.step + 1
        if not math.isfinite(loss):
            _diverged(step, f"the loss is {loss} (mlm {mlm_loss}, nsp {nsp_loss}, simcse {simcse_loss})",
                      last_checkpoint)
        scaler.unscale_(optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm or math.inf))
        if not math.isfinite(grad_norm) and not scaler.is_enabled():  # fp16's scaler skips such steps
            _diverged(step, f"the gradient norm is {grad_norm} (loss {loss})", last_checkpoint)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

        state = TrainerState(step=step, tokens=state.tokens + int(tokens),
                             samples=state.samples + settings.samples_per_step,
                             elapsed_s=elapsed_before + time.perf_counter() - resumed_at, learning_rate=lr)
        window.steps, window.tokens, window.positions = window.steps + 1, window.tokens + int(tokens), \
            window.positions + int(positions)
        window.loss, window.mlm, window.nsp = window.loss + loss, window.mlm + mlm_loss, window.nsp + nsp_loss
        window.simcse += simcse_loss
        window.grad_norm += grad_norm
        monitor.step(step, loss=loss, lr=lr, elapsed_s=state.elapsed_s)
        if step % settings.log_every == 0 or step == settings.max_steps:
            last_record = window.record(state)
            monitor.log(last_record)
            window = Window()
        # process 0's clock (`elapsed`, from the start of this step) decides, so every process agrees
        due = (settings.save_every and step % settings.save_every == 0) or \
            (settings.save_every_s and elapsed - saved_at >= settings.save_every_s)
        if due and step < settings.max_steps:
            last_checkpoint, saved_at = save(state), elapsed
            if window.steps == 0:  # keep the save's time out of the next tokens/s
                window = Window()
    if window.steps:  # a budget stop between log steps
        last_record = window.record(state)
        monitor.log(last_record)
    return state, last_record
