"""The pretraining model and its loss, computed at the masked positions only.

    model, fresh = build_model(PRESETS["tiny"], vocab_size=8192, pad_token_id=0, init=None, seed=0)
    mlm_sum, nsp_sum = pretraining_loss_sums(model, batch)

`BertForPreTraining.forward` projects every position onto the vocabulary and then ignores ~85%
of them; here the encoder runs once, the hidden states of the masked positions are gathered, and
only those rows go through the MLM head, which on a 30k vocabulary is most of the head's cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pretrain_cli.console import quiet_transformers
from pretrain_cli.modeling.presets import Preset, bert_config, padded_vocab_size

if TYPE_CHECKING:
    import torch
    from transformers import BertForPreTraining

    from pretrain_cli.training.data import Batch


def build_model(preset: Preset, *, vocab_size: int, pad_token_id: int, init: Path | None,
                seed: int) -> tuple[BertForPreTraining, list[str]]:
    """A fresh `preset`-sized model, or `init`'s encoder with new heads; and what was freshly initialised.

    vocab_size: the tokenizer's true size; the embedding is padded up to a multiple of 8.
    init: an HF BERT directory (a `BertModel` or `BertForPreTraining`); its size wins over `preset`.
    """
    import torch
    from transformers import BertForPreTraining

    torch.manual_seed(seed)  # the initial weights (and any fresh heads) depend on the seed alone
    rows = padded_vocab_size(vocab_size)
    if init is None:
        model = BertForPreTraining(bert_config(preset, vocab_size=rows, pad_token_id=pad_token_id))
        return model, ["all weights"]
    with quiet_transformers():
        model, info = BertForPreTraining.from_pretrained(init, output_loading_info=True,
                                                         attn_implementation="sdpa", dtype=torch.float32)
    if model.config.vocab_size != rows:
        model.resize_token_embeddings(rows, mean_resizing=False)
    fresh = sorted({key.rsplit(".", 1)[0] for key in info["missing_keys"]})
    return model, fresh


def pretraining_loss_sums(model: BertForPreTraining, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed (not averaged) MLM and NSP/SOP cross-entropy of one micro-batch, in fp32.

    Examples without a sentence task (objective none) give an NSP sum of 0 and skip its head.
    Sums let the caller divide by the counts of the whole global batch, so gradient accumulation
    (and later, more processes) gives the gradient of one big batch, not a mean of micro-means.
    """
    import torch.nn.functional as F

    encoded = model.bert(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         token_type_ids=batch.token_type_ids)
    masked_hidden = encoded.last_hidden_state[batch.mlm_rows, batch.mlm_cols]
    mlm_logits = model.cls.predictions(masked_hidden)
    mlm = F.cross_entropy(mlm_logits.float(), batch.mlm_labels, reduction="sum")
    if batch.nsp_labels.numel() == 0:  # MLM-only examples (RoBERTa packing): no sentence task
        return mlm, mlm.new_zeros(())
    nsp_logits = model.cls.seq_relationship(encoded.pooler_output)
    nsp = F.cross_entropy(nsp_logits.float(), batch.nsp_labels, reduction="sum")
    return mlm, nsp
