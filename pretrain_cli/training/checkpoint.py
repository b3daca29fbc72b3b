"""Checkpoint directories: an HF model directory plus what it takes to continue bit for bit.

    weights, optim = full_state(loss_model, wrapped, optimizer)          # training/parallel.py
    path = save_checkpoint(out_dir, "step-00000100", model=model, weights=weights,
                           tokenizer_dir=examples / "tokenizer", config=resolved_config, state=state,
                           data_cursor=cursor, rng=gather_objects(capture_rng()),
                           training={"optimizer": optim, "scaler": scaler.state_dict()})
    loaded = load_checkpoint(newest_good_checkpoint(out_dir))           # verified against its checksums

step-00000100/ (and final/, which has no optimizer.pt):
  config.json, model.safetensors   `model.save_pretrained`; loads with AutoModelForPreTraining
  vocab.txt, tokenizer*.json ...   the examples' tokenizer, so AutoTokenizer loads from here too
  ptk_config.json                  the resolved PretrainConfig that made it
  projection.safetensors           SimCSE runs: the training-only projection head (not part of the model)
  sentence_embedding.json          SimCSE runs: the pooling and length that sentence vectors are made with
  trainer_state.json               step, tokens and samples seen, data cursor, learning rate, the
                                   python/numpy/torch(/cuda) RNG states of every process as JSON
                                   (torch's as base64), and the sha256 of the two weight files
  optimizer.pt                     {"optimizer": state by parameter name, "scaler": fp16 loss scaler},
                                   tensors and plain values only, read with torch.load(weights_only=True)

A directory is written as `.step-00000100.tmp-PID` and renamed when whole, so every `step-*` is
complete and a kill mid-save leaves only a temporary directory that the next run removes. A
checkpoint damaged afterwards (a disk error, a truncated copy) fails its checksums: the run warns,
renames it `corrupt-step-*` (kept for inspection) and continues from the one before.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrain_cli.console import quiet_transformers, say
from pretrain_cli.errors import UserError
from pretrain_cli.modeling.sentence import HEAD_FILE, HEAD_PREFIX, SENTENCE_CONFIG
from pretrain_cli.store import atomic_write_json

STEP_DIR = re.compile(r"step-\d{8}")
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
MODEL_FILE = "model.safetensors"


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(out_dir: Path, name: str, *, model: torch.nn.Module, weights: dict[str, torch.Tensor],
                    tokenizer_dir: Path, config: dict[str, Any], state: TrainerState,
                    data_cursor: dict[str, int], rng: list[dict[str, Any]],
                    training: dict[str, Any] | None = None, sentence: dict[str, Any] | None = None) -> Path:
    """Write `out_dir/name` atomically (on one process); without `training` it is a model-only final/.

    weights: the full state dict of `model` (under FSDP the live model holds only shards), plus the
        projection head's `projection.*` weights in a SimCSE run.
    rng: `capture_rng()` of every process, in rank order.
    sentence: SimCSE runs: {"pooling", "max_seq_length"} for sentence_embedding.json.
    """
    from safetensors.torch import save_file

    path = out_dir / name
    tmp = out_dir / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_transformers():
        encoder = {k: v for k, v in weights.items() if not k.startswith(HEAD_PREFIX)}
        model.save_pretrained(tmp, state_dict=encoder)  # it drops tied keys from the dict it gets
    for file in tokenizer_dir.iterdir():
        if file.is_file():
            shutil.copyfile(file, tmp / file.name)
    atomic_write_json(tmp / "ptk_config.json", config)
    files = [MODEL_FILE]
    if head := {k: v.contiguous() for k, v in weights.items() if k.startswith(HEAD_PREFIX)}:
        save_file(head, tmp / HEAD_FILE)
        files.append(HEAD_FILE)
    if sentence is not None:
        atomic_write_json(tmp / SENTENCE_CONFIG, sentence)
    if training is not None:
        torch.save(training, tmp / OPTIMIZER_FILE)
        files.append(OPTIMIZER_FILE)
    atomic_write_json(tmp / STATE_FILE, {**dataclasses.asdict(state), "data_cursor": data_cursor, "rng": rng,
                                         "sha256": {f: _sha256(tmp / f) for f in files}})
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


@dataclasses.dataclass
class Loaded:
    """Everything a checkpoint holds, read into memory."""

    path: Path
    state: TrainerState
    data_cursor: dict[str, int]
    rng: list[dict[str, Any]]  # one per process of the run that saved it
    weights: dict[str, torch.Tensor]
    training: dict[str, Any]  # {"optimizer": ..., "scaler": ... or None}


def read_state(path: Path) -> tuple[TrainerState, dict[str, Any]]:
    """(state, the rest of trainer_state.json) of a checkpoint; a UserError if it is not one."""
    try:
        record = json.loads((path / STATE_FILE).read_text())
        extra = {key: record.pop(key) for key in ("rng", "data_cursor", "sha256")}
        return TrainerState(**record), extra
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a readable ptk checkpoint ({exc}); pass a step-* directory "
                        f"written by `ptk pretrain`, or --resume no") from None


def checkpoint_damage(path: Path) -> str | None:
    """What is wrong with a step checkpoint's files against the checksums saved with it, or None."""
    try:
        _, extra = read_state(path)
    except UserError:
        return f"{STATE_FILE} is unreadable"
    for file in (MODEL_FILE, OPTIMIZER_FILE, *([HEAD_FILE] if HEAD_FILE in extra["sha256"] else [])):
        expected = extra["sha256"].get(file)
        if expected is None or not (path / file).is_file() or _sha256(path / file) != expected:
            return f"{file} is missing or does not match its checksum"
    return None


def load_checkpoint(path: Path) -> Loaded:
    """Read a step checkpoint (check it first with `checkpoint_damage`)."""
    from safetensors.torch import load_file

    state, extra = read_state(path)
    training = torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    weights = load_file(path / MODEL_FILE)
    if (path / HEAD_FILE).is_file():
        weights |= load_file(path / HEAD_FILE)
    return Loaded(path=path, state=state, data_cursor=extra["data_cursor"], rng=extra["rng"],
                  weights=weights, training=training)


def newest_good_checkpoint(out_dir: Path) -> Path | None:
    """The newest step checkpoint that verifies; damaged newer ones are renamed aside with a warning."""
    for path in reversed(step_checkpoints(out_dir)):
        if (damage := checkpoint_damage(path)) is None:
            return path
        aside = path.with_name(f"corrupt-{path.name}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(path, aside)
        say(f"warning: {path} is damaged ({damage}); kept as {aside.name}, continuing from the checkpoint "
            f"before it")
    return None
