"""The evaluate stage's rendering: report.json's records → Markdown tables and matplotlib PNGs.

    atomic_write_bytes(out / "report.md", render_markdown(report).encode())
    atomic_write_bytes(out / "compare.md", compare_markdown(report).encode())
    print(compare_table(report["finetune"]))
    plot_pretrain_losses(report["pretrain"], out / "loss.png")
    plot_finetune_curves(report["finetune"], out / "finetune_curves.png")
    plot_confusion(record, out / record["figure"])   # classification fine-tune
    plot_scatter(record, out / record["figure"])     # regression fine-tune
    atomic_write_bytes(out / "report.md", embeddings_markdown(report).encode())   # --embeddings
    print(embeddings_table(report["embeddings"]))

Rendering only: every number is computed by `stages.evaluate` and stored in report.json first.
Scores show in points (×100, as GLUE reports them); MSE stays in the label's own units.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pretrain_cli.store import atomic_write_bytes

RAW_METRICS = ("mse", "dev_loss")  # not 0–1 scores: shown as they are, never ×100
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro F1", "f1": "F1", "mcc": "MCC",
                "pearson": "Pearson", "spearman": "Spearman", "mse": "MSE", "entity_f1": "entity F1",
                "entity_precision": "entity precision", "entity_recall": "entity recall",
                "token_accuracy": "token accuracy", "dev_loss": "dev loss"}
ANNOTATE_MAX = 12  # confusion matrices up to this many labels get a count in every cell
SCORES_NOTE = ("Dev-set scores in points (×100; MSE in the label's units), mean ± sample standard deviation "
               "over seeds; each seed keeps its best dev checkpoint by the task's primary metric. `random` "
               "init is the same architecture and tokenizer with freshly initialised weights.")

EMBEDDINGS_NOTE = ("Probe: dev accuracy of a logistic regression on the frozen embeddings; kNN: dev "
                   "accuracy of a cosine k-nearest-neighbour vote against train (both in points). Alignment: "
                   "mean squared distance between the normalised embeddings of positive pairs (a Wikipedia "
                   "article's short description and its first sentence); uniformity: log mean exp(−2 × "
                   "squared distance) over pairs of dev sentences; lower is better for both. STS: Spearman "
                   "correlation (points) between cosine similarity and the gold score. Seeds of one "
                   "pretraining config: mean ± sample standard deviation.")


def metric_name(metric: str) -> str:
    if metric.startswith("f1_"):  # per entity type, from token tasks
        return f"F1 {metric[3:]}"
    return METRIC_NAMES.get(metric, metric.replace("_", " "))


def _scale(metric: str) -> float:
    return 1.0 if metric in RAW_METRICS else 100.0


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if metric in RAW_METRICS else f"{100 * value:.1f}"


def _mean_std(metric: str, stat: dict[str, float]) -> str:
    return f"{_value(metric, stat['mean'])} ± {_value(metric, stat['std'])}"


def _number(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _count(n: int) -> str:
    """Parameter counts as people say them: 4,385 · 297.5K · 109.5M."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _share(share: float) -> str:
    """Trainable share in %, with the digits that tell 0.09% (bitfit) from 0.01% (prompt tuning)."""
    percent = 100 * share
    return f"{percent:.2f}" if percent >= 0.1 else f"{percent:.3f}"


def compare_table(runs: list[dict[str, Any]]) -> str:
    """One Markdown table across fine-tune runs, in the order given (evaluate sorts them by task, then
    primary metric, best first). Runs with different primary metrics name theirs in each cell."""
    shared = len({r["metric"] for r in runs}) == 1
    header = metric_name(runs[0]["metric"]) if shared else "metric"
    lines = [f"| run | task | method | init | trainable params | trainable % | {header} | other metrics | "
             f"seeds | time per seed |", "|---|---|---|---|---:|---:|---:|---|---:|---:|"]
    for r in runs:
        primary = _mean_std(r["metric"], r["summary"][r["metric"]])
        if not shared:
            primary = f"{metric_name(r['metric'])} {primary}"
        others = ", ".join(f"{metric_name(m)} {_mean_std(m, r['summary'][m])}" for m in r["key_metrics"])
        lines.append(f"| {r['name']} | {r['task']} | {r['method']} | {r['init']} | "
                     f"{_count(r['trainable_params'])} | {_share(r['trainable_share'])} | {primary} | "
                     f"{others or '–'} | {len(r['seeds'])} | {r['train_time_s_mean']:.1f} s |")
    return "\n".join(lines)


def compare_markdown(report: dict[str, Any]) -> str:
    return "\n".join([f"# {report['title']}: fine-tune comparison", "", SCORES_NOTE, "",
                      compare_table(report["finetune"]), ""])


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# {report['title']}", ""]
    if report["finetune"]:
        lines += ["## Fine-tuning", "", SCORES_NOTE, "", compare_table(report["finetune"]), ""]
        if "finetune_curves.png" in report["figures"]:
            lines += ["![dev learning curves while fine-tuning](finetune_curves.png)", ""]
        for r in report["finetune"]:
            lines += _finetune_section(r)
    if report["pretrain"]:
        lines += ["## Pretrained checkpoints", ""]
        if report["examples"]:
            lines += [f"MLM and NSP (or SOP) scores on the held-out valid split of `{report['examples']}`.",
                      ""]
        lines += ["| run | steps | tokens | train loss | MLM accuracy (%) | MLM loss | "
                  "NSP/SOP accuracy (%) | masked tokens |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in report["pretrain"]:
            lines.append(f"| {r['name']} | {_number(r['steps'], ',')} | {_number(r['tokens'], ',')} | "
                         f"{_number(r['train_loss'], '.4f')} | {_percent(r.get('mlm_accuracy'))} | "
                         f"{_number(r.get('mlm_loss'), '.4f')} | {_percent(r.get('nsp_accuracy'))} | "
                         f"{_number(r.get('masked_tokens'), ',')} |")
        lines.append("")
        if "loss.png" in report["figures"]:
            lines += ["![pretraining loss](loss.png)", ""]
    return "\n".join(lines)


def _embedding_column(column: str) -> str:
    """`probe_accuracy/rotten_tomatoes` → `rotten_tomatoes probe`, `sts_spearman/dev.tsv` → `STS dev.tsv`."""
    kind, _, of = column.partition("/")
    return {"probe_accuracy": f"{of} probe", "knn_accuracy": f"{of} kNN", "sts_spearman": f"STS {of}",
            "sts_alignment": f"STS {of} alignment"}.get(kind, kind)


def _embedding_value(column: str, value: float) -> str:
    """Accuracies and Spearman in points; alignment and uniformity (distances) as they are."""
    return f"{value:.3f}" if "alignment" in column or column == "uniformity" else f"{100 * value:.1f}"


def embeddings_table(section: dict[str, Any]) -> str:
    """One Markdown table: a row per run, then a mean ± std row per group of seeds. STS alignment
    stays in report.json: the table keeps to one number per STS file."""
    columns = [c for c in section["columns"] if not c.startswith("sts_alignment/")]
    lines = ["| run | pooling | dim | " + " | ".join(map(_embedding_column, columns)) + " |",
             "|---|---|---:|" + "---:|" * len(columns)]
    for r in section["runs"]:
        cells = " | ".join(_embedding_value(c, r["metrics"][c]) for c in columns)
        lines.append(f"| {r['name']} | {r['pooling']} | {r['dims']} | {cells} |")
    for g in section["groups"]:
        cells = " | ".join(f"{_embedding_value(c, g['metrics'][c]['mean'])} ± "
                           f"{_embedding_value(c, g['metrics'][c]['std'])}" for c in columns)
        lines.append(f"| {', '.join(g['runs'])}: mean ± std | {g['pooling']} | {g['dims']} | {cells} |")
    return "\n".join(lines)


def embeddings_markdown(report: dict[str, Any]) -> str:
    section = report["embeddings"]
    tasks = ", ".join(f"`{t['task']}` ({t['train_examples']:,} train / {t['dev_examples']:,} dev, "
                      f"{t['labels']} labels)" for t in section["probe_tasks"])
    sts = "".join(f" STS `{s['name']}`: {s['pairs']:,} pairs, {s['positive_pairs']:,} in the top 20% of "
                  f"its score range for alignment." for s in section["sts"])
    lines = [f"# {report['title']}", "", "## Sentence embeddings", "", EMBEDDINGS_NOTE, "",
             embeddings_table(section), "",
             f"Probe tasks: {tasks}. kNN: k = {section['knn_k']}. Alignment over "
             f"{section['alignment_pairs']:,} Wikipedia pairs; uniformity over "
             f"{section['uniformity_sentences']:,} dev sentences.{sts}"
             + (f" At most {section['limit']:,} examples per split (--limit)." if section["limit"] else ""),
             ""]
    return "\n".join(lines)


def _finetune_section(r: dict[str, Any]) -> list[str]:
    """One run: what was trained, every metric per seed, and its task-specific view of dev."""
    what = {"classification": f", {len(r['labels'])} labels", "regression": "",
            "tokens": f", {len(r.get('entity_types', []))} entity types"}[r["kind"]]
    options = ", ".join(f"{k}={v}" for k, v in sorted(r["method_options"].items()) if k != "name")
    best = ", ".join(f"{s['best_step']}/{s['steps']}" for s in r["per_seed"])
    lines = [f"### {r['name']}", "",
             f"`{r['task']}` ({r['kind']}{what}) · {r['init']} init · {r['method']}"
             f"{f' ({options})' if options else ''} · learning rate {r['learning_rate']:g} · "
             f"{r['train_examples']:,} train / {r['dev_examples']:,} dev examples · base `{r['model']}`", "",
             f"Trainable parameters: {r['trainable_params']:,} of {r['total_params']:,} "
             f"({_share(r['trainable_share'])}%). Train time {r['train_time_s_mean']:.1f} s per seed, "
             f"{1000 * r['time_per_step_s_mean']:.1f} ms per step; best dev step per seed: {best}.", "",
             "| metric | mean ± std | " + " | ".join(f"seed {s}" for s in r["seeds"]) + " |",
             "|---|---:|" + "---:|" * len(r["seeds"])]
    for metric in r["metrics"]:
        label = f"**{metric_name(metric)}** (primary)" if metric == r["metric"] else metric_name(metric)
        # dev metrics live in a seed's "dev", its dev loss beside it
        seeds = " | ".join(_value(metric, s["dev"].get(metric, s.get(metric))) for s in r["per_seed"])
        lines.append(f"| {label} | {_mean_std(metric, r['summary'][metric])} | {seeds} |")
    lines.append("")
    if r["kind"] == "tokens":
        lines += ["Per entity type (exact span and type match):", "",
                  "| entity type | precision | recall | F1 |", "|---|---:|---:|---:|"]
        lines += [f"| {t['type']} | {_mean_std('precision', t['precision'])} | "
                  f"{_mean_std('recall', t['recall'])} | {_mean_std('f1', t['f1'])} |"
                  for t in r["entity_types"]]
        lines.append("")
    elif r["figure"] is not None:
        caption = "dev confusion matrix" if r["kind"] == "classification" else "dev prediction against gold"
        lines += [f"![{r['name']}: {caption}]({r['figure']})", ""]
    return lines


def _save(figure: Any, path: Path) -> None:
    buffer = io.BytesIO()
    # no Software/date metadata, so the same numbers make the same file
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())


def plot_pretrain_losses(runs: list[dict[str, Any]], path: Path) -> None:
    """Total, MLM and NSP training loss against step, one colour per run."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, PNGs render with Agg

    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    for index, run in enumerate(runs):
        colour = f"C{index}"
        steps = [r["step"] for r in run["curve"]]
        for key, style in (("loss", "-"), ("mlm_loss", "--"), ("nsp_loss", ":")):
            values = [r[key] for r in run["curve"]]
            if any(v is not None for v in values):
                axes.plot(steps, values, style, color=colour, label=f"{run['name']} {key.replace('_', ' ')}")
    axes.set_xlabel("step")
    axes.set_ylabel("training loss")
    axes.set_title("Pretraining loss")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    _save(figure, path)


def seed_band(curves: dict[str, list[dict[str, Any]]], key: str, scale: float
          ) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps and the mean, min and max of `key` over the seeds evaluated at each step (a seed that
    stopped early leaves the later steps to the others)."""
    by_step: dict[int, list[float]] = {}
    for curve in curves.values():
        for row in curve:
            if row.get(key) is not None:
                by_step.setdefault(row["step"], []).append(scale * row[key])
    steps = sorted(by_step)
    return (steps, [sum(by_step[s]) / len(by_step[s]) for s in steps], [min(by_step[s]) for s in steps],
            [max(by_step[s]) for s in steps])


def plot_finetune_curves(runs: list[dict[str, Any]], path: Path) -> None:
    """Per task (one row of panels): the primary dev metric and the dev loss against step, per run the
    mean over seeds with a min–max band."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, PNGs render with Agg

    tasks = sorted({run["task"] for run in runs})
    figure = Figure(figsize=(12, 3.8 * len(tasks)), layout="constrained")
    panels = figure.subplots(len(tasks), 2, squeeze=False)
    for (score_panel, loss_panel), task in zip(panels, tasks, strict=True):
        members = [r for r in runs if r["task"] == task]
        metrics = {r["metric"] for r in members}
        for index, run in enumerate(members):
            colour, label = f"C{index}", f"{run['name']} ({run['init']}, {run['method']})"
            for panel, key, scale in ((score_panel, f"dev_{run['metric']}", _scale(run["metric"])),
                                      (loss_panel, "dev_loss", 1.0)):
                steps, mean, low, high = seed_band(run["curves"], key, scale)
                panel.plot(steps, mean, "-o", markersize=3, color=colour, label=label)
                if len(run["seeds"]) > 1:
                    panel.fill_between(steps, low, high, color=colour, alpha=0.2, linewidth=0)
        name = metric_name(metrics.pop()) if len(metrics) == 1 else "primary metric"
        score_panel.set_title(f"{task}: dev {name} (mean over seeds, min–max band)")
        score_panel.set_ylabel(f"dev {name}" + ("" if name == "MSE" else " (points)"))
        loss_panel.set_title(f"{task}: dev loss")
        loss_panel.set_ylabel("dev loss")
        for panel in (score_panel, loss_panel):
            panel.set_xlabel("step")
            panel.grid(alpha=0.3)
        score_panel.legend(fontsize=8)
    _save(figure, path)


def plot_confusion(run: dict[str, Any], path: Path) -> None:
    """Rows = gold, columns = predicted; colour = share of the gold row, counts (summed over seeds) in
    the cells up to ANNOTATE_MAX labels, and the row share too for up to four."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, PNGs render with Agg

    counts = run["confusion"]
    labels = [label if len(label) <= 30 else label[:29] + "…" for label in run["labels"]]
    n = len(labels)
    shares = [[c / max(sum(row), 1) for c in row] for row in counts]
    side = max(4.0, 0.6 * n + 2.5)
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the gold row")
    axes.set_xticks(range(n), labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
    axes.set_yticks(range(n), labels)
    if n <= ANNOTATE_MAX:
        for g in range(n):
            for p in range(n):
                text = f"{counts[g][p]:,}" + (f"\n{shares[g][p]:.0%}" if n <= 4 else "")
                axes.text(p, g, text, ha="center", va="center", fontsize=10 if n <= 6 else 7,
                          color="white" if shares[g][p] > 0.5 else "black")
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    axes.set_title(f"{run['name']}: {run['task']} dev, {len(run['seeds'])} seed(s) summed")
    _save(figure, path)


def plot_scatter(run: dict[str, Any], path: Path) -> None:
    """Every seed's dev predictions against the gold scores, with the y = x line."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, PNGs render with Agg

    gold = run["points"]["gold"]
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    axes = figure.subplots()
    values = list(gold)
    for index, (seed, predicted) in enumerate(run["points"]["predicted"].items()):
        axes.scatter(gold, predicted, s=10, alpha=0.45, color=f"C{index}", linewidths=0, label=f"seed {seed}")
        values += predicted
    low, high = min(values), max(values)
    axes.plot([low, high], [low, high], "--", color="grey", linewidth=1, label="y = x")
    scores = ", ".join(f"{metric_name(m)} {_mean_std(m, run['summary'][m])}"
                       for m in ("spearman", "pearson") if m in run["summary"])
    axes.set_title(f"{run['name']}: {run['task']} dev\n{scores}", fontsize=10)
    axes.set_xlabel("gold score")
    axes.set_ylabel("predicted score")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    _save(figure, path)
