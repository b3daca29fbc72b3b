"""ptk's bottleneck adapters and BitFit on a tiny BERT: where the adapters sit, that an adapted model
starts as the base, what trains and what stays frozen, and how the base's own tensors are found again."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pretrain_cli.modeling.adapters import (
    Adapted,
    Bottleneck,
    add_adapters,
    base_name,
    trains_with_adapters,
    trains_with_bitfit,
)
from pretrain_cli.modeling.methods import MethodConfig, prepare


def tiny_classifier(seed: int = 0) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(config)


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 50, (4, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2:, 6:] = 0
    return {"input_ids": input_ids, "token_type_ids": torch.zeros_like(input_ids),
            "attention_mask": attention_mask, "labels": torch.tensor([0, 1, 1, 0])}


def test_a_fresh_bottleneck_adds_nothing() -> None:
    torch.manual_seed(0)
    projection = torch.nn.Linear(16, 16)
    adapted = Adapted(projection, Bottleneck(16, 4, init_range=0.02))
    x = torch.randn(3, 16)
    assert torch.equal(adapted.adapter(projection(x)), torch.zeros(3, 16))
    assert torch.equal(adapted(x), projection(x))
    assert adapted.adapter.down.weight.abs().max() > 0  # only the up-projection starts at zero


@pytest.mark.parametrize("variant", ["houlsby", "pfeiffer"])
def test_adapters_sit_after_the_output_projections_and_start_as_the_base(variant: str) -> None:
    model = tiny_classifier().eval()
    inputs = {k: v for k, v in batch().items() if k != "labels"}
    with torch.no_grad():
        before = model(**inputs).logits
    add_adapters(model.bert, variant=variant, size=8)
    for layer in model.bert.encoder.layer:
        assert isinstance(layer.output.dense, Adapted)  # after the feed-forward output projection
        # Houlsby also after the attention output projection; the query/key/value stay plain
        assert isinstance(layer.attention.output.dense, Adapted) == (variant == "houlsby")
        assert isinstance(layer.attention.self.query, torch.nn.Linear)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, before)


def test_adapter_method_trains_bottlenecks_layer_norms_and_head_only() -> None:
    model = tiny_classifier()
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    ft = prepare(model, MethodConfig(name="adapter", adapter_size=8), "classification")
    optimizer = torch.optim.AdamW(list(ft.trainable().values()), lr=1e-2)
    data = batch()
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(ft.logits(data), data["labels"])
        loss.backward()
        up = ft.model.bert.encoder.layer[0].output.dense.adapter.up.weight
        down = ft.model.bert.encoder.layer[0].output.dense.adapter.down.weight
        if not losses:  # first step: the zero up-projection blocks the gradient to down, not to up
            assert up.grad.abs().max() > 0 and down.grad.abs().max() == 0
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert down.abs().max() > 0 and up.abs().max() > 0
    for name, param in ft.model.named_parameters():
        original = base_name(name)
        if original is None:
            continue
        trained = trains_with_adapters(original) or original.startswith("classifier.")
        assert param.requires_grad == trained, name
        assert torch.equal(param, start[original]) != trained, name  # frozen ones did not move
    # the base's tensors, as they were, under the base's names
    assert ft.base_weights().keys() == start.keys()
    assert all(torch.equal(ft.base_weights()[name], value) for name, value in start.items())


def test_bitfit_trains_every_bias_and_the_head() -> None:
    model = tiny_classifier()
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    ft = prepare(model, MethodConfig(name="bitfit"), "classification")
    optimizer = torch.optim.AdamW(list(ft.trainable().values()), lr=1e-2)
    data = batch()
    for _ in range(3):
        F.cross_entropy(ft.logits(data), data["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad()
    moved = {name for name, p in ft.model.named_parameters() if not torch.equal(p, start[name])}
    biases = {name for name in start if name.endswith(".bias")}
    # every bias the loss reaches moved (the pooler's and the head's too), and no weight but the head's
    assert moved <= biases | {"classifier.weight"} and "classifier.weight" in moved
    assert {"bert.embeddings.LayerNorm.bias", "bert.pooler.dense.bias", "classifier.bias"} <= moved
    assert all(torch.equal(ft.base_weights()[name], value) for name, value in start.items())


def test_names() -> None:
    assert base_name("bert.encoder.layer.3.output.dense.projection.weight") == \
        "bert.encoder.layer.3.output.dense.weight"
    assert base_name("bert.encoder.layer.3.output.dense.adapter.up.bias") is None
    assert base_name("classifier.weight") == "classifier.weight"
    assert trains_with_adapters("bert.encoder.layer.0.attention.output.LayerNorm.weight")
    assert trains_with_adapters("bert.encoder.layer.0.output.dense.adapter.down.weight")
    assert not trains_with_adapters("bert.encoder.layer.0.output.dense.projection.bias")
    assert trains_with_bitfit("bert.encoder.layer.0.output.LayerNorm.bias")
    assert not trains_with_bitfit("bert.encoder.layer.0.output.LayerNorm.weight")
