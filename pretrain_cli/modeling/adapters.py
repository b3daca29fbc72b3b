"""ptk's own parameter-efficient methods for BERT: bottleneck adapters (Houlsby, Pfeiffer) and BitFit.

    add_adapters(model.bert, variant="houlsby", size=64)   # a bottleneck inside each residual branch
    names = [n for n, _ in model.named_parameters() if trains_with_adapters(n)]
    names = [n for n, _ in model.named_parameters() if trains_with_bitfit(n)]

Houlsby et al. (2019) put a bottleneck (down-projection, GELU, up-projection, plus a skip) after the
attention output projection and after the feed-forward output projection of every layer, inside the
residual branch, so the layer's own LayerNorm still follows; Pfeiffer et al. (2021) keep only the
feed-forward one, at half the cost and about the same accuracy. The up-projection starts at zero, so a
freshly adapted model computes exactly what the base did and training departs from there. With
adapters, the LayerNorms train too (as in both papers); BitFit (Ben Zaken et al., 2022) trains every
bias and nothing else. The task head trains under every method; the caller adds it.

The adapted projection keeps the base weights under `projection.` and the bottleneck under
`adapter.`, so the base's own tensors are found again by renaming (`base_name`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

ADAPTER = ".adapter."
PROJECTION = ".projection."


class Bottleneck(nn.Module):
    """hidden → size → hidden with GELU between; the output starts at exactly zero."""

    def __init__(self, hidden: int, size: int, init_range: float) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.up = nn.Linear(size, hidden)
        nn.init.normal_(self.down.weight, std=init_range)  # the base's own initialiser scale
        nn.init.zeros_(self.down.bias)
        # zero up-projection: the adapted model starts as the base; the first step's gradient
        # reaches `up` at once (its input is non-zero) and `down` from the second step on
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.up(nn.functional.gelu(self.down(hidden)))


class Adapted(nn.Module):
    """A frozen projection whose output passes through a bottleneck adapter with a skip: y + adapter(y)."""

    def __init__(self, projection: nn.Linear, adapter: Bottleneck) -> None:
        super().__init__()
        self.projection = projection
        self.adapter = adapter

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.projection(hidden)
        return out + self.adapter(out)


def add_adapters(bert: nn.Module, *, variant: Literal["houlsby", "pfeiffer"], size: int) -> None:
    """Wrap the output projections of every layer of a `BertModel` in place (new weights from torch's RNG)."""
    config = bert.config
    for layer in bert.encoder.layer:
        outputs = [layer.attention.output, layer.output] if variant == "houlsby" else [layer.output]
        for output in outputs:
            adapter = Bottleneck(config.hidden_size, size, config.initializer_range)
            output.dense = Adapted(output.dense, adapter.to(output.dense.weight.device))


def trains_with_adapters(name: str) -> bool:
    """The adapter method's own tensors: the bottlenecks and every LayerNorm (the head is the caller's)."""
    return ADAPTER in name or ".LayerNorm." in name


def trains_with_bitfit(name: str) -> bool:
    """BitFit's tensors: every bias, LayerNorm biases included (the head's weight is the caller's)."""
    return name.endswith(".bias")


def base_name(name: str) -> str | None:
    """The base model's name for an adapted model's tensor; None for an adapter's own tensor."""
    return None if ADAPTER in name else name.replace(PROJECTION, ".")
