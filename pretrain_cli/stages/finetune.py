"""`ptk finetune`: fine-tune a BERT model on a task with one method, once per seed, scored on dev.

    ptk finetune rotten_tomatoes --model sample:minilm --out work/ft-lora --method lora --seeds 1,2,3
    ptk finetune wnut_ner --model work/ckpt/final --out work/ner --method adapter
    ptk finetune stsb --data-dir glue/STS-B --model ~/models/bert-base --out work/stsb
    ptk finetune reviews.csv --text-column review --label-column stars --model … --out work/reviews
    ptk finetune sst2 --hub --model … --out work/sst2        # GLUE from the hub (needs network)

Methods: full; lora, adalora, ia3, prompt, prefix (peft); adapter (Houlsby/Pfeiffer), bitfit. The
task head always trains and is saved with the method's weights.

Layout of FT_DIR, one directory per seed:

    seed-1/model/ or seed-1/adapter/   the best dev checkpoint (`modeling.finetuned.save_finetuned`)
    seed-1/metrics.jsonl               one line per dev evaluation: the learning curves
    seed-1/dev_predictions.jsonl       the saved model's dev predictions, dev order
    seed-1/checkpoint/                 the latest evaluation's training state, for an exact resume
    seed-1/result.json                 written last: the seed is finished
    manifest.json                      every seed's result and every metric's mean ± std

The best checkpoint is chosen by the task's own dev metric (accuracy, F1 for MRPC/QQP, Matthews
correlation for CoLA, Spearman for STS-B, entity F1 for NER). A killed run, rerun, keeps the finished
seeds and resumes the interrupted one from its last evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import console, say
from pretrain_cli.errors import UserError
from pretrain_cli.modeling.finetuned import model_dir_problems, model_files
from pretrain_cli.modeling.methods import MethodConfig
from pretrain_cli.samples import resolve_input
from pretrain_cli.store import (
    Manifest,
    StageOutput,
    atomic_write_bytes,
    atomic_write_json,
    files_input,
)
from pretrain_cli.tasks import TaskData, TaskSource, hash_subset, load_task, task_problems

if TYPE_CHECKING:
    from pretrain_cli.training.finetune_loop import SeedPlan

# The usual recipes' peak rates: a full fine-tune moves pretrained weights a little; a few new
# weights learn from scratch and want a larger step (prompt tuning the largest).
DEFAULT_LR = {"full": 5e-5, "lora": 5e-4, "adalora": 5e-4, "ia3": 3e-3, "prompt": 3e-2, "prefix": 1e-2,
              "adapter": 1e-3, "bitfit": 1e-3}
RESULT = "result.json"


@dataclasses.dataclass(kw_only=True)
class FinetuneConfig(StageConfig):
    """Fine-tune a BERT model on a task (one run per seed) and score it on dev."""

    stage: ClassVar[str] = "finetune"

    task: str = option(help="A task name (rotten_tomatoes, imdb, wiki_topics, wnut_ner, zh_sentiment, or "
                            "GLUE: cola sst2 mrpc qqp stsb mnli qnli rte wnli) or a train file (.csv .tsv "
                            ".jsonl .arrow .parquet, or .conll for NER).", argument=True)
    model: Path = option(help="HF BERT model directory: config.json, *.safetensors and tokenizer files "
                              "(e.g. a pretrain run's CKPT/final), or sample:minilm for the shipped MiniLM.")
    out: Path = option(help="Output directory: seed-N/ per seed and manifest.json.", hashed=False)
    data_dir: Path | None = option(None, "GLUE tasks: the directory with the task's train.tsv and dev.tsv.")
    hub: bool = option(False, "GLUE tasks: read the task from the Hugging Face hub (nyu-mll/glue); needs "
                              "network access and HF_HUB_OFFLINE=0.")
    dev_file: Path | None = option(None, "A train file's dev split (same format); default: 10% of the "
                                         "train file, chosen by text hash.")
    text_column: str = option("text", "Train file: the column with the text (NER: the list of words).")
    text_pair_column: str | None = option(None, "Train file: the second text's column, for a pair task.")
    label_column: str = option("label", "Train file: the label column (NER: the list of tags).")
    task_type: Literal["auto", "classification", "regression", "tokens"] = option(
        "auto", "Train file: the task type; auto: list labels → tokens (NER), non-integer numbers → "
                "regression, else classification.")
    method: Literal["full", "lora", "adalora", "ia3", "prompt", "prefix", "adapter", "bitfit"] = option(
        "full", "full: every weight; lora/adalora/ia3/prompt/prefix: peft's methods; adapter: "
                "bottleneck adapters; bitfit: biases only. The task head always trains.")
    random_init: bool = option(False, "Keep --model's architecture and tokenizer but start from random "
                                      "weights: the baseline that shows what pretraining bought.")
    seeds: str = option("1", "Comma-separated seeds, one fine-tune each (e.g. 1,2,3); the manifest "
                             "reports mean ± std over them.")
    epochs: int = option(3, "Passes over the training set (unless --max-steps is set).")
    max_steps: int = option(0, "Optimiser steps to train for; 0: --epochs decides.")
    batch_size: int = option(32, "Examples per optimiser step (and per dev batch).")
    learning_rate: float | None = option(None, "Peak AdamW learning rate, after a 10% linear warmup; "
                                               "default by method: full 5e-5, lora/adalora 5e-4, ia3 3e-3, "
                                               "prompt 3e-2, prefix 1e-2, adapter/bitfit 1e-3.")
    lora_r: int = option(8, "lora: the rank; adalora: the initial rank (the budget ends at half).")
    lora_alpha: int = option(16, "lora, adalora: the scaling numerator (the update is scaled by alpha / r).")
    lora_dropout: float = option(0.1, "lora, adalora: dropout on the low-rank branch's input.")
    virtual_tokens: int = option(20, "prompt, prefix: the number of learned virtual tokens.")
    adapter_variant: Literal["houlsby", "pfeiffer"] = option(
        "houlsby", "adapter: houlsby (after attention and feed-forward) or pfeiffer (feed-forward only).")
    adapter_size: int = option(64, "adapter: the bottleneck width.")
    max_seq_length: int = option(128, "Tokens per example (pairs share them); longer ones are truncated.")
    patience: int = option(0, "Stop after this many dev evaluations without a better dev metric (0: never "
                              "stop early); the best dev checkpoint is kept either way.")
    eval_every: int = option(0, "Evaluate on dev (and checkpoint for resume) every N steps; 0: at the end "
                                "of every epoch.")
    train_limit: int = option(0, "Train on this many examples only (a fixed subset chosen by text "
                                 "hash; 0: all).")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "Where to train; auto: a CUDA GPU if there is "
                                                            "one.", hashed=False)
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

    @property
    def source(self) -> TaskSource:
        return TaskSource(task=self.task, data_dir=self.data_dir, hub=self.hub, dev_file=self.dev_file,
                          text_column=self.text_column, text_pair_column=self.text_pair_column,
                          label_column=self.label_column, task_type=self.task_type)

    @property
    def method_config(self) -> MethodConfig:
        return MethodConfig(name=self.method, lora_r=self.lora_r, lora_alpha=self.lora_alpha,
                            lora_dropout=self.lora_dropout, virtual_tokens=self.virtual_tokens,
                            adapter_variant=self.adapter_variant, adapter_size=self.adapter_size)

    def problems(self) -> list[str]:
        problems = task_problems(self.source)
        try:
            problems += model_dir_problems(self.model_dir, weights=not self.random_init)
        except UserError as error:  # sample:NAME whose package is not installed
            problems.append(str(error))
        problems += self.method_config.problems()
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                problems.append("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
        try:
            seeds = self.seed_list
            if len(set(seeds)) != len(seeds) or min(seeds) < 0:
                problems.append(f"--seeds {self.seeds!r}: seeds must be distinct and non-negative")
        except ValueError:
            problems.append(f"--seeds {self.seeds!r}: expected comma-separated integers such as 1,2,3")
        at_least = {"epochs": 1, "batch_size": 1, "max_seq_length": 8, "max_steps": 0, "patience": 0,
                    "eval_every": 0, "train_limit": 0, "workers": 0}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                problems.append(f"--{name.replace('_', '-')} must be at least {low}")
        # YAML reads 1e-3 (no dot) as a string: say so rather than fail inside the optimiser
        if self.learning_rate is not None and (not isinstance(self.learning_rate, (int, float))
                                               or self.learning_rate <= 0):
            problems.append(f"--learning-rate {self.learning_rate!r} must be a positive number")
        return problems


def seed_dir_name(seed: int) -> str:
    return f"seed-{seed}"


def run(cfg: FinetuneConfig) -> Manifest:
    cfg.validate()
    import torch

    from pretrain_cli.modeling.finetuned import load_tokenizer

    task = load_task(cfg.source)
    if task.kind == "classification" and len(task.labels) < 2:
        where = task.files[0] if task.files else task.name
        raise UserError(f"{where}: every training example has one label ({task.labels[0]!r}); a classifier "
                        f"needs at least two, so add examples of the others")
    tokenizer = load_tokenizer(cfg.model_dir, cfg.max_seq_length,
                               virtual_tokens=cfg.method_config.virtual_positions)
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
    import math

    import torch

    from pretrain_cli.tasks.encode import encode
    from pretrain_cli.training.finetune_loop import SeedPlan

    train = hash_subset(task.train, cfg.train_limit)
    on_gpu = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if on_gpu else "cpu")
    max_steps = cfg.max_steps or cfg.epochs * math.ceil(len(train) / cfg.batch_size)
    plan = SeedPlan(task=task, train=encode(tokenizer, train, task.kind, cfg.max_seq_length),
                    dev=encode(tokenizer, task.dev, task.kind, cfg.max_seq_length),
                    pad_id=tokenizer.pad_token_id,
                    model_dir=cfg.model_dir, random_init=cfg.random_init,
                    method=dataclasses.replace(cfg.method_config, total_steps=max_steps),
                    learning_rate=cfg.lr, batch_size=cfg.batch_size, max_steps=max_steps,
                    eval_every=cfg.eval_every, patience=cfg.patience, device=device)
    init = "random" if cfg.random_init else "pretrained"
    labels = f" ({len(task.labels)} labels)" if task.labels else ""
    say(f"finetune: {task.name}, {task.kind}{labels}: {len(train):,} train / {len(task.dev):,} dev examples; "
        f"{init} {cfg.method} from {cfg.model_dir} on {device.type}, lr {cfg.lr:g}, {max_steps:,} steps; "
        f"best checkpoint by dev {task.metric}")
    results: dict[int, dict[str, Any]] = {}
    for seed in cfg.seed_list:
        seed_dir = cfg.out / seed_dir_name(seed)
        if (seed_dir / RESULT).is_file():
            results[seed] = json.loads((seed_dir / RESULT).read_text())
            say(f"seed {seed}: finished by an earlier run, kept")
            continue
        seed_dir.mkdir(parents=True, exist_ok=True)
        results[seed] = finetune_seed(cfg, plan, tokenizer, seed, seed_dir)

    for seed in cfg.seed_list:
        for path in sorted((cfg.out / seed_dir_name(seed)).rglob("*")):
            if path.is_file() and not path.relative_to(cfg.out).parts[1].startswith("checkpoint"):
                out.record_file(str(path.relative_to(cfg.out)))
    stats = summarise(results)
    headline = stats["summary"][task.metric]
    say(f"finetune: {task.name} {init} {cfg.method}: dev {task.metric} {headline['mean']:.4f} ± "
        f"{headline['std']:.4f} over {len(results)} seed(s), "
        f"{next(iter(results.values()))['trainable_share']:.2%} of parameters trained; {cfg.out}")
    extra = {"task": task.name, "kind": task.kind, "labels": list(task.labels), "metric": task.metric,
             "init": init, "method": cfg.method, "method_options": plan.method.to_dict(),
             "model": str(cfg.model_dir.resolve()), "learning_rate": cfg.lr, "seeds": cfg.seed_list,
             "train_examples": len(train), "dev_examples": len(task.dev)}
    return out.finish(stats=stats, extra=extra)


def finetune_seed(cfg: FinetuneConfig, plan: SeedPlan, tokenizer: Any, seed: int,
                  seed_dir: Path) -> dict[str, Any]:
    """Train (or resume) one seed, save its best model and dev predictions, then write result.json."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pretrain_cli.modeling.finetuned import save_finetuned
    from pretrain_cli.training.finetune_loop import CHECKPOINT, train_seed

    progress = Progress(TextColumn(f"seed {seed}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                        console=console, disable=not console.is_terminal, transient=True)
    resuming = (seed_dir / CHECKPOINT / "state.json").is_file()
    with progress:
        bar = progress.add_task("steps", total=plan.max_steps, status="resuming" if resuming else "")

        def report(**fields: Any) -> None:
            progress.update(bar, **fields)
            if "status" in fields and not console.is_terminal:  # logs get a line per evaluation instead
                step = progress.tasks[0].completed
                say(f"seed {seed} step {step:,.0f}/{plan.max_steps:,}: {fields['status']}")

        trained = train_seed(plan, seed, seed_dir, progress_bar=report)
    ft = trained.pop("ft")
    saved = seed_dir / ("model" if cfg.method == "full" else "adapter")
    shutil.rmtree(saved, ignore_errors=True)  # a kill between the save and result.json left a partial one
    save_finetuned(ft, tokenizer, saved, base_dir=None if cfg.random_init else cfg.model_dir)
    write_predictions(seed_dir / "dev_predictions.jsonl", plan.task, trained.pop("outputs"),
                      trained.pop("predicted"))
    result = {"seed": seed, "task": plan.task.name, "kind": plan.task.kind, "method": cfg.method,
              "init": "random" if cfg.random_init else "pretrained", "metric": plan.task.metric, **trained,
              "learning_rate": cfg.lr, "train_examples": len(plan.train.labels),
              "dev_examples": len(plan.dev.labels), "saved": saved.name}
    atomic_write_json(seed_dir / RESULT, result)  # from here on the seed counts as finished
    for leftover in seed_dir.glob(f"{CHECKPOINT}*"):  # the saved model supersedes the resume state
        shutil.rmtree(leftover, ignore_errors=True)
    say(f"seed {seed}: dev {plan.task.metric} {result['dev'][plan.task.metric]:.4f} (best of step "
        f"{result['best_step']}/{result['steps']}), {result['train_time_s']:.1f} s")
    return result


def summarise(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per-seed results and every dev metric's mean ± sample standard deviation (0 for one seed)."""
    from pretrain_cli.stages.evaluate import spread

    first = next(iter(results.values()))
    summary = {name: spread([r["dev"][name] for r in results.values()]) for name in first["dev"]}
    summary["dev_loss"] = spread([r["dev_loss"] for r in results.values()])
    return {"seeds": {str(seed): result for seed, result in results.items()}, "summary": summary,
            "train_time_s": sum(r["train_time_s"] for r in results.values())}


def write_predictions(path: Path, task: TaskData, outputs: list[Any], predicted: list[Any]) -> None:
    """One line per dev example, in dev order: gold and predicted labels and the raw outputs."""
    lines = []
    for index, (example, output, guess) in enumerate(zip(task.dev, outputs, predicted, strict=True)):
        record: dict[str, Any] = {"index": index, "text": example.text, "text_pair": example.text_pair}
        if task.kind == "regression":
            record |= {"label": float(example.label), "prediction": guess, "score": guess}
        elif task.kind == "tokens":
            record |= {"label": [task.labels[t] for t in example.label],
                       "prediction": [task.labels[t] for t in guess], "logits": output.tolist()}
        else:
            record |= {"label": task.labels[example.label], "prediction": task.labels[guess],
                       "logits": output.tolist()}
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    atomic_write_bytes(path, "".join(lines).encode())
