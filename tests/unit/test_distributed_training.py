"""`ptk pretrain --procs N` on gloo: N processes train the model one process trains at the same global batch.

Dropout is off in these runs: its masks are drawn per process, so with it on the processes would
legitimately differ from one process by more than float rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pretrain_cli.stages.pretrain import PretrainConfig, run
from pretrain_cli.store import read_manifest

pytestmark = pytest.mark.slow
COMMON = {"micro_batch_size": 4, "log_every": 1, "dropout": 0.0, "learning_rate": 1e-3, "warmup_steps": 2}


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def max_weight_difference(a: Path, b: Path) -> float:
    x, y = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    assert x.keys() == y.keys()
    return max(float((x[k] - y[k]).abs().max()) for k in x)


@pytest.fixture(scope="module")
def single(examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process, 2 accumulated micro-batches of 4: global batch 8, 20 steps."""
    out = tmp_path_factory.mktemp("single") / "ckpt"
    run(PretrainConfig(examples=examples, out=out, max_steps=20, grad_accum=2, save_every=10, **COMMON))
    return out


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_give_the_loss_trace_of_one(examples: Path, single: Path, tmp_path: Path,
                                                  strategy: str) -> None:
    out = tmp_path / strategy
    manifest = run(PretrainConfig(examples=examples, out=out, max_steps=20, procs=2, strategy=strategy,
                                  save_every=10, **COMMON))
    assert manifest.stats["world_size"] == 2 and manifest.extra["global_batch"] == 8
    ours, theirs = records(out), records(single)
    assert [r["step"] for r in ours] == list(range(1, 21))
    assert [r["tokens"] for r in ours] == [r["tokens"] for r in theirs]  # the same examples, step by step
    for a, b in zip(ours, theirs, strict=True):
        for key in ("loss", "mlm_loss", "nsp_loss"):
            assert abs(a[key] - b[key]) <= 1e-5 * abs(b[key]), (a["step"], key, a[key], b[key])
    assert max_weight_difference(out, single) < 1e-5


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_two_process_checkpoint_resumes_on_one_process_in_the_same_order(
        examples: Path, single: Path, tmp_path: Path, strategy: str) -> None:
    """Checkpoints hold full tensors by name, so a sharded run continues on one process too."""
    two = tmp_path / "two"
    run(PretrainConfig(examples=examples, out=two, max_steps=20, procs=2, strategy=strategy, save_every=10,
                       **COMMON))
    start = two / "step-00000010"
    assert json.loads((start / "trainer_state.json").read_text())["data_cursor"]["index"] == 80
    # one process, the same global batch spelled as --global-batch: the run's identity is unchanged
    one = tmp_path / "one"
    manifest = run(PretrainConfig(examples=examples, out=one, max_steps=20, global_batch=8, resume=str(start),
                                  save_every=10, **COMMON))
    assert manifest.stats["resumed_from"] == str(start) and manifest.stats["world_size"] == 1
    resumed, whole = records(one), records(two)[10:]
    assert [r["step"] for r in resumed] == list(range(11, 21))
    assert [r["tokens"] for r in resumed] == [r["tokens"] for r in whole]  # the same examples, in order
    for a, b in zip(resumed, whole, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert max_weight_difference(one, two) < 1e-5


def test_a_torchrun_of_the_users_own_is_joined_not_relaunched(examples: Path, tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m pretrain_cli.cli.app pretrain ...`: two workers, one run."""
    out = tmp_path / "own"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    "-m", "pretrain_cli.cli.app", "pretrain", str(examples), "--out", str(out),
                    "--max-steps", "4", "--micro-batch-size", "4", "--save-every", "2", "--log-every", "1"],
                   env=env, check=True, capture_output=True)
    manifest = read_manifest(out, "pretrain")
    assert manifest.stats["world_size"] == 2 and manifest.extra["global_batch"] == 8
    assert manifest.stats["samples"] == 32  # 4 steps × 4 micro × 2 processes, all counted
    cursor = json.loads((out / "step-00000002" / "trainer_state.json").read_text())["data_cursor"]
    assert cursor["index"] == 16
