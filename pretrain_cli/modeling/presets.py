"""BERT sizes by name, so a run says `--preset mini` instead of six numbers, or any shape.

    >>> bert_config(PRESETS["tiny"], vocab_size=8192, pad_token_id=0).num_hidden_layers
    2
    >>> model_shape("base", layers=6)        # a 6-layer base: flags override the preset's fields
    Preset(layers=6, hidden=768, heads=12, ffn=0)

The feed-forward width is 4 × hidden and attention heads are 64 wide (tiny's are too), as in the
BERT paper's family of sizes; every preset reads 512 positions.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import BertConfig

MAX_POSITIONS = 512


@dataclasses.dataclass(frozen=True)
class Preset:
    layers: int  # transformer blocks
    hidden: int  # width of the residual stream
    heads: int  # attention heads; hidden must divide by it
    ffn: int = 0  # feed-forward width (0: 4 × hidden)

    @property
    def intermediate(self) -> int:
        return self.ffn or 4 * self.hidden


PRESETS: dict[str, Preset] = {
    "tiny": Preset(layers=2, hidden=128, heads=2),
    "mini": Preset(layers=4, hidden=256, heads=4),
    "small": Preset(layers=4, hidden=512, heads=8),
    "medium": Preset(layers=8, hidden=512, heads=8),
    "base": Preset(layers=12, hidden=768, heads=12),
    "large": Preset(layers=24, hidden=1024, heads=16),
}


def model_shape(preset: str, *, layers: int = 0, hidden: int = 0, heads: int = 0,
                intermediate: int = 0) -> Preset:
    """`preset` with any non-zero field replaced; a new hidden width without heads keeps them 64 wide."""
    base = PRESETS[preset]
    width = hidden or base.hidden
    return Preset(layers=layers or base.layers, hidden=width,
                  heads=heads or (base.heads if not hidden else max(1, width // 64)), ffn=intermediate)


def shape_problems(shape: Preset) -> list[str]:
    """What makes a shape unbuildable, as option phrases."""
    if shape.hidden % shape.heads:
        return [f"--hidden {shape.hidden} must divide by --heads {shape.heads}"]
    return []


def padded_vocab_size(vocab_size: int, multiple: int = 8) -> int:
    """The embedding rows to allocate: a multiple of 8 keeps the output matmul tensor-core friendly."""
    return -(-vocab_size // multiple) * multiple


def bert_config(preset: Preset, *, vocab_size: int, pad_token_id: int, dropout: float = 0.1) -> BertConfig:
    """An SDPA BertConfig of this size; `vocab_size` is the (already padded) embedding size.

    dropout: of hidden states and attention probabilities both (BERT: 0.1; cramming trains with 0).
    """
    from transformers import BertConfig

    config = BertConfig(vocab_size=vocab_size, hidden_size=preset.hidden, num_hidden_layers=preset.layers,
                        num_attention_heads=preset.heads, intermediate_size=preset.intermediate,
                        max_position_embeddings=MAX_POSITIONS, type_vocab_size=2, pad_token_id=pad_token_id,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    config._attn_implementation = "sdpa"
    return config
