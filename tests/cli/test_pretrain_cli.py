"""`ptk pretrain` through the CLI: a short run, every bad input (exit 2, one line), and a real SIGKILL."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from click.testing import Result
from conftest import assert_clean_failure
from safetensors.torch import load_file
from typer.testing import CliRunner

from pretrain_cli.cli.app import app
from pretrain_cli.config import StageConfig, option
from pretrain_cli.samples import sample_path
from pretrain_cli.store import StageOutput, read_manifest

runner = CliRunner()
SHORT = ["--max-steps", "3", "--micro-batch-size", "8", "--log-every", "1"]


def pretrain(*args: str) -> Result:
    return runner.invoke(app, ["pretrain", *args])


def test_short_run_then_up_to_date(examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    result = pretrain(str(examples), "--out", str(out), *SHORT)
    assert result.exit_code == 0, result.output
    assert "8 = 8 micro × 1 accum × 1 process(es)" in result.output  # the start summary
    assert "step 3/3: loss" in result.output
    assert read_manifest(out, "pretrain").stats["steps"] == 3
    again = pretrain(str(examples), "--out", str(out), *SHORT)
    assert again.exit_code == 0 and "up to date" in again.output


def test_missing_examples_dir(tmp_path: Path) -> None:
    assert_clean_failure(pretrain(str(tmp_path / "nope"), "--out", str(tmp_path / "o")), tmp_path / "o",
                         "no such directory", "ptk mask")


@dataclasses.dataclass(kw_only=True)
class TokensConfig(StageConfig):
    stage: ClassVar[str] = "tokenize"
    out: Path = option(help="Output directory.", hashed=False)


def test_foreign_examples_dir(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    output = StageOutput(TokensConfig(out=tokens), tokens)
    output.up_to_date()
    output.finish()
    assert_clean_failure(pretrain(str(tokens), "--out", str(tmp_path / "o")), tmp_path / "o",
                         "`ptk tokenize` output", "`ptk mask` output is expected")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    assert_clean_failure(pretrain(str(unfinished), "--out", str(tmp_path / "o")), tmp_path / "o",
                         "no manifest.json")


def test_init_with_another_vocabulary(examples: Path, tmp_path: Path) -> None:
    minilm = sample_path("minilm")
    vocab = read_manifest(examples, "mask").extra["vocab_size"]
    result = pretrain(str(examples), "--out", str(tmp_path / "o"), "--init", str(minilm))
    assert_clean_failure(result, tmp_path / "o", f"{vocab}-token vocabulary", "30522-token vocabulary",
                         f"ptk tokenize --tokenizer {minilm}")
    assert not (tmp_path / "o").exists()


def test_unknown_preset_and_other_bad_options_in_one_line(examples: Path, tmp_path: Path) -> None:
    result = pretrain(str(examples), "--out", str(tmp_path / "o"), "--preset", "huge",
                      "--micro-batch-size", "0", "--dropout", "1.5", "--budget", "8 hours")
    assert_clean_failure(result, tmp_path / "o", "--preset 'huge' is unknown", "tiny, mini, small",
                         "--micro-batch-size must be at least 1", "--dropout must be in [0, 1)",
                         "--budget '8 hours' is not a duration")
    result = pretrain(str(examples), "--out", str(tmp_path / "o"), "--precision", "fp8")
    assert_clean_failure(result, tmp_path / "o", "'fp8' is not one of 'auto', 'fp32', 'bf16', 'fp16'")


def test_missing_resume_path(examples: Path, tmp_path: Path) -> None:
    missing = tmp_path / "step-00000100"
    result = pretrain(str(examples), "--out", str(tmp_path / "o"), "--resume", str(missing))
    assert_clean_failure(result, tmp_path / "o", "--resume", "not a checkpoint")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_but_absent(examples: Path, tmp_path: Path) -> None:
    result = pretrain(str(examples), "--out", str(tmp_path / "o"), "--device", "cuda", *SHORT)
    assert_clean_failure(result, tmp_path / "o", "--device cuda", "--device cpu")


@pytest.mark.slow
def test_sigkill_at_three_points_then_rerun_is_bitwise_identical(examples: Path, tmp_path: Path) -> None:
    """Real kill -9s: mid-step after a checkpoint, in the middle of writing one, and at the last
    checkpoint; the same command then finishes the run exactly as if nothing had happened."""
    # one fixed thread count for every run: float sums may be split differently across threads
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    options = ["--max-steps", "40", "--micro-batch-size", "8", "--grad-accum", "2", "--save-every", "5",
               "--log-every", "5", "--keep-last", "3"]

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "pretrain_cli.cli.app", "pretrain", str(examples), "--out", str(out),
                *options]

    def kill_when(out: Path, ready: Callable[[], bool]) -> None:
        process = subprocess.Popen(command(out), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not ready():
            assert process.poll() is None and time.monotonic() < deadline, "ended before the kill point"
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not (out / "manifest.json").exists(), "the run finished before the kill; make it longer"

    subprocess.run(command(tmp_path / "whole"), env=env, check=True, capture_output=True)
    killed = tmp_path / "killed"
    kill_when(killed, lambda: (killed / "step-00000005").is_dir())  # 1: training on after step 5
    # 2: while a checkpoint is being written (a .step-*.tmp-* directory exists), or, should the
    # poll miss that short window, just after the next checkpoint appears
    kill_when(killed, lambda: any(killed.glob(".step-*.tmp-*")) or (killed / "step-00000015").is_dir())
    kill_when(killed, lambda: (killed / "step-00000030").is_dir())  # 3: in the last quarter
    subprocess.run(command(killed), env=env, check=True, capture_output=True)
    assert read_manifest(killed, "pretrain").stats["resumed_from"] is not None
    assert not list(killed.glob(".*.tmp-*"))  # the interrupted save's leftovers are gone
    whole, resumed = (load_file(p / "final" / "model.safetensors") for p in (tmp_path / "whole", killed))
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(5, 41, 5))  # the log reads as one uninterrupted run
