"""Checkpoint directories: an HF model directory plus what it takes to continue bit for bit.

    path = save_checkpoint(out_dir, "step-00000100", model=model, tokenizer_dir=examples / "tokenizer",
                           config=resolved_config, state=state, optimizer=optimizer, scheduler=scheduler)
    state = load_checkpoint(latest_checkpoint(out_dir), model, optimizer, scheduler)

step-00000100/ (and final/, which has no optimizer.pt):
  config.json, model.safetensors   `model.save_pretrained`; loads with AutoModelForPreTraining
  vocab.txt, tokenizer*.json ...   the examples' tokenizer, so AutoTokenizer loads from here too
  ptk_config.json                  the resolved PretrainConfig that made it
  trainer_state.json               step, tokens and samples seen, data cursor, learning rate, and the
                                   python/numpy/torch(/cuda) RNG states as JSON (torch's as base64)
  optimizer.pt                     {"optimizer", "scheduler"} state dicts: tensors and plain values
                                   only, read back with torch.load(weights_only=True)

A directory is written as `.step-00000100.tmp-PID` and renamed when whole, so every `step-*` is
complete and a kill mid-save leaves only a temporary directory that the next run removes.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrain_cli.console import quiet_transformers
from pretrain_cli.errors import UserError
from pretrain_cli.store import atomic_write_json

STEP_DIR = re.compile(r"step-\d{8}")
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


@dataclasses.dataclass
class TrainerState:
    """Where training stands after `step` optimizer steps (the data cursor is `samples` in the stream)."""

    step: int = 0
    tokens: int = 0
    samples: int = 0
    elapsed_s: float = 0.0
    learning_rate: float = 0.0


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(array.tobytes()).decode()


def _unb64(text: str, dtype: type) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


def capture_rng() -> dict[str, Any]:
    """Every RNG a step may draw from, JSON-safe: the large states as base64 of their raw words."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": version, "state": _b64(np.asarray(mt, dtype=np.uint32)), "gauss": gauss},
        "numpy": {"kind": kind, "keys": _b64(keys), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": _b64(torch.get_rng_state().numpy()),
        "cuda": [_b64(s.numpy()) for s in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available() else [],
    }


def _byte_tensor(text: str) -> torch.Tensor:
    return torch.from_numpy(_unb64(text, np.uint8).copy())


def restore_rng(rng: dict[str, Any]) -> None:
    py = rng["python"]
    random.setstate((py["version"], tuple(int(w) for w in _unb64(py["state"], np.uint32)), py["gauss"]))
    npr = rng["numpy"]
    np.random.set_state((npr["kind"], _unb64(npr["keys"], np.uint32).copy(), npr["pos"], npr["has_gauss"],
                         npr["cached_gaussian"]))
    torch.set_rng_state(_byte_tensor(rng["torch"]))
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([_byte_tensor(s) for s in rng["cuda"]])


def _commit_dir(tmp: Path, path: Path) -> None:
    """Rename a finished directory into place, replacing an older one of the same name."""
    for file in (f for f in tmp.iterdir() if f.is_file()):
        with open(file, "rb+") as handle:
            os.fsync(handle.fileno())
    if path.exists():  # only final/ of an interrupted finish, or a step redone after --resume no
        stale = path.with_name(f".{path.name}.old.tmp-{os.getpid()}")
        os.replace(path, stale)
        shutil.rmtree(stale)
    os.replace(tmp, path)


def save_checkpoint(out_dir: Path, name: str, *, model: torch.nn.Module, tokenizer_dir: Path,
                    config: dict[str, Any], state: TrainerState, data_cursor: dict[str, int],
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> Path:
    """Write `out_dir/name` atomically; without an optimizer it is a model-only directory (final/)."""
    path = out_dir / name
    tmp = out_dir / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_transformers():
        model.save_pretrained(tmp)
    for file in tokenizer_dir.iterdir():
        if file.is_file():
            shutil.copyfile(file, tmp / file.name)
    atomic_write_json(tmp / "ptk_config.json", config)
    atomic_write_json(tmp / STATE_FILE, {**dataclasses.asdict(state), "data_cursor": data_cursor,
                                         "rng": capture_rng()})
    if optimizer is not None:
        assert scheduler is not None
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                   tmp / OPTIMIZER_FILE)
    _commit_dir(tmp, path)
    return path


def step_checkpoints(out_dir: Path) -> list[Path]:
    """Complete `step-*` directories, oldest first."""
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.is_dir() and STEP_DIR.fullmatch(p.name)
                  and (p / STATE_FILE).is_file() and (p / OPTIMIZER_FILE).is_file())


def remove_partial(out_dir: Path) -> None:
    """Temporary directories of a save that a kill interrupted."""
    for path in out_dir.glob(".*.tmp-*"):
        if path.is_dir():
            shutil.rmtree(path)


def prune(out_dir: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` step checkpoints (0 keeps every one)."""
    if keep_last > 0:
        for path in step_checkpoints(out_dir)[:-keep_last]:
            shutil.rmtree(path)


def read_state(path: Path) -> tuple[TrainerState, dict[str, int], dict[str, Any]]:
    """(state, data cursor, RNG states) of a checkpoint; a UserError if it is not one."""
    try:
        record = json.loads((path / STATE_FILE).read_text())
        rng, cursor = record.pop("rng"), record.pop("data_cursor")
        return TrainerState(**record), cursor, rng
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a readable ptk checkpoint ({exc}); pass a step-* directory "
                        f"written by `ptk pretrain`, or --resume no") from None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler) -> tuple[TrainerState, dict[str, int]]:
    """Restore weights, optimizer, schedule and, last of all, the RNG states saved at `path`."""
    from safetensors.torch import load_model

    state, cursor, rng = read_state(path)
    device = next(model.parameters()).device
    try:
        load_model(model, path / "model.safetensors", strict=True, device=str(device))
    except (RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{path}: its weights do not fit the model these options build ({first}); "
                        f"resume with the same --preset/--init and examples, or pass --resume no") from None
    saved = torch.load(path / OPTIMIZER_FILE, map_location=device, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    restore_rng(rng)
    return state, cursor
