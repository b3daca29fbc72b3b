"""Tokens/s of `ptk mask` next to `DataCollatorForLanguageModeling`, and its peak memory at 1× and 8× input.

    python scripts/bench_mask.py                            # about a minute on 2 cores
    python scripts/bench_mask.py --repeat 3 --json work/bench/mask.json --workdir work/bench/mask

Input: the token shards of `ptk corpus build sample:enwiki sample:wiki_summaries` (dedup off) as
`ptk tokenize --tokenizer sample:minilm` writes them (bert-base-uncased's vocabulary), and the same
corpus repeated 8× (every copy with its own document ids) tokenized with that same tokenizer.

- ptk: `ptk mask TOKENS --max-seq-length 128 --dupe-factor 1 --workers 1` as a subprocess, start to
  exit (NSP pairs, token masking, static masks: the defaults), and the same with --workers 2.
  Tokens/s counts the output tokens: the lengths of every example's input_ids, [CLS]/[SEP] included.
- peer: `DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)` called on batches of 32
  `{"input_ids": [...]}` in one process on one torch thread (as ptk --workers 1 uses one core). The
  examples are ptk's own output with `masked_labels` put back at `masked_positions`, so both sides
  mask the very same sequences; building them is untimed, only the collator calls are timed.
  Tokens/s counts real (unpadded) tokens, the same total as ptk's.
- memory: `ptk mask --workers 1` on the 1× and on the 8× tokens, each a fresh subprocess; its peak
  is the largest summed RSS of the process tree, polled every 20 ms (scripts/bench_corpus.py's poller).

Every run is repeated --repeat times in turns, after one untimed ptk run that makes the collator's
examples (and warms the page cache alike for all); the fastest time and the highest peak count.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from bench_corpus import run_measured, verdict
from bench_tokenize import base_inputs, machine, ptk_command, ratio, repeated_corpus, run_quietly, workdir

GROWTH = 8  # the large input is this many copies of the 1× corpus
MASK_FLAGS = ["--max-seq-length", "128", "--dupe-factor", "1"]
BATCH = 32  # examples per collator call
MLM_PROBABILITY = 0.15

TARGET_THROUGHPUT = 1.0  # ptk --workers 1 tokens/s over the collator's, at least
TARGET_GROWTH = 1.3  # ptk peak memory on the 8× input over the 1× input, at most


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side, in turns; the best counts")
    parser.add_argument("--workdir", type=Path,
                        help="keep inputs and outputs here (default: a temporary directory, removed)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def token_inputs(work: Path) -> dict[str, Path]:
    """The 1× tokens and the 8× tokens, made with one tokenizer (each skipped by ptk when up to date)."""
    docs, tokens = base_inputs(work)
    big_docs = repeated_corpus(docs, GROWTH, work / f"docs-x{GROWTH}")
    big = work / f"tokens-x{GROWTH}"
    print(f"tokenizing the {GROWTH}× corpus ...", flush=True)
    run_quietly(ptk_command("tokenize", big_docs, "--out", big, "--tokenizer", tokens / "tokenizer",
                            "--workers", "2"), work / f"tokens-x{GROWTH}.log")
    return {"1×": tokens, f"{GROWTH}×": big}


def run_ptk(tokens: Path, out: Path, workers: int) -> dict[str, Any]:
    from pretrain_cli.store import read_manifest

    shutil.rmtree(out, ignore_errors=True)  # ptk would find its own output up to date
    out.parent.mkdir(parents=True, exist_ok=True)
    command = ptk_command("mask", tokens, "--out", out, *MASK_FLAGS, "--workers", str(workers))
    print(f"running ptk mask --workers {workers} on {tokens.name} ...", flush=True)
    measured = run_measured(command, out.parent / f"{out.name}.log")
    manifest = read_manifest(out, "mask")
    return {**measured, "seconds": measured["wall_s"], "tokens": manifest.tokens, "examples": manifest.rows,
            "command": command}


def unmasked_examples(examples: Path) -> list[dict[str, list[int]]]:
    """Every example `ptk mask` wrote (both splits), its original tokens put back where it masked."""
    import numpy as np

    from pretrain_cli.store import iter_shards, read_manifest

    manifest = read_manifest(examples, "mask")
    mask_id = manifest.extra["special_ids"]["mask"]
    features = []
    for split in ("train", "valid"):
        for _, table in iter_shards(manifest, split):
            rows = table.column("input_ids").combine_chunks()
            offsets = rows.offsets.to_numpy().astype(np.int64) - rows.offsets[0].as_py()
            ids = rows.flatten().to_numpy().astype(np.int64)
            positions = table.column("masked_positions").combine_chunks()
            owner = np.repeat(offsets[:-1], np.diff(positions.offsets.to_numpy()))
            labels = table.column("masked_labels").combine_chunks().flatten().to_numpy()
            ids[owner + positions.flatten().to_numpy()] = labels
            assert not np.any(ids == mask_id), "a [MASK] left after restoring the labels"
            values = ids.tolist()
            features += [{"input_ids": values[a:b]} for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return features


def run_collator(features: list[dict[str, list[int]]], tokenizer_dir: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    torch.set_num_threads(1)
    collator = DataCollatorForLanguageModeling(AutoTokenizer.from_pretrained(str(tokenizer_dir)),
                                               mlm_probability=MLM_PROBABILITY)
    print("running DataCollatorForLanguageModeling ...", flush=True)
    start = time.perf_counter()
    for first in range(0, len(features), BATCH):
        collator(features[first:first + BATCH])
    seconds = time.perf_counter() - start
    tokens = sum(len(feature["input_ids"]) for feature in features)
    return {"seconds": seconds, "tokens": tokens, "examples": len(features)}


def bench(inputs: dict[str, Path], work: Path, repeat: int) -> list[dict[str, Any]]:
    """Each run `repeat` times in turns; the fastest time and the highest peak of each count."""
    (small_name, small), (big_name, big) = inputs.items()
    # An untimed first run makes the collator's examples (ptk's output is fixed by the seed) and
    # warms the page cache for every timed run alike.
    run_ptk(small, work / "out" / "reference", 1)
    features = unmasked_examples(work / "out" / "reference")
    sides = [("ptk mask --workers 1", small_name, lambda: run_ptk(small, work / "out" / "w1-small", 1)),
             ("ptk mask --workers 2", small_name, lambda: run_ptk(small, work / "out" / "w2-small", 2)),
             ("DataCollatorForLanguageModeling", small_name,
              lambda: run_collator(features, small / "tokenizer")),
             ("ptk mask --workers 1", big_name, lambda: run_ptk(big, work / "out" / "w1-big", 1))]
    trials: list[list[dict[str, Any]]] = [[] for _ in sides]
    for _ in range(repeat):
        for found, (_, _, side) in zip(trials, sides, strict=True):
            found.append(side())
    runs = []
    for found, (name, size, _) in zip(trials, sides, strict=True):
        best = min(found, key=lambda trial: trial["seconds"])
        peaks = [trial["peak_mb"] for trial in found if "peak_mb" in trial]
        runs.append({"side": name, "input": size, **best,
                     "seconds_all": [trial["seconds"] for trial in found],
                     "peak_mb": max(peaks) if peaks else None,
                     "tokens_per_s": best["tokens"] / best["seconds"]})
    return runs


def verdicts(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    one, two, collator, big = runs
    return [verdict("tokens/s ptk --workers 1 / collator",
                    ratio(one["tokens_per_s"], collator["tokens_per_s"]), at_least=TARGET_THROUGHPUT),
            verdict("tokens/s ptk --workers 2 / collator",
                    ratio(two["tokens_per_s"], collator["tokens_per_s"])),
            # The collator's rate does not depend on the input's size; ptk's start-up is amortised.
            verdict(f"tokens/s ptk --workers 1 on {GROWTH}× / collator",
                    ratio(big["tokens_per_s"], collator["tokens_per_s"])),
            verdict(f"ptk peak memory {GROWTH}× / 1× (--workers 1)", ratio(big["peak_mb"], one["peak_mb"]),
                    at_most=TARGET_GROWTH),
            {"name": "tokens ptk - collator (the same examples)", "value": one["tokens"] - collator["tokens"],
             "target": "= 0", "pass": one["tokens"] == collator["tokens"]}]


def print_report(info: dict[str, Any], runs: list[dict[str, Any]], found: list[dict[str, Any]]) -> None:
    print(f"\nbench_mask: {info['cpus']} CPUs ({info['cpu']}), Python {info['python']}, ptk {info['ptk']}, "
          f"transformers {info['transformers']}, torch {info['torch']}, {info['date']}")
    print(f"input: the enwiki + wiki summaries corpus, bert-base-uncased tokens, 1× and {GROWTH}×; "
          f"ptk mask {' '.join(MASK_FLAGS)} (NSP, token masking, static); collator mlm_probability "
          f"{MLM_PROBABILITY}, batches of {BATCH}, 1 torch thread, on ptk's examples unmasked")
    if len(runs[0]["seconds_all"]) > 1:
        print(f"each run {len(runs[0]['seconds_all'])} times, taking turns: the fastest time and the highest "
              f"peak count")
    print(f"\n{'side':<34}{'input':>6}{'examples':>10}{'tokens':>13}{'seconds':>9}{'tokens/s':>12}"
          f"{'peak MB':>9}")
    for r in runs:
        peak = f"{r['peak_mb']:>9.0f}" if r["peak_mb"] is not None else f"{'-':>9}"
        print(f"{r['side']:<34}{r['input']:>6}{r['examples']:>10,}{r['tokens']:>13,}{r['seconds']:>9.2f}"
              f"{r['tokens_per_s']:>12,.0f}{peak}")
    print("ptk: the whole subprocess, start to exit; collator: its calls only\n")
    for v in found:
        outcome = "" if v["pass"] is None else ("PASS" if v["pass"] else "FAIL")
        value = f"{v['value']:>8.3f}" if isinstance(v["value"], float) else f"{v['value']:>8,}"
        print(f"{v['name']:<48}{value}  {v['target']:<12}{outcome}")


def main() -> None:
    args = parse_args()
    with workdir(args.workdir) as work:
        inputs = token_inputs(work)
        runs = bench(inputs, work, args.repeat)
    info, found = machine("transformers", "torch"), verdicts(runs)
    print_report(info, runs, found)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"machine": info, "mask_flags": MASK_FLAGS, "growth": GROWTH, "runs": runs, "ratios": found}
        args.json.write_text(json.dumps(record, indent=1, default=str))
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
