"""One fine-tune of one seed: train, score dev as it goes, keep the best, resume exactly after a kill.

    plan = SeedPlan(task=task, train=enc_train, dev=enc_dev, ...)
    result = train_seed(plan, seed=1, seed_dir=Path("work/ft/seed-1"))

Every dev evaluation also replaces `seed_dir/checkpoint/` (atomically, through a temporary name):

    trained.safetensors   the tensors that train (`Finetunable.trainable()`), now
    best.safetensors      the same tensors at the best dev evaluation so far
    optimizer.pt          the optimizer's state dict (reloaded with weights_only=True)
    rng.safetensors       torch's CPU (and CUDA) generator state: the dropout masks to come
    state.json            step, epoch, position in the epoch, the data-order RNG at the epoch's
                          start, the best step and score, the patience counter, the loss window

A rerun after a kill rebuilds the model from the seed (the same initial weights), loads these, cuts
metrics.jsonl back to the checkpoint's step and goes on: the same batches, dropout masks and updates
as a run that was never stopped, so its result.json is the same. Without a checkpoint it starts over.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from pretrain_cli.console import say
from pretrain_cli.modeling.methods import Finetunable, MethodConfig, count_parameters, prepare
from pretrain_cli.store import atomic_write_json
from pretrain_cli.tasks import TaskData
from pretrain_cli.tasks.encode import Encoded, collate, eval_batches, train_batches, word_predictions
from pretrain_cli.tasks.metrics import task_scores

WARMUP = 0.1  # of the steps, then linear decay to 0: BERT's fine-tuning schedule
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
CHECKPOINT = "checkpoint"


@dataclasses.dataclass(frozen=True)
class SeedPlan:
    """What every seed of a fine-tune shares."""

    task: TaskData
    train: Encoded  # the training examples, encoded once for all seeds
    dev: Encoded
    pad_id: int
    model_dir: Path  # the base model directory
    random_init: bool  # keep the architecture, start from random weights
    method: MethodConfig
    learning_rate: float  # peak, after a 10% linear warmup
    batch_size: int
    max_steps: int
    eval_every: int  # dev evaluation (and checkpoint) every N steps; 0: at each epoch's end
    patience: int  # stop after this many evaluations without a better dev metric; 0: never
    device: torch.device

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train.labels) / self.batch_size)


@dataclasses.dataclass
class Progress:
    """Where a seed's training stands; what a checkpoint's state.json holds."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # batches of the current epoch already trained
    epoch_rng: Any = None  # the data-order RNG state at the start of the current epoch
    best_step: int = -1
    best_score: float = -math.inf
    best_dev: dict[str, float] = dataclasses.field(default_factory=dict)
    best_dev_loss: float = math.nan
    since_best: int = 0
    loss_sum: float = 0.0  # training loss since the last evaluation
    loss_count: int = 0
    step_seconds: float = 0.0  # time spent in training steps (evaluation excluded)
    elapsed_s: float = 0.0  # wall time of the seed so far, evaluation included
    stopped_early: bool = False


def loss_of(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The task's training loss, mean over examples (tokens: over labelled word starts)."""
    if kind == "regression":
        return F.mse_loss(logits.float(), labels.float())
    if kind == "tokens":
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
    return F.cross_entropy(logits.float(), labels)


def predict(ft: Finetunable, encoded: Encoded, batch_size: int, device: torch.device,
            pad_id: int) -> list[torch.Tensor]:
    """Each example's output in example order: (C,) logits, a () score, or (tokens, C) logits.

    Batches go by length, to pad little; the model's mode is restored afterwards.
    """
    was_training = ft.model.training
    ft.model.eval()
    outputs: list[torch.Tensor] = [torch.empty(0)] * len(encoded.labels)
    with torch.no_grad():
        for indices in eval_batches(encoded.lengths, batch_size):
            batch = {k: v.to(device) for k, v in collate(encoded, indices, pad_id).items() if k != "labels"}
            logits = ft.logits(batch).float().cpu()
            for row, i in enumerate(indices):
                out = logits[row]
                outputs[i] = out[:len(encoded.input_ids[i])] if out.ndim == 2 else out
    ft.model.train(was_training)
    return outputs


def dev_scores(task: TaskData, encoded: Encoded,
               outputs: list[torch.Tensor]) -> tuple[dict[str, float], float, list[Any]]:
    """(every metric of the task, the dev loss, the predictions: class index, score or word tags)."""
    if task.kind == "regression":
        predicted = [float(o) for o in outputs]
        gold = [float(label) for label in encoded.labels]
        loss = F.mse_loss(torch.tensor(predicted), torch.tensor(gold)).item()
    elif task.kind == "tokens":
        outside = task.labels.index("O")
        predicted = [word_predictions(encoded, i, o.argmax(-1).tolist(), outside)
                     for i, o in enumerate(outputs)]
        gold = [list(e.label) for e in task.dev]
        logits = torch.cat(outputs)
        targets = torch.tensor([t for labels in encoded.labels for t in labels])
        loss = F.cross_entropy(logits, targets, ignore_index=-100).item()
    else:
        logits = torch.stack(outputs)
        predicted = logits.argmax(-1).tolist()
        gold = list(encoded.labels)
        loss = F.cross_entropy(logits, torch.tensor(gold)).item()
    return task_scores(task.kind, task.labels, gold, predicted), loss, predicted


def train_seed(plan: SeedPlan, seed: int, seed_dir: Path, *, progress_bar: Any = None) -> dict[str, Any]:
    """Train one seed to its end (resuming from seed_dir/checkpoint if there is one).

    Returns what result.json needs besides the saved model: the best evaluation, the step counts and
    timings, the trainable share, and the best model's dev predictions (recomputed after restoring it).
    """
    from pretrain_cli.modeling.finetuned import build_model
    from pretrain_cli.training.schedule import LrSchedule, build_optimizer, set_learning_rate, warmup_steps

    task = plan.task
    model = build_model(plan.model_dir, task.kind, task.labels, random_init=plan.random_init, seed=seed)
    ft = prepare(model, plan.method, task.kind)  # plan.method carries AdaLoRA's total_steps
    ft.model.to(plan.device)
    trainable, total = count_parameters(ft.model)
    say(f"seed {seed}: training {trainable:,} of {total:,} parameters ({trainable / total:.2%})")
    optimizer = build_optimizer(ft.model, name="adamw", learning_rate=plan.learning_rate,
                                weight_decay=WEIGHT_DECAY)
    schedule = LrSchedule(peak=plan.learning_rate, kind="linear",
                          warmup=warmup_steps(WARMUP, plan.max_steps), max_steps=plan.max_steps)
    state, best = resume(ft, optimizer, seed_dir) or (Progress(), {})
    if state.step:
        say(f"seed {seed}: resuming at step {state.step:,} from its last checkpoint")
    if state.epoch_rng is None:
        state.epoch_rng = random.Random(seed).getstate()
    curve_path = seed_dir / "metrics.jsonl"
    keep_curve(curve_path, state.step)
    params = list(ft.trainable().values())
    started = time.perf_counter() - state.elapsed_s
    ft.model.train()

    def evaluate() -> bool:
        """Score dev, log it, keep the best tensors, checkpoint; True when patience has run out."""
        nonlocal best
        outputs = predict(ft, plan.dev, plan.batch_size, plan.device, plan.pad_id)
        scores, dev_loss, _ = dev_scores(task, plan.dev, outputs)
        record = {"step": state.step, "epoch": round(state.step / plan.steps_per_epoch, 3),
                  "train_loss": state.loss_sum / max(state.loss_count, 1), "dev_loss": dev_loss,
                  "lr": schedule.learning_rate(state.step - 1),
                  "elapsed_s": round(time.perf_counter() - started, 3),
                  **{f"dev_{k}": v for k, v in scores.items()}}
        with open(curve_path, "a") as curve:
            curve.write(json.dumps(record) + "\n")
        state.loss_sum, state.loss_count = 0.0, 0
        if scores[task.metric] > state.best_score:
            best = {name: p.detach().cpu().clone() for name, p in ft.trainable().items()}
            state.best_step, state.best_score, state.best_dev, state.best_dev_loss = \
                state.step, scores[task.metric], scores, dev_loss
            state.since_best = 0
        else:
            state.since_best += 1
        if progress_bar is not None:
            progress_bar(status=f"dev {task.metric} {scores[task.metric]:.4f}")
        return plan.patience > 0 and state.since_best >= plan.patience

    while state.step < plan.max_steps and not state.stopped_early:
        order = random.Random()
        order.setstate(state.epoch_rng)
        batches = train_batches(plan.train.lengths, plan.batch_size, order)
        for indices in batches[state.position:]:
            tick = time.perf_counter()
            batch = {k: v.to(plan.device) for k, v in collate(plan.train, indices, plan.pad_id).items()}
            loss = loss_of(task.kind, ft.logits(batch), batch["labels"]) + ft.regularisation()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            set_learning_rate(optimizer, schedule.learning_rate(state.step))
            optimizer.step()
            ft.after_backward(state.step)  # AdaLoRA prunes here: after the update, with the gradients
            optimizer.zero_grad(set_to_none=True)
            state.step, state.position = state.step + 1, state.position + 1
            state.loss_sum, state.loss_count = state.loss_sum + loss.item(), state.loss_count + 1
            state.step_seconds += time.perf_counter() - tick
            if progress_bar is not None:
                progress_bar(completed=state.step)
            epoch_end = state.position == len(batches)
            if epoch_end:  # the next epoch's order follows from this one's RNG, as if never stopped
                state.epoch, state.position, state.epoch_rng = state.epoch + 1, 0, order.getstate()
            if (state.step == plan.max_steps or (plan.eval_every and state.step % plan.eval_every == 0)
                    or (not plan.eval_every and epoch_end)):
                state.stopped_early = evaluate() and state.step < plan.max_steps
                state.elapsed_s = time.perf_counter() - started
                save_checkpoint(ft, optimizer, best, state, seed_dir)
            if state.step == plan.max_steps or state.stopped_early or epoch_end:
                break

    with torch.no_grad():  # the model on disk and in result.json is the best evaluation's
        for name, param in ft.trainable().items():
            param.copy_(best[name].to(param.device))
    outputs = predict(ft, plan.dev, plan.batch_size, plan.device, plan.pad_id)
    scores, dev_loss, predicted = dev_scores(task, plan.dev, outputs)
    return {"ft": ft, "dev": scores, "dev_loss": dev_loss, "outputs": outputs,
            "predicted": predicted, "best_step": state.best_step, "steps": state.step,
            "epochs": round(state.step / plan.steps_per_epoch, 3), "stopped_early": state.stopped_early,
            "trainable_params": trainable, "total_params": total, "trainable_share": trainable / total,
            "train_time_s": round(time.perf_counter() - started, 3),
            "time_per_step_s": state.step_seconds / max(state.step, 1)}


def keep_curve(path: Path, step: int) -> None:
    """metrics.jsonl without the evaluations after `step` (a killed run's, which a resume redoes)."""
    if not path.is_file():
        path.touch()
        return
    lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    if lines and not _parses(lines[-1]):  # a kill in the middle of writing the last line
        lines.pop()
    kept = [line for line in lines if json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


def save_checkpoint(ft: Finetunable, optimizer: torch.optim.Optimizer, best: dict[str, torch.Tensor],
                    state: Progress, seed_dir: Path) -> None:
    """Write the checkpoint beside the old one, then swap: a kill at any moment leaves a whole one."""
    target, tmp, old = seed_dir / CHECKPOINT, seed_dir / f"{CHECKPOINT}.tmp", seed_dir / f"{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    if target.exists():  # a kill after the last swap's rename left .old behind: target is the newer
        shutil.rmtree(old, ignore_errors=True)
    tmp.mkdir()
    trained = {n: p.detach().cpu().contiguous() for n, p in ft.trainable().items()}
    save_file(trained, tmp / "trained.safetensors")
    save_file({n: t.contiguous() for n, t in best.items()}, tmp / "best.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    save_file(rng, tmp / "rng.safetensors")
    atomic_write_json(tmp / "state.json", dataclasses.asdict(state) | {"extra": ft.extra_state()})
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def resume(ft: Finetunable, optimizer: torch.optim.Optimizer,
           seed_dir: Path) -> tuple[Progress, dict[str, torch.Tensor]] | None:
    """Load seed_dir's checkpoint into the model and optimizer; its progress and best tensors, or None."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):  # .old: a kill came between the two renames
        directory = seed_dir / name
        if (directory / "state.json").is_file():
            break
    else:
        return None
    saved = json.loads((directory / "state.json").read_text())
    ft.load_extra_state(saved.pop("extra"))
    state = Progress(**saved)
    state.epoch_rng = _as_rng_state(state.epoch_rng)
    trained = load_file(directory / "trained.safetensors")
    with torch.no_grad():
        for name, param in ft.trainable().items():
            param.copy_(trained[name].to(param.device))
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    rng = load_file(directory / "rng.safetensors")
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return state, load_file(directory / "best.safetensors")


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _as_rng_state(value: Any) -> Any:
    """random.Random's state back from JSON, where its tuples became lists."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in value)
