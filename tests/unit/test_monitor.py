"""What a run shows: metrics.jsonl with MFU, TensorBoard scalars, the bar, the log lines, the summary."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pretrain_cli.console import console
from pretrain_cli.training import monitor as monitor_module
from pretrain_cli.training.monitor import (
    Monitor,
    format_count,
    format_duration,
    format_flops,
    print_summary,
)


def record(step: int, *, loss: float = 2.0, tokens_per_s: float = 2e5, elapsed_s: float = 0.0) -> dict:
    """A log record shaped as the loop writes it."""
    return {"step": step, "tokens": 1000 * step, "loss": loss, "mlm_loss": loss - 0.5, "nsp_loss": 0.5,
            "lr": 1e-4, "tokens_per_s": tokens_per_s, "elapsed_s": elapsed_s, "grad_norm": 1.25,
            "padding": 0.125}


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def scalars(out: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_a_disabled_monitor_writes_nothing(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path, start_step=0, max_steps=10, enabled=False)
    with console.capture() as captured:
        monitor.step(1, loss=2.0, lr=1e-4, elapsed_s=1.0)
        monitor.log(record(1))
        monitor.close()
    assert list(tmp_path.iterdir()) == [] and captured.get() == ""


def test_log_adds_mfu_and_writes_every_scalar(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path, start_step=0, max_steps=10, flops_per_token=1e6, peak_flops=1e12)
    given = record(1, tokens_per_s=2e5)
    monitor.log(given)
    monitor.close()
    assert "mfu" not in given  # the caller's record is left as it was
    (written,) = metrics(tmp_path)
    assert written == {**given, "mfu": pytest.approx(0.2)}  # 2e5 tokens/s × 1e6 FLOP / 1e12 FLOP/s
    tags = scalars(tmp_path)
    assert set(tags) == {f"train/{name}" for name in ("loss", "mlm_loss", "nsp_loss", "lr", "tokens_per_s",
                                                      "grad_norm", "padding", "mfu")}
    assert tags["train/mfu"] == [(1, pytest.approx(0.2))]
    assert tags["train/grad_norm"] == [(1, 1.25)] and tags["train/padding"] == [(1, 0.125)]


def test_mfu_is_null_without_a_known_peak(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path, start_step=0, max_steps=10, flops_per_token=1e6, peak_flops=None)
    monitor.log(record(1))
    monitor.close()
    assert metrics(tmp_path)[0]["mfu"] is None
    assert "train/mfu" not in scalars(tmp_path) and "train/loss" in scalars(tmp_path)


def test_a_resumed_run_replaces_what_was_logged_after_its_checkpoint(tmp_path: Path) -> None:
    first = Monitor(tmp_path, start_step=0, max_steps=4)
    for step in range(1, 5):
        first.log(record(step, loss=float(step)))
    first.close()
    with (tmp_path / "metrics.jsonl").open("a") as torn:
        torn.write('{"step": 5, "lo')  # killed mid-write
    # a resumed process starts seconds later; event files are named by the second they open in, so
    # within the same second the second file could sort before the first
    time.sleep(1.0)
    resumed = Monitor(tmp_path, start_step=2, max_steps=4)
    assert [r["step"] for r in metrics(tmp_path)] == [1, 2]
    for step in (3, 4):
        resumed.log(record(step, loss=10.0 + step))
    resumed.close()
    assert [r["loss"] for r in metrics(tmp_path)] == [1.0, 2.0, 13.0, 14.0]
    assert scalars(tmp_path)["train/loss"] == [(1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0)]


def test_log_lines_show_mfu_and_the_eta_of_the_last_logged_rate(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path, start_step=0, max_steps=10, flops_per_token=1e6, peak_flops=1e12)
    with console.capture() as captured:
        monitor.step(1, loss=2.0, lr=1e-4, elapsed_s=1.0)
        monitor.step(2, loss=2.0, lr=1e-4, elapsed_s=3.0)
        monitor.log(record(2, tokens_per_s=2e5, elapsed_s=3.0))  # 1 step in 2 s: 8 steps left take 16 s
    monitor.close()
    line = captured.get().strip()
    assert line.startswith("step 2/10: loss 2.0000 (mlm 1.5000, nsp 0.5000)")
    assert "200,000 tok/s" in line and "MFU 20.0%" in line and "ETA 16s" in line


def test_budget_mode_counts_down_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True, width=200)
    monkeypatch.setattr(monitor_module, "console", terminal)
    monitor = Monitor(tmp_path, start_step=0, max_steps=1000, budget_s=8 * 3600.0)
    monitor.step(7, loss=2.0, lr=1e-4, elapsed_s=120.0)
    (task,) = monitor.progress.tasks
    assert (task.total, task.completed) == (8 * 3600.0, 120.0)  # the bar runs over training seconds
    assert task.fields["position"] == "step 7, 2m00s/8h00m"
    assert "ETA 7h58m" in task.fields["status"]
    monitor.log(record(10, elapsed_s=123.0))  # 1 step/s: --max-steps 1000, the cap, comes in 990 s
    monitor.step(11, loss=2.0, lr=1e-4, elapsed_s=124.0)
    assert "ETA 16m29s" in task.fields["status"]
    monitor.close()


def test_step_mode_bar_follows_steps_and_shows_no_eta_before_a_rate(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True, width=200)
    monkeypatch.setattr(monitor_module, "console", terminal)
    monitor = Monitor(tmp_path, start_step=40, max_steps=100, flops_per_token=1e6, peak_flops=1e12)
    monitor.step(41, loss=3.25, lr=2e-4, elapsed_s=50.0)
    (task,) = monitor.progress.tasks
    assert (task.total, task.completed) == (100, 41)
    assert task.fields["status"] == "loss 3.2500  lr 2.00e-04"  # no tokens/s, MFU or ETA measured yet
    monitor.log(record(50, tokens_per_s=1e5, elapsed_s=59.0))  # 9 steps in 9 s
    monitor.step(51, loss=3.0, lr=2e-4, elapsed_s=60.0)
    assert task.fields["status"] == "loss 3.0000  lr 2.00e-04  100,000 tok/s  MFU 10.0%  ETA 49s"
    monitor.close()


def test_print_summary_renders_every_row_literally(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = Console(file=io.StringIO(), width=120, record=True)
    monkeypatch.setattr(monitor_module, "console", screen)
    rows = [("model", "12×768 BERT, 110.1 M parameters (85.6 M non-embedding)"),
            ("FLOPs per token", "544 MFLOP (training, 6N + attention + sparse MLM head)"),
            ("global batch", "256 = 32 micro × 4 accum × 2 processes, ~32,768 tokens/step"),
            ("data", "work/[v2]/examples: 1,204,311 train pairs"),  # brackets are not markup
            ("precision", "bf16 autocast"), ("optimizer", "fused AdamW"), ("schedule", "linear"),
            ("checkpoints", "every 1000 steps, keep 2"), ("resume", "from step-00001000")]
    print_summary(rows)
    lines = screen.export_text().splitlines()
    assert lines[0].strip() == "ptk pretrain" and len(lines) == 1 + len(rows)
    for line, (name, value) in zip(lines[1:], rows, strict=True):
        assert line.split() == [*name.split(), *value.split()]  # one row a line, value beside its name
    print_summary(rows, enabled=False)
    assert screen.export_text() == ""


@pytest.mark.parametrize(("n", "text"), [(950, "950"), (1500, "1.5 k"), (950_000, "950 k"),
                                         (999_960, "1 M"), (110_106_428, "110.1 M"), (1.2e9, "1.2 B")])
def test_format_count(n: float, text: str) -> None:
    assert format_count(n) == text


def test_format_flops_and_duration() -> None:
    assert format_flops(5.444e8) == "544 MFLOP"
    assert format_flops(9.894e14) == "989 TFLOP"
    assert format_flops(999.7e6) == "1 GFLOP"
    assert [format_duration(s) for s in (0, 45, 200, 3725, 8 * 3600)] == ["0s", "45s", "3m20s", "1h02m",
                                                                         "8h00m"]
