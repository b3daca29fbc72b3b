"""Training a tokenizer on a corpus sample: BERT's WordPiece, or a SentencePiece-style Unigram.

    hf = train_tokenizer(TokenizeConfig(docs=Path("work/docs"), vocab_size=8192), corpus_manifest)
    hf.save_pretrained("work/tokens/tokenizer")

The vocabulary opens with the special tokens, in this order: [PAD] [UNK] [CLS] [SEP] [MASK] (ids
0-4), the --special-tokens, then [unused0] .. [unusedN-1] for --reserved N. Both models give the
same ids for the same sample, run after run (see `train_wordpiece` and `unigram.train_unigram`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from pretrain_cli.errors import UserError

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from tokenizers.normalizers import Normalizer
    from tokenizers.processors import PostProcessor
    from transformers import PreTrainedTokenizerBase

    from pretrain_cli.stages.tokenize.stage import TokenizeConfig
    from pretrain_cli.store import Manifest

ROLE_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SPECIAL_ROLES = ("pad", "unk", "cls", "sep", "mask")

# The training text, as a function that starts a fresh pass each time it is called.
TextPasses = Callable[[], Iterator[list[str]]]


def special_tokens(cfg: TokenizeConfig) -> list[str]:
    """Every special token of a trained vocabulary, in id order."""
    return [*ROLE_TOKENS, *cfg.extra_special_tokens(), *(f"[unused{i}]" for i in range(cfg.reserved))]


def train_tokenizer(cfg: TokenizeConfig, docs: Manifest) -> PreTrainedTokenizerBase:
    """A tokenizer of `cfg.model` trained on the `cfg.train_bytes` sample of the corpus `docs`."""
    from pretrain_cli.stages.tokenize.sample import sample_batches, sample_buckets
    from pretrain_cli.stages.tokenize.unigram import train_unigram, unigram_pipeline

    specials = special_tokens(cfg)
    pipeline = wordpiece_pipeline(cfg) if cfg.model == "wordpiece" else unigram_pipeline(cfg)
    buckets = sample_buckets(docs, cfg.train_bytes)
    text = limit_alphabet(lambda: sample_batches(docs, buckets, cfg.batch_size), pipeline.normalizer,
                          cfg.limit_alphabet)
    if cfg.model == "unigram":
        return train_unigram(cfg, text, specials)
    return train_wordpiece(cfg, text, specials)


def train_wordpiece(cfg: TokenizeConfig, text: TextPasses, specials: list[str]) -> PreTrainedTokenizerBase:
    """BERT's WordPiece, with every id reproducible.

    The `tokenizers` trainer numbers the `##x` continuation characters in hash-map order, and ties
    between equally frequent merges are broken by those numbers, so two trainings on the same text
    can give different vocabularies. A first, merge-free pass finds the continuation characters;
    the real pass gets them (sorted) as fixed entries, which makes every id reproducible.
    """
    from tokenizers.trainers import WordPieceTrainer
    from transformers import BertTokenizerFast

    base = wordpiece_pipeline(cfg)
    base.train_from_iterator(text(), trainer=WordPieceTrainer(
        vocab_size=0, special_tokens=specials, show_progress=False))
    alphabet = base.get_vocab()
    if cfg.vocab_size <= len(alphabet):
        raise UserError(f"--vocab-size {cfg.vocab_size} leaves no room for merges: {cfg.docs} has an "
                        f"alphabet of {len(alphabet):,} entries (characters, ## continuations and special "
                        f"tokens); use a --vocab-size above {len(alphabet):,} or a smaller --limit-alphabet")
    continuations = sorted(token for token in alphabet if token.startswith("##"))
    trained = wordpiece_pipeline(cfg)
    trained.train_from_iterator(text(), trainer=WordPieceTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
        special_tokens=[*specials, *continuations], show_progress=False))
    # Rebuild from the vocabulary alone so the continuations are ordinary entries, not special tokens.
    tokenizer = wordpiece_pipeline(cfg, trained.get_vocab(with_added_tokens=False))
    tokenizer.add_special_tokens(specials)
    # The normaliser options are repeated as kwargs: a reload rebuilds the backend from them.
    return BertTokenizerFast(tokenizer_object=tokenizer, do_lower_case=cfg.lowercase,
                             strip_accents=cfg.accent_stripping(), tokenize_chinese_chars=cfg.split_cjk,
                             additional_special_tokens=specials[len(ROLE_TOKENS):])


def wordpiece_pipeline(cfg: TokenizeConfig, vocab: dict[str, int] | None = None) -> Tokenizer:
    """BERT's normaliser, pre-tokenizer, decoder and [CLS] A [SEP] B [SEP] template around a WordPiece."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]") if vocab else WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=cfg.split_cjk, strip_accents=cfg.accent_stripping(),
        lowercase=cfg.lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.post_processor = pair_template()
    return tokenizer


def pair_template() -> PostProcessor:
    """[CLS] A [SEP] (single) and [CLS] A [SEP] B [SEP] (pair), token types 0 then 1."""
    from tokenizers import processors

    cls, sep = ROLE_TOKENS.index("[CLS]"), ROLE_TOKENS.index("[SEP]")
    return processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])


def limit_alphabet(text: TextPasses, normalizer: Normalizer, limit: int) -> TextPasses:
    """`text`, keeping only the `limit` most frequent characters (after normalisation) when > 0.

    The trainers' own limit breaks ties between equally rare characters in hash-map order, and
    the Unigram trainer has none; here ties go to the lower code point, and the other characters
    are deleted from the (normalised) training text, as the WordPiece trainer does. Encoding then
    maps a word holding one of them to [UNK]. Whitespace is never counted or removed.
    """
    if not limit:
        return text
    dropped = rare_characters(text(), normalizer, limit)
    if not dropped:
        return text
    deletions = dict.fromkeys(map(ord, dropped))

    def limited() -> Iterator[list[str]]:
        for batch in text():
            # Normalising twice (here and in the trainer) changes nothing: every step is idempotent.
            yield [normalizer.normalize_str(sentence).translate(deletions) for sentence in batch]

    return limited


def rare_characters(batches: Iterable[list[str]], normalizer: Normalizer, keep: int) -> set[str]:
    """The non-whitespace characters outside the `keep` most frequent ones, ties by code point."""
    counts: Counter[str] = Counter()
    for batch in batches:
        for sentence in batch:
            counts.update(normalizer.normalize_str(sentence))
    ranked = sorted((c for c in counts if not c.isspace()), key=lambda c: (-counts[c], c))
    return set(ranked[keep:])
