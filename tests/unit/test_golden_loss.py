"""Golden loss: the first 10 steps of the tiny preset on the fixed fixture, seed 0, must not move.

Any change to the model, loss, data order, optimizer or schedule numerics shows up here. When a
change is meant to alter them, regenerate and commit the new trace:

    PTK_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_golden_loss.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pretrain_fixtures import fixed_examples

from pretrain_cli.stages.pretrain import PretrainConfig, run

GOLDEN = Path(__file__).parent / "golden" / "pretrain_tiny.json"
OPTIONS = {"preset": "tiny", "max_steps": 10, "micro_batch_size": 8, "grad_accum": 2, "learning_rate": 1e-3,
           "warmup_steps": 3, "seed": 0, "log_every": 1, "save_every": 100, "precision": "fp32",
           "device": "cpu"}


def test_first_ten_steps_match_the_golden_trace(tmp_path_factory: pytest.TempPathFactory,
                                                tmp_path: Path) -> None:
    run(PretrainConfig(examples=fixed_examples(tmp_path_factory), out=tmp_path / "ckpt", **OPTIONS))
    records = [json.loads(line) for line in (tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines()]
    trace = {key: [r[key] for r in records] for key in ("loss", "mlm_loss", "nsp_loss", "lr", "tokens")}
    if os.environ.get("PTK_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps({"options": OPTIONS, **trace}, indent=2) + "\n")
        pytest.skip(f"rewrote {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())
    assert golden["options"] == OPTIONS, "the golden trace was made with other options; regenerate it"
    assert trace["tokens"] == golden["tokens"]  # the same examples in the same order
    for key in ("loss", "mlm_loss", "nsp_loss", "lr"):
        assert trace[key] == pytest.approx(golden[key], rel=1e-4), key
