"""The evaluate stage's rendering: report.json's records → report.md tables and matplotlib PNGs.

    atomic_write_bytes(out / "report.md", render_markdown(report).encode())
    plot_pretrain_losses(report["pretrain"], out / "loss.png")
    plot_finetune_curves(report["finetune"], out / "finetune_curves.png")

Rendering only: every number is computed by `stages.evaluate` and stored in report.json first.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pretrain_cli.store import atomic_write_bytes


def _mean_std(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def _number(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# {report['title']}", ""]
    if report["finetune"]:
        lines += ["## Fine-tuning", "",
                  "Dev-set accuracy and macro F1 (%), mean ± sample standard deviation over seeds. Each seed "
                  "keeps its best dev checkpoint (by macro F1); `random` is the same architecture and "
                  "tokenizer with freshly initialised weights.", "",
                  "| run | task | init | method | seeds | accuracy | macro F1 | trainable | train time |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|"]
        for r in report["finetune"]:
            lines.append(f"| {r['name']} | {r['task']} | {r['init']} | {r['method']} | {len(r['seeds'])} | "
                         f"{_mean_std(r['accuracy_mean'], r['accuracy_std'])} | "
                         f"{_mean_std(r['macro_f1_mean'], r['macro_f1_std'])} | "
                         f"{100 * r['trainable_share']:.2f}% | {r['train_time_s_mean']:.1f} s |")
        lines.append("")
        if "finetune_curves.png" in report["figures"]:
            lines += ["![dev accuracy while fine-tuning](finetune_curves.png)", ""]
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


def plot_finetune_curves(runs: list[dict[str, Any]], path: Path) -> None:
    """Dev accuracy against step: one panel per task, one colour per run, one line per seed."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, PNGs render with Agg

    tasks = sorted({run["task"] for run in runs})
    figure = Figure(figsize=(7, 3.5 * len(tasks)))
    panels = figure.subplots(len(tasks), 1, squeeze=False)[:, 0]
    for panel, task in zip(panels, tasks, strict=True):
        for index, run in enumerate(r for r in runs if r["task"] == task):
            for number, curve in enumerate(run["curves"].values()):
                panel.plot([r["step"] for r in curve], [100 * r["dev_accuracy"] for r in curve], "-o",
                           markersize=3, color=f"C{index}", alpha=0.8,
                           label=f"{run['name']} ({run['init']}, {run['method']})" if number == 0 else None)
        panel.set_title(f"{task}: dev accuracy while fine-tuning (one line per seed)")
        panel.set_xlabel("step")
        panel.set_ylabel("dev accuracy (%)")
        panel.grid(alpha=0.3)
        panel.legend(fontsize=8)
    _save(figure, path)
