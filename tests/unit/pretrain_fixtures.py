"""Examples directories for the pretrain tests, made from the real wiki summaries sample.

    examples = shared_examples(tmp_path_factory)   # corpus → tokenize → mask, the real stages
    fixed = fixed_examples(tmp_path_factory)       # this module's own builder, for the golden loss

Most tests run the real upstream stages (a few seconds), so they also check the contract between
`ptk mask` and `ptk pretrain`. The golden-loss trace must only move when training numerics change,
not when tokenization or masking do, so it reads a fixture built here: a WordPiece vocabulary of
the most frequent words and characters (Python-counted, ties broken by the string, so ids are the
same in every process), pairs of consecutive sentences of one article (label 0) or a sentence of
another article (label 1), and BERT's 80/10/10 masking of 15% of the tokens, all from one seeded
numpy generator, written through `StageOutput` with a config whose stage is "mask".
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pytest

from pretrain_cli.config import StageConfig, option
from pretrain_cli.samples import sample_path
from pretrain_cli.store import Manifest, StageOutput, file_sha256, shard_name

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@dataclasses.dataclass(kw_only=True)
class FixtureMaskConfig(StageConfig):
    """Stands in for the mask stage's config (stage "mask") in tests."""

    stage: ClassVar[str] = "mask"
    out: Path = option(help="Output directory.", hashed=False)
    articles: int = option(120, "Wiki summaries to use, in file order.")
    words: int = option(600, "Whole words in the vocabulary besides characters and specials.")
    max_seq_length: int = option(64, "Longest example, special tokens included.")
    seed: int = option(0, "Seed of pairing and masking.")


def _articles(count: int) -> list[str]:
    summaries = json.loads(sample_path("wiki_summaries").read_text())
    return [entry["extract"] for entry in list(summaries.values())[:count] if entry.get("extract")]


def _tokenizer(texts: list[str], words: int):
    from tokenizers import normalizers, pre_tokenizers
    from transformers import BertTokenizerFast

    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(piece for piece, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    frequent = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1][:words]
    vocab = [*SPECIALS, *chars, *(f"##{c}" for c in chars), *frequent]
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(dict.fromkeys(vocab))})


def _mask(ids: np.ndarray, rng: np.random.Generator, vocab_size: int, mask_id: int,
          special: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    candidates = np.flatnonzero(~special)
    count = max(1, round(0.15 * len(candidates)))
    positions = np.sort(rng.choice(candidates, size=count, replace=False))
    labels = ids[positions].copy()
    masked = ids.copy()
    roll = rng.random(count)
    masked[positions[roll < 0.8]] = mask_id
    swap = positions[(roll >= 0.8) & (roll < 0.9)]
    masked[swap] = rng.integers(len(SPECIALS), vocab_size, size=len(swap))
    return masked, positions, labels


def build_fixed_examples(out: Path, **options: int) -> Manifest:
    cfg = FixtureMaskConfig(out=out, **options)
    texts = _articles(cfg.articles)
    tokenizer = _tokenizer(texts, cfg.words)
    ids = tokenizer.convert_tokens_to_ids
    pad, cls, sep, mask = ids("[PAD]"), ids("[CLS]"), ids("[SEP]"), ids("[MASK]")
    vocab_size = len(tokenizer)
    rng = np.random.default_rng(cfg.seed)
    articles = [[tokenizer(s, add_special_tokens=False)["input_ids"] for s in SENTENCE_END.split(t)]
                for t in texts]
    half = (cfg.max_seq_length - 3) // 2
    rows: dict[str, list] = {k: [] for k in ("input_ids", "segment_b_start", "masked_positions",
                                             "masked_labels", "next_sentence_label")}
    for a_index, sentences in enumerate(articles):
        for i in range(len(sentences) - 1):
            is_random = bool(rng.random() < 0.5)
            if is_random:
                other = articles[(a_index + 1 + rng.integers(len(articles) - 1)) % len(articles)]
                b = other[rng.integers(len(other))]
            else:
                b = sentences[i + 1]
            a = sentences[i][:half]
            b = b[:cfg.max_seq_length - 3 - len(a)]
            if not a or not b:
                continue
            seq = np.array([cls, *a, sep, *b, sep], dtype=np.int64)
            special = np.isin(seq, [cls, sep])
            masked, positions, labels = _mask(seq, rng, vocab_size, mask, special)
            rows["input_ids"].append(masked)
            rows["segment_b_start"].append(len(a) + 2)
            rows["masked_positions"].append(positions)
            rows["masked_labels"].append(labels)
            rows["next_sentence_label"].append(int(is_random))
    output = StageOutput(cfg, out, owned=("tokenizer",))
    if (done := output.up_to_date()) is not None:
        return done
    tokenizer.save_pretrained(str(out / "tokenizer"))
    valid = max(1, len(rows["input_ids"]) // 20)
    for split, part in (("valid", slice(0, valid)), ("train", slice(valid, None))):
        table = pa.table({
            "input_ids": pa.array([r.tolist() for r in rows["input_ids"][part]], pa.list_(pa.uint16())),
            "segment_b_start": pa.array(rows["segment_b_start"][part], pa.int16()),
            "masked_positions": pa.array([r.tolist() for r in rows["masked_positions"][part]],
                                         pa.list_(pa.int16())),
            "masked_labels": pa.array([r.tolist() for r in rows["masked_labels"][part]],
                                      pa.list_(pa.uint16())),
            "next_sentence_label": pa.array(rows["next_sentence_label"][part], pa.int8()),
        })
        tokens = sum(len(r) for r in rows["input_ids"][part])
        output.write_shard(shard_name(0, split), table, tokens=tokens, split=split)
    extra = {"vocab_size": vocab_size, "tokenizer_sha256": file_sha256(out / "tokenizer" / "tokenizer.json"),
             "id_dtype": "uint16", "special_ids": {"pad": pad, "unk": ids("[UNK]"), "cls": cls, "sep": sep,
                                                   "mask": mask},
             "max_seq_length": cfg.max_seq_length, "objective": "mlm+nsp"}
    return output.finish(stats={"examples": len(rows["input_ids"])}, extra=extra)


def build_pipeline_examples(root: Path, *, articles: int = 150, vocab_size: int = 1000,
                            tokenizer: Path | None = None, **mask_options: object) -> Path:
    """`ptk corpus build` → `ptk tokenize` → `ptk mask` on the first `articles` wiki summaries
    (`mask_options`: other MaskConfig fields, e.g. objective="sop", dynamic=True)."""
    from pretrain_cli.stages.corpus.build import CorpusConfig
    from pretrain_cli.stages.corpus.build import run as corpus
    from pretrain_cli.stages.mask.stage import MaskConfig
    from pretrain_cli.stages.mask.stage import run as mask
    from pretrain_cli.stages.tokenize.stage import TokenizeConfig
    from pretrain_cli.stages.tokenize.stage import run as tokenize

    corpus(CorpusConfig(inputs=[Path("sample:wiki_summaries")], out=root / "docs", limit=articles))
    tokenize(TokenizeConfig(docs=root / "docs", out=root / "tokens", vocab_size=vocab_size,
                            tokenizer=tokenizer))
    mask(MaskConfig(tokens=root / "tokens", out=root / "examples", max_seq_length=64, dupe_factor=1,
                    **mask_options))
    return root / "examples"


def shared_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real-stage examples, built once per test session."""
    root = tmp_path_factory.getbasetemp() / "pretrain-pipeline"
    if not (root / "examples" / "manifest.json").is_file():
        build_pipeline_examples(root)
    return root / "examples"


def fixed_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's fixed examples, built once per test session."""
    path = tmp_path_factory.getbasetemp() / "pretrain-fixed"
    if not (path / "manifest.json").is_file():
        build_fixed_examples(path)
    return path
