"""`ptk pretrain` options on the real tiny examples: each one does what its help text says.

    .venv/bin/python -m pytest -q tests/unit/test_pretrain_options.py            # everything
    .venv/bin/python -m pytest -q tests/unit/test_pretrain_options.py -m "not slow"
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrain_cli.errors import UserError
from pretrain_cli.modeling.pretraining import build_model
from pretrain_cli.stages.pretrain import PretrainConfig, run
from pretrain_cli.store import read_manifest

BASE = {"micro_batch_size": 8, "log_every": 1}


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(out: Path, name: str = "final") -> dict[str, torch.Tensor]:
    return load_file(out / name / "model.safetensors")


# --- --optimizer lamb ------------------------------------------------------------------------------

LAMB = {**BASE, "optimizer": "lamb", "learning_rate": 1e-2, "warmup_steps": 0, "max_steps": 16,
        "save_every": 8}


@pytest.fixture(scope="module")
def lamb_run(examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 uninterrupted LAMB steps, with a checkpoint at step 8."""
    out = tmp_path_factory.mktemp("lamb") / "ckpt"
    run(PretrainConfig(examples=examples, out=out, **LAMB))
    return out


def test_lamb_lowers_the_masked_lm_loss(lamb_run: Path) -> None:
    # LAMB moves each tensor by about lr × its own norm, so at the 1e-3 of AdamW 16 steps stay inside
    # the batch-to-batch noise; 1e-2 is a usual LAMB rate and leaves a clear margin
    mlm = [r["mlm_loss"] for r in records(lamb_run)]
    assert len(mlm) == 16
    assert sum(mlm[-5:]) / 5 < mlm[0] - 0.05, mlm


def test_lamb_resumes_bitwise(examples: Path, lamb_run: Path, tmp_path: Path) -> None:
    start = lamb_run / "step-00000008"
    manifest = run(PretrainConfig(examples=examples, out=tmp_path / "resumed", resume=str(start), **LAMB))
    assert manifest.stats["resumed_from"] == str(start)
    whole, resumed = weights(lamb_run), weights(tmp_path / "resumed")
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name


# --- --precision fp16 / bf16 -----------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_trains_and_only_fp16_keeps_a_loss_scaler(examples: Path, tmp_path: Path,
                                                                 precision: str) -> None:
    out = tmp_path / precision
    manifest = run(PretrainConfig(examples=examples, out=out, precision=precision, max_steps=3, save_every=2,
                                  **BASE))
    assert manifest.extra["precision"] == precision
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in records(out))
    # autocast computes in half precision, but the weights the optimizer updates stay fp32
    assert {t.dtype for t in weights(out).values()} == {torch.float32}
    scaler = torch.load(out / "step-00000002" / "optimizer.pt", weights_only=True)["scaler"]
    if precision == "fp16":
        assert math.log2(float(scaler["scale"])).is_integer()  # a dynamic scaler's power of two
    else:
        assert scaler == {}  # bf16 has fp32's range: nothing to scale


# --- --schedule ------------------------------------------------------------------------------------

SCHEDULED = {**BASE, "micro_batch_size": 4, "max_steps": 10, "warmup_steps": 2, "learning_rate": 1e-3,
             "save_every": 100}


def test_constant_schedule_holds_the_peak_after_warmup(examples: Path, tmp_path: Path) -> None:
    run(PretrainConfig(examples=examples, out=tmp_path / "c", schedule="constant", **SCHEDULED))
    lrs = [r["lr"] for r in records(tmp_path / "c")]
    assert lrs[:2] == pytest.approx([5e-4, 1e-3])
    assert lrs[2:] == [1e-3] * 8


def test_cosine_schedule_falls_as_a_half_cosine_to_near_zero(examples: Path, tmp_path: Path) -> None:
    run(PretrainConfig(examples=examples, out=tmp_path / "cos", schedule="cosine", **SCHEDULED))
    lrs = [r["lr"] for r in records(tmp_path / "cos")]
    assert lrs[:2] == pytest.approx([5e-4, 1e-3])
    decay = lrs[2:]
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False)), decay
    # step s (0-based) of 10 after 2 warmup steps: peak × (1 + cos(π (s - 2) / 8)) / 2
    assert decay == pytest.approx([1e-3 * (1 + math.cos(math.pi * (s - 2) / 8)) / 2 for s in range(2, 10)])
    assert decay[-1] < 0.05 * 1e-3


# --- --budget and --save-every-minutes -------------------------------------------------------------

@pytest.fixture(scope="module")
def budget_run(examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of training with a step cap it cannot reach, checkpointed by time only (every 1.2 s)."""
    out = tmp_path_factory.mktemp("budget") / "ckpt"
    run(PretrainConfig(examples=examples, out=out, budget="4s", max_steps=100_000, save_every=0,
                       save_every_minutes=0.02, keep_last=0, **BASE))
    return out


def step_clock(out: Path) -> dict[int, float]:
    """Training seconds at the end of each step (step 0: the start), from a log_every=1 metrics.jsonl;
    the clock a step's rate and save decisions read is the one at the end of the step before."""
    return {0: 0.0, **{r["step"]: r["elapsed_s"] for r in records(out)}}


@pytest.mark.slow
def test_budget_stops_by_time_with_the_rate_following_the_clock(budget_run: Path) -> None:
    manifest = read_manifest(budget_run, "pretrain")
    last = manifest.stats["steps"]
    assert 1 < last < 100_000
    assert 4 <= manifest.stats["train_s"] < 4 + 30  # generous: the budget is checked between steps
    clock, lrs = step_clock(budget_run), [r["lr"] for r in records(budget_run)]
    assert clock[last - 1] <= 4 <= clock[last]  # the last step began inside the budget (ms rounding)
    # the default 5e-4 peak, warmed up over the first 10% of the 4 s, then linear decay to 0 at 4 s
    for step, lr in enumerate(lrs, start=1):
        progress = clock[step - 1] / 4
        expected = 5e-4 * (max(progress, 1e-6) / 0.1 if progress < 0.1 else (1 - progress) / 0.9)
        assert lr == pytest.approx(expected, abs=5e-4 * 0.01), (step, clock[step - 1])  # clock in ms
    assert lrs[0] < 1e-3 * 5e-4  # the first step starts at 0 s: barely any rate
    peak_at = lrs.index(max(lrs))
    assert all(a >= b for a, b in zip(lrs[peak_at:], lrs[peak_at + 1:], strict=False)), lrs


@pytest.mark.slow
def test_save_every_minutes_writes_step_checkpoints_by_time(budget_run: Path) -> None:
    saved = [int(p.name.removeprefix("step-")) for p in sorted(budget_run.glob("step-*"))]
    assert saved, "no time-based checkpoint in a 4 s run saving every 1.2 s"
    clock, since = step_clock(budget_run), 0.0
    for step in saved:  # each at the first step that starts 1.2 s after the last save's step started
        assert clock[step - 1] - since >= 1.2 - 1e-3, (step, saved)  # the clock is logged in ms
        assert step == 1 or clock[step - 2] - since < 1.2 + 1e-3, (step, saved)
        since = clock[step - 1]


# --- model shape -----------------------------------------------------------------------------------

def test_shape_flags_override_the_preset(examples: Path, tmp_path: Path) -> None:
    manifest = run(PretrainConfig(examples=examples, out=tmp_path / "o", preset="mini", layers=1, hidden=64,
                                  heads=2, intermediate=96, max_steps=1, **BASE))
    assert manifest.extra["model"] == {"preset": "mini", "init": None, "layers": 1, "hidden": 64,
                                       "heads": 2, "intermediate": 96, "max_position_embeddings": 512}
    config = json.loads((tmp_path / "o" / "final" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["intermediate_size"]) == (1, 64, 2, 96)


# --- --objective -----------------------------------------------------------------------------------

def test_mlm_objective_on_pair_examples_leaves_the_sentence_head_alone(examples: Path,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "mlm"
    manifest = run(PretrainConfig(examples=examples, out=out, objective="mlm", max_steps=3, **BASE))
    assert manifest.extra["objective"] == "mlm"
    assert all(r["nsp_loss"] == 0 and r["mlm_loss"] > 0 for r in records(out))
    facts = read_manifest(examples, "mask").extra
    initial, _ = build_model(PretrainConfig(examples=examples, out=out).shape, vocab_size=facts["vocab_size"],
                             pad_token_id=facts["special_ids"]["pad"], init=None, seed=0)
    start, trained = initial.state_dict(), weights(out)
    frozen = [k for k in trained if k.startswith(("cls.seq_relationship.", "bert.pooler."))]
    assert len(frozen) == 4  # weight and bias of each
    for name in frozen:  # not trained, and not decayed either
        assert torch.equal(trained[name], start[name]), name
    assert not torch.equal(trained["bert.encoder.layer.0.output.dense.weight"],
                           start["bert.encoder.layer.0.output.dense.weight"])


def test_sop_objective_on_nsp_examples_names_the_rebuild(examples: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"holds mlm\+nsp examples.*ptk mask --objective sop"):
        run(PretrainConfig(examples=examples, out=tmp_path / "o", objective="mlm+sop", max_steps=1))
    assert not (tmp_path / "o").exists()


# --- --compile -------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                    reason="torch.compile on CPU needs a C compiler")
def test_compiled_model_gives_the_eager_loss_trace(examples: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # hermetic, and so cold
    options = {**BASE, "max_steps": 3, "dropout": 0.0}
    run(PretrainConfig(examples=examples, out=tmp_path / "eager", **options))
    manifest = run(PretrainConfig(examples=examples, out=tmp_path / "compiled", compile=True, **options))
    assert manifest.stats["steps"] == 3
    eager, compiled = records(tmp_path / "eager"), records(tmp_path / "compiled")
    assert [r["step"] for r in compiled] == [1, 2, 3]
    for a, b in zip(compiled, eager, strict=True):
        for key in ("loss", "mlm_loss", "nsp_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), (a["step"], key)


# --- --global-batch --------------------------------------------------------------------------------

def test_global_batch_must_divide_into_micro_batches(examples: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--global-batch 12 does not divide into micro-batches of 8"):
        run(PretrainConfig(examples=examples, out=tmp_path / "o", global_batch=12, micro_batch_size=8))
    assert not (tmp_path / "o").exists()


def test_global_batch_sets_the_accumulation(examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    manifest = run(PretrainConfig(examples=examples, out=out, global_batch=16, micro_batch_size=8,
                                  max_steps=2, log_every=1))
    resolved = json.loads((out / "final" / "ptk_config.json").read_text())["resolved"]
    assert resolved["grad_accum"] == 2 and resolved["global_batch"] == 16
    assert manifest.extra["global_batch"] == 16 and manifest.stats["samples"] == 32
