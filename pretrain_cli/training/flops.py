"""How much work BERT pretraining is, and how much the GPU could do: the two halves of MFU.

    per_token = training_flops_per_token(layers=12, hidden=768, intermediate=3072, vocab_rows=30528,
                                         seq_len=120.0, masked_fraction=0.15)   # ≈ 0.54 GFLOP
    peak = peak_flops(torch.device("cuda"), "bf16")                              # 989.4e12 on an H100 SXM
    mfu = tokens_per_s * per_token / peak

MFU counts the FLOPs the task *requires*, not the ones an implementation happens to run: the MLM
head is charged at the masked positions only, padding costs nothing, and recomputation is not
work. A trainer that scores every position against the vocabulary does more arithmetic for the
same tokens, and that shows up as a lower MFU, not a higher one.
"""

from __future__ import annotations

import re

import numpy as np
import torch

# Dense (no 2:4 sparsity) tensor-core peaks in TFLOP/s from the vendor datasheets: (bf16 = fp16, tf32).
# Ordered most specific first and matched as whole words of torch.cuda.get_device_name(), so
# "H100 PCIe" is not taken for the SXM part, nor an "RTX A1000" for an A10.
DENSE_PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("H100 NVL", 835.5, 417.5),
    ("H100 PCIe", 756.0, 378.0),
    ("H200 NVL", 835.5, 417.5),
    ("GH200", 989.4, 494.7),
    ("H100", 989.4, 494.7),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", 989.4, 494.7),  # SXM: the H100 SXM's compute with more memory
    ("A100", 312.0, 156.0),  # SXM4 and PCIe alike
    ("A10G", 70.0, 35.0),  # AWS's variant of the A10, as AWS quotes it
    ("A10", 125.0, 62.5),
    ("L40S", 362.05, 183.0),
    ("L40", 181.05, 90.5),
    ("L4", 121.0, 60.0),
)
TENSOR_PRECISIONS = ("bf16", "fp16")


def training_flops_per_token(*, layers: int, hidden: int, intermediate: int, vocab_rows: int,
                             seq_len: float, masked_fraction: float, pair_task: bool = True) -> float:
    """Forward + backward FLOPs per real (unpadded) token of BERT pretraining, as ptk counts them.

    A matmul with a (d_in × d_out) weight costs 2·d_in·d_out FLOPs per row forward and twice that
    backward (gradients of the input and of the weight), so training costs 3× forward = 6 FLOPs per
    weight per row. With L layers, hidden h, feed-forward width i, embedding rows V, sequence length
    s (real tokens; over varied lengths `attention_length`, Σs²/Σs) and masked fraction m (masked
    positions per real token):

        encoder weights   6 · (4h² + 2h·i) · L        Q, K, V and output projections; the two FFN matmuls
        attention         12 · s · h · L              QKᵀ scores and the weighted sum of V: 2·s·h each forward
        MLM head          6 · (h² + h·V) · m          transform and vocabulary decoder, masked positions only
        pooler + NSP/SOP  6 · (h² + 2h) / s           once per sequence (pair_task only)

    Embedding lookups, biases, LayerNorm, softmax and GELU are not matmuls and are left out, as in
    the usual 6N + attention estimate; so is the padding a batch carries, which is waste, not work.
    """
    encoder = 6 * (4 * hidden**2 + 2 * hidden * intermediate) * layers
    attention = 12 * seq_len * hidden * layers
    mlm_head = 6 * (hidden**2 + hidden * vocab_rows) * masked_fraction
    sentence_head = 6 * (hidden**2 + 2 * hidden) / seq_len if pair_task else 0.0
    return encoder + attention + mlm_head + sentence_head


def attention_length(lengths: np.ndarray) -> float:
    """The `seq_len` to count attention with: the length of the sequence an average token sits in.

    Attention costs each token work in proportion to its own sequence's length, so over examples of
    varied length the per-token mean is Σs²/Σs, not the plain mean Σs/n (equal when all match).
    """
    lengths = lengths.astype(np.float64)
    return float((lengths**2).sum() / max(1.0, lengths.sum()))


def peak_flops_by_name(name: str, precision: str) -> float | None:
    """Dense peak FLOP/s of the GPU called `name` at `precision` (bf16, fp16 or fp32), or None if unknown.

    fp32 means TF32 tensor cores: ptk turns TF32 matmuls on for fp32 runs on CUDA.
    """
    if precision not in (*TENSOR_PRECISIONS, "fp32"):
        raise ValueError(f"precision {precision!r}: expected bf16, fp16 or fp32")
    for fragment, half, tf32 in DENSE_PEAK_TFLOPS:
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(fragment)}(?![A-Za-z0-9])", name, re.IGNORECASE):
            return (half if precision in TENSOR_PRECISIONS else tf32) * 1e12
    return None


def peak_flops(device: torch.device, precision: str, override_tflops: float = 0.0) -> float | None:
    """Dense peak FLOP/s of `device` at `precision`: `override_tflops` when above 0, else the
    datasheet figure of a known GPU; None for a CPU or an unknown GPU, so MFU is left out, not guessed."""
    if override_tflops > 0:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    return peak_flops_by_name(torch.cuda.get_device_name(device), precision)
