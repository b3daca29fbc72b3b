"""The pretraining model and its loss, computed at the masked positions only.

    model, fresh = build_model(PRESETS["tiny"], vocab_size=8192, pad_token_id=0, init=None, seed=0)
    loss_model = PretrainingLoss(model, pair_task=True)   # what DDP/FSDP/compile wrap
    mlm_sum, nsp_sum, contrastive_sum = loss_model(*batch_inputs(batch))

`BertForPreTraining.forward` projects every position onto the vocabulary and then ignores ~85%
of them; here the encoder runs once, the hidden states of the masked positions are gathered, and
only those rows go through the MLM head, which on a 30k vocabulary is most of the head's cost.

With a contrastive objective (SimCSE) the same encoder also reads the batch's sentences unmasked,
pools and projects them, and scores each anchor against the positives of every process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pretrain_cli.console import quiet_transformers
from pretrain_cli.modeling.presets import Preset, bert_config, padded_vocab_size
from pretrain_cli.modeling.sentence import ProjectionHead, gather_with_grad, info_nce, pool

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


@dataclasses.dataclass(frozen=True)
class Contrastive:
    """The SimCSE loss a PretrainingLoss adds: InfoNCE over pooled, projected sentence vectors."""

    temperature: float  # cosine similarities are divided by it (SimCSE: 0.05)
    pooling: str  # cls or mean, over the encoder's last hidden states
    views: int  # rows per anchor in a batch's contrast_ids: 1 (each encoded twice: dropout makes the
                # positive), 2 (anchor, positive) or 3 (anchor, positive, hard negative), view-major
    group: object | None = None  # the process group whose processes' rows are negatives too (None: alone)


class PretrainingLoss(torch.nn.Module):
    """BertForPreTraining whose forward returns the summed losses of a batch, so DDP, FSDP and
    torch.compile wrap one module whose forward does all the work (DDP's gradient hooks only fire
    for parameters used inside the wrapped forward).

    pair_task False (MLM-only examples, or an objective without NSP/SOP): the pooler and NSP head
    are frozen, so no process waits for gradients that never come and the optimizer leaves them alone.
    mlm False (`--objective simcse`): the MLM head's own weights are frozen likewise (its decoder is
    the word embedding, which the encoder trains).
    contrastive: adds SimCSE, with its projection head (trained here, kept out of the HF model).
    """

    def __init__(self, model: BertForPreTraining, *, pair_task: bool, mlm: bool = True,
                 contrastive: Contrastive | None = None) -> None:
        super().__init__()
        self.model, self.pair_task, self.mlm, self.contrastive = model, pair_task, mlm, contrastive
        if not pair_task:
            for module in (model.bert.pooler, model.cls.seq_relationship):
                if module is not None:
                    module.requires_grad_(False)
        if not mlm:
            model.cls.predictions.transform.requires_grad_(False)
            model.cls.predictions.bias.requires_grad_(False)
        if contrastive is not None:
            # created after the model, from the same seeded generator: the same head on every process
            self.projection = ProjectionHead(model.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
                mlm_rows: torch.Tensor, mlm_cols: torch.Tensor, mlm_labels: torch.Tensor,
                nsp_labels: torch.Tensor, contrast_ids: torch.Tensor,
                contrast_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed (not averaged) MLM, NSP/SOP and contrastive losses of one micro-batch, in fp32.

        Sums let the caller divide by the counts of the whole global batch, so gradient accumulation
        and more processes give the gradient of one big batch, not a mean of micro-means.
        """
        zero = self.model.bert.embeddings.word_embeddings.weight.new_zeros((), dtype=torch.float32)
        mlm = nsp = contrastive = zero
        if self.mlm:
            encoded = self.model.bert(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids)
            masked_hidden = encoded.last_hidden_state[mlm_rows, mlm_cols]
            mlm_logits = self.model.cls.predictions(masked_hidden)
            mlm = F.cross_entropy(mlm_logits.float(), mlm_labels, reduction="sum")
            if self.pair_task:  # not for RoBERTa-style MLM only
                nsp_logits = self.model.cls.seq_relationship(encoded.pooler_output)
                nsp = F.cross_entropy(nsp_logits.float(), nsp_labels, reduction="sum")
        if self.contrastive is not None:
            contrastive = self._contrastive(contrast_ids, contrast_mask)
        return mlm, nsp, contrastive

    def _contrastive(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """InfoNCE of this process's anchors against every process's positives (and hard negatives)."""
        settings = self.contrastive
        assert settings is not None
        if settings.views == 1:  # unsupervised: the same sentences twice, in one pass, under dropout
            ids, mask = ids.repeat(2, 1), mask.repeat(2, 1)
        hidden = self.model.bert(input_ids=ids, attention_mask=mask,
                                 token_type_ids=torch.zeros_like(ids)).last_hidden_state
        vectors = self.projection(pool(hidden, mask, settings.pooling))
        anchors, *others = vectors.chunk(max(2, settings.views))
        candidates = torch.cat([gather_with_grad(view, settings.group) for view in others])
        rank = torch.distributed.get_rank(settings.group) if settings.group is not None else 0
        return info_nce(anchors, candidates, settings.temperature, first_positive=rank * anchors.shape[0])


def batch_inputs(batch: Batch) -> tuple[torch.Tensor, ...]:
    """A Batch as PretrainingLoss's positional arguments."""
    return (batch.input_ids, batch.token_type_ids, batch.attention_mask, batch.mlm_rows, batch.mlm_cols,
            batch.mlm_labels, batch.nsp_labels, batch.contrast_ids, batch.contrast_mask)
