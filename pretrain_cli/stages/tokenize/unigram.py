"""A SentencePiece-style Unigram tokenizer (ALBERT's kind), trained reproducibly.

    hf = train_unigram(cfg, text, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    hf.tokenize("Tokenization")   # ['▁token', 'ization'], say

Words are whitespace-delimited and marked with a leading "▁" (Metaspace), the text is NFKC
normalised and optionally lowercased and accent-stripped, and the vocabulary carries the same five
special-token roles as BERT's, so later stages treat both models alike.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pretrain_cli.errors import UserError

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from tokenizers.models import Model
    from transformers import PreTrainedTokenizerBase

    from pretrain_cli.stages.tokenize.stage import TokenizeConfig
    from pretrain_cli.stages.tokenize.train import TextPasses

# Special pieces score far below any path of ordinary pieces, so the model never spells one out of
# text (a literal "[MASK]" is encoded as its characters), while their ids stay at the front.
SPECIAL_SCORE = -1e4
# The trainer gives each character it must keep but had pruned `lowest + k * 1e-4`, k counting in
# hash-set order; see `canonical_pieces`.
COVERAGE_STEP = 1e-4
SCORE_DECIMALS = 6


def train_unigram(cfg: TokenizeConfig, text: TextPasses, specials: list[str]) -> PreTrainedTokenizerBase:
    """A Unigram tokenizer of at most `cfg.vocab_size` pieces (specials included)."""
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer
    from transformers import PreTrainedTokenizerFast

    from pretrain_cli.stages.tokenize.train import ROLE_TOKENS

    trained = unigram_pipeline(cfg)
    trained.train_from_iterator(text(), trainer=UnigramTrainer(
        vocab_size=cfg.vocab_size, special_tokens=specials, unk_token="[UNK]", show_progress=False))
    pieces = canonical_pieces(json.loads(trained.to_str())["model"]["vocab"], specials)
    if len(pieces) > cfg.vocab_size:
        characters = sum(len(piece) == 1 for piece, _ in pieces[len(specials):])
        raise UserError(f"--vocab-size {cfg.vocab_size} is smaller than what a Unigram vocabulary of "
                        f"{cfg.docs} must hold: {characters:,} characters plus {len(specials)} special "
                        f"tokens; use a --vocab-size of at least {len(pieces):,} or a smaller "
                        f"--limit-alphabet")
    tokenizer = unigram_pipeline(cfg, Unigram(pieces, unk_id=specials.index("[UNK]"), byte_fallback=False))
    tokenizer.add_special_tokens(specials)
    # BERT-family models take token types (segment A/B); a generic fast tokenizer must be told.
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   additional_special_tokens=specials[len(ROLE_TOKENS):],
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def canonical_pieces(pieces: list[list], specials: list[str]) -> list[tuple[str, float]]:
    """The trainer's pieces in an order and with scores that do not depend on hash seeds.

    The trainer iterates hash maps whose seeds change from run to run, which leaves three traces:
    float sums in another order (the last digits of a score), the 1e-4 steps given to characters
    it re-adds for coverage (assigned in hash-set order), and ties in the final sort. Scores are
    rounded to 6 decimals, the re-added characters all get the lowest score, and pieces are sorted
    by score, then text; the specials go first, in their order.
    """
    rest = [(piece, float(score)) for piece, score in pieces if piece not in specials]
    lowest = min((score for _, score in rest), default=0.0)
    characters = sum(len(piece) == 1 for piece, _ in rest)  # at most this many were re-added

    def canonical(piece: str, score: float) -> float:
        steps = (score - lowest) / COVERAGE_STEP
        if len(piece) == 1 and 0.5 < steps < characters and abs(steps - round(steps)) < 1e-6:
            score = lowest
        return round(score, SCORE_DECIMALS)

    ordered = sorted(((piece, canonical(piece, score)) for piece, score in rest), key=lambda p: (-p[1], p[0]))
    return [(token, SPECIAL_SCORE) for token in specials] + ordered


def unigram_pipeline(cfg: TokenizeConfig, model: Model | None = None) -> Tokenizer:
    """NFKC (+ lowercase, + accent stripping), Metaspace words, the BERT pair template."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram

    from pretrain_cli.stages.tokenize.train import pair_template

    tokenizer = Tokenizer(model if model is not None else Unigram())
    steps = [normalizers.NFKC()]
    if cfg.lowercase:
        steps.append(normalizers.Lowercase())
    if cfg.accent_stripping():
        steps += [normalizers.NFD(), normalizers.StripAccents(), normalizers.NFC()]
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = pair_template()
    return tokenizer
