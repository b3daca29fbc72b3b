"""The saved tokenizer directory: load a user's, save ours whole, and describe it for later stages.

    hf = load_tokenizer(Path("path/to/bert-model-dir"))   # or a UserError saying what is missing
    save_tokenizer(hf, Path("work/tokens/tokenizer"))
    facts = tokenizer_facts(Path("work/tokens/tokenizer"))
    facts.extra["padded_vocab_size"]                     # what the manifest's `extra` records
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pretrain_cli.errors import UserError
from pretrain_cli.stages.tokenize.encode import narrowest_id_dtype
from pretrain_cli.stages.tokenize.train import SPECIAL_ROLES

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Google's BERT vocabularies reserve [unused0] .. [unused993]; `--reserved N` makes the same slots.
RESERVED = re.compile(r"\[unused\d+\]")
# Tensor cores want embedding rows in multiples of 8.
PAD_VOCAB_TO = 8


@dataclasses.dataclass(frozen=True)
class TokenizerFacts:
    """What later stages need to know about a saved tokenizer.

    extra: the manifest's `extra` (docs/formats.md), less `tokenizer_sha256`.
    control_ids: the special and reserved ids other than [UNK]: text never yields them.
    """

    extra: dict[str, Any]
    control_ids: tuple[int, ...]


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """An existing HF tokenizer with BERT's five special-token roles, or a UserError naming what is wrong."""
    try:
        hf = _from_pretrained(directory)
    except Exception as exc:  # a user's file: any parse failure is theirs to fix
        detail = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
        raise UserError(f"--tokenizer {directory}: cannot load it as an HF tokenizer ({reason}); check "
                        f"tokenizer.json / tokenizer_config.json or point at another directory") from None
    ids = hf.get_vocab().values()
    if max(ids) + 1 != len(hf):  # every later stage sizes tables and embeddings by len(tokenizer)
        raise UserError(f"--tokenizer {directory}: its vocabulary skips ids ({len(hf):,} tokens, largest "
                        f"id {max(ids):,}); renumber it 0..{len(hf) - 1:,} or train one with ptk tokenize")
    missing = [role for role in SPECIAL_ROLES if getattr(hf, f"{role}_token_id", None) is None]
    if missing or not getattr(hf, "is_fast", False):
        what = f"no {', '.join(missing)} token" if missing else "no fast (tokenizers) backend"
        raise UserError(f"--tokenizer {directory}: {what}; a BERT tokenizer needs [PAD] [UNK] [CLS] [SEP] "
                        f"[MASK] roles and a tokenizer.json or vocab.txt")
    return hf


def save_tokenizer(hf: PreTrainedTokenizerBase, directory: Path) -> None:
    """Save `hf` as `directory`, whole or not at all (a crash leaves only a temporary name)."""
    # A reused tokenizer may carry the padding/truncation its model used; tokens are stored unpadded
    # and whole, and every later stage sets its own lengths.
    hf.backend_tokenizer.no_truncation()
    hf.backend_tokenizer.no_padding()
    for stale in directory.parent.glob(f".{directory.name}.tmp-*"):
        shutil.rmtree(stale)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    hf.save_pretrained(str(tmp))
    shutil.rmtree(directory, ignore_errors=True)  # a directory without tokenizer.json: unfinished
    os.replace(tmp, directory)


def tokenizer_facts(directory: Path) -> TokenizerFacts:
    """Describe the tokenizer saved in `directory` as later stages and the encoder need it."""
    hf = _from_pretrained(directory)
    backend = json.loads(hf.backend_tokenizer.to_str())
    vocab = hf.get_vocab()
    vocab_size = len(hf)  # ids are 0 .. vocab_size - 1: load_tokenizer refuses vocabularies with gaps
    special_ids = {role: getattr(hf, f"{role}_token_id") for role in SPECIAL_ROLES}
    control = set(hf.all_special_ids) | {i for token, i in vocab.items() if RESERVED.fullmatch(token)}
    never_mask = control | set(hf.added_tokens_decoder)
    return TokenizerFacts(
        extra={
            "vocab_size": vocab_size,
            "padded_vocab_size": -(-vocab_size // PAD_VOCAB_TO) * PAD_VOCAB_TO,
            "id_dtype": narrowest_id_dtype(vocab_size),
            "special_ids": special_ids,
            "never_mask_ids": sorted(never_mask),
            "lowercase": _lowercases(backend.get("normalizer")),
            "model": backend["model"]["type"].lower(),
        },
        control_ids=tuple(sorted(control - {special_ids["unk"]})))


def _from_pretrained(directory: Path) -> PreTrainedTokenizerBase:
    """`AutoTokenizer.from_pretrained(directory)`, through the fast class that tokenizer_config.json
    names when this transformers has it: AutoTokenizer's lookup imports torch, 1.5 s for nothing."""
    import transformers

    fast = transformers.PreTrainedTokenizerFast
    try:
        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        found = (getattr(transformers, f"{config['tokenizer_class']}Fast", None),
                 getattr(transformers, config["tokenizer_class"], None))
        cls = next(c for c in found if isinstance(c, type) and issubclass(c, fast))
    except Exception:  # noqa: BLE001 - no config, no class name, or a class this transformers lacks
        cls = transformers.AutoTokenizer
    return cls.from_pretrained(str(directory), local_files_only=True)


def _lowercases(normalizer: dict[str, Any] | None) -> bool:
    if not normalizer:
        return False
    kind = normalizer.get("type")
    if kind == "Sequence":
        return any(_lowercases(part) for part in normalizer.get("normalizers", []))
    return kind == "Lowercase" or (kind == "BertNormalizer" and bool(normalizer.get("lowercase")))
