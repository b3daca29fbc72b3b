"""What a training run shows while it runs: a progress bar, metrics.jsonl and TensorBoard scalars.

    monitor = Monitor(out_dir, start_step=0, max_steps=1000)
    monitor.step(step, loss=2.3, lr=1e-4)                 # every step: the bar
    monitor.log({"step": 10, "tokens": ..., "loss": ...})  # every --log-every steps
    monitor.close()

metrics.jsonl has one JSON object per logged step (step, tokens, loss, mlm_loss, nsp_loss, lr,
tokens_per_s, elapsed_s); the evaluate stage plots loss curves from it. TensorBoard scalars go to
tb/ (`tensorboard --logdir CKPT_DIR/tb`). A resumed run first drops what the killed run logged after
the checkpoint it resumes from, so both files read as one uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pretrain_cli.console import console, say
from pretrain_cli.store import atomic_write_bytes

METRICS = "metrics.jsonl"
SCALARS = ("loss", "mlm_loss", "nsp_loss", "lr", "tokens_per_s")


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


class Monitor:
    def __init__(self, out_dir: Path, *, start_step: int, max_steps: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        truncate_metrics(out_dir / METRICS, start_step)
        self.metrics = open(out_dir / METRICS, "a")
        # purge_step hides events a killed run wrote after the step we resume from
        self.writer = SummaryWriter(log_dir=str(out_dir / "tb"),
                                    purge_step=start_step + 1 if start_step else None)
        self.interactive = console.is_terminal
        self.progress = Progress(TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                                 console=console, disable=not self.interactive)
        self.task = self.progress.add_task("steps", total=max_steps, completed=start_step, status="")
        self.progress.start()
        self.tokens_per_s = 0.0

    def step(self, step: int, *, loss: float, lr: float) -> None:
        status = f"loss {loss:.4f}  lr {lr:.2e}  {self.tokens_per_s:,.0f} tok/s"
        self.progress.update(self.task, completed=step, status=status)

    def log(self, record: dict[str, Any]) -> None:
        self.tokens_per_s = record["tokens_per_s"]
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        for name in SCALARS:
            self.writer.add_scalar(f"train/{name}", record[name], record["step"])
        if not self.interactive:  # logs of batch jobs get a line instead of a bar
            say(f"step {record['step']}: loss {record['loss']:.4f} (mlm {record['mlm_loss']:.4f}, "
                f"nsp {record['nsp_loss']:.4f}), lr {record['lr']:.2e}, {record['tokens_per_s']:,.0f} tok/s")

    def close(self) -> None:
        self.progress.stop()
        self.writer.close()
        self.metrics.close()
