"""`ptk pretrain` refuses bad launches, budgets, saves, resumes and micro-batches: exit 2, one line.

    .venv/bin/python -m pytest -q tests/cli/test_pretrain_bad_input.py
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import Result
from conftest import assert_clean_failure
from typer.testing import CliRunner

from pretrain_cli.cli.app import app
from pretrain_cli.errors import UserError
from pretrain_cli.stages.pretrain import PretrainConfig, run
from pretrain_cli.training import session
from pretrain_cli.training.data import Batch, PairExamples

runner = CliRunner()


def pretrain(examples: Path, out: Path, *args: str) -> Result:
    return runner.invoke(app, ["pretrain", str(examples), "--out", str(out), *args])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpus_without_cuda_names_the_visible_count(examples: Path, tmp_path: Path) -> None:
    assert_clean_failure(pretrain(examples, tmp_path / "o", "--gpus", "1"), tmp_path / "o",
                         "--gpus 1: only 0 CUDA device(s) visible", "--procs")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("args", "needles"), [
    (["--gpus", "1", "--procs", "2"], ["--gpus and --procs both given"]),
    (["--nnodes", "2"], ["--rdzv-endpoint ''", "host:port"]),
    (["--node-rank", "3", "--nnodes", "2", "--rdzv-endpoint", "h:29500"],
     ["--node-rank 3 must be from 0 to 1"]),
    (["--save-every", "0"], ["--save-every and --save-every-minutes are both 0"]),
    (["--budget", "10"], ["--budget '10' is not a duration", "8h"]),
    (["--warmup-steps", "100", "--budget", "1h"],
     ["--warmup-steps must be a fraction below 1 with --budget"]),
    (["--hidden", "100", "--heads", "3"], ["--hidden 100 must divide by --heads 3"]),
    (["--objective", "mlm", "--pairs", "pairs.csv"], ["--pairs is for --objective simcse or mlm+simcse"]),
    (["--objective", "simcse", "--temperature", "0"], ["--temperature must be above 0"]),
], ids=["gpus-and-procs", "nnodes-without-endpoint", "node-rank-out-of-range", "no-saves",
        "budget-without-unit", "warmup-steps-with-budget", "hidden-not-divisible-by-heads",
        "pairs-without-simcse", "zero-temperature"])
def test_bad_option_combinations(examples: Path, tmp_path: Path, args: list[str], needles: list[str]) -> None:
    assert_clean_failure(pretrain(examples, tmp_path / "o", *args), tmp_path / "o", *needles)
    assert not (tmp_path / "o").exists()  # refused before anything is written


@pytest.mark.parametrize(("content", "needles"), [
    ("anchor,text\na,b\n", ["pairs.csv line 2: no positive column", "name it positive or sent1"]),
    ("sent0,sent1\na,b\nc,\n", ["pairs.csv line 3: no text in the positive column 'sent1'"]),
    ("anchor,positive\na,b\nc,d\n", ["pairs.csv: 2 pairs, fewer than one contrastive batch (32 × 1"]),
], ids=["missing-column", "empty-text", "fewer-than-a-batch"])
def test_a_bad_pair_file_is_refused_before_anything_is_written(examples: Path, tmp_path: Path, content: str,
                                                               needles: list[str]) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(content)
    result = pretrain(examples, tmp_path / "o", "--objective", "simcse", "--pairs", str(pairs))
    assert_clean_failure(result, tmp_path / "o", *needles)
    assert not (tmp_path / "o").exists()


def test_resuming_a_checkpoint_of_another_shape(examples: Path, tmp_path: Path) -> None:
    run(PretrainConfig(examples=examples, out=tmp_path / "tiny", max_steps=2, micro_batch_size=4,
                       save_every=1))
    start = tmp_path / "tiny" / "step-00000001"
    result = pretrain(examples, tmp_path / "o", "--preset", "mini", "--max-steps", "2",
                      "--micro-batch-size", "4", "--resume", str(start))
    assert_clean_failure(result, tmp_path / "o", "step-00000001", "--preset")
    # final/ is a model without optimizer state: not something to resume, but to --init from
    result = pretrain(examples, tmp_path / "o", "--resume", str(tmp_path / "tiny" / "final"))
    assert_clean_failure(result, tmp_path / "o", "final: holds no optimizer state", "--init")
    # checkpoints of other examples (here: another seed's order) are refused, not continued
    result = pretrain(examples, tmp_path / "o", "--max-steps", "2", "--micro-batch-size", "4", "--seed", "7",
                      "--resume", str(start))
    assert_clean_failure(result, tmp_path / "o", "made on other examples or with another --seed")


def test_a_micro_batch_too_big_for_the_gpu_is_refused_with_advice(
        train_set: PairExamples, monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory probe runs on CUDA only; here CUDA is stood in for just far enough to reach it."""
    def out_of_memory(*inputs: torch.Tensor) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    zeroed: list[bool] = []
    optimizer = SimpleNamespace(zero_grad=lambda set_to_none: zeroed.append(set_to_none))
    engine = SimpleNamespace(wrapped=out_of_memory, optimizer=optimizer)
    monkeypatch.setattr(Batch, "to", lambda self, device: self)  # the batch stays on the CPU
    monkeypatch.setattr(torch.random, "fork_rng", lambda devices: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: SimpleNamespace(total_memory=16 << 30))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    cfg = PretrainConfig(examples=Path("examples"), out=Path("ckpt"), micro_batch_size=64, grad_accum=2)
    with pytest.raises(UserError) as caught:
        batch = session.probe_batch(train_set, None, 64, 0)
        session._probe_memory(engine, batch, cfg, torch.device("cuda", 0), None)
    message = str(caught.value)
    assert "--micro-batch-size 64 does not fit in the GPU's 16 GiB" in message
    assert "--grad-accum" in message and "\n" not in message
    assert zeroed == [True]  # the probe's gradients are dropped even when it fails
