"""`ptk mask`: BERT pretraining examples (sentence pairs for NSP, masked positions for MLM) from tokens.

    ptk mask work/tokens --out work/examples --max-seq-length 128 --dupe-factor 5

For each token shard i it writes `train-i.arrow` and (when --valid-fraction > 0) `valid-i.arrow`:
`input_ids: list<uint16>` ([CLS] A [SEP] B [SEP], masks applied, unpadded), `segment_b_start: int16`,
`masked_positions: list<int16>`, `masked_labels: list<uint16>`, `next_sentence_label: int8`
(0 = B follows A, 1 = B is random). Ids are int32 instead of uint16 for vocabularies over 65,536.
A document goes to "valid" by a hash of its id, so the split never depends on sharding. Every random
choice comes from a generator seeded by (seed, shard, split, dupe round): the output is fixed by the
seed whatever --workers is, and a resumed run rewrites exactly the missing shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import progress_bar, say
from pretrain_cli.errors import UserError
from pretrain_cli.stages.tokenize.stage import TOKENIZER_DIR
from pretrain_cli.workers import ordered_map

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from pretrain_cli.stages.mask.masking import MaskedBatch
    from pretrain_cli.store import Manifest, StageOutput

SPLITS = ("train", "valid")
MAX_INT16 = (1 << 15) - 1


@dataclasses.dataclass(kw_only=True)
class MaskConfig(StageConfig):
    """Build masked-LM + next-sentence pretraining examples from `ptk tokenize` output.

        ptk mask work/tokens --out work/examples --max-seq-length 128
    """

    stage: ClassVar[str] = "mask"

    # Not hashed: the tokens' manifest fingerprint is part of the output's key instead.
    tokens: Path = option(help="Token directory written by `ptk tokenize`.", argument=True, hashed=False)
    out: Path = option(Path("work/examples"), "Output directory (shards + tokenizer/).", hashed=False)
    max_seq_length: int = option(128, "Longest example in tokens, [CLS] and both [SEP] included.")
    short_seq_prob: float = option(0.1, "Chance that a document's examples aim at a random shorter length.")
    masked_lm_prob: float = option(0.15, "Share of non-special tokens to predict.")
    max_predictions_per_seq: int = option(20, "Most masked positions in one example.")
    dupe_factor: int = option(5, "Passes over the data, each with other pairs and masks.")
    random_next_prob: float = option(0.5, "Chance that segment B comes from another document.")
    mask_token_prob: float = option(0.8, "Share of chosen positions replaced by [MASK].")
    random_token_prob: float = option(0.1, "Share of chosen positions replaced by a random token "
                                           "(the rest stay unchanged).")
    valid_fraction: float = option(0.02, "Share of documents (by hash of their id) held out as the "
                                         "valid split.")
    seed: int = option(12345, "Seed of every random choice; the output depends on nothing else.")
    workers: int = option(1, "Processes masking shards in parallel (output is identical for any value).",
                          hashed=False)

    def problems(self) -> list[str]:
        found = []
        if self.max_seq_length < 8:
            found.append(f"--max-seq-length {self.max_seq_length} is too small for [CLS] A [SEP] B [SEP]; "
                         f"use at least 8")
        if self.max_seq_length > MAX_INT16:
            found.append(f"--max-seq-length {self.max_seq_length} exceeds {MAX_INT16} (positions are int16)")
        if not 0 < self.masked_lm_prob < 1:
            found.append(f"--masked-lm-prob {self.masked_lm_prob} must be between 0 and 1 (exclusive)")
        for name in ("short_seq_prob", "random_next_prob", "mask_token_prob", "random_token_prob"):
            if not 0 <= getattr(self, name) <= 1:
                found.append(f"--{name.replace('_', '-')} {getattr(self, name)} must be between 0 and 1")
        if self.mask_token_prob + self.random_token_prob > 1:
            found.append("--mask-token-prob plus --random-token-prob must not exceed 1")
        if not 0 <= self.valid_fraction <= 0.5:
            found.append(f"--valid-fraction {self.valid_fraction} must be between 0 and 0.5")
        for name in ("max_predictions_per_seq", "dupe_factor", "workers"):
            if getattr(self, name) < 1:
                found.append(f"--{name.replace('_', '-')} must be at least 1")
        return found


def run(cfg: MaskConfig) -> Manifest:
    """Mask `cfg.tokens` into `cfg.out`; returns the manifest (the existing one if up to date)."""
    from pretrain_cli.store import StageOutput, iter_shards, read_manifest, shard_name

    cfg.validate()
    tokens = read_manifest(cfg.tokens, "tokenize")
    out = StageOutput(cfg, cfg.out, inputs={"tokens": tokens}, owned=(TOKENIZER_DIR,))
    if (done := out.up_to_date()) is not None:
        return done
    _copy_tokenizer(tokens, out)

    # The train shard is written after the valid one, so its presence marks input shard i as done.
    todo = {i: str(tokens.directory / info.file) for i, (info, _) in enumerate(iter_shards(tokens))
            if not out.has_shard(shard_name(i, "train"))}
    job = partial(examples_for_shard_file, cfg, tokens.extra)
    with progress_bar("mask", len(todo)) as advance:
        for i, tables in zip(todo, ordered_map(job, todo.items(), cfg.workers), strict=True):
            for split in ("valid", "train"):  # train last: it marks input shard i as done
                if split in tables:
                    tokens_in = len(tables[split].column("input_ids").combine_chunks().flatten())
                    out.write_shard(shard_name(i, split), tables[split], split=split, tokens=tokens_in)
            advance()

    stats = _stats(out)
    say(f"mask: {stats['instances']['train']:,} train / {stats['instances']['valid']:,} valid examples, "
        f"{stats['masked_tokens']:,} masked tokens → {cfg.out}")
    extra = {**tokens.extra, "max_seq_length": cfg.max_seq_length, "objective": "mlm+nsp",
             "masked_lm_prob": cfg.masked_lm_prob}
    return out.finish(stats=stats, extra=extra)


def _copy_tokenizer(tokens: Manifest, out: StageOutput) -> None:
    """Copy tokens/tokenizer/ beside the examples (pretraining reads it there), checking its hashes."""
    from pretrain_cli.store import file_sha256

    assert tokens.directory is not None
    recorded = {info.file: info.sha256 for info in tokens.shards_of("file")
                if info.file.startswith(f"{TOKENIZER_DIR}/")}
    if f"{TOKENIZER_DIR}/tokenizer.json" not in recorded:
        raise UserError(f"{tokens.directory}: its manifest lists no {TOKENIZER_DIR}/tokenizer.json; "
                        f"rerun `ptk tokenize` with --force")
    target = out.directory / TOKENIZER_DIR
    tmp = out.directory / f".{TOKENIZER_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for relpath, sha256 in recorded.items():
        source = tokens.directory / relpath
        if not source.is_file() or file_sha256(source) != sha256:
            raise UserError(f"{source}: missing or changed since {tokens.directory}/manifest.json was "
                            f"written; rerun `ptk tokenize` with --force")
        shutil.copyfile(source, tmp / Path(relpath).name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    for relpath in sorted(recorded):
        out.record_file(relpath)


def examples_for_shard_file(cfg: MaskConfig, facts: dict[str, Any],
                            job: tuple[int, str]) -> dict[str, pa.Table]:
    """Examples per split from the token shard `job = (index, path)` (runs in a worker process)."""
    from pretrain_cli.store import read_shard

    index, path = job
    return examples_for_shard(cfg, facts, index, read_shard(Path(path)))


def examples_for_shard(cfg: MaskConfig, facts: dict[str, Any], index: int,
                       shard: pa.Table) -> dict[str, pa.Table]:
    """Every dupe round of pairs and masks for one token shard, as one shuffled table per split."""
    import numpy as np
    import pyarrow as pa

    from pretrain_cli.stages.mask.masking import MaskRule, mask_sequences
    from pretrain_cli.stages.mask.pairing import RANDOM_NEXT, assemble_pairs, document_bounds, pair_documents

    special = facts["special_ids"]
    never_mask = {special["cls"], special["sep"], special["pad"], special["mask"]}
    rule = MaskRule(masked_lm_prob=cfg.masked_lm_prob, max_predictions=cfg.max_predictions_per_seq,
                    mask_token_prob=cfg.mask_token_prob, random_token_prob=cfg.random_token_prob,
                    mask_id=special["mask"], vocab_size=facts["vocab_size"],
                    never_mask=tuple(sorted(never_mask)))
    column = shard.column("sentences").combine_chunks()
    sentences = column.flatten()
    values = sentences.flatten().to_numpy()
    doc_offsets = _relative(column.offsets.to_numpy())
    sentence_offsets = _relative(sentences.offsets.to_numpy())
    in_valid = valid_documents(shard.column("id").to_pylist(), cfg.valid_fraction)

    tables = {}
    for split_code, split in enumerate(SPLITS):
        if split == "valid" and cfg.valid_fraction == 0:
            continue
        keep = in_valid if split == "valid" else ~in_valid
        documents = document_bounds(sentence_offsets, doc_offsets, keep)
        # One child generator per dupe round, and one for the final shuffle.
        streams = np.random.SeedSequence([cfg.seed, index, split_code]).spawn(cfg.dupe_factor + 1)
        rounds = []
        for stream in streams[:-1]:
            rng = np.random.default_rng(stream)
            spans = pair_documents(documents, cfg.max_seq_length - 3, cfg.short_seq_prob,
                                   cfg.random_next_prob, rng)
            ids, offsets, segment_b_start = assemble_pairs(values, spans, special["cls"], special["sep"])
            masked = mask_sequences(ids, offsets, rule, rng)
            rounds.append(_table(masked, offsets, segment_b_start, spans[:, RANDOM_NEXT], values.dtype))
        table = pa.concat_tables(rounds)
        # Readers stream shards in order: mix rounds and documents inside the shard.
        tables[split] = table.take(np.random.default_rng(streams[-1]).permutation(table.num_rows))
    return tables


def valid_documents(ids: list[str], fraction: float) -> np.ndarray:
    """Which documents are held out: a hash of the id below `fraction` (independent of shard and seed)."""
    import numpy as np

    threshold = fraction * 2.0 ** 64
    return np.array([int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big")
                     < threshold for doc_id in ids], dtype=bool)


def _relative(offsets: np.ndarray) -> np.ndarray:
    return offsets.astype("int64") - offsets[0]


def _table(masked: MaskedBatch, offsets: np.ndarray, segment_b_start: np.ndarray, random_next: np.ndarray,
           id_dtype: np.dtype) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    ids_type = pa.from_numpy_dtype(id_dtype)
    prediction_offsets = np.zeros(masked.counts.size + 1, np.int64)
    np.cumsum(masked.counts, out=prediction_offsets[1:])
    return pa.table({
        "input_ids": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                              pa.array(masked.input_ids, ids_type)),
        "segment_b_start": pa.array(segment_b_start.astype(np.int16), pa.int16()),
        "masked_positions": pa.ListArray.from_arrays(pa.array(prediction_offsets, pa.int32()),
                                                     pa.array(masked.positions.astype(np.int16), pa.int16())),
        "masked_labels": pa.ListArray.from_arrays(pa.array(prediction_offsets, pa.int32()),
                                                  pa.array(masked.labels, ids_type)),
        "next_sentence_label": pa.array(random_next.astype(np.int8), pa.int8()),
    })


def _stats(out: StageOutput) -> dict[str, Any]:
    """Counts read back from the written shards, so a resumed run reports the same numbers."""
    import numpy as np

    from pretrain_cli.store import read_shard

    instances = dict.fromkeys(SPLITS, 0)
    random_next = dict.fromkeys(SPLITS, 0)
    tokens = masked = 0
    for info in out.shards.values():
        if info.split == "file":
            continue
        table = read_shard(out.directory / info.file)
        instances[info.split] += table.num_rows
        random_next[info.split] += int(np.sum(table.column("next_sentence_label").to_numpy()))
        tokens += info.tokens
        masked += len(table.column("masked_positions").combine_chunks().flatten())
    # [CLS] and two [SEP] per example are never candidates: the share is of the other tokens.
    candidates = tokens - 3 * sum(instances.values())
    return {"instances": instances, "tokens": tokens, "masked_tokens": masked,
            "masked_share": masked / candidates if candidates else 0.0,
            "random_next_share": {split: random_next[split] / instances[split] if instances[split] else 0.0
                                  for split in SPLITS}}
