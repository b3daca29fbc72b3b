"""`ptk mask`: pretraining examples (NSP or SOP pairs, or packed sequences) with MLM targets, from tokens.

    ptk mask work/tokens --out work/examples --max-seq-length 128 --dupe-factor 5
    ptk mask work/tokens --out work/examples --objective sop --masking whole-word
    ptk mask work/tokens --out work/examples --objective none --masking span --dynamic

Writes `train-i.arrow` (and `valid-i.arrow` when --valid-fraction > 0):
`input_ids: list<uintN>` (unpadded, masks applied), `segment_b_start: int16` (the row length when
there is no segment B), `masked_positions: list<int16>`, `masked_labels: list<uintN>`,
`next_sentence_label: int8` (nsp: 1 = B is random; sop: 1 = A and B swapped; none: -1). With
--dynamic the train rows are stored unmasked (empty position/label lists) with a `word_starts:
list<bool>` column, and `ptk pretrain` masks them afresh each epoch; valid rows are always masked
once, so evaluations stay comparable. uintN is the token shards' id type.

Memory stays flat however large the corpus: each token shard is one job (its documents are the
buffer random-next segments come from), and the examples are shuffled across shards by a
two-pass scatter/gather (see `shuffle`). A document goes to "valid" by a hash of its id, so the
split never depends on sharding, and every random choice comes from a generator seeded by (seed,
shard, split, dupe round): the bytes are fixed by the seed whatever --workers is, and a resumed
run redoes exactly the missing work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import progress_bar, say
from pretrain_cli.errors import UserError
from pretrain_cli.stages.tokenize.stage import TOKENIZER_DIR
from pretrain_cli.workers import ordered_map

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from pretrain_cli.stages.mask.masking import MaskRule
    from pretrain_cli.stages.mask.pairing import Assembled
    from pretrain_cli.store import Manifest, StageOutput

SPLITS = ("train", "valid")
MAX_INT16 = (1 << 15) - 1
SCATTER_DIR = ".scatter"  # pass-1 files of the global shuffle, removed once the manifest is written
# What `ptk pretrain` trains on each objective's examples.
OBJECTIVES = {"nsp": "mlm+nsp", "sop": "mlm+sop", "none": "mlm"}
# Shortest example each objective can build: [CLS] A [SEP] B [SEP], or [CLS] x [SEP].
MIN_SEQ_LENGTH = {"nsp": 5, "sop": 5, "none": 3}
RATE_RANGE = (0.10, 0.40)  # masking rates the BERT family uses: BERT 15 %, Wettig et al. up to 40 %


@dataclasses.dataclass(kw_only=True)
class MaskConfig(StageConfig):
    """Build masked-LM pretraining examples (with NSP, SOP or no sentence task) from `ptk tokenize` output.

        ptk mask work/tokens --out work/examples --max-seq-length 128
    """

    stage: ClassVar[str] = "mask"

    # Not hashed: the tokens' manifest fingerprint is part of the output's key instead.
    tokens: Path = option(help="Token directory written by `ptk tokenize`.", argument=True, hashed=False)
    out: Path = option(Path("work/examples"), "Output directory (shards + tokenizer/).", hashed=False)
    objective: Literal["nsp", "sop", "none"] = option(
        "nsp", "Sentence task: nsp (BERT: is B the next segment?), sop (ALBERT: are A and B swapped?), "
               "none (RoBERTa: full sentences packed across documents, MLM only).")
    max_seq_length: int = option(128, "Longest example in tokens, [CLS] and [SEP]s included.")
    short_seq_prob: float = option(0.1, "nsp/sop: chance that a document's examples aim at a random "
                                        "shorter length.")
    negative_prob: float = option(0.5, "nsp: share of pairs whose B comes from another document; "
                                       "sop: share of pairs with A and B swapped.")
    masking: Literal["token", "whole-word", "span"] = option(
        "token", "What is masked: single tokens (BERT), whole words (BERT wwm), or spans of whole words "
                 "with geometric lengths (SpanBERT).")
    masked_lm_prob: float = option(0.15, "Share of non-special tokens to predict, 0.10 to 0.40.")
    masks_per_seq: int = option(0, "Predict exactly this many tokens per example instead of "
                                   "--masked-lm-prob (0: use the rate).")
    max_predictions_per_seq: int = option(0, "Most predicted tokens in one example (0: --masks-per-seq, "
                                             "or the rate times --max-seq-length rounded up, plus two "
                                             "longest spans for span masking).")
    mask_token_prob: float = option(0.8, "Share of chosen positions replaced by [MASK].")
    random_token_prob: float = option(0.1, "Share of chosen positions replaced by a random token "
                                           "(the rest stay unchanged).")
    span_p: float = option(0.2, "span: span length in words ~ Geometric(p) (SpanBERT: 0.2).")
    max_span_words: int = option(10, "span: longest span in words (SpanBERT: 10).")
    dynamic: bool = option(False, "Store train examples unmasked; `ptk pretrain` masks them afresh "
                                  "each epoch (RoBERTa).")
    dupe_factor: int = option(5, "Passes over the data, each with other pairs and masks.")
    valid_fraction: float = option(0.02, "Share of documents (by hash of their id) held out as the "
                                         "valid split.")
    seed: int = option(12345, "Seed of every random choice (0 to 2^32 - 1); the output depends on nothing "
                              "else.")
    workers: int = option(1, "Processes building examples in parallel (output is identical for any "
                             "value).", hashed=False)

    def problems(self) -> list[str]:
        found = []
        shortest = MIN_SEQ_LENGTH[self.objective]
        if self.max_seq_length < shortest:
            layout = "[CLS] x [SEP]" if self.objective == "none" else "[CLS] A [SEP] B [SEP]"
            found.append(f"--max-seq-length {self.max_seq_length} is too short for --objective "
                         f"{self.objective} ({layout}); use at least {shortest}")
        if self.max_seq_length > MAX_INT16:
            found.append(f"--max-seq-length {self.max_seq_length} exceeds {MAX_INT16} (positions are int16)")
        low, high = RATE_RANGE
        if not low <= self.masked_lm_prob <= high:
            found.append(f"--masked-lm-prob {self.masked_lm_prob} is outside {low:.2f} to {high:.2f}; "
                         f"BERT uses 0.15")
        for name in ("short_seq_prob", "negative_prob", "mask_token_prob", "random_token_prob"):
            if not 0 <= getattr(self, name) <= 1:
                found.append(f"--{name.replace('_', '-')} {getattr(self, name)} must be between 0 and 1")
        if self.mask_token_prob + self.random_token_prob > 1:
            found.append("--mask-token-prob plus --random-token-prob must not exceed 1")
        if not 0 < self.span_p <= 1:
            found.append(f"--span-p {self.span_p} must be above 0 and at most 1")
        if not 0 <= self.valid_fraction <= 0.5:
            found.append(f"--valid-fraction {self.valid_fraction} must be between 0 and 0.5")
        for name in ("masks_per_seq", "max_predictions_per_seq"):
            if getattr(self, name) < 0:
                found.append(f"--{name.replace('_', '-')} must not be negative")
        most = math.floor(high * self.max_seq_length)
        if self.masks_per_seq > most:
            found.append(f"--masks-per-seq {self.masks_per_seq} is more than {high:.0%} of --max-seq-length "
                         f"{self.max_seq_length}; use at most {most}")
        if 0 < self.max_predictions_per_seq < self.masks_per_seq:
            found.append(f"--max-predictions-per-seq {self.max_predictions_per_seq} is below --masks-per-seq "
                         f"{self.masks_per_seq}; raise it or leave it at 0")
        for name in ("dupe_factor", "workers", "max_span_words"):
            if getattr(self, name) < 1:
                found.append(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_span_words > self.max_seq_length:
            found.append(f"--max-span-words {self.max_span_words} exceeds --max-seq-length "
                         f"{self.max_seq_length}")
        if not 0 <= self.seed < 1 << 32:
            found.append(f"--seed {self.seed} must be between 0 and 2^32 - 1")
        return found

    def max_predictions(self) -> int:
        """The per-example cap: the flag, or what the rate (or fixed count) can ask for at full length."""
        if self.max_predictions_per_seq:
            return self.max_predictions_per_seq
        if self.masks_per_seq:
            return self.masks_per_seq
        # Spans are never cut, so a cap at the budget would drop the spans that cross it.
        slack = 2 * self.max_span_words if self.masking == "span" else 0
        return math.ceil(self.masked_lm_prob * self.max_seq_length) + slack


def run(cfg: MaskConfig) -> Manifest:
    """Mask `cfg.tokens` into `cfg.out`; returns the manifest (the existing one if up to date)."""
    from pretrain_cli.store import StageOutput, iter_shards, read_manifest, shard_name

    cfg.validate()
    tokens = read_manifest(cfg.tokens, "tokenize")
    facts = token_facts(tokens)
    out = StageOutput(cfg, cfg.out, inputs={"tokens": tokens}, owned=(TOKENIZER_DIR, SCATTER_DIR))
    if (done := out.up_to_date()) is not None:
        return done
    _copy_tokenizer(tokens, out)

    # Pass 1: examples of each token shard, scattered over the output shards. A split's file is
    # written only when complete, train last, so train's presence marks input shard i as done.
    scatter_dir = out.directory / SCATTER_DIR
    scatter_dir.mkdir(exist_ok=True)
    inputs = [str(tokens.directory / info.file) for info, _ in iter_shards(tokens)]
    buckets = output_shards(len(inputs), cfg.valid_fraction)
    todo = [(i, path, str(scatter_dir)) for i, path in enumerate(inputs)
            if not (scatter_dir / shard_name(i)).is_file()]
    job = partial(scatter_shard, cfg, facts, buckets)
    with progress_bar("mask: build", len(todo)) as advance:
        for _ in ordered_map(job, todo, cfg.workers):
            advance()

    # Pass 2: each output shard gathers its bucket from every scattered file, then shuffles it.
    todo_out = [(split, b) for split in SPLITS for b in range(buckets[split])
                if not out.has_shard(shard_name(b, split))]
    parts = {split: [scatter_dir / shard_name(i, split) for i in range(len(inputs))] for split in SPLITS}
    gather_job = partial(_gather, cfg.seed, parts)
    with progress_bar("mask: shuffle", len(todo_out)) as advance:
        for (split, b), table in zip(todo_out, ordered_map(gather_job, todo_out, cfg.workers), strict=True):
            tokens_out = len(table.column("input_ids").combine_chunks().values)
            out.write_shard(shard_name(b, split), table, split=split, tokens=tokens_out)
            advance()

    stats = _stats(out, facts)
    if stats["instances"]["train"] == 0:
        raise UserError(f"{cfg.tokens}: no train examples could be built (documents too short or all held "
                        f"out); lower --valid-fraction or tokenize more text")
    say(f"mask: {stats['instances']['train']:,} train / {stats['instances']['valid']:,} valid examples "
        f"({cfg.objective}, {cfg.masking} masking{', dynamic' if cfg.dynamic else ''}), "
        f"{stats['masked_tokens']:,} masked tokens → {cfg.out}")
    rule = mask_rule(cfg, facts)
    extra = {**tokens.extra, "max_seq_length": cfg.max_seq_length, "objective": OBJECTIVES[cfg.objective],
             "dynamic": cfg.dynamic, "masking": dataclasses.asdict(rule), "seed": cfg.seed}
    manifest = out.finish(stats=stats, extra=extra)
    shutil.rmtree(scatter_dir, ignore_errors=True)
    return manifest


def output_shards(inputs: int, valid_fraction: float) -> dict[str, int]:
    """Output shards per split: as many train shards as input shards; valid in proportion (≥ 1)."""
    valid = max(1, math.ceil(inputs * valid_fraction)) if valid_fraction > 0 else 0
    return {"train": inputs, "valid": valid}


def token_facts(tokens: Manifest) -> dict[str, Any]:
    """The tokenize manifest's `extra`, checked for what this stage needs."""
    needed = ("vocab_size", "special_ids", "id_dtype", "never_mask_ids")
    missing = [key for key in needed if key not in tokens.extra]
    if missing:
        raise UserError(f"{tokens.directory}/manifest.json has no {', '.join(missing)} in `extra`: an older "
                        f"ptk wrote it; rerun `ptk tokenize` with --force")
    return tokens.extra


def mask_rule(cfg: MaskConfig, facts: dict[str, Any]) -> MaskRule:
    from pretrain_cli.stages.mask.masking import MaskRule

    special = facts["special_ids"]
    never = {int(i) for i in facts["never_mask_ids"]}
    never |= {int(special[role]) for role in ("cls", "sep", "pad", "mask")}
    return MaskRule(mask_id=int(special["mask"]), vocab_size=int(facts["vocab_size"]),
                    never_mask=tuple(sorted(never)), strategy=cfg.masking,
                    masked_lm_prob=cfg.masked_lm_prob, masks_per_sequence=cfg.masks_per_seq,
                    max_predictions=cfg.max_predictions(), mask_token_prob=cfg.mask_token_prob,
                    random_token_prob=cfg.random_token_prob, span_p=cfg.span_p,
                    max_span_words=cfg.max_span_words)


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


# ---------------------------------------------------------------------------------------------------
# Pass 1, in a worker: one token shard → examples → scattered file per split.

def scatter_shard(cfg: MaskConfig, facts: dict[str, Any], buckets: dict[str, int],
                  job: tuple[int, str, str]) -> None:
    """Build the examples of token shard `job = (index, path, scatter_dir)` and scatter them."""
    import numpy as np

    from pretrain_cli.stages.mask.shuffle import scatter
    from pretrain_cli.store import read_shard, shard_name

    index, path, scatter_dir = job
    tables = examples_for_shard(cfg, facts, index, read_shard(Path(path)), where=path)
    for split in ("valid", "train"):  # train last: its file marks the input shard as done
        if buckets[split]:
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index, SPLITS.index(split), 1]))
            scatter(tables[split], buckets=buckets[split], rng=rng,
                    path=Path(scatter_dir) / shard_name(index, split))


def _gather(seed: int, parts: dict[str, list[Path]], job: tuple[str, int]) -> pa.Table:
    import numpy as np

    from pretrain_cli.stages.mask.shuffle import gather

    split, bucket = job
    rng = np.random.default_rng(np.random.SeedSequence([seed, bucket, SPLITS.index(split), 2]))
    return gather(parts[split], bucket=bucket, rng=rng)


def examples_for_shard(cfg: MaskConfig, facts: dict[str, Any], index: int, shard: pa.Table,
                       where: str = "token shard") -> dict[str, pa.Table]:
    """Every dupe round of examples for one token shard, one table per split (not yet shuffled)."""
    import numpy as np
    import pyarrow as pa

    from pretrain_cli.stages.mask.pairing import document_bounds
    from pretrain_cli.store import list_parts

    missing = [name for name in ("id", "sentences", "word_starts") if name not in shard.column_names]
    if missing:
        raise UserError(f"{where}: no {', '.join(missing)} column; an older ptk wrote it, rerun "
                        f"`ptk tokenize` with --force")
    sentences, doc_offsets = list_parts(shard.column("sentences"))
    values, sentence_offsets = list_parts(sentences)
    values = values.to_numpy()
    word_starts = list_parts(list_parts(shard.column("word_starts"))[0])[0].to_numpy(zero_copy_only=False)
    in_valid = valid_documents(shard.column("id").to_pylist(), cfg.valid_fraction)
    rule = mask_rule(cfg, facts)

    tables = {}
    for split_code, split in enumerate(SPLITS):
        keep = in_valid if split == "valid" else ~in_valid
        documents = document_bounds(sentence_offsets, doc_offsets, keep)
        masked = split == "valid" or not cfg.dynamic
        rounds = []
        for stream in np.random.SeedSequence([cfg.seed, index, split_code]).spawn(cfg.dupe_factor):
            rng = np.random.default_rng(stream)
            assembled = assemble(cfg, documents, rng)
            rounds.append(_table(assembled, values, word_starts, facts, rule if masked else None, rng))
        tables[split] = pa.concat_tables(rounds)
    return tables


def assemble(cfg: MaskConfig, documents: list[list[int]], rng: np.random.Generator) -> Assembled:
    """One dupe round of `cfg.objective`'s rows over `documents`."""
    from pretrain_cli.stages.mask import pairing

    if cfg.objective == "none":
        return pairing.pack_documents(documents, cfg.max_seq_length - 2, rng)
    make = pairing.pair_documents if cfg.objective == "nsp" else pairing.order_pairs
    spans = make(documents, cfg.max_seq_length - 3, cfg.short_seq_prob, cfg.negative_prob, rng)
    return pairing.assemble_pairs(spans)


def valid_documents(ids: list[str], fraction: float) -> np.ndarray:
    """Which documents are held out: a hash of the id below `fraction` (independent of shard and seed)."""
    import numpy as np

    threshold = fraction * 2.0 ** 64
    return np.array([int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big")
                     < threshold for doc_id in ids], dtype=bool)


def _table(rows: Assembled, values: np.ndarray, word_starts: np.ndarray, facts: dict[str, Any],
           rule: MaskRule | None, rng: np.random.Generator) -> pa.Table:
    """The example columns of `rows`: masked with `rule`, or unmasked with word starts (dynamic)."""
    import numpy as np
    import pyarrow as pa

    from pretrain_cli.stages.mask.masking import mask_sequences

    special = facts["special_ids"]
    ids = rows.gather(values, special["cls"], special["sep"])
    starts = rows.gather(word_starts, True, True)
    ids_type = pa.from_numpy_dtype(values.dtype)
    offsets = pa.array(rows.offsets, pa.int32())
    columns = {"input_ids": pa.ListArray.from_arrays(offsets, pa.array(ids, ids_type)),
               "segment_b_start": pa.array(rows.segment_b_start.astype(np.int16), pa.int16())}
    if rule is None:
        positions, labels = np.zeros(0, np.int16), np.zeros(0, values.dtype)
        prediction_offsets = np.zeros(len(rows.offsets), np.int64)
    else:
        masked = mask_sequences(ids, rows.offsets, rule, rng, word_starts=starts)
        columns["input_ids"] = pa.ListArray.from_arrays(offsets, pa.array(masked.input_ids, ids_type))
        positions, labels = masked.positions.astype(np.int16), masked.labels
        prediction_offsets = np.zeros(masked.counts.size + 1, np.int64)
        np.cumsum(masked.counts, out=prediction_offsets[1:])
    predictions = pa.array(prediction_offsets, pa.int32())
    columns["masked_positions"] = pa.ListArray.from_arrays(predictions, pa.array(positions, pa.int16()))
    columns["masked_labels"] = pa.ListArray.from_arrays(predictions, pa.array(labels, ids_type))
    columns["next_sentence_label"] = pa.array(rows.labels.astype(np.int8), pa.int8())
    if rule is None:
        columns["word_starts"] = pa.ListArray.from_arrays(offsets, pa.array(starts, pa.bool_()))
    return pa.table(columns)


def _stats(out: StageOutput, facts: dict[str, Any]) -> dict[str, Any]:
    """Counts read back from the written shards, so a resumed run reports the same numbers."""
    import numpy as np

    from pretrain_cli.store import list_parts, read_shard

    never = np.zeros(int(facts["vocab_size"]) + 1, bool)
    never[[int(i) for i in facts["never_mask_ids"]]] = True
    never[[int(i) for i in facts["special_ids"].values()]] = True
    counts = {split: dict.fromkeys(("instances", "tokens", "candidates", "masked", "labelled", "negative"), 0)
              for split in SPLITS}
    for info in out.shards.values():
        if info.split == "file":
            continue
        table, count = read_shard(out.directory / info.file), counts[info.split]
        labels = table.column("next_sentence_label").to_numpy()
        ids, offsets = list_parts(table.column("input_ids"))
        positions, prediction_offsets = list_parts(table.column("masked_positions"))
        masked_labels = list_parts(table.column("masked_labels"))[0].to_numpy()
        # Candidates are counted on the original ids: put the labels back where the masks went.
        rows = np.repeat(np.arange(table.num_rows), np.diff(prediction_offsets))
        ids = ids.to_numpy().copy()
        ids[offsets[rows] + positions.to_numpy()] = masked_labels
        count["instances"] += table.num_rows
        count["tokens"] += ids.size
        count["candidates"] += int(np.count_nonzero(~never[np.minimum(ids, never.size - 1)]))
        count["masked"] += masked_labels.size
        count["labelled"] += int(np.count_nonzero(labels >= 0))
        count["negative"] += int(np.count_nonzero(labels == 1))
    return {"instances": {s: c["instances"] for s, c in counts.items()},
            "tokens": sum(c["tokens"] for c in counts.values()),
            "masked_tokens": sum(c["masked"] for c in counts.values()),
            "masked_share": {s: c["masked"] / c["candidates"] if c["masked"] and c["candidates"] else 0.0
                             for s, c in counts.items()},
            "negative_share": {s: c["negative"] / c["labelled"] if c["labelled"] else 0.0
                               for s, c in counts.items()}}
