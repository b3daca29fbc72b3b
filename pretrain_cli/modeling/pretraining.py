"""The pretraining model and its loss, computed at the masked positions only.

    model, fresh = build_model(PRESETS["tiny"], vocab_size=8192, pad_token_id=0, init=None, seed=0)
    loss_model = PretrainingLoss(model, pair_task=True)   # what DDP/FSDP/compile wrap
    mlm_sum, nsp_sum = loss_model(batch)

`BertForPreTraining.forward` projects every position onto the vocabulary and then ignores ~85%
of them; here the encoder runs once, the hidden states of the masked positions are gathered, and
only those rows go through the MLM head, which on a 30k vocabulary is most of the head's cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pretrain_cli.console import quiet_transformers
from pretrain_cli.modeling.presets import Preset, bert_config, padded_vocab_size

if TYPE_CHECKING:
    from transformers import BertForPreTraining

    from pretrain_cli.training.data import Batch


def build_model(preset: Preset, *, vocab_size: int, pad_token_id: int, init: Path | None,
                seed: int, dropout: float = 0.1) -> tuple[BertForPreTraining, list[str]]:
    """A fresh `preset`-sized model, or `init`'s encoder with new heads; and what was freshly initialised.

    vocab_size: the tokenizer's true size; the embedding is padded up to a multiple of 8.
    init: an HF BERT directory (a `BertModel` or `BertForPreTraining`); its size wins over `preset`.
    dropout: hidden and attention dropout, also replacing an `init` model's own.
    """
    import torch
    from transformers import BertForPreTraining

    torch.manual_seed(seed)  # the initial weights (and any fresh heads) depend on the seed alone
    rows = padded_vocab_size(vocab_size)
    if init is None:
        model = BertForPreTraining(bert_config(preset, vocab_size=rows, pad_token_id=pad_token_id,
                                                       dropout=dropout))
        return model, ["all weights"]
    with quiet_transformers():
        model, info = BertForPreTraining.from_pretrained(init, output_loading_info=True,
                                                         attn_implementation="sdpa", dtype=torch.float32,
                                                         hidden_dropout_prob=dropout,
                                                         attention_probs_dropout_prob=dropout)
    if model.config.vocab_size != rows:
        model.resize_token_embeddings(rows, mean_resizing=False)
    fresh = sorted({key.rsplit(".", 1)[0] for key in info["missing_keys"]})
    return model, fresh


class PretrainingLoss(torch.nn.Module):
    """BertForPreTraining whose forward returns the summed losses of a batch, so DDP, FSDP and
    torch.compile wrap one module whose forward does all the work (DDP's gradient hooks only fire
    for parameters used inside the wrapped forward).

    pair_task False (MLM-only examples, or `--objective mlm`): the pooler and NSP head are frozen,
    so no process waits for gradients that never come and the optimizer leaves them alone.
    """

    def __init__(self, model: BertForPreTraining, *, pair_task: bool) -> None:
        super().__init__()
        self.model, self.pair_task = model, pair_task
        if not pair_task:
            for module in (model.bert.pooler, model.cls.seq_relationship):
                if module is not None:
                    module.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
                mlm_rows: torch.Tensor, mlm_cols: torch.Tensor, mlm_labels: torch.Tensor,
                nsp_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed (not averaged) MLM and NSP/SOP cross-entropy of one micro-batch, in fp32.

        Sums let the caller divide by the counts of the whole global batch, so gradient accumulation
        and more processes give the gradient of one big batch, not a mean of micro-means.
        """
        encoded = self.model.bert(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids)
        masked_hidden = encoded.last_hidden_state[mlm_rows, mlm_cols]
        mlm_logits = self.model.cls.predictions(masked_hidden)
        mlm = F.cross_entropy(mlm_logits.float(), mlm_labels, reduction="sum")
        if not self.pair_task:  # RoBERTa-style MLM only: no sentence task
            return mlm, mlm.new_zeros(())
        nsp_logits = self.model.cls.seq_relationship(encoded.pooler_output)
        return mlm, F.cross_entropy(nsp_logits.float(), nsp_labels, reduction="sum")


def batch_inputs(batch: Batch) -> tuple[torch.Tensor, ...]:
    """A Batch as PretrainingLoss's positional arguments."""
    return (batch.input_ids, batch.token_type_ids, batch.attention_mask, batch.mlm_rows, batch.mlm_cols,
            batch.mlm_labels, batch.nsp_labels)
