"""MB/s of `ptk tokenize` next to raw `tokenizers` encode_batch and the `datasets.map` path of run_mlm.py.

    python scripts/bench_tokenize.py                  # at least 50 MB of sentences, ~1.5 minutes on 2 cores
    python scripts/bench_tokenize.py --min-mb 5       # a quick check
    python scripts/bench_tokenize.py --repeat 3 --json work/bench/tokenize.json --workdir work/bench/tok

Input: `ptk corpus build sample:enwiki sample:wiki_summaries` (exact, paragraph and near dedup off),
then that corpus repeated until its sentences hold at least --min-mb MB (10^6 bytes of UTF-8), every
copy with its own document ids, written through ptk's store as a valid corpus directory. Tokenizer:
bert-base-uncased's WordPiece vocabulary (the MiniLM sample, `--tokenizer sample:minilm`) as
`ptk tokenize` saves it for the 1× corpus; all three paths load that same tokenizer.json.

- ptk: `ptk tokenize BIG --tokenizer TOKDIR --workers W` as a subprocess, start to exit: reading the
  corpus shards, encoding, writing token shards with word starts, manifest.
- raw: one process holds every sentence (read from the same shards, untimed) and times only
  `Tokenizer.encode_batch(batch, add_special_tokens=False)` over batches of 1,000 and reading each
  encoding's `.ids`, on tokenizers' own Rust thread pool (TOKENIZERS_PARALLELISM=true, one thread
  per core): the tokenizer's own speed, with nothing read or written.
- datasets: run_mlm.py's path for a --train_file: `load_dataset("text")` of the same sentences one
  per line (the file is written untimed), `.map(tokenize_function, batched=True, num_proc=W)` with
  the fast tokenizer and `return_special_tokens_mask=True`, then `.map(group_texts, batched=True,
  num_proc=W)` into blocks of 128, with datasets' Arrow cache files in the work directory (its real
  cost) and its progress bars off; timed from `load_dataset` to the end of `group_texts`.

Each path runs as its own subprocess, in turns, --repeat times; the fastest time counts. Peak memory
is the summed RSS of each subprocess tree, polled every 20 ms (scripts/bench_corpus.py's poller),
shown for reference: raw holds every sentence in memory by design.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar

from bench_corpus import run_measured, verdict

from pretrain_cli.config import StageConfig, option

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

CORPUS_FLAGS = ["--no-dedup", "--no-dedup-paragraphs", "--no-near-dedup", "--workers", "2"]
TOKENIZER = "sample:minilm"  # bert-base-uncased's vocabulary, 30,522 entries
BATCH = 1000  # sentences per encode_batch call: ptk tokenize's and datasets.map's default batch
BLOCK = 128  # run_mlm.py's group_texts block size here
PATHS = ("ptk", "raw", "datasets")

TARGET_RAW = 0.8  # ptk MB/s over raw encode_batch's, at least
TARGET_DATASETS = 2.0  # ptk MB/s over the datasets path's, at least


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-mb", type=float, default=50, help="MB of sentence text to tokenize, at least")
    parser.add_argument("--workers", type=int, default=2,
                        help="ptk --workers and datasets num_proc (raw uses one Rust thread per core)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each path, in turns; the fastest counts")
    parser.add_argument("--workdir", type=Path,
                        help="keep inputs and outputs here (default: a temporary directory, removed)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    # A peer run in its own process by the parent: `--peer raw|datasets --source S --tokenizer T
    # --result R`, S being the corpus directory (raw) or the one-sentence-per-line text (datasets).
    parser.add_argument("--peer", choices=("raw", "datasets"), help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.min_mb <= 0 or args.workers < 1 or args.repeat < 1:
        parser.error("--min-mb must be positive, --workers and --repeat at least 1")
    return args


# ---------------------------------------------------------------------------------------------------
# Inputs, shared with scripts/bench_mask.py: the real 1× corpus, its tokens, and repeated corpora.

@dataclasses.dataclass(kw_only=True)
class RepeatedCorpus(StageConfig):
    """A corpus made of `copies` copies of another corpus's shards, document ids suffixed per copy."""

    stage: ClassVar[str] = "corpus"

    base: Path = option(help="The corpus directory repeated.", hashed=False)
    copies: int = option(help="How many copies (the first keeps the original ids).")


def ptk_command(*args: str | Path) -> list[str]:
    return [str(Path(sys.executable).parent / "ptk"), *map(str, args)]


def run_quietly(command: list[str], log: Path) -> None:
    """Run an untimed preparation step; on failure, exit with the end of its log."""
    with log.open("w") as sink:
        code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"{' '.join(command)} exited with {code}; the end of {log}:\n" + "\n".join(tail))


def base_inputs(work: Path) -> tuple[Path, Path]:
    """The real 1× corpus and its `ptk tokenize --tokenizer sample:minilm` tokens (each skipped by
    ptk when up to date in a kept --workdir)."""
    docs, tokens = work / "docs", work / "tokens"
    print("building the 1× corpus and its tokens ...", flush=True)
    run_quietly(ptk_command("corpus", "build", "sample:enwiki", "sample:wiki_summaries", "--out", docs,
                            *CORPUS_FLAGS), work / "docs.log")
    run_quietly(ptk_command("tokenize", docs, "--out", tokens, "--tokenizer", TOKENIZER, "--workers", "2"),
                work / "tokens.log")
    return docs, tokens


def repeated_corpus(base: Path, copies: int, out: Path) -> Path:
    """`base` repeated `copies` times as a corpus directory with a valid manifest; copy k > 0 gives
    each document id the suffix `#k`, so no two documents share an id."""
    import pyarrow as pa

    from pretrain_cli.store import StageOutput, iter_shards, read_manifest, shard_name

    upstream = read_manifest(base, "corpus")
    output = StageOutput(RepeatedCorpus(base=base, copies=copies, force=True), out,
                         inputs={"docs": upstream})
    if output.up_to_date() is not None:
        return out
    print(f"writing {out} (the 1× corpus {copies}×) ...", flush=True)
    shards = len(upstream.shards_of("train"))
    for copy in range(copies):
        for i, (_, table) in enumerate(iter_shards(upstream)):
            if copy:
                ids = [f"{doc_id}#{copy}" for doc_id in table.column("id").to_pylist()]
                table = table.set_column(table.schema.get_field_index("id"), "id", pa.array(ids, pa.string()))
            output.write_shard(shard_name(copy * shards + i), table)
    output.finish(stats={"documents": copies * upstream.rows, "copies": copies})
    return out


def corpus_sentences(docs: Path) -> list[str]:
    from pretrain_cli.store import iter_shards, read_manifest

    sentences: list[str] = []
    for _, table in iter_shards(read_manifest(docs, "corpus")):
        sentences += table.column("sentences").combine_chunks().flatten().to_pylist()
    return sentences


def sentence_bytes(docs: Path) -> int:
    """UTF-8 bytes of every sentence of a corpus: the MB that throughput is counted in."""
    import pyarrow.compute as pc

    from pretrain_cli.store import iter_shards, read_manifest

    return sum(pc.sum(pc.binary_length(table.column("sentences").combine_chunks().flatten())).as_py() or 0
               for _, table in iter_shards(read_manifest(docs, "corpus")))


@contextmanager
def workdir(path: Path | None) -> Iterator[Path]:
    """--workdir as given (kept), or a temporary directory removed at the end."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="ptk-bench-") as tmp:
        yield Path(tmp)


def machine(*packages: str) -> dict[str, Any]:
    from pretrain_cli import __version__

    cpuinfo = Path("/proc/cpuinfo")
    models = re.findall(r"model name\s*:\s*(.*)", cpuinfo.read_text()) if cpuinfo.exists() else []
    cpu = models[0] if models else platform.processor() or platform.machine()
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "ptk": __version__,
            **{package: version(package) for package in packages},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def ratio(a: float, b: float) -> float:
    return a / b if b else math.inf


# ---------------------------------------------------------------------------------------------------
# The peers, each run in its own process (`--peer`): only the work named in the docstring is timed.

def raw_encode(docs: Path, tokenizer_dir: Path) -> dict[str, Any]:
    # Explicitly on: the Rust pool, one thread per core, is the point of this path.
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    from tokenizers import Tokenizer

    sentences = corpus_sentences(docs)
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    tokens = 0
    start = time.perf_counter()
    for first in range(0, len(sentences), BATCH):
        for encoding in tokenizer.encode_batch(sentences[first:first + BATCH], add_special_tokens=False):
            tokens += len(encoding.ids)
    return {"seconds": time.perf_counter() - start, "tokens": tokens, "sentences": len(sentences)}


def datasets_path(text_file: Path, tokenizer_dir: Path, workers: int, cache: Path) -> dict[str, Any]:
    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)

    def tokenize_function(examples: dict[str, list]) -> Any:  # run_mlm.py's, line_by_line off
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples: dict[str, list]) -> dict[str, list]:  # run_mlm.py's
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total_length = len(concatenated[next(iter(examples))])
        total_length = (total_length // BLOCK) * BLOCK
        return {k: [t[i:i + BLOCK] for i in range(0, total_length, BLOCK)] for k, t in concatenated.items()}

    start = time.perf_counter()
    raw = datasets.load_dataset("text", data_files={"train": str(text_file)}, cache_dir=str(cache),
                                keep_in_memory=False)["train"]
    loaded = time.perf_counter()
    tokenized = raw.map(tokenize_function, batched=True, num_proc=workers, remove_columns=["text"],
                        load_from_cache_file=False, keep_in_memory=False)
    encoded = time.perf_counter()
    grouped = tokenized.map(group_texts, batched=True, num_proc=workers, load_from_cache_file=False,
                            keep_in_memory=False)
    end = time.perf_counter()
    tokens = sum(len(chunk.flatten()) for chunk in tokenized.data.column("input_ids").chunks)
    return {"seconds": end - start, "load_s": loaded - start, "tokenize_s": encoded - loaded,
            "group_s": end - encoded, "tokens": tokens, "sentences": raw.num_rows, "blocks": grouped.num_rows,
            "cache_mb": sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 1e6}


def run_peer(args: argparse.Namespace) -> None:
    if args.peer == "raw":
        result = raw_encode(args.source, args.tokenizer)
    else:
        cache = args.result.parent / "datasets-cache"
        result = datasets_path(args.source, args.tokenizer, args.workers, cache)
    args.result.write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------------
# The benchmark.

def write_text_file(docs: Path, path: Path) -> None:
    """The corpus's sentences, one per line: run_mlm.py's --train_file."""
    sentences = corpus_sentences(docs)
    assert not any("\n" in s for s in sentences), "a sentence spans lines: the datasets path would split it"
    path.write_text("".join(f"{s}\n" for s in sentences), encoding="utf-8")


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What every path reads: the repeated corpus, the same sentences as text, one tokenizer."""

    docs: Path
    text_file: Path
    tokenizer: Path
    copies: int
    mb: float


def run_path(path: str, inputs: Inputs, work: Path, workers: int) -> dict[str, Any]:
    """One run of one path in its own process; a peer's inner timing is its `seconds`."""
    from pretrain_cli.store import read_manifest

    out = work / "out" / path
    shutil.rmtree(out, ignore_errors=True)  # ptk would find its own output up to date
    out.mkdir(parents=True)
    print(f"running {path} on {inputs.mb:.1f} MB ...", flush=True)
    if path == "ptk":
        command = ptk_command("tokenize", inputs.docs, "--out", out / "tokens", "--tokenizer",
                              inputs.tokenizer, "--workers", str(workers))
        measured = run_measured(command, out / "run.log")
        manifest = read_manifest(out / "tokens", "tokenize")
        return {**measured, "seconds": measured["wall_s"], "tokens": manifest.tokens, "command": command}
    source = inputs.docs if path == "raw" else inputs.text_file
    command = [sys.executable, __file__, "--peer", path, "--source", str(source), "--tokenizer",
               str(inputs.tokenizer), "--workers", str(workers), "--result", str(out / "result.json")]
    measured = run_measured(command, out / "run.log")
    return {**measured, **json.loads((out / "result.json").read_text()), "command": command}


def bench(inputs: Inputs, work: Path, workers: int, repeat: int) -> list[dict[str, Any]]:
    """Every path `repeat` times, taking turns so all meet the same outside load; the fastest counts."""
    trials: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
    for _ in range(repeat):
        for path in PATHS:
            trials[path].append(run_path(path, inputs, work, workers))
    runs = []
    for path in PATHS:
        best = min(trials[path], key=lambda trial: trial["seconds"])
        runs.append({"path": path, **best, "mb": inputs.mb,
                     "seconds_all": [trial["seconds"] for trial in trials[path]],
                     "peak_mb": max(trial["peak_mb"] for trial in trials[path]),
                     "mb_per_s": inputs.mb / best["seconds"],
                     "tokens_per_s": best["tokens"] / best["seconds"]})
    return runs


def verdicts(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ptk, raw, hf = runs
    return [verdict("MB/s ptk / raw encode_batch", ratio(ptk["mb_per_s"], raw["mb_per_s"]),
                    at_least=TARGET_RAW),
            verdict("MB/s ptk / datasets.map + group_texts", ratio(ptk["mb_per_s"], hf["mb_per_s"]),
                    at_least=TARGET_DATASETS),
            {"name": "tokens ptk - raw (same tokenizer, same sentences)",
             "value": ptk["tokens"] - raw["tokens"], "target": "= 0", "pass": ptk["tokens"] == raw["tokens"]}]


def print_report(info: dict[str, Any], inputs: Inputs, workers: int, runs: list[dict[str, Any]],
                 found: list[dict[str, Any]]) -> None:
    ptk, raw, hf = runs
    print(f"\nbench_tokenize: {info['cpus']} CPUs ({info['cpu']}), Python {info['python']}, "
          f"ptk {info['ptk']}, tokenizers {info['tokenizers']}, transformers {info['transformers']}, "
          f"datasets {info['datasets']}, {info['date']}")
    print(f"input: the enwiki + wiki summaries corpus {inputs.copies}× ({inputs.mb:.1f} MB of sentences, "
          f"{raw['sentences']:,} sentences); tokenizer: bert-base-uncased WordPiece ({TOKENIZER}), one "
          f"tokenizer.json for all; ptk --workers {workers}, datasets num_proc {workers}, raw on the Rust "
          f"thread pool")
    if len(ptk["seconds_all"]) > 1:
        print(f"each path ran {len(ptk['seconds_all'])} times, taking turns: the fastest counts")
    print(f"\n{'path':<34}{'MB':>7}{'tokens':>14}{'seconds':>9}{'MB/s':>8}{'tokens/s':>12}{'peak MB':>9}"
          f"{'process s':>11}")
    names = {"ptk": "ptk tokenize (end to end)", "raw": "raw encode_batch (encode only)",
             "datasets": "datasets load + map + group_texts"}
    for r in runs:
        print(f"{names[r['path']]:<34}{r['mb']:>7.1f}{r['tokens']:>14,}{r['seconds']:>9.2f}"
              f"{r['mb_per_s']:>8.2f}{r['tokens_per_s']:>12,.0f}{r['peak_mb']:>9.0f}{r['wall_s']:>11.2f}")
    print(f"datasets: load_dataset {hf['load_s']:.1f} s, tokenize map {hf['tokenize_s']:.1f} s, "
          f"group_texts map {hf['group_s']:.1f} s, {hf['cache_mb']:,.0f} MB of cache files; its tokens "
          f"include the [CLS] and [SEP] that run_mlm.py's tokenize_function adds to every line")
    print("process s: the whole subprocess, start to exit (for the peers: with imports and reading input)")
    print()
    for v in found:
        outcome = "PASS" if v["pass"] else "FAIL"
        value = f"{v['value']:>8.3f}" if isinstance(v["value"], float) else f"{v['value']:>8,}"
        print(f"{v['name']:<52}{value}  {v['target']:<8}{outcome}")


def main() -> None:
    args = parse_args()
    if args.peer:
        run_peer(args)
        return
    with workdir(args.workdir) as work:
        docs, tokens = base_inputs(work)
        base_mb = sentence_bytes(docs) / 1e6
        copies = math.ceil(args.min_mb / base_mb)
        big = repeated_corpus(docs, copies, work / f"docs-x{copies}")
        text_file = work / f"docs-x{copies}.txt"
        write_text_file(big, text_file)
        inputs = Inputs(docs=big, text_file=text_file, tokenizer=tokens / "tokenizer", copies=copies,
                        mb=sentence_bytes(big) / 1e6)
        runs = bench(inputs, work, args.workers, args.repeat)
    info, found = machine("tokenizers", "transformers", "datasets"), verdicts(runs)
    print_report(info, inputs, args.workers, runs, found)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"machine": info, "workers": args.workers, "inputs": {**dataclasses.asdict(inputs)},
                  "runs": runs, "ratios": found}
        args.json.write_text(json.dumps(record, indent=1, default=str))
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
