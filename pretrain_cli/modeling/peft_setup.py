"""The classifier a fine-tune trains: a BERT directory under a fresh head, LoRA-wrapped on request,
saved so that it reloads to the very same predictions.

    tokenizer = load_tokenizer(Path("ckpt/final"), max_seq_length=128)
    model = build_classifier(Path("ckpt/final"), ("negative", "positive"), random_init=False, seed=1)
    model = add_lora(model, r=8, alpha=16, dropout=0.1)     # adapters on query/value + the head train
    save_classifier(model, tokenizer, seed_dir, base_record(Path("ckpt/final"), labels, seed_dir))
    model, tokenizer = load_classifier(seed_dir)             # full: seed_dir/model, lora: seed_dir/adapter

A full fine-tune saves the whole model (`model/`). A LoRA fine-tune saves only the adapter and the
classifier (`adapter/`, the head rides along through peft's `modules_to_save`) plus `base_model.json`:
where the frozen base lives and the hashes of its files, so a reload onto a changed base is refused
instead of silently predicting something else. A randomly initialised base cannot be found again
anywhere, so it is saved beside the adapter (`base_model/`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pretrain_cli.console import quiet_transformers
from pretrain_cli.errors import UserError
from pretrain_cli.store import atomic_write_json, file_sha256

if TYPE_CHECKING:
    import torch
    from transformers import BertForSequenceClassification

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
BASE_RECORD = "base_model.json"
RANDOM_BASE = "base_model"


def model_files(model_dir: Path, *, weights: bool) -> list[Path]:
    """The files that define what a fine-tune of `model_dir` starts from (weights only if it uses them)."""
    names = ["config.json", *(p.name for p in sorted(model_dir.glob("*.safetensors")) if weights),
             *(n for n in TOKENIZER_FILES if (model_dir / n).is_file())]
    return [model_dir / name for name in names]


def model_dir_problems(model_dir: Path, *, weights: bool) -> list[str]:
    """What makes `model_dir` unusable as a fine-tune's base, checked before anything loads."""
    if not model_dir.is_dir():
        return [f"--model {model_dir}: no such directory"]
    if not (model_dir / "config.json").is_file():
        hint = (f"; it is a `ptk pretrain` output, pass {model_dir / 'final'}"
                if (model_dir / "final" / "config.json").is_file() else "")
        return [f"--model {model_dir}: no config.json, so not an HF model directory{hint}"]
    problems = []
    if weights and not any(model_dir.glob("*.safetensors")):
        problems.append(f"--model {model_dir}: no *.safetensors weights (ptk loads no pickled weights; "
                        f"re-save the model with save_pretrained(safe_serialization=True))")
    if not any((model_dir / n).is_file() for n in ("tokenizer.json", "vocab.txt")):
        problems.append(f"--model {model_dir}: no tokenizer (tokenizer.json or vocab.txt); save the "
                        f"tokenizer the model was trained with into it")
    return problems


def load_tokenizer(model_dir: Path, max_seq_length: int) -> Any:
    """The model's tokenizer, after checking it fits the model: ids inside the embedding, lengths
    inside the position table, and a padding token for dynamic padding."""
    from transformers import AutoConfig, AutoTokenizer

    with quiet_transformers():
        config = AutoConfig.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if config.model_type != "bert":
        raise UserError(f"--model {model_dir}: config.json says model_type {config.model_type!r}; ptk "
                        f"fine-tunes BERT models (model_type 'bert')")
    if len(tokenizer) > config.vocab_size:
        raise UserError(f"--model {model_dir}: vocabulary mismatch: the tokenizer has {len(tokenizer):,} "
                        f"tokens but the model's embedding matrix has {config.vocab_size:,} rows; put the "
                        f"tokenizer the model was pretrained with into the model directory")
    if tokenizer.pad_token_id is None:
        raise UserError(f"--model {model_dir}: the tokenizer has no padding token; add one ([PAD]) to it")
    if max_seq_length > config.max_position_embeddings:
        raise UserError(f"--max-seq-length {max_seq_length}: the model at {model_dir} reads at most "
                        f"{config.max_position_embeddings} positions; pass a smaller value")
    return tokenizer


def build_classifier(model_dir: Path, labels: tuple[str, ...], *, random_init: bool,
                     seed: int) -> BertForSequenceClassification:
    """`model_dir`'s encoder (or its architecture with fresh weights) under a fresh classifier.

    Works from a `BertForPreTraining` directory (the MLM/NSP heads are dropped) and from a bare
    `BertModel` one; the seed fixes the new classifier (and, with `random_init`, everything).
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig.from_pretrained(model_dir, num_labels=len(labels),
                                        id2label=dict(enumerate(labels)),
                                        label2id={label: i for i, label in enumerate(labels)})
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    if random_init:
        return BertForSequenceClassification(config)
    with quiet_transformers():
        return BertForSequenceClassification.from_pretrained(model_dir, config=config, use_safetensors=True,
                                                             dtype=torch.float32)


def add_lora(model: torch.nn.Module, *, r: int, alpha: int, dropout: float) -> torch.nn.Module:
    """LoRA on the attention query/value projections; the classifier trains in full and is saved
    with the adapter (`modules_to_save`), since a fresh head is no use frozen."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=["query", "value"], modules_to_save=["classifier"])
    with quiet_transformers():
        return get_peft_model(model, config)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def save_random_base(model: torch.nn.Module, seed_dir: Path) -> Path:
    """Keep a randomly initialised base before LoRA wraps it: nothing else could rebuild it exactly."""
    with quiet_transformers():
        model.save_pretrained(seed_dir / RANDOM_BASE)
    return seed_dir / RANDOM_BASE


def base_record(base_dir: Path, labels: tuple[str, ...], seed_dir: Path) -> dict[str, Any]:
    """`base_model.json`: the frozen base a LoRA adapter needs, and the hashes that tell it is unchanged.

    A base inside `seed_dir` (a saved random init) is named relative to it, so the directory can move.
    """
    files = [p for p in model_files(base_dir, weights=True)
             if p.name == "config.json" or p.suffix == ".safetensors"]
    base, seed = base_dir.resolve(), seed_dir.resolve()
    inside = base.is_relative_to(seed)
    return {"path": str(base.relative_to(seed) if inside else base), "inside_seed_dir": inside,
            "files": {p.name: file_sha256(p) for p in files}, "labels": list(labels)}


def save_classifier(model: torch.nn.Module, tokenizer: Any, seed_dir: Path,
                    base: dict[str, Any] | None) -> Path:
    """Save a fine-tuned model under `seed_dir`: `model/` (full) or `adapter/` + `base_model.json` (LoRA,
    whose `base` record is required)."""
    from peft import PeftModel

    lora = isinstance(model, PeftModel)
    assert lora == (base is not None), "a LoRA adapter needs its base record, a full model none"
    target = seed_dir / ("adapter" if lora else "model")
    with quiet_transformers():
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
    if base is not None:
        atomic_write_json(seed_dir / BASE_RECORD, base)
    return target


def load_classifier(seed_dir: Path) -> tuple[torch.nn.Module, Any]:
    """A saved fine-tune, in eval mode, with its tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer, BertForSequenceClassification

    if (seed_dir / "model").is_dir():
        with quiet_transformers():
            model = BertForSequenceClassification.from_pretrained(seed_dir / "model", use_safetensors=True,
                                                                  dtype=torch.float32)
            return model.eval(), AutoTokenizer.from_pretrained(seed_dir / "model")
    record_path = seed_dir / BASE_RECORD
    if not (seed_dir / "adapter").is_dir() or not record_path.is_file():
        raise UserError(f"{seed_dir}: neither model/ nor adapter/ with {BASE_RECORD}; not a finished "
                        f"`ptk finetune` seed directory")
    record = json.loads(record_path.read_text())
    base_dir = seed_dir / record["path"] if record["inside_seed_dir"] else Path(record["path"])
    for name, expected in record["files"].items():
        if not (base_dir / name).is_file() or file_sha256(base_dir / name) != expected:
            raise UserError(f"{base_dir / name}: missing or changed since the adapter in {seed_dir} was "
                            f"trained on it; restore that base model or fine-tune again")
    labels = tuple(record["labels"])
    base = build_classifier(base_dir, labels, random_init=False, seed=0)
    with quiet_transformers():
        model = PeftModel.from_pretrained(base, seed_dir / "adapter")
        return model.eval(), AutoTokenizer.from_pretrained(seed_dir / "adapter")
