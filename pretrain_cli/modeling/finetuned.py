"""Task models on disk: the model a fine-tune starts from, what it saves, how that loads back to the very
same logits, and how it becomes a plain Hugging Face model.

    tokenizer = load_tokenizer(Path("ckpt/final"), max_seq_length=128)
    model = build_model(Path("ckpt/final"), "classification", ("neg", "pos"), random_init=False, seed=1)
    ft = prepare(model, MethodConfig(name="lora"), "classification")      # modeling.methods; then train
    save_finetuned(ft, tokenizer, Path("ft/seed-1/adapter"), base_dir=Path("ckpt/final"))
    ft, tokenizer = load_finetuned(Path("ft/seed-1/adapter"))             # eval mode
    export_merged(Path("ft/seed-1/adapter"), Path("export/lora"))         # LoRA folded into the weights

A saved fine-tune directory holds the tokenizer and `ptk_method.json` (the method, the task kind, the
labels), and then:

    full             config.json (with the label map) + model.safetensors: a plain HF model directory
    lora ... prefix  peft's adapter_config.json + adapter_model.safetensors (the head rides along)
    adapter, bitfit  trained.safetensors: every tensor that trained, the head included
    all but full     base_model.json: the frozen base's path and the sha256 of its config.json and
                     weights, so a reload onto a changed base is refused instead of silently
                     predicting something else; base_model/ when the base was randomly initialised
                     (nothing else could rebuild it)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pretrain_cli.console import quiet_transformers
from pretrain_cli.errors import UserError
from pretrain_cli.modeling.methods import PEFT_METHODS, Finetunable, MethodConfig, prepare
from pretrain_cli.store import atomic_write_json, file_sha256

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from pretrain_cli.tasks.data import TaskKind

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
METHOD_RECORD = "ptk_method.json"
BASE_RECORD = "base_model.json"
RANDOM_BASE = "base_model"
TRAINED = "trained.safetensors"  # adapter/bitfit: the tensors that trained
MERGED = ("lora", "adalora", "ia3")  # folded into the weights they adapt
MERGEABLE = ("full", "bitfit", *MERGED)  # what export_merged writes as a plain model


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


def load_tokenizer(model_dir: Path, max_seq_length: int, *, virtual_tokens: int = 0) -> Any:
    """The model's tokenizer, after checking it fits the model: ids inside the embedding, lengths
    (plus a method's `virtual_tokens`, which take positions too) inside the position table, and a
    padding token for dynamic padding."""
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
    if max_seq_length + virtual_tokens > config.max_position_embeddings:
        extra = f" plus --virtual-tokens {virtual_tokens}" if virtual_tokens else ""
        raise UserError(f"--max-seq-length {max_seq_length}{extra}: the model at {model_dir} reads at most "
                        f"{config.max_position_embeddings} positions; pass a smaller value")
    return tokenizer


def model_class(kind: TaskKind) -> type[PreTrainedModel]:
    from transformers import BertForSequenceClassification, BertForTokenClassification

    return BertForTokenClassification if kind == "tokens" else BertForSequenceClassification


def build_model(model_dir: Path, kind: TaskKind, labels: tuple[str, ...], *, random_init: bool,
                seed: int) -> PreTrainedModel:
    """`model_dir`'s encoder (or its architecture with fresh weights) under a fresh task head.

    classification: one logit per label; regression: one output (problem_type "regression");
    tokens: a logit per label at every position (BertForTokenClassification). Works from a
    `BertForPreTraining` directory (the MLM/NSP heads are dropped) and from a bare `BertModel` one;
    the seed fixes the new head (and, with `random_init`, everything).
    """
    import torch
    from transformers import BertConfig

    if kind == "regression":
        head: dict[str, Any] = {"num_labels": 1, "problem_type": "regression"}
    else:
        head = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {label: i for i, label in enumerate(labels)}}
    config = BertConfig.from_pretrained(model_dir, **head)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    if random_init:
        return model_class(kind)(config)
    with quiet_transformers():
        return in_own_memory(model_class(kind).from_pretrained(model_dir, config=config, use_safetensors=True,
                                                               dtype=torch.float32))


def in_own_memory(model: PreTrainedModel) -> PreTrainedModel:
    """`model` with every weight copied out of the safetensors file it was memory-mapped from.

    A mapped tensor sits at its offset in the file, which need not be 64-byte aligned, and CPU matmul
    kernels take other code paths (other rounding) for unaligned operands: the same weights from two
    files then give logits a few ulps apart. Copies are aligned like any fresh tensor, so a model
    reloaded from its fine-tune gives bit-identical logits.
    """
    import torch

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data = tensor.data.clone()
    return model


def save_finetuned(ft: Finetunable, tokenizer: Any, directory: Path, *, base_dir: Path | None) -> None:
    """Save a fine-tune into `directory` (see the module doc); `base_dir` is the base model directory
    it started from, or None for a randomly initialised base, which is then saved inside."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = ft.hf_model.config
    labels = [] if ft.kind == "regression" else [config.id2label[i] for i in range(config.num_labels)]
    with quiet_transformers():
        tokenizer.save_pretrained(directory)
        if ft.method.name == "full":
            ft.model.save_pretrained(directory)
        elif ft.method.name in PEFT_METHODS:
            save_peft(ft, directory)
        else:
            save_file({name: p.detach().cpu().contiguous() for name, p in ft.trainable().items()},
                      directory / TRAINED)
    if ft.method.name != "full":
        if base_dir is None:
            base_dir = directory / RANDOM_BASE
            save_base(ft, base_dir)
        atomic_write_json(directory / BASE_RECORD, base_record(base_dir, directory))
    atomic_write_json(directory / METHOD_RECORD, {"method": ft.method.to_dict(), "kind": ft.kind,
                                                  "labels": labels})


def save_peft(ft: Finetunable, directory: Path) -> None:
    """peft's save, but AdaLoRA's adapter kept at its initial rank: peft would cut it to the last
    rank pattern, which the best checkpoint (possibly from earlier in the schedule) need not follow;
    pruned triplets hold zeros either way, and keeping them all makes the reload exact."""
    config = ft.model.peft_config["default"]
    pattern = config.rank_pattern if ft.method.name == "adalora" else None
    if pattern is not None:
        config.rank_pattern = None
    try:
        ft.model.save_pretrained(directory)
    finally:
        if pattern is not None:
            config.rank_pattern = pattern


def save_base(ft: Finetunable, base_dir: Path) -> None:
    """The randomly initialised base as it was before training, as an HF model directory."""
    import torch

    config = ft.hf_model.config
    with torch.device("meta"):  # no second random init: every tensor comes from the state dict
        base = model_class(ft.kind)(config)
    weights = {name: tensor.detach().cpu() for name, tensor in ft.base_weights().items()}
    base.load_state_dict(weights, strict=True, assign=True)
    with quiet_transformers():
        base.save_pretrained(base_dir)


def base_record(base_dir: Path, directory: Path) -> dict[str, Any]:
    """`base_model.json`: where the frozen base is, and the hashes that tell it is unchanged. A base
    inside `directory` (a saved random init) is named relative to it, so the directory can move."""
    files = [p for p in model_files(base_dir, weights=True)
             if p.name == "config.json" or p.suffix == ".safetensors"]
    base, home = base_dir.resolve(), directory.resolve()
    inside = base.is_relative_to(home)
    return {"path": str(base.relative_to(home) if inside else base), "inside": inside,
            "files": {p.name: file_sha256(p) for p in files}}


def read_method_record(directory: Path) -> dict[str, Any]:
    """ptk_method.json of a saved fine-tune; a UserError for any other directory."""
    if not (directory / METHOD_RECORD).is_file():
        saved = [d for d in ("model", "adapter") if (directory / d / METHOD_RECORD).is_file()]
        hint = (f"; it is a seed directory, pass {directory / saved[0]}" if saved else
                "; pass a seed's model/ or adapter/ directory of a `ptk finetune` output")
        raise UserError(f"{directory}: no {METHOD_RECORD}, so not a fine-tune saved by ptk{hint}")
    return json.loads((directory / METHOD_RECORD).read_text())


def checked_base(directory: Path) -> Path:
    """The base model directory a saved adapter needs, after checking it is the one it was trained on."""
    if not (directory / BASE_RECORD).is_file():
        raise UserError(f"{directory}: no {BASE_RECORD}, so the adapter's base model is unknown; the "
                        f"fine-tune was not saved completely, run it again")
    record = json.loads((directory / BASE_RECORD).read_text())
    base_dir = directory / record["path"] if record["inside"] else Path(record["path"])
    if not base_dir.is_dir():
        raise UserError(f"adapter in {directory} was trained on base {base_dir}, which no longer exists; "
                        f"restore that base model or fine-tune again")
    for name, expected in record["files"].items():
        if not (base_dir / name).is_file():
            raise UserError(f"adapter in {directory} was trained on base {base_dir}, which has no {name} any "
                            f"more; restore that base model or fine-tune again")
        if file_sha256(base_dir / name) != expected:
            raise UserError(f"adapter in {directory} was trained on base {base_dir}, whose {name} changed; "
                            f"restore that base model or fine-tune again")
    return base_dir


def load_finetuned(directory: Path) -> tuple[Finetunable, Any]:
    """A saved fine-tune in eval mode, with its tokenizer: the same logits as when it was saved."""
    import torch
    from transformers import AutoTokenizer

    record = read_method_record(directory)
    method, kind = MethodConfig(**record["method"]), record["kind"]
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(directory)
        if method.name == "full":
            model = model_class(kind).from_pretrained(directory, use_safetensors=True, dtype=torch.float32,
                                                      attn_implementation="sdpa")
            model = in_own_memory(model)
            return Finetunable(model=model.eval(), method=method, kind=kind), tokenizer
        base = build_model(checked_base(directory), kind, tuple(record["labels"]), random_init=False, seed=0)
        # the method applied as the fine-tune applied it, then its trained tensors put back: the same
        # model, with the same tensors marked trainable (peft's own loader freezes prompt learning)
        ft = prepare(base, method, kind)
        if method.name in PEFT_METHODS:
            load_peft(ft, directory)
        else:
            load_trained(ft, directory / TRAINED)
    ft.model.eval()
    return ft, tokenizer


def load_peft(ft: Finetunable, directory: Path) -> None:
    """peft methods: the adapter weights (the head included) from peft's files in `directory`."""
    from peft import get_peft_model_state_dict, load_peft_weights, set_peft_model_state_dict

    saved = load_peft_weights(str(directory))
    expected = get_peft_model_state_dict(ft.model)  # what saving this very model would write
    if set(saved) != set(expected) or any(saved[k].shape != expected[k].shape for k in saved):
        raise UserError(f"{directory}: the adapter's tensors do not fit a {ft.method.name} fine-tune of its "
                        f"base model; the files were mixed up or edited, fine-tune again")
    set_peft_model_state_dict(ft.model, saved)


def load_trained(ft: Finetunable, path: Path) -> None:
    """adapter/bitfit: put the saved tensors back; exactly the trainable ones, no more, no fewer."""
    import torch
    from safetensors.torch import load_file

    saved, trainable = load_file(path), ft.trainable()
    if set(saved) != set(trainable) or any(saved[k].shape != trainable[k].shape for k in saved):
        raise UserError(f"{path}: the tensors do not fit a {ft.method.name} fine-tune of its base model; the "
                        f"files were mixed up or edited, fine-tune again")
    with torch.no_grad():
        for name, param in trainable.items():
            param.copy_(saved[name])


def export_merged(directory: Path, out: Path) -> None:
    """A saved fine-tune as a plain HF model directory in `out` (config.json with the labels,
    model.safetensors, the tokenizer) that loads with no peft: LoRA, AdaLoRA and IA3 are folded into
    the weights they adapt, full and BitFit fine-tunes are plain models already."""
    name = MethodConfig(**read_method_record(directory)["method"]).name
    if name not in MERGEABLE:
        what = ("bottleneck adapters are extra layers" if name == "adapter" else
                f"{name} tuning's virtual tokens are extra inputs")
        raise UserError(f"{directory}: a {name} fine-tune cannot be merged into a plain model ({what} that "
                        f"no BERT weight can absorb); evaluate it where it is, or fine-tune with --method "
                        f"lora, ia3, bitfit or full to get an exportable model")
    ft, tokenizer = load_finetuned(directory)
    with quiet_transformers():
        model = ft.model.merge_and_unload() if name in PEFT_METHODS else ft.model
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
