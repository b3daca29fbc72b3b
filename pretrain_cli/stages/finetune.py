"""`ptk finetune`: fine-tune a BERT model directory on a classification task, once per seed.

    ptk finetune rotten_tomatoes --model work/ckpt/final --out work/ft --seeds 1,2,3
    ptk finetune rotten_tomatoes --model work/ckpt/final --out work/ft-lora --method lora
    ptk finetune rotten_tomatoes --model work/ckpt/final --out work/ft-random --random-init
    ptk finetune mrpc --data-dir glue/MRPC --model ~/models/bert-base --out work/mrpc

Layout of FT_DIR, one directory per seed:

    seed-1/model/              full: the fine-tuned model (config.json holds the label map) + tokenizer
    seed-1/adapter/            lora: adapter + classifier weights (peft) + tokenizer
    seed-1/base_model.json     lora: the frozen base's path and file hashes
    seed-1/metrics.jsonl       one line per dev evaluation: the learning curve
    seed-1/dev_predictions.jsonl
    seed-1/result.json         written last: the seed is finished
    manifest.json              every seed's result, mean ± std of accuracy and macro F1

Each seed restores its best dev checkpoint (by macro F1) before saving, so `result.json` reports
the model that is on disk. An interrupted run, rerun, keeps the seeds that had finished.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import console, say
from pretrain_cli.errors import UserError
from pretrain_cli.modeling.peft_setup import model_dir_problems, model_files
from pretrain_cli.samples import resolve_input
from pretrain_cli.store import (
    Manifest,
    ShardInfo,
    StageOutput,
    atomic_write_bytes,
    atomic_write_json,
    file_sha256,
)
from pretrain_cli.tasks import TaskData, hash_subset, load_task, task_problems

if TYPE_CHECKING:
    import torch

    from pretrain_cli.tasks.encode import Encoded

METHODS = ("full", "lora")
DEFAULT_LR = {"full": 5e-5, "lora": 5e-4}  # the usual BERT recipe; adapters want a ~10× larger step
WARMUP = 0.1  # of the steps, then linear decay to 0 (BERT's fine-tuning schedule)
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
RESULT = "result.json"


@dataclasses.dataclass(kw_only=True)
class FinetuneConfig(StageConfig):
    """Fine-tune a BERT model on a classification task (one run per seed) and score it on dev."""

    stage: ClassVar[str] = "finetune"

    task: str = option(help="Task: rotten_tomatoes (ships with ptk) or a GLUE task (sst2, cola, mrpc, qqp, "
                            "qnli, rte, wnli, mnli) read from --data-dir.", argument=True)
    model: Path = option(help="HF BERT model directory: config.json, *.safetensors and tokenizer files "
                              "(e.g. a pretrain run's CKPT/final), or sample:minilm for the shipped MiniLM.")
    out: Path = option(help="Output directory: seed-N/ per seed and manifest.json.", hashed=False)
    data_dir: Path | None = option(None, "Directory with the GLUE task's train.tsv and dev.tsv.")
    method: str = option("full", "full: train every weight; lora: train LoRA adapters on attention "
                                 "query/value plus the classifier.")
    random_init: bool = option(False, "Keep --model's architecture and tokenizer but start from random "
                                      "weights: the baseline that shows what pretraining bought.")
    seeds: str = option("1", "Comma-separated seeds, one fine-tune each (e.g. 1,2,3); the manifest "
                             "reports mean ± std over them.")
    epochs: int = option(3, "Passes over the training set (unless --max-steps is set).")
    max_steps: int = option(0, "Optimiser steps to train for; 0: --epochs decides.")
    batch_size: int = option(32, "Examples per optimiser step (and per dev batch).")
    learning_rate: float | None = option(None, "Peak AdamW learning rate, after a 10% linear warmup; "
                                               "default 5e-5 for full, 5e-4 for lora.")
    lora_r: int = option(8, "LoRA rank.")
    lora_alpha: int = option(16, "LoRA scaling numerator (the update is scaled by alpha / r).")
    lora_dropout: float = option(0.1, "Dropout on the LoRA branch's input.")
    max_seq_length: int = option(128, "Tokens per example (pairs share them); longer ones are truncated.")
    patience: int = option(0, "Stop after this many dev evaluations without a better macro F1 (0: never "
                              "stop early); the best dev checkpoint is kept either way.")
    eval_every: int = option(0, "Evaluate on dev every N steps; 0: at the end of every epoch.")
    train_limit: int = option(0, "Train on this many examples only (a fixed subset chosen by text "
                                 "hash; 0: all).")
    workers: int = option(0, "CPU threads for torch; 0: torch's default (all cores). Small models on a "
                             "busy machine often run faster on 1.", hashed=False)

    @property
    def seed_list(self) -> list[int]:
        return [int(s) for s in str(self.seeds).split(",")]  # str(): a pipeline YAML may say `seeds: 1`

    @property
    def model_dir(self) -> Path:
        return resolve_input(self.model)

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[self.method]

    def problems(self) -> list[str]:
        problems = task_problems(self.task, self.data_dir)
        try:
            problems += model_dir_problems(self.model_dir, weights=not self.random_init)
        except UserError as error:  # sample:NAME whose package is not installed
            problems.append(str(error))
        if self.method not in METHODS:
            problems.append(f"--method {self.method!r}: choose one of {', '.join(METHODS)}")
        try:
            seeds = self.seed_list
            if len(set(seeds)) != len(seeds) or min(seeds) < 0:
                problems.append(f"--seeds {self.seeds!r}: seeds must be distinct and non-negative")
        except ValueError:
            problems.append(f"--seeds {self.seeds!r}: expected comma-separated integers such as 1,2,3")
        at_least = {"epochs": 1, "batch_size": 1, "lora_r": 1, "lora_alpha": 1, "max_seq_length": 8,
                    "max_steps": 0, "patience": 0, "eval_every": 0, "train_limit": 0, "workers": 0}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                problems.append(f"--{name.replace('_', '-')} must be at least {low}")
        # YAML reads 1e-3 (no dot) as a string: say so rather than fail inside the optimiser
        if self.learning_rate is not None and (not isinstance(self.learning_rate, (int, float))
                                               or self.learning_rate <= 0):
            problems.append(f"--learning-rate {self.learning_rate!r} must be a positive number")
        if not 0 <= self.lora_dropout < 1:
            problems.append("--lora-dropout must be in [0, 1)")
        return problems


def files_input(kind: str, paths: list[Path]) -> Manifest:
    """Files that no ptk stage wrote (a model directory, GLUE TSVs) as an input manifest, so the
    up-to-date check covers their content: a retrained model or edited data means a new fine-tune."""
    shards = [ShardInfo(file=str(p), rows=0, tokens=0, sha256=file_sha256(p), bytes=p.stat().st_size,
                        split="file") for p in paths]
    return Manifest(stage=kind, config={}, config_hash="", inputs={}, shards=shards, stats={}, extra={})


def seed_dir_name(seed: int) -> str:
    return f"seed-{seed}"


def run(cfg: FinetuneConfig) -> Manifest:
    cfg.validate()
    import torch

    from pretrain_cli.modeling.peft_setup import load_tokenizer

    task = load_task(cfg.task, cfg.data_dir)
    tokenizer = load_tokenizer(cfg.model_dir, cfg.max_seq_length)
    inputs = {"model": files_input("model", model_files(cfg.model_dir, weights=not cfg.random_init)),
              "data": files_input("data", list(task.files))}
    # earlier runs' seed directories are this stage's too: --force must clear them with the rest
    out = StageOutput(cfg, cfg.out, inputs=inputs, owned=("seed-*",))
    if (done := out.up_to_date()) is not None:
        return done
    threads = torch.get_num_threads()
    if cfg.workers:
        torch.set_num_threads(cfg.workers)
    try:
        return _finetune(cfg, task, tokenizer, out)
    finally:
        torch.set_num_threads(threads)  # a library call leaves the process as it found it


def _finetune(cfg: FinetuneConfig, task: TaskData, tokenizer: Any, out: StageOutput) -> Manifest:
    from pretrain_cli.tasks.encode import encode

    train = hash_subset(task.train, cfg.train_limit)
    enc_train = encode(tokenizer, train, cfg.max_seq_length)
    enc_dev = encode(tokenizer, task.dev, cfg.max_seq_length)
    init = "random" if cfg.random_init else "pretrained"
    say(f"finetune: {task.name} ({', '.join(task.labels)}): {len(train):,} train / {len(task.dev):,} dev "
        f"examples; {init} {cfg.method} from {cfg.model_dir}, lr {cfg.lr:g}")
    results: dict[int, dict[str, Any]] = {}
    for seed in cfg.seed_list:
        seed_dir = cfg.out / seed_dir_name(seed)
        if (seed_dir / RESULT).is_file():
            results[seed] = json.loads((seed_dir / RESULT).read_text())
            say(f"seed {seed}: finished by an earlier run, kept")
            continue
        shutil.rmtree(seed_dir, ignore_errors=True)  # a seed interrupted midway starts over
        seed_dir.mkdir(parents=True)
        results[seed] = train_seed(cfg, task, enc_train, enc_dev, tokenizer, seed, seed_dir)

    for seed in cfg.seed_list:
        for path in sorted((cfg.out / seed_dir_name(seed)).rglob("*")):
            if path.is_file():
                out.record_file(str(path.relative_to(cfg.out)))
    stats = summarise(results)
    say(f"finetune: {task.name} {init} {cfg.method}: dev accuracy {stats['accuracy_mean']:.4f} ± "
        f"{stats['accuracy_std']:.4f}, macro F1 {stats['macro_f1_mean']:.4f} ± {stats['macro_f1_std']:.4f} "
        f"over {len(results)} seed(s); {cfg.out}")
    extra = {"task": task.name, "labels": list(task.labels), "init": init, "method": cfg.method,
             "model": str(cfg.model_dir.resolve()), "learning_rate": cfg.lr, "seeds": cfg.seed_list,
             "train_examples": len(train), "dev_examples": len(task.dev)}
    return out.finish(stats=stats, extra=extra)


def summarise(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per-seed results and their mean ± sample standard deviation (0 for a single seed)."""
    def spread(key: str) -> tuple[float, float]:
        values = [r[key] for r in results.values()]
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    acc_mean, acc_std = spread("dev_accuracy")
    f1_mean, f1_std = spread("dev_macro_f1")
    return {"seeds": {str(seed): result for seed, result in results.items()},
            "accuracy_mean": acc_mean, "accuracy_std": acc_std,
            "macro_f1_mean": f1_mean, "macro_f1_std": f1_std,
            "train_time_s": sum(r["train_time_s"] for r in results.values())}


def predict(model: torch.nn.Module, encoded: Encoded, batch_size: int, pad_id: int) -> torch.Tensor:
    """Logits for every example, in example order (batches go by length, to pad little)."""
    import torch

    from pretrain_cli.tasks.encode import collate, eval_batches

    was_training = model.training
    model.eval()
    logits = [torch.empty(0)] * len(encoded.labels)
    with torch.no_grad():
        for indices in eval_batches(encoded.lengths, batch_size):
            batch = collate(encoded, indices, pad_id)
            batch.pop("labels")
            for i, row in zip(indices, model(**batch).logits.float(), strict=True):
                logits[i] = row
    model.train(was_training)
    return torch.stack(logits)


def train_seed(cfg: FinetuneConfig, task: TaskData, enc_train: Encoded, enc_dev: Encoded, tokenizer: Any,
               seed: int, seed_dir: Path) -> dict[str, Any]:
    """One fine-tune: train, evaluate on dev as it goes, keep the best, save it; returns result.json."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pretrain_cli.modeling.peft_setup import (
        add_lora,
        base_record,
        build_classifier,
        count_parameters,
        save_classifier,
        save_random_base,
    )
    from pretrain_cli.tasks.encode import collate, train_batches
    from pretrain_cli.tasks.metrics import scores
    from pretrain_cli.training.schedule import LrSchedule, build_optimizer, set_learning_rate, warmup_steps

    model = build_classifier(cfg.model_dir, task.labels, random_init=cfg.random_init, seed=seed)
    base_dir = cfg.model_dir
    if cfg.method == "lora":
        if cfg.random_init:
            base_dir = save_random_base(model, seed_dir)
        model = add_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    trainable, total = count_parameters(model)
    say(f"seed {seed}: trainable parameters {trainable:,} of {total:,} ({trainable / total:.2%})")

    steps_per_epoch = math.ceil(len(enc_train.labels) / cfg.batch_size)
    max_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    optimizer = build_optimizer(model, name="adamw", learning_rate=cfg.lr, weight_decay=WEIGHT_DECAY)
    schedule = LrSchedule(peak=cfg.lr, kind="linear", warmup=warmup_steps(WARMUP, max_steps),
                          max_steps=max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    order = random.Random(seed)  # the data order, independent of torch's RNG (dropout)
    pad_id = tokenizer.pad_token_id
    gold = enc_dev.labels
    step, since_best, stopped_early = 0, 0, False
    best: dict[str, Any] = {}
    loss_sum, loss_count = 0.0, 0
    curve = open(seed_dir / "metrics.jsonl", "w")
    progress = Progress(TextColumn(f"seed {seed}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                        console=console, disable=not console.is_terminal, transient=True)
    bar = progress.add_task("steps", total=max_steps, status="")
    started = time.perf_counter()

    def evaluate() -> bool:
        """Score dev, log it, keep the best weights; True when patience has run out."""
        nonlocal since_best, loss_sum, loss_count
        logits = predict(model, enc_dev, cfg.batch_size, pad_id)
        dev_loss = torch.nn.functional.cross_entropy(logits, torch.tensor(gold)).item()
        score = scores(gold, logits.argmax(-1).tolist(), len(task.labels))
        record = {"step": step, "epoch": round(step / steps_per_epoch, 3),
                  "train_loss": loss_sum / max(loss_count, 1), "dev_loss": dev_loss,
                  "dev_accuracy": score["accuracy"], "dev_macro_f1": score["macro_f1"],
                  "lr": schedule.learning_rate(step), "elapsed_s": round(time.perf_counter() - started, 3)}
        curve.write(json.dumps(record) + "\n")
        curve.flush()
        loss_sum, loss_count = 0.0, 0
        progress.update(bar, status=f"dev acc {score['accuracy']:.4f}  f1 {score['macro_f1']:.4f}")
        if not best or score["macro_f1"] > best["score"]["macro_f1"]:
            # only the trained tensors change, so they are the whole checkpoint (small for LoRA)
            weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            best.update(step=step, score=score, dev_loss=dev_loss, logits=logits, weights=weights)
            since_best = 0
        else:
            since_best += 1
        return cfg.patience > 0 and since_best >= cfg.patience

    model.train()
    with curve, progress:
        while step < max_steps and not stopped_early:
            batches = train_batches(enc_train.lengths, cfg.batch_size, order)
            for position, indices in enumerate(batches, start=1):
                loss = model(**collate(enc_train, indices, pad_id)).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
                set_learning_rate(optimizer, schedule.learning_rate(step))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
                progress.update(bar, completed=step)
                epoch_end = position == len(batches)
                if (step == max_steps or (cfg.eval_every and step % cfg.eval_every == 0)
                        or (not cfg.eval_every and epoch_end)):
                    stopped_early = evaluate() and step < max_steps
                if step == max_steps or stopped_early:
                    break
    train_time = time.perf_counter() - started

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in best["weights"]:
                param.copy_(best["weights"][name])
    base = base_record(base_dir, task.labels, seed_dir) if cfg.method == "lora" else None
    saved = save_classifier(model, tokenizer, seed_dir, base)
    write_predictions(seed_dir / "dev_predictions.jsonl", task, best["logits"])
    result = {"seed": seed, "task": task.name, "init": "random" if cfg.random_init else "pretrained",
              "method": cfg.method, "dev_accuracy": best["score"]["accuracy"],
              "dev_macro_f1": best["score"]["macro_f1"], "dev_loss": best["dev_loss"],
              "selection_metric": "dev_macro_f1", "best_step": best["step"], "steps": step,
              "epochs": round(step / steps_per_epoch, 3), "stopped_early": stopped_early,
              "trainable_params": trainable, "total_params": total, "trainable_share": trainable / total,
              "train_time_s": round(train_time, 3), "learning_rate": cfg.lr,
              "train_examples": len(enc_train.labels), "dev_examples": len(gold), "saved": saved.name}
    atomic_write_json(seed_dir / RESULT, result)  # last: from here on the seed counts as finished
    say(f"seed {seed}: dev accuracy {result['dev_accuracy']:.4f}, macro F1 {result['dev_macro_f1']:.4f} "
        f"(best of step {best['step']}/{step}), {train_time:.1f} s")
    return result


def write_predictions(path: Path, task: TaskData, logits: torch.Tensor) -> None:
    """One line per dev example, in dev order: gold and predicted label names and the raw logits."""
    lines = []
    rows = zip(task.dev, logits.tolist(), logits.argmax(-1).tolist(), strict=True)
    for index, (example, row, predicted) in enumerate(rows):
        record = {"index": index, "text": example.text, "text_pair": example.text_pair,
                  "label": task.labels[example.label], "prediction": task.labels[predicted], "logits": row}
        lines.append(json.dumps(record) + "\n")
    atomic_write_bytes(path, "".join(lines).encode())
