"""What a training run shows: the start summary, a progress bar, metrics.jsonl and TensorBoard scalars.

    print_summary([("model", "12×768 BERT, 110.1 M parameters"), ("global batch", "256")])
    monitor = Monitor(out_dir, start_step=0, max_steps=1000, flops_per_token=5.4e8, peak_flops=989.4e12)
    monitor.step(step, loss=2.3, lr=1e-4, elapsed_s=61.2)   # every step: the bar
    monitor.log({"step": 10, "tokens": ..., "loss": ...})    # every --log-every steps
    monitor.close()

metrics.jsonl has one JSON object per logged step: the loop's record (step, tokens, loss, mlm_loss,
nsp_loss, simcse_loss, lr, tokens_per_s, elapsed_s, grad_norm, padding) plus "mfu", the model FLOPs
utilisation (null where the device's peak is unknown); the evaluate stage plots loss curves from
it. TensorBoard scalars go to tb/ (`tensorboard --logdir CKPT_DIR/tb`). A resumed run first drops
what the killed run logged after the checkpoint it resumes from, so both files read as one
uninterrupted run. Only one process writes: the others get `enabled=False` and a silent monitor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn

from pretrain_cli.console import console, say
from pretrain_cli.store import atomic_write_bytes

METRICS = "metrics.jsonl"
SCALARS = ("loss", "mlm_loss", "nsp_loss", "simcse_loss", "lr", "tokens_per_s", "grad_norm", "padding", "mfu")


def loss_parts(record: dict[str, Any]) -> str:
    """'mlm 2.1000, nsp 0.3000': the parts of a record's loss that are not zero (mlm if none is)."""
    parts = [(name, record.get(f"{name}_loss")) for name in ("mlm", "nsp", "simcse")]
    shown = [(name, value) for name, value in parts if value]
    return ", ".join(f"{name} {value:.4f}" for name, value in shown or parts[:1])


def truncate_metrics(path: Path, after_step: int) -> None:
    """Keep only the records of steps up to `after_step`."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= after_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # the torn last line of a killed run
    atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())


def _scaled(value: float, prefixes: tuple[str, ...], digits: str) -> tuple[str, str]:
    """`value` in the largest unit of 1000^k (prefix prefixes[k]) that keeps it below 1000 once rounded."""
    power = 0
    while power < len(prefixes) - 1 and float(format(value / 1000**power, digits)) >= 1000:
        power += 1
    return format(value / 1000**power, digits), prefixes[power]


def format_count(n: float) -> str:
    """A count for people: 950 → "950", 950_000 → "950 k", 110_106_428 → "110.1 M", 1.2e9 → "1.2 B"."""
    text, prefix = _scaled(float(n), ("", "k", "M", "B", "T"), ".1f")
    text = text.removesuffix(".0")
    return f"{text} {prefix}" if prefix else text


def format_flops(x: float) -> str:
    """FLOPs to three significant digits: 5.44e8 → "544 MFLOP", 9.894e14 → "989 TFLOP" ("/s" for a rate)."""
    text, prefix = _scaled(x, ("", "k", "M", "G", "T", "P", "E"), ".3g")
    return f"{text} {prefix}FLOP"


def format_duration(seconds: float) -> str:
    """A span for a progress line: "45s", "3m20s", "8h00m"."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def print_summary(rows: list[tuple[str, str]], *, enabled: bool = True) -> None:
    """The one-screen table a run starts with (title "ptk pretrain"), on stderr; one row per setting."""
    if not enabled:
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title="ptk pretrain", title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(Text(name), Text(value))  # Text: paths and values may hold [brackets], not markup
    console.print(table)


class Monitor:
    """The bar, metrics.jsonl and TensorBoard of one run, from `start_step` on.

    budget_s: above 0, the run stops on training time (`--budget`), so the bar fills over seconds of
        training time and the ETA is the budget left (or the time to `max_steps`, its cap, if sooner);
        otherwise it fills over steps up to `max_steps` and the ETA follows the step rate of the last
        logged window.
    flops_per_token, peak_flops: `flops.training_flops_per_token`, and the dense peak FLOP/s of all the
        run's devices together (`flops.peak_flops` × processes), since the loop's tokens/s counts every
        process's tokens. MFU is shown and logged only when both are known (None: CPU or unknown GPU).
    enabled: False on every process but the first: no files, no bar, every method does nothing.
    """

    def __init__(self, out_dir: Path, *, start_step: int, max_steps: int, budget_s: float = 0.0,
                 flops_per_token: float = 0.0, peak_flops: float | None = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.max_steps, self.budget_s = max_steps, budget_s
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self.tokens_per_s = 0.0
        self.steps_per_s = 0.0
        self.mark: tuple[int, float] | None = None  # (step, elapsed_s) the next rate is measured from
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        truncate_metrics(out_dir / METRICS, start_step)
        self.metrics = open(out_dir / METRICS, "a")
        # purge_step hides events a killed run wrote after the step we resume from
        self.writer = SummaryWriter(log_dir=str(out_dir / "tb"),
                                    purge_step=start_step + 1 if start_step else None)
        self.interactive = console.is_terminal
        self.progress = Progress(TextColumn("pretrain"), BarColumn(), TextColumn("{task.fields[position]}"),
                                 TextColumn("{task.fields[status]}"), console=console,
                                 disable=not self.interactive)
        self.task = self.progress.add_task("train", total=budget_s if budget_s > 0 else max_steps,
                                           completed=0 if budget_s > 0 else start_step,
                                           position=self._position(start_step, 0.0), status="")
        self.progress.start()

    def mfu(self, tokens_per_s: float) -> float | None:
        """Model FLOPs utilisation at `tokens_per_s`: required FLOP/s over the devices' dense peak."""
        if not self.peak_flops or self.flops_per_token <= 0:
            return None
        return tokens_per_s * self.flops_per_token / self.peak_flops

    def eta_s(self, step: int, elapsed_s: float) -> float | None:
        """Seconds left: the steps left at the last logged rate (None before one); with a budget, the
        time left of it unless `max_steps` comes first."""
        by_steps = (self.max_steps - step) / self.steps_per_s if self.steps_per_s > 0 else None
        if self.budget_s > 0:
            by_budget = max(self.budget_s - elapsed_s, 0.0)
            return by_budget if by_steps is None else min(by_budget, by_steps)
        return by_steps

    def _position(self, step: int, elapsed_s: float) -> str:
        if self.budget_s > 0:
            return f"step {step:,}, {format_duration(elapsed_s)}/{format_duration(self.budget_s)}"
        return f"step {step:,}/{self.max_steps:,}"

    def _status(self, step: int, elapsed_s: float, loss: str, lr: float) -> str:
        parts = [f"loss {loss}", f"lr {lr:.2e}"]
        if self.tokens_per_s > 0:  # known from the first log on
            parts.append(f"{self.tokens_per_s:,.0f} tok/s")
            if (mfu := self.mfu(self.tokens_per_s)) is not None:
                parts.append(f"MFU {mfu:.1%}")
        if (eta := self.eta_s(step, elapsed_s)) is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return "  ".join(parts)

    def step(self, step: int, *, loss: float, lr: float, elapsed_s: float) -> None:
        """After every optimizer step: move the bar. `elapsed_s` is training time, resumed runs included."""
        if not self.enabled:
            return
        if self.mark is None:  # the first step of this process (compilation, warm-up) sets the origin
            self.mark = (step, elapsed_s)
        if self.interactive:
            self.progress.update(self.task, completed=elapsed_s if self.budget_s > 0 else step,
                                 position=self._position(step, elapsed_s),
                                 status=self._status(step, elapsed_s, f"{loss:.4f}", lr))

    def log(self, record: dict[str, Any]) -> None:
        """Write one window's record, with "mfu" added, to metrics.jsonl and TensorBoard."""
        if not self.enabled:
            return
        record = {**record, "mfu": self.mfu(record["tokens_per_s"])}
        step, elapsed_s = record["step"], record["elapsed_s"]
        self.tokens_per_s = record["tokens_per_s"]
        if self.mark is not None and elapsed_s > self.mark[1]:
            self.steps_per_s = (step - self.mark[0]) / (elapsed_s - self.mark[1])
        self.mark = (step, elapsed_s)
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        for name in SCALARS:
            if record.get(name) is not None:  # mfu is null where the peak is unknown
                self.writer.add_scalar(f"train/{name}", record[name], step)
        if not self.interactive:  # logs of batch jobs get a line instead of a bar
            say(f"{self._position(step, elapsed_s)}: "
                + self._status(step, elapsed_s, f"{record['loss']:.4f} ({loss_parts(record)})", record["lr"]))

    def close(self) -> None:
        if not self.enabled:
            return
        self.progress.stop()
        self.writer.close()
        self.metrics.close()
