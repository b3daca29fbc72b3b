"""`ptk evaluate`: score pretrained checkpoints and fine-tunes side by side, in one report.

    ptk evaluate work/ckpt work/ft-full work/ft-lora work/ft-random --examples work/examples --out work/report
    ptk evaluate work/ft-* --compare --out work/compare
    ptk evaluate --embeddings work/simcse work/mlm sample:minilm --sts sts-dev.csv --out work/embeddings

RUNS are `ptk pretrain` directories (CKPT, or its CKPT/final) and `ptk finetune` directories, in
any order. A pretrain run gets MLM accuracy and loss at the masked positions and NSP accuracy on the
held-out "valid" split of --examples, and its loss curve. A fine-tune (one task, init and method
over one or more seeds) gets every dev metric as mean ± std over its seeds (its task's primary
metric first), its trainable parameters, train time per seed and per step, its dev learning curves,
and a task-specific view of its dev predictions (summed or averaged over seeds).

What lands in --out:

    report.json           every number below (fine-tunes sorted by task, then primary metric, best first)
    report.md             the comparison table, per-run metric tables, pretrain table, the plots
    compare.md            --compare only: the comparison table alone (also printed on stdout)
    finetune_curves.png   per task: primary dev metric and dev loss against step, per run the mean
                          over seeds with a min-max band
    confusion-RUN.png     classification runs: dev confusion matrix, counts summed over seeds
    scatter-RUN.png       regression runs: dev prediction against gold score, every seed
    loss.png              pretrain runs: training loss curves
    manifest.json         written last

Token-classification (NER) runs get a per-entity-type precision/recall/F1 table in report.md instead
of a figure. RUN is the fine-tune directory's name (with parent directories where two names clash).

With --embeddings every RUN is an encoder instead, and the report scores its sentence embeddings
(linear probe, kNN, alignment, uniformity, STS): see `stages.embedding_eval`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import say
from pretrain_cli.errors import UserError
from pretrain_cli.store import Manifest, StageOutput, atomic_write_bytes, atomic_write_json, read_manifest

if TYPE_CHECKING:
    from transformers import BertForPreTraining

READS = ("pretrain", "finetune")
MANIFEST = "manifest.json"
# every name this stage writes in --out (globs): --force clears them, and only them
OWNED = ("report.json", "report.md", "compare.md", "loss.png", "finetune_curves.png", "confusion-*.png",
         "scatter-*.png")
# what a fine-tune manifest and each seed's result hold since per-task metrics (older ones lack them)
FINETUNE_EXTRA = ("task", "kind", "labels", "metric", "init", "method", "model", "learning_rate",
                  "train_examples", "dev_examples")
FINETUNE_STATS = ("seeds", "summary")
SEED_RESULT = ("dev", "trainable_params", "total_params", "trainable_share", "train_time_s",
               "time_per_step_s")
EMBEDDING_PROBES = ("rotten_tomatoes", "wiki_topics")  # --embeddings' default --probe-tasks
EMBEDDING_OPTIONS = ("embeddings", "sts", "pooling", "probe_tasks", "limit")  # read by --embeddings only


@dataclasses.dataclass(kw_only=True)
class EvaluateConfig(StageConfig):
    """Score pretrain and fine-tune runs, or sentence embeddings; write report.json, report.md and plots."""

    stage: ClassVar[str] = "evaluate"

    runs: list[Path] = option(help="`ptk pretrain` outputs (CKPT or CKPT/final) and `ptk finetune` outputs; "
                                   "with --embeddings, encoders.", argument=True)
    out: Path = option(help="Report directory: report.json, report.md, compare.md and the PNG plots.",
                       hashed=False)
    examples: Path | None = option(None, "A `ptk mask` output whose valid split scores the pretrained "
                                         "checkpoints (MLM and NSP accuracy).")
    compare: bool = option(False, "Also write compare.md, one table across the fine-tune runs (primary "
                                  "metric mean ± std, trainable share, time), and print it.")
    batch_size: int = option(64, "Examples per batch when scoring checkpoints (MLM/NSP); --embeddings "
                                 "encodes 128 sentences at a time.")
    title: str = option("ptk report", "Title of report.md.")
    embeddings: bool = option(False, "Score sentence embeddings instead: every RUN is an encoder (a `ptk "
                                     "pretrain` output or step-* checkpoint, an HF BERT or sentence-"
                                     "transformers directory, sample:minilm); linear probe, kNN, alignment, "
                                     "uniformity and --sts Spearman.")
    sts: list[Path] = option([], "With --embeddings: an STS file to score (repeatable): GLUE STS-B TSV, the "
                                 "STS benchmark's own files, or CSV/JSONL with sentence1, sentence2, score.")
    pooling: Literal["auto", "cls", "mean"] = option(
        "auto", "With --embeddings: auto (what each model records; mean where it says nothing), cls or mean.")
    probe_tasks: list[str] = option(list(EMBEDDING_PROBES),
                                    "With --embeddings: a shipped classification task to probe (repeatable).")
    limit: int = option(0, "With --embeddings: at most this many examples per split and STS file, for quick "
                           "checks (0: all).")

    def problems(self) -> list[str]:
        if self.embeddings:
            from pretrain_cli.stages.embedding_eval import embedding_problems

            problems = embedding_problems(self)
        else:
            problems = [f"{run}: no such directory" for run in self.runs if not run.is_dir()]
            problems += [f"{flag} goes with --embeddings; add it or drop {flag}" for flag, used in (
                ("--sts", bool(self.sts)), ("--pooling", self.pooling != "auto"),
                ("--probe-tasks", list(self.probe_tasks) != list(EMBEDDING_PROBES)),
                ("--limit", self.limit != 0)) if used]
        if not self.runs:
            problems.append("name at least one run directory to evaluate")
        resolved = [run.resolve() for run in self.runs]
        problems += [f"{run}: named twice; name each run once"
                     for i, run in enumerate(self.runs) if resolved[i] in resolved[:i]]
        if self.examples is not None and not self.examples.is_dir():
            problems.append(f"--examples {self.examples}: no such directory")
        if self.batch_size < 1:
            problems.append("--batch-size must be at least 1")
        return problems

    def inactive(self) -> tuple[str, ...]:
        return () if self.embeddings else EMBEDDING_OPTIONS


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
    manifest = read_manifest(directory, stage)
    if stage == "finetune":
        check_finetune(manifest)
    return manifest


def check_finetune(manifest: Manifest) -> None:
    """Refuse a fine-tune written before per-task metrics existed, before any output is written."""
    missing = [k for k in FINETUNE_EXTRA if k not in manifest.extra]
    missing += [k for k in FINETUNE_STATS if k not in manifest.stats]
    results = manifest.stats.get("seeds") or {}
    missing += sorted({k for r in results.values() for k in SEED_RESULT if k not in r})
    if missing:
        raise UserError(f"{manifest.directory}: a fine-tune written by an older ptk (its manifest has no "
                        f"{', '.join(missing)}); rerun that `ptk finetune` with --force")


def run(cfg: EvaluateConfig) -> Manifest:
    cfg.validate()
    if cfg.embeddings:
        from pretrain_cli.stages import embedding_eval

        return embedding_eval.run(cfg)
    from pretrain_cli.stages.report import (
        compare_markdown,
        compare_table,
        plot_confusion,
        plot_finetune_curves,
        plot_pretrain_losses,
        plot_scatter,
        render_markdown,
    )

    runs = [read_run(path) for path in cfg.runs]
    pretrains = [m for m in runs if m.stage == "pretrain"]
    finetunes = [m for m in runs if m.stage == "finetune"]
    if cfg.compare and not finetunes:
        raise UserError("--compare compares `ptk finetune` runs, but none of RUNS is one; add a fine-tune "
                        "directory or drop --compare")
    examples = read_manifest(cfg.examples, "mask") if cfg.examples is not None else None
    if examples is not None and not pretrains:
        raise UserError(f"--examples {cfg.examples} scores pretrained checkpoints, but no `ptk pretrain` run "
                        f"is among the runs; add one or drop --examples")
    if examples is not None:
        for manifest in pretrains:
            check_examples_fit(manifest, examples)
    # fine-tune files are read (and any bad one refused) before a byte of output is written
    names = run_names([Path(m.directory or ".") for m in finetunes])
    finetuned = sorted((summarise_finetune(m, name) for m, name in zip(finetunes, names, strict=True)),
                       key=compare_order)
    inputs = {f"run-{i}": m for i, m in enumerate(runs)} | ({"examples": examples} if examples else {})
    out = StageOutput(cfg, cfg.out, inputs=inputs, owned=OWNED)
    if (done := out.up_to_date()) is not None:
        if cfg.compare:  # the table is the command's output, up to date or not
            print(compare_table(finetuned))
        return done

    report: dict[str, Any] = {
        "title": cfg.title, "examples": str(cfg.examples) if cfg.examples else None,
        "pretrain": [score_pretrain(m, examples, cfg.batch_size) for m in pretrains],
        "finetune": finetuned, "figures": []}
    if pretrains:
        plot_pretrain_losses(report["pretrain"], cfg.out / "loss.png")
        report["figures"].append("loss.png")
    if finetunes:
        plot_finetune_curves(report["finetune"], cfg.out / "finetune_curves.png")
        report["figures"].append("finetune_curves.png")
    for record in report["finetune"]:
        if record["figure"] is not None:
            plot = plot_confusion if record["kind"] == "classification" else plot_scatter
            plot(record, cfg.out / record["figure"])
            report["figures"].append(record["figure"])
    atomic_write_json(cfg.out / "report.json", report)
    atomic_write_bytes(cfg.out / "report.md", render_markdown(report).encode())
    written = ["report.json", "report.md", *report["figures"]]
    if cfg.compare:
        atomic_write_bytes(cfg.out / "compare.md", compare_markdown(report).encode())
        written.append("compare.md")
    for name in written:
        out.record_file(name)
    headlines = [*map(pretrain_headline, report["pretrain"]), *map(finetune_headline, report["finetune"])]
    for line in headlines:
        say(line)
    say(f"evaluate: report in {cfg.out / 'report.md'}")
    if cfg.compare:
        print(compare_table(report["finetune"]))  # stdout, so `ptk evaluate --compare ... > table.md` works
    return out.finish(stats={"pretrain_runs": len(pretrains), "finetune_runs": len(finetunes),
                             "headlines": headlines})


def read_jsonl(path: Path, *, required: bool) -> list[dict[str, Any]]:
    """The records of a JSON-lines file a run wrote; [] for a missing file that is not `required`."""
    if not path.is_file():
        if required:
            raise UserError(f"{path}: missing, so the run is incomplete; rerun the stage that wrote it "
                            f"with --force")
        return []
    records = []
    # "\n" only: splitlines() also breaks at U+2028 and U+0085, which texts hold raw (ensure_ascii off)
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise UserError(f"{path}: line {number} is not JSON; rerun the stage that wrote it with "
                            f"--force") from None
    return records


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
                  for r in read_jsonl(directory / "metrics.jsonl", required=False)]}
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

# the metrics worth a column per task kind, in the order they are shown (after the primary metric)
KEY_METRICS = {"classification": ("accuracy", "macro_f1", "f1", "mcc"),
               "regression": ("spearman", "pearson", "mse"),
               "tokens": ("entity_f1", "entity_precision", "entity_recall", "token_accuracy")}


def run_names(directories: list[Path]) -> list[str]:
    """Each fine-tune's name: its directory's name, with as many parents as it takes to be unique."""
    parts = [d.resolve().parts for d in directories]
    for depth in range(1, max(map(len, parts), default=1) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    raise AssertionError("the runs are distinct directories, so their full paths differ")


def file_stem(name: str) -> str:
    """A run name as part of a file name: no path separators, nothing a Markdown link would trip on."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def spread(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value), as the fine-tune stage summarises seeds."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise_finetune(manifest: Manifest, name: str) -> dict[str, Any]:
    """One fine-tune directory = one (task, init, method) group over its seeds."""
    directory = Path(manifest.directory or ".")
    extra, stats = manifest.extra, manifest.stats
    seeds = sorted(stats["seeds"], key=int)
    per_seed = [stats["seeds"][s] for s in seeds]
    kind, labels, primary = extra["kind"], tuple(extra["labels"]), extra["metric"]
    summary = stats["summary"]
    key = [m for m in KEY_METRICS[kind] if m in summary and m != primary]
    # a token task's per-type F1 (f1_<type>) shows in its entity-type table, with precision and recall
    rest = sorted(m for m in set(summary) - {primary, *key} if not (kind == "tokens" and m.startswith("f1_")))
    metrics = [primary, *key, *rest]
    predictions = {s: read_jsonl(directory / f"seed-{s}" / "dev_predictions.jsonl", required=True)
                   for s in seeds}
    record: dict[str, Any] = {
        "run": str(directory), "name": name, "task": extra["task"], "kind": kind, "labels": list(labels),
        "metric": primary, "metrics": metrics, "key_metrics": key, "summary": summary,
        "init": extra["init"], "method": extra["method"], "method_options": extra.get("method_options", {}),
        "model": extra["model"], "learning_rate": extra["learning_rate"], "seeds": [int(s) for s in seeds],
        "train_examples": extra["train_examples"], "dev_examples": extra["dev_examples"],
        "trainable_params": per_seed[0]["trainable_params"], "total_params": per_seed[0]["total_params"],
        "trainable_share": statistics.fmean(r["trainable_share"] for r in per_seed),
        "train_time_s_mean": statistics.fmean(r["train_time_s"] for r in per_seed),
        "time_per_step_s_mean": statistics.fmean(r["time_per_step_s"] for r in per_seed),
        "per_seed": per_seed,
        "curves": {s: read_jsonl(directory / f"seed-{s}" / "metrics.jsonl", required=True) for s in seeds},
        "figure": None}
    if kind == "classification":
        record["confusion"] = summed_confusion(directory, labels, predictions)
        record["figure"] = f"confusion-{file_stem(name)}.png"
    elif kind == "regression":
        gold = [float(r["label"]) for r in predictions[seeds[0]]]
        record["points"] = {"gold": gold,
                            "predicted": {s: [float(r["prediction"]) for r in rows]
                                          for s, rows in predictions.items()}}
        record["figure"] = f"scatter-{file_stem(name)}.png"
    else:
        record["entity_types"] = entity_type_scores(directory, labels, predictions)
    return record


def label_indices(path: Path, rows: list[dict[str, Any]], key: str, labels: tuple[str, ...]) -> list:
    """The `key` column of dev_predictions as label indices (a tag list per row for token tasks)."""
    index = {label: i for i, label in enumerate(labels)}
    values = []
    for number, row in enumerate(rows, start=1):
        names = row[key] if isinstance(row[key], list) else [row[key]]
        unknown = [n for n in names if n not in index]
        if unknown:
            raise UserError(f"{path}: line {number}: {key} {unknown[0]!r} is not one of the run's labels "
                            f"({', '.join(labels)}); rerun that `ptk finetune` with --force")
        indices = [index[n] for n in names]
        values.append(indices if isinstance(row[key], list) else indices[0])
    return values


def summed_confusion(directory: Path, labels: tuple[str, ...],
                     predictions: dict[str, list[dict[str, Any]]]) -> list[list[int]]:
    """Counts [gold][predicted] over every seed's dev predictions."""
    from pretrain_cli.tasks.metrics import confusion_matrix

    total = [[0] * len(labels) for _ in labels]
    for seed, rows in predictions.items():
        path = directory / f"seed-{seed}" / "dev_predictions.jsonl"
        gold, predicted = (label_indices(path, rows, key, labels) for key in ("label", "prediction"))
        for row, counts in zip(total, confusion_matrix(gold, predicted, len(labels)), strict=True):
            row[:] = [a + b for a, b in zip(row, counts, strict=True)]
    return total


def entity_types(labels: tuple[str, ...]) -> list[str]:
    """The entity types of BIO tags, in tag order: ("O", "B-person", "I-person", ...) → ["person", ...]."""
    return list(dict.fromkeys(tag[2:] for tag in labels if tag[:2] in ("B-", "I-")))


def entity_type_scores(directory: Path, labels: tuple[str, ...],
                       predictions: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per entity type: exact-span precision, recall and F1 as mean ± std over seeds.

    Scored by `task_scores` with every other type's tags turned into "O": in BIO a span of one type
    ends wherever another type's tag or O begins, so that leaves this type's spans exactly as they were.
    """
    from pretrain_cli.tasks.metrics import task_scores

    if "O" not in labels:
        raise UserError(f"{directory / MANIFEST}: the token task's labels have no \"O\" tag; rerun that "
                        f"`ptk finetune` with --force")
    outside = labels.index("O")
    sequences = {}
    for seed, rows in predictions.items():
        path = directory / f"seed-{seed}" / "dev_predictions.jsonl"
        sequences[seed] = [label_indices(path, rows, key, labels) for key in ("label", "prediction")]
    table = []
    for entity in entity_types(labels):
        keep = {i for i, tag in enumerate(labels) if tag[:2] in ("B-", "I-") and tag[2:] == entity}
        per_seed = []
        for gold, predicted in sequences.values():
            gold_only, predicted_only = ([[i if i in keep else outside for i in tags] for tags in side]
                                         for side in (gold, predicted))
            per_seed.append(task_scores("tokens", labels, gold_only, predicted_only))
        table.append({"type": entity,
                      **{name: spread([s[f"entity_{name}"] for s in per_seed])
                         for name in ("precision", "recall", "f1")}})
    return table


def compare_order(record: dict[str, Any]) -> tuple[str, float, str]:
    """Rows by task, then the task's primary metric, best first."""
    return record["task"], -record["summary"][record["metric"]]["mean"], record["name"]


def finetune_headline(record: dict[str, Any]) -> str:
    score = record["summary"][record["metric"]]
    return (f"finetune {record['name']}: {record['task']} {record['init']} {record['method']}: "
            f"{record['metric']} {score['mean']:.4f} ± {score['std']:.4f} over {len(record['seeds'])} "
            f"seed(s), {record['trainable_share']:.2%} trainable, {record['train_time_s_mean']:.1f} s per "
            f"seed ({record['time_per_step_s_mean']:.3f} s per step)")
