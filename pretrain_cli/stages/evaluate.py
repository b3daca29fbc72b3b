"""`ptk evaluate`: score pretrained checkpoints and fine-tunes side by side, in one report.

    ptk evaluate work/ckpt work/ft-full work/ft-lora work/ft-random --examples work/examples --out work/report

RUNS are `ptk pretrain` directories (CKPT, or its CKPT/final) and `ptk finetune` directories, in
any order. A pretrain run gets MLM accuracy and loss at the masked positions and NSP accuracy on the
held-out "valid" split of --examples, and its loss curve (loss.png). A fine-tune gets accuracy and
macro F1 as mean ± std over its seeds, its trainable share and train time, and its dev learning
curves (finetune_curves.png). Everything lands in report.json (every number), report.md (tables
and plots) and manifest.json.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import say
from pretrain_cli.errors import UserError
from pretrain_cli.store import Manifest, StageOutput, atomic_write_bytes, atomic_write_json, read_manifest

if TYPE_CHECKING:
    from transformers import BertForPreTraining

READS = ("pretrain", "finetune")
MANIFEST = "manifest.json"
REPORT_FILES = ("report.json", "report.md", "loss.png", "finetune_curves.png")


@dataclasses.dataclass(kw_only=True)
class EvaluateConfig(StageConfig):
    """Score pretrain and fine-tune runs; write report.json, report.md and plots."""

    stage: ClassVar[str] = "evaluate"

    runs: list[Path] = option(help="`ptk pretrain` outputs (CKPT or CKPT/final) and `ptk finetune` outputs.",
                              argument=True)
    out: Path = option(help="Report directory: report.json, report.md, loss.png, finetune_curves.png.",
                       hashed=False)
    examples: Path | None = option(None, "A `ptk mask` output whose valid split scores the pretrained "
                                         "checkpoints (MLM and NSP accuracy).")
    batch_size: int = option(64, "Examples per batch when scoring checkpoints.")
    title: str = option("ptk report", "Title of report.md.")

    def problems(self) -> list[str]:
        problems = [f"{run}: no such directory" for run in self.runs if not run.is_dir()]
        if not self.runs:
            problems.append("name at least one run directory to evaluate")
        if self.examples is not None and not self.examples.is_dir():
            problems.append(f"--examples {self.examples}: no such directory")
        if self.batch_size < 1:
            problems.append("--batch-size must be at least 1")
        return problems


def read_run(path: Path) -> Manifest:
    """The finished pretrain or fine-tune run at `path` (CKPT/final stands for its CKPT)."""
    directory = path
    if path.name == "final" and not (path / MANIFEST).is_file() and (path.parent / MANIFEST).is_file():
        directory = path.parent
    try:
        stage = json.loads((directory / MANIFEST).read_text())["stage"]
    except FileNotFoundError:
        raise UserError(f"{path}: no manifest.json, so not a finished `ptk pretrain` or `ptk finetune` run; "
                        f"finish that run first or fix the path") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{directory / MANIFEST}: unreadable; rerun the stage that wrote it with "
                        f"--force") from None
    if stage not in READS:
        raise UserError(f"{path} holds `ptk {stage}` output; ptk evaluate reads `ptk pretrain` and "
                        f"`ptk finetune` outputs")
    return read_manifest(directory, stage)


def run(cfg: EvaluateConfig) -> Manifest:
    cfg.validate()
    from pretrain_cli.stages.report import plot_finetune_curves, plot_pretrain_losses, render_markdown

    runs = [read_run(path) for path in cfg.runs]
    pretrains = [m for m in runs if m.stage == "pretrain"]
    finetunes = [m for m in runs if m.stage == "finetune"]
    examples = read_manifest(cfg.examples, "mask") if cfg.examples is not None else None
    if examples is not None and not pretrains:
        raise UserError(f"--examples {cfg.examples} scores pretrained checkpoints, but no `ptk pretrain` run "
                        f"is among the runs; add one or drop --examples")
    if examples is not None:
        for manifest in pretrains:
            check_examples_fit(manifest, examples)
    inputs = {f"run-{i}": m for i, m in enumerate(runs)} | ({"examples": examples} if examples else {})
    out = StageOutput(cfg, cfg.out, inputs=inputs, owned=REPORT_FILES)
    if (done := out.up_to_date()) is not None:
        return done

    report: dict[str, Any] = {
        "title": cfg.title, "examples": str(cfg.examples) if cfg.examples else None,
        "pretrain": [score_pretrain(m, examples, cfg.batch_size) for m in pretrains],
        "finetune": sorted((summarise_finetune(m) for m in finetunes), key=finetune_order), "figures": []}
    if pretrains:
        plot_pretrain_losses(report["pretrain"], cfg.out / "loss.png")
        report["figures"].append("loss.png")
    if finetunes:
        plot_finetune_curves(report["finetune"], cfg.out / "finetune_curves.png")
        report["figures"].append("finetune_curves.png")
    atomic_write_json(cfg.out / "report.json", report)
    atomic_write_bytes(cfg.out / "report.md", render_markdown(report).encode())
    for name in ["report.json", "report.md", *report["figures"]]:
        out.record_file(name)
    headlines = [*map(pretrain_headline, report["pretrain"]), *map(finetune_headline, report["finetune"])]
    for line in headlines:
        say(line)
    say(f"evaluate: report in {cfg.out / 'report.md'}")
    return out.finish(stats={"pretrain_runs": len(pretrains), "finetune_runs": len(finetunes),
                             "headlines": headlines})


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# Pretrained checkpoints.

def score_pretrain(manifest: Manifest, examples: Manifest | None, batch_size: int) -> dict[str, Any]:
    directory = Path(manifest.directory or ".")
    final = directory / manifest.extra.get("final", "final")
    record: dict[str, Any] = {
        "run": str(directory), "name": directory.name, "model": str(final),
        "steps": manifest.stats.get("steps"), "tokens": manifest.stats.get("tokens"),
        "train_loss": manifest.stats.get("loss"), "train_mlm_loss": manifest.stats.get("mlm_loss"),
        "train_nsp_loss": manifest.stats.get("nsp_loss"), "parameters": manifest.extra.get("num_parameters"),
        "curve": [{k: r.get(k) for k in ("step", "tokens", "loss", "mlm_loss", "nsp_loss")}
                  for r in read_jsonl(directory / "metrics.jsonl")]}
    if examples is not None:
        record.update(masked_lm_scores(final, examples, batch_size))
    return record


def check_examples_fit(manifest: Manifest, examples: Manifest) -> None:
    """Refuse examples made with another tokenizer than the checkpoint's, before any output is written."""
    directory = Path(manifest.directory or ".")
    theirs, ours = examples.extra.get("tokenizer_sha256"), manifest.extra.get("tokenizer_sha256")
    if theirs and ours and theirs != ours:
        raise UserError(f"--examples {examples.directory} was tokenized with another tokenizer than the "
                        f"checkpoint in {directory}; evaluate it on examples made with its own tokenizer")
    config = directory / manifest.extra.get("final", "final") / "config.json"
    if not config.is_file():
        raise UserError(f"{config.parent}: no config.json; the pretrain run's final checkpoint is missing, "
                        f"rerun `ptk pretrain` with --force")
    rows = json.loads(config.read_text()).get("vocab_size", 0)
    if examples.extra.get("vocab_size", 0) > rows:
        raise UserError(f"--examples {examples.directory} uses a vocabulary of "
                        f"{examples.extra['vocab_size']:,} tokens, larger than the {rows:,} rows of "
                        f"{config.parent}'s embedding; evaluate it on examples made with its own tokenizer")


def masked_lm_scores(final: Path, examples: Manifest, batch_size: int) -> dict[str, Any]:
    """MLM accuracy/loss over every masked position and NSP accuracy/loss over every pair of the
    examples' held-out valid split (the masking is the mask stage's, so every run sees the same)."""
    import numpy as np
    import torch

    from pretrain_cli.training.data import PairExamples

    model = load_pretrained(final)
    # ids beyond the checkpoint's embedding are refused here (check_examples_fit caught the usual case)
    valid = PairExamples.from_manifest(examples, "valid", vocab_size=model.config.vocab_size)
    pad_id = int(examples.extra.get("special_ids", {}).get("pad", model.config.pad_token_id or 0))
    order = np.argsort(valid.lengths(), kind="stable")  # similar lengths together: little padding
    totals = dict.fromkeys(("masked", "mlm_correct", "mlm_loss", "pairs", "nsp_correct", "nsp_loss"), 0.0)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = valid.collate(order[start:start + batch_size], pad_id)
            encoded = model.bert(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                 token_type_ids=batch.token_type_ids)
            # only the masked positions go through the vocabulary projection (most of the cost)
            masked_hidden = encoded.last_hidden_state[batch.mlm_rows, batch.mlm_cols]
            mlm_logits = model.cls.predictions(masked_hidden).float()
            cross_entropy = torch.nn.functional.cross_entropy
            totals["masked"] += batch.masked
            totals["mlm_correct"] += int((mlm_logits.argmax(-1) == batch.mlm_labels).sum())
            totals["mlm_loss"] += float(cross_entropy(mlm_logits, batch.mlm_labels, reduction="sum"))
            if batch.nsp_labels.numel():  # objective none has no sentence task to score
                nsp_logits = model.cls.seq_relationship(encoded.pooler_output).float()
                totals["pairs"] += batch.size
                totals["nsp_correct"] += int((nsp_logits.argmax(-1) == batch.nsp_labels).sum())
                totals["nsp_loss"] += float(cross_entropy(nsp_logits, batch.nsp_labels, reduction="sum"))
    masked, pairs = max(totals["masked"], 1), totals["pairs"]
    scores = {"mlm_accuracy": totals["mlm_correct"] / masked, "mlm_loss": totals["mlm_loss"] / masked,
              "masked_tokens": int(totals["masked"]), "valid_pairs": int(pairs)}
    if pairs:  # named nsp_* for SOP too: the same head and the same binary task
        scores |= {"nsp_accuracy": totals["nsp_correct"] / pairs, "nsp_loss": totals["nsp_loss"] / pairs,
                   "sentence_task": "SOP" if examples.extra.get("objective") == "mlm+sop" else "NSP"}
    return scores


def load_pretrained(final: Path) -> BertForPreTraining:
    import torch
    from transformers import AutoModelForPreTraining, BertForPreTraining

    from pretrain_cli.console import quiet_transformers

    with quiet_transformers():
        model = AutoModelForPreTraining.from_pretrained(final, use_safetensors=True, dtype=torch.float32)
    if not isinstance(model, BertForPreTraining):
        raise UserError(f"{final}: a {type(model).__name__}, but MLM/NSP scoring needs a BertForPreTraining")
    return model.eval()


def pretrain_headline(record: dict[str, Any]) -> str:
    line = f"pretrain {record['name']}: {record['steps'] or 0:,} steps, {record['tokens'] or 0:,} tokens"
    if "mlm_accuracy" in record:
        line += f"; MLM accuracy {record['mlm_accuracy']:.4f} (loss {record['mlm_loss']:.4f})"
        if "nsp_accuracy" in record:
            line += (f", {record['sentence_task']} accuracy {record['nsp_accuracy']:.4f} on "
                     f"{record['valid_pairs']:,} held-out pairs")
    return line


# Fine-tunes.

def summarise_finetune(manifest: Manifest) -> dict[str, Any]:
    """One fine-tune directory = one (task, init, method) group over its seeds."""
    directory = Path(manifest.directory or ".")
    extra, stats = manifest.extra, manifest.stats
    seeds = sorted(stats["seeds"], key=int)
    per_seed = [stats["seeds"][s] for s in seeds]

    def mean(key: str) -> float:
        return sum(r[key] for r in per_seed) / len(per_seed)

    return {"run": str(directory), "name": directory.name, "task": extra["task"], "model": extra["model"],
            "init": extra["init"], "method": extra["method"], "seeds": [int(s) for s in seeds],
            "accuracy_mean": stats["accuracy_mean"], "accuracy_std": stats["accuracy_std"],
            "macro_f1_mean": stats["macro_f1_mean"], "macro_f1_std": stats["macro_f1_std"],
            "trainable_params": per_seed[0]["trainable_params"], "trainable_share": mean("trainable_share"),
            "train_time_s_mean": mean("train_time_s"), "learning_rate": extra["learning_rate"],
            "train_examples": extra["train_examples"], "dev_examples": extra["dev_examples"],
            "per_seed": per_seed,
            "curves": {s: read_jsonl(directory / f"seed-{s}" / "metrics.jsonl") for s in seeds}}


def finetune_order(record: dict[str, Any]) -> tuple[str, str, bool, str, str]:
    """Rows by task and base model, the pretrained init before its random baseline, full before lora."""
    return record["task"], record["model"], record["init"] != "pretrained", record["method"], record["name"]


def finetune_headline(record: dict[str, Any]) -> str:
    return (f"finetune {record['name']}: {record['task']} {record['init']} {record['method']}: accuracy "
            f"{record['accuracy_mean']:.4f} ± {record['accuracy_std']:.4f}, macro F1 "
            f"{record['macro_f1_mean']:.4f} ± {record['macro_f1_std']:.4f} over {len(record['seeds'])} "
            f"seed(s), {record['trainable_share']:.2%} trainable")
