"""Sentence embeddings: pooling, SimCSE's projection head, the InfoNCE loss, and encoding texts.

    encoder, tokenizer, pooling = load_encoder(Path("work/simcse/final"))   # the pooling recorded there
    vectors = encode_texts(encoder, tokenizer, ["a sentence", "another"], pooling=pooling)  # (2, hidden)
    loss_sum = info_nce(anchors, candidates, temperature=0.05, first_positive=0)

A sentence's embedding is the encoder's last hidden states pooled over its real tokens: the [CLS]
vector (`cls`) or the mean of every token's (`mean`), never normalised, so the vectors ptk encodes
and those of a `ptk export --sentence-transformers` directory are the same numbers. The projection
head (a dense layer and tanh, as in SimCSE) is used only by the training loss: the paper found the
representation before it transfers better, so checkpoints keep it apart from the encoder's weights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from pretrain_cli.console import quiet_transformers
from pretrain_cli.errors import UserError

if TYPE_CHECKING:
    from transformers import BertModel, PreTrainedTokenizerBase

    from pretrain_cli.store import Manifest

POOLINGS = ("cls", "mean")
SENTENCE_CONFIG = "sentence_embedding.json"  # {"pooling": ..., "max_seq_length": ...} beside the weights
HEAD_PREFIX = "projection."  # the training-only head's weight names in a loss module's state dict
HEAD_FILE = "projection.safetensors"  # where checkpoints keep them, out of model.safetensors
ST_CONFIG = "sentence_bert_config.json"  # sentence-transformers' record of the max length
ST_POOLING_DIR = "1_Pooling"  # sentence-transformers' Pooling module
ST_POOLING = f"{ST_POOLING_DIR}/config.json"  # its record of the pooling
DEFAULT_MAX_LENGTH = 128  # tokens, for a model that records no length


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, L, H) hidden states → (B, H) sentence vectors over the real tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class ProjectionHead(torch.nn.Module):
    """SimCSE's training-time MLP over the pooled vector: dense + tanh, hidden → hidden."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.dense = torch.nn.Linear(hidden, hidden)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(pooled))


def info_nce(anchors: torch.Tensor, candidates: torch.Tensor, temperature: float,
             first_positive: int) -> torch.Tensor:
    """Summed InfoNCE: anchor i's positive is candidate `first_positive + i`, every other candidate
    is a negative; similarity is cosine / temperature, computed in fp32 (also under autocast, whose
    bf16 would round logits scaled by 1/temperature = 20 by about 0.1)."""
    with torch.autocast(anchors.device.type, enabled=False):
        similarity = F.normalize(anchors.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T
        targets = torch.arange(anchors.shape[0], device=anchors.device) + first_positive
        return F.cross_entropy(similarity / temperature, targets, reduction="sum")


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each process the gradient of its own rows summed over every
    process's loss, so negatives from other processes train this process's encoder too."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, group: object) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        ctx.group, ctx.rank, ctx.size = group, dist.get_rank(group), rows.shape[0]
        parts = [torch.empty_like(rows) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, rows.contiguous(), group=group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        import torch.distributed as dist

        grad = grad.clone()  # all_reduce works in place: never on a tensor autograd may still hold
        dist.all_reduce(grad, group=ctx.group)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size], None


def gather_with_grad(rows: torch.Tensor, group: object | None) -> torch.Tensor:
    """Every process's `rows` (the same count on each), in rank order; `rows` itself without a group."""
    return rows if group is None else _GatherWithGrad.apply(rows, group)


def recorded_pooling(directory: Path) -> str | None:
    """The pooling a model directory records: ptk's sentence_embedding.json, or a sentence-transformers
    1_Pooling/config.json (old `pooling_mode_*_token(s)` flags or the newer `pooling_mode`), as
    written there (possibly one ptk does not compute, such as max); None if it records none."""
    if (directory / SENTENCE_CONFIG).is_file():
        return str(_record(directory / SENTENCE_CONFIG, "pooling"))
    if not (directory / ST_POOLING).is_file():
        return None
    record = json.loads((directory / ST_POOLING).read_text())
    if "pooling_mode" in record:  # sentence-transformers 5 and later: a name or a list of names
        mode = record["pooling_mode"]
        return "+".join(mode) if isinstance(mode, list) else str(mode)
    flags = [key.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
             for key, value in record.items() if key.startswith("pooling_mode_") and value is True]
    return "+".join(flags) or None


def recorded_max_seq_length(directory: Path) -> int | None:
    """The longest input a model directory says it embeds: ptk's sentence_embedding.json, a
    sentence-transformers sentence_bert_config.json, or (an MLM checkpoint of `ptk pretrain`, which
    records no pooling) the length its examples had; None if nothing says."""
    for path in (directory / SENTENCE_CONFIG, directory / ST_CONFIG):
        if path.is_file():
            length = _record(path, "max_seq_length")
            if not isinstance(length, int) or length < 2:
                raise UserError(f"{path}: max_seq_length {length!r} is not a length in tokens; write a "
                                f"whole number of at least 2, or remove the file")
            return length
    manifest = directory.parent / "manifest.json"
    if manifest.is_file() and (directory / "trainer_state.json").is_file():  # CKPT/final or CKPT/step-*
        record = json.loads(manifest.read_text())
        if record.get("stage") == "pretrain":
            return int(record["extra"]["max_seq_length"])
    return None


def sentence_files(directory: Path) -> list[Path]:
    """The files beside the weights and tokenizer that decide a directory's sentence vectors."""
    names = (SENTENCE_CONFIG, ST_CONFIG, ST_POOLING)
    return [directory / name for name in names if (directory / name).is_file()]


def _record(path: Path, key: str) -> object:
    try:
        return json.loads(path.read_text())[key]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{path}: no {key} in it; fix the file or remove it") from None


def encoder_problem(directory: Path) -> str | None:
    """Why `directory` is not a BERT model directory ptk can encode with (to follow its name), or None."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        return ("no config.json, so not a model directory; give a `ptk pretrain` output, an HF BERT or "
                "sentence-transformers directory, or sample:minilm")
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError):
        return "config.json is not a JSON object; save the model again with save_pretrained"
    if model_type != "bert":
        return f"config.json says model_type {model_type!r}; sentence embeddings are computed for BERT models"
    if not any(directory.glob("*.safetensors")):
        return ("no *.safetensors weights (ptk loads no pickled weights); re-save the model with "
                "save_pretrained(safe_serialization=True)")
    if not any((directory / n).is_file() for n in ("tokenizer.json", "vocab.txt")):
        return "no tokenizer (tokenizer.json or vocab.txt); save the model's tokenizer there"
    return None


def find_encoder(run: Path) -> tuple[Path, Path, Manifest | None]:
    """(the model directory a RUN names, the directory that names it, its `ptk pretrain` manifest or
    None): a pretrain output stands for its final/ (and CKPT/final for CKPT); a checkpoint, an HF
    BERT or sentence-transformers directory (one `ptk export` wrote included) for itself.
    Fine-tunes are refused: their weights answer a task rather than embed sentences."""
    from pretrain_cli.modeling.finetuned import METHOD_RECORD
    from pretrain_cli.store import read_manifest

    if not run.is_dir():
        raise UserError(f"{run}: no such directory")
    stage, extra = _stage(run)
    if stage == "finetune" or (run / METHOD_RECORD).is_file() or (stage == "export" and "task" in extra):
        base = f" ({extra['model']})" if "model" in extra else ""
        raise UserError(f"{run}: a fine-tune, whose weights answer a task rather than embed sentences; use "
                        f"the model it was fine-tuned from{base}, or export the fine-tune itself as a plain "
                        f"model with `ptk export --merge --out DIR`")
    if stage not in (None, "pretrain", "export"):
        raise UserError(f"{run} holds `ptk {stage}` output, not a model; pass a `ptk pretrain` output, one "
                        f"of its checkpoints, an HF BERT or sentence-transformers directory")
    directory, shown, pretrain = run, run, None
    if stage == "pretrain":
        pretrain = read_manifest(run, "pretrain")
        directory = run / pretrain.extra.get("final", "final")
    elif stage is None and _stage(run.parent)[0] == "pretrain":  # CKPT/final or CKPT/step-*
        pretrain = read_manifest(run.parent, "pretrain")
        if run.name == pretrain.extra.get("final", "final"):
            shown = run.parent
    if (problem := encoder_problem(directory)) is not None:
        raise UserError(f"{directory}: {problem}")
    return directory, shown, pretrain


def _stage(directory: Path) -> tuple[str | None, dict]:
    """(the stage whose manifest.json is in `directory`, its extra), or (None, {})."""
    path = directory / "manifest.json"
    if not path.is_file():
        return None, {}
    try:
        record = json.loads(path.read_text())
        return str(record["stage"]), dict(record.get("extra") or {})
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"{path}: unreadable; rerun the stage that wrote it with --force") from None


def load_encoder(directory: Path, device: torch.device | str = "cpu", pooling: str | None = None
                 ) -> tuple[BertModel, PreTrainedTokenizerBase, str]:
    """The BERT encoder (no heads) of a model directory, its tokenizer, and the pooling to use:
    `pooling` if given, else the one the directory records, else mean.

    Reads `ptk pretrain` checkpoints (final/, step-*), plain HF BERT directories and
    sentence-transformers directories whose transformer sits at the top (as `ptk export` writes).
    """
    from transformers import AutoTokenizer, BertModel

    if (problem := encoder_problem(directory)) is not None:
        raise UserError(f"{directory}: {problem}")
    pooling = pooling or recorded_pooling(directory) or "mean"
    if pooling not in POOLINGS:
        raise UserError(f"{directory} records {pooling!r} pooling, which ptk does not compute; pass "
                        f"--pooling {' or '.join(POOLINGS)} to embed with one of those")
    with quiet_transformers():
        encoder = BertModel.from_pretrained(directory, add_pooling_layer=False, attn_implementation="sdpa",
                                            dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(directory)
    return encoder.to(device).eval(), tokenizer, pooling


@torch.no_grad()
def encode_texts(encoder: BertModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *,
                 pooling: str, batch_size: int = 128, max_length: int = 128) -> np.ndarray:
    """(len(texts), hidden) float32 embeddings, in the order given.

    Texts are encoded shortest first, so a batch pads little, and put back in order; the result
    does not depend on the batch size beyond float rounding.
    """
    device = next(encoder.parameters()).device
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), encoder.config.hidden_size), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        chosen = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in chosen], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt").to(device)
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         token_type_ids=batch.get("token_type_ids")).last_hidden_state
        out[chosen] = pool(hidden, batch["attention_mask"], pooling).float().cpu().numpy()
    return out
