"""Real token data for the statistical tests of pairing and masking: no ptk stage in between.

    docs = real_token_documents(150_000)
    docs.values[docs.sentence_offsets[j]:docs.sentence_offsets[j + 1]]   # sentence j's token ids

Wikipedia lead sections from the wiki_summaries sample, split into paragraphs and sentences by
ptk's splitter and encoded by the bert-base-uncased WordPiece vocabulary shipped with the MiniLM
sample, so the tests see real sentence lengths, real word lengths and real `##` continuations.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json

import numpy as np


@dataclasses.dataclass(frozen=True)
class TokenDocuments:
    """Documents as flat arrays, the layout `ptk tokenize` shards flatten to."""

    values: np.ndarray            # uint16 token ids, all sentences concatenated, no special tokens
    word_starts: np.ndarray       # bool per token: True where a word (pre-tokenizer piece) begins
    sentence_offsets: np.ndarray  # int64, sentences + 1: sentence j is values[o[j]:o[j + 1]]
    doc_offsets: np.ndarray       # int64, documents + 1: document d is sentences [o[d], o[d + 1])
    special_ids: dict[str, int]   # pad, unk, cls, sep, mask
    vocab_size: int


@functools.lru_cache(maxsize=4)
def real_token_documents(min_tokens: int = 150_000) -> TokenDocuments:
    """The first wiki_summaries articles, in file order, until at least `min_tokens` tokens."""
    from tokenizers import Tokenizer

    from pretrain_cli.samples import sample_path
    from pretrain_cli.stages.corpus.sentences import split_sentences

    tokenizer = Tokenizer.from_file(str(sample_path("minilm") / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    articles = json.loads(sample_path("wiki_summaries").read_text(encoding="utf-8")).values()
    values, starts, sentence_lengths, doc_lengths = [], [], [], []
    total = 0
    for article in articles:
        sentences = [s for paragraph in article["extract"].split("\n") for s in split_sentences(paragraph)]
        if not sentences:
            continue
        for encoding in tokenizer.encode_batch(sentences, add_special_tokens=False):
            words = np.array(encoding.word_ids, dtype=np.int64)
            values.append(np.array(encoding.ids, dtype=np.uint16))
            starts.append(np.r_[True, words[1:] != words[:-1]] if words.size else words.astype(bool))
            sentence_lengths.append(words.size)
            total += words.size
        doc_lengths.append(len(sentences))
        if total >= min_tokens:
            break
    vocab = tokenizer.get_vocab()
    return TokenDocuments(
        values=np.concatenate(values), word_starts=np.concatenate(starts),
        sentence_offsets=np.array([0, *itertools.accumulate(sentence_lengths)], dtype=np.int64),
        doc_offsets=np.array([0, *itertools.accumulate(doc_lengths)], dtype=np.int64),
        special_ids={role: vocab[f"[{role.upper()}]"] for role in ("pad", "unk", "cls", "sep", "mask")},
        vocab_size=tokenizer.get_vocab_size())
