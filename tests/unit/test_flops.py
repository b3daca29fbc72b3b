"""The FLOPs count behind MFU, and the peaks it is divided by."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pretrain_cli.modeling.presets import Preset
from pretrain_cli.modeling.pretraining import PretrainingLoss, build_model
from pretrain_cli.training.flops import peak_flops, peak_flops_by_name, training_flops_per_token


def test_flops_per_token_matches_a_hand_count() -> None:
    # L=2, h=4, i=8, V=10, s=5, m=0.2:
    #   encoder weights  6 · (4·16 + 2·4·8) · 2 = 6 · 128 · 2   = 1536
    #   attention        12 · 5 · 4 · 2                        =  480
    #   MLM head         6 · (16 + 40) · 0.2                   =   67.2
    #   pooler + NSP     6 · (16 + 8) / 5                      =   28.8
    shape = dict(layers=2, hidden=4, intermediate=8, vocab_rows=10, seq_len=5.0, masked_fraction=0.2)
    assert training_flops_per_token(**shape) == pytest.approx(1536 + 480 + 67.2 + 28.8)
    assert training_flops_per_token(**shape, pair_task=False) == pytest.approx(1536 + 480 + 67.2)


def test_flops_per_token_equals_what_torch_counts_for_one_training_step() -> None:
    """ptk's own loss module, forward + backward, measured by torch's FLOP counter. Eager attention,
    so the two attention matmuls are counted too, and no padding, so every position is a real token."""
    vocab, batch, seq, layers, hidden = 37, 3, 16, 2, 32
    model, _ = build_model(Preset(layers=layers, hidden=hidden, heads=2), vocab_size=vocab, pad_token_id=0,
                           init=None, seed=0, dropout=0.0)
    model.set_attn_implementation("eager")
    loss_model = PretrainingLoss(model, pair_task=True)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, vocab, (batch, seq), generator=generator)
    token_type_ids = (torch.arange(seq) >= seq // 2).long().expand(batch, seq)
    rows, cols = torch.tensor([0, 0, 1, 2, 2]), torch.tensor([1, 5, 3, 2, 9])
    labels = torch.randint(0, vocab, (5,), generator=generator)
    with FlopCounterMode(display=False) as counter:
        no_sentences = torch.zeros((0, 0), dtype=torch.long)
        losses = loss_model(input_ids, token_type_ids, torch.ones_like(input_ids), rows, cols, labels,
                            torch.tensor([0, 1, 0]), no_sentences, no_sentences)
        sum(losses).backward()
    per_token = training_flops_per_token(layers=layers, hidden=hidden, intermediate=4 * hidden,
                                         vocab_rows=model.config.vocab_size, seq_len=seq,
                                         masked_fraction=5 / (batch * seq))
    assert per_token * batch * seq == pytest.approx(counter.get_total_flops(), rel=1e-9)


@pytest.mark.parametrize(("name", "precision", "tflops"), [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
    ("NVIDIA H100 80GB HBM3", "fp32", 494.7),
    ("NVIDIA H100 PCIe", "bf16", 756.0),
    ("NVIDIA H200", "fp16", 989.4),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
    ("NVIDIA A100-PCIE-40GB", "fp32", 156.0),
    ("NVIDIA A10G", "bf16", 70.0),
    ("NVIDIA L40S", "bf16", 362.05),
    ("NVIDIA L4", "fp32", 60.0),
])
def test_known_gpus_get_their_dense_datasheet_peak(name: str, precision: str, tflops: float) -> None:
    assert peak_flops_by_name(name, precision) == pytest.approx(tflops * 1e12)


def test_names_that_merely_contain_a_known_one_are_unknown() -> None:
    assert peak_flops_by_name("NVIDIA RTX A1000 Laptop GPU", "bf16") is None  # not an A10
    assert peak_flops_by_name("NVIDIA GeForce RTX 4090", "bf16") is None


def test_peak_of_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert peak_flops(torch.device("cuda"), "bf16") == pytest.approx(989.4e12)
    assert peak_flops(torch.device("cpu"), "fp32") is None  # MFU left out rather than guessed
    assert peak_flops(torch.device("cpu"), "fp32", override_tflops=1.5) == pytest.approx(1.5e12)
    assert peak_flops(torch.device("cuda"), "bf16", override_tflops=500.0) == pytest.approx(500e12)
    with pytest.raises(ValueError, match="precision"):
        peak_flops(torch.device("cuda"), "int8")
