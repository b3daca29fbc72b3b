"""Wikitext MB/s, peak memory and leftover markup of `ptk corpus build` next to WikiExtractor 3.1.0.

    python scripts/bench_corpus.py                          # 50 MB and 8× that, ~4 minutes on 2 cores
    python scripts/bench_corpus.py --mb 5 --growth 2        # a quick check
    python scripts/bench_corpus.py --repeat 3 --json work/bench/corpus.json   # best of 3, figures kept

The input is the real enwiki sample dump (gensim's, 206 pages) with its `<page>` blocks repeated until
the wikitext (UTF-8 bytes of every page's `<text>`) reaches --mb, each copy with its own ids and
titles, written as a bz2 MediaWiki export like a real dump; a second input is --growth times larger,
to see how each tool's peak memory grows with the input. Both inputs are cached under --work.

Both tools run as subprocesses of this venv with 2 processes, one after the other. ptk runs with
exact and near dedup off (the repeated input is nothing but duplicates, and WikiExtractor does not
deduplicate); everything else is at its defaults, as is WikiExtractor. Wall time runs from start to
exit; throughput is input wikitext MB (10^6 bytes) per wall second; peak memory is the largest sum
of RSS over the process and all its descendants, polled every 20 ms (the tree listed anew every
200 ms; shared pages of forked workers count once per process, alike for both tools). Leftovers are
occurrences of wiki markup and of orphaned brackets (what is left of a removed template or link) in
the output text, per MB of it.
"""

from __future__ import annotations

import argparse
import bz2
import dataclasses
import datetime
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROCESSES = 2
# Exact and near dedup off: every copy of the repeated input would otherwise be dropped.
PTK_FLAGS = ["--workers", str(PROCESSES), "--force", "--no-dedup", "--no-dedup-paragraphs",
             "--no-near-dedup"]
WIKIEXTRACTOR_FLAGS = ["--processes", str(PROCESSES)]
TOOLS = ("ptk", "wikiextractor")

MARKUP = ("{{", "}}", "[[", "]]", "{|", "|}", "<ref", "&amp;", "&lt;", "thumb|", "px|")
ORPHANS = ("()", "( )", "(, ", "(; ")
POLL_SECONDS = 0.02
TREE_EVERY = 10  # polls between listings of the process tree

TARGET_THROUGHPUT = 1.0  # ptk MB/s over WikiExtractor's, at least
TARGET_LEFTOVERS = 0.10  # ptk leftovers per MB over WikiExtractor's, at most
TARGET_GROWTH = 1.20  # ptk peak memory on the large input over the small one, at most


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=50, help="wikitext MB of the base input, at least")
    parser.add_argument("--growth", type=int, default=8, help="the large input is this many times the base")
    parser.add_argument("--work", type=Path, default=Path("work/bench/corpus"),
                        help="where the generated inputs (kept) and the outputs (replaced) go")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each tool per input; the fastest counts (the machine's load varies)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    if args.mb <= 0 or args.growth < 2 or args.repeat < 1:
        parser.error("--mb must be positive, --growth at least 2 and --repeat at least 1")
    return args


@dataclasses.dataclass(frozen=True)
class Sample:
    """The enwiki sample dump cut into the parts a repeated dump is made of."""

    header: str
    pages: list[str]
    footer: str
    wikitext_bytes: int


def wikitext_bytes(page: str) -> int:
    """UTF-8 bytes of a `<page>` block's wikitext, XML entities expanded."""
    return len((ET.fromstring(page).findtext("revision/text") or "").encode())


def load_sample() -> Sample:
    from pretrain_cli.samples import sample_path

    with bz2.open(sample_path("enwiki"), "rt", encoding="utf-8") as f:
        xml = f.read()
    pages = re.findall(r"  <page>\n.*?</page>\n", xml, flags=re.DOTALL)
    header, footer = xml[:xml.index(pages[0])], xml[xml.rindex(pages[-1]) + len(pages[-1]):]
    assert header.rstrip().endswith("</siteinfo>") and footer.strip() == "</mediawiki>"
    return Sample(header, pages, footer, sum(map(wikitext_bytes, pages)))


def renamed(page: str, copy: int, id_stride: int) -> str:
    """Copy number `copy` of a page: ids shifted past every original id, titles (and redirect
    targets) suffixed, the text untouched. Copy 0 is the original."""
    if copy == 0:
        return page
    page = re.sub(r"<(id|parentid)>(\d+)</", lambda m: f"<{m[1]}>{int(m[2]) + copy * id_stride}</", page)
    page = re.sub(r"<title>(.*?)</title>", lambda m: f"<title>{m[1]} {copy}</title>", page, count=1)
    return re.sub(r'<redirect title="(.*?)"', lambda m: f'<redirect title="{m[1]} {copy}"', page, count=1)


def make_input(sample: Sample, work: Path, copies: int) -> dict[str, Any]:
    """The sample's pages repeated `copies` times as a bz2 dump, cached by size (the JSON beside
    it is written last, so an interrupted generation is redone)."""
    path = work / f"enwiki-x{copies}.xml.bz2"
    info_path = path.with_suffix(".json")
    if info_path.exists() and path.exists():
        return json.loads(info_path.read_text())
    ids = re.findall(r"<(?:id|parentid)>(\d+)<", "".join(sample.pages))
    id_stride = 10 ** max(map(len, ids))
    print(f"writing {path} (the enwiki sample {copies}×) ...", flush=True)
    work.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    wikitext = 0
    with bz2.open(tmp, "wt", encoding="utf-8") as f:
        f.write(sample.header)
        for copy in range(copies):
            for page in sample.pages:
                page = renamed(page, copy, id_stride)
                wikitext += wikitext_bytes(page)
                f.write(page)
        f.write(sample.footer)
    tmp.rename(path)
    info = {"path": str(path), "copies": copies, "pages": copies * len(sample.pages),
            "wikitext_bytes": wikitext, "compressed_bytes": path.stat().st_size}
    info_path.write_text(json.dumps(info, indent=1))
    return info


def run_measured(command: list[str], log: Path) -> dict[str, float]:
    """Run a command to its end; wall seconds and the peak RSS sum of its process tree."""
    import psutil

    peak, polls, tree = 0, 0, []
    with log.open("w") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        while True:
            # Listing descendants scans all of /proc: done every TREE_EVERY polls it keeps this
            # poller's share of the 2 cores small; both tools' workers live for the whole run.
            if polls % TREE_EVERY == 0:
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    tree = []
            polls += 1
            rss = 0
            for member in tree:
                try:
                    rss += member.memory_info().rss
                except psutil.NoSuchProcess:  # exited since the listing
                    pass
            peak = max(peak, rss)
            try:
                proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                continue
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"{' '.join(command)} exited with {proc.returncode}; the end of {log}:\n"
                         + "\n".join(tail))
    return {"wall_s": wall, "peak_mb": peak / 1e6}


def ptk_texts(out: Path) -> Iterator[tuple[int, str]]:
    """(documents, text) per record batch of ptk's Arrow shards."""
    import pyarrow as pa

    for shard in sorted(out.glob("*.arrow")):
        with pa.OSFile(str(shard)) as source:
            for batch in pa.ipc.open_stream(source):
                texts = batch.column("text").to_pylist()
                yield len(texts), "\n".join(texts)


def wikiextractor_texts(out: Path) -> Iterator[tuple[int, str]]:
    """(documents, text) per WikiExtractor output file, without the `<doc>` lines and titles."""
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        docs, kept, title_next = 0, [], False
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            if line.startswith("<doc "):
                docs, title_next = docs + 1, True
            elif title_next:
                title_next = False
            elif not line.startswith("</doc>"):
                kept.append(line)
        yield docs, "".join(kept)


def count_leftovers(texts: Iterable[tuple[int, str]]) -> dict[str, int]:
    """Documents, UTF-8 bytes and each leftover pattern of one tool's output (the same for both tools)."""
    counts: Counter = Counter()
    for docs, text in texts:
        counts["documents"] += docs
        counts["bytes"] += len(text.encode())
        for pattern in MARKUP + ORPHANS:
            counts[pattern] += text.count(pattern)
    return dict(counts)


def run_tool(tool: str, source: dict[str, Any], out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)  # a stale output would be resumed or counted
    out.parent.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    if tool == "ptk":
        command = [str(bindir / "ptk"), "corpus", "build", source["path"], "--out", str(out), *PTK_FLAGS]
    else:
        command = [str(bindir / "wikiextractor"), *WIKIEXTRACTOR_FLAGS, "-o", str(out), source["path"]]
    print(f"running {tool} on {source['wikitext_bytes'] / 1e6:.1f} MB of wikitext ...", flush=True)
    return {**run_measured(command, out.parent / f"{out.name}.log"), "command": command}


def bench(source: dict[str, Any], work: Path, repeat: int) -> list[dict[str, Any]]:
    """Both tools on one input, `repeat` times taking turns, so that both meet the same load from
    outside; the fastest wall time and the highest peak count."""
    outs = {tool: work / "out" / f"{tool}-x{source['copies']}" for tool in TOOLS}
    trials: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
    for _ in range(repeat):
        for tool in TOOLS:
            trials[tool].append(run_tool(tool, source, outs[tool]))
    runs = []
    wikitext_mb = source["wikitext_bytes"] / 1e6
    for tool in TOOLS:
        counts = count_leftovers(ptk_texts(outs[tool]) if tool == "ptk" else wikiextractor_texts(outs[tool]))
        walls = [trial["wall_s"] for trial in trials[tool]]
        out_mb = counts["bytes"] / 1e6
        runs.append({
            "tool": tool, "command": trials[tool][0]["command"], "copies": source["copies"],
            "wikitext_mb": wikitext_mb, "wall_s": min(walls), "walls_s": walls,
            "peak_mb": max(trial["peak_mb"] for trial in trials[tool]), "mb_per_s": wikitext_mb / min(walls),
            "documents": counts["documents"], "output_mb": out_mb,
            "counts": {p: counts[p] for p in MARKUP + ORPHANS},
            "markup_per_mb": sum(counts[p] for p in MARKUP) / out_mb,
            "orphans_per_mb": sum(counts[p] for p in ORPHANS) / out_mb,
            "leftovers_per_mb": sum(counts[p] for p in MARKUP + ORPHANS) / out_mb})
    return runs


def ratio(a: float, b: float) -> float:
    return a / b if b else (0.0 if a == 0 else math.inf)


def verdict(name: str, value: float, at_least: float | None = None,
            at_most: float | None = None) -> dict[str, Any]:
    """A ratio against its target; with neither bound it is shown for reference."""
    if at_least is not None:
        target, passed = f">= {at_least}", value >= at_least
    elif at_most is not None:
        target, passed = f"<= {at_most}", value <= at_most
    else:
        target, passed = "(reference)", None
    return {"name": name, "value": value, "target": target, "pass": passed}


def verdicts(runs: list[dict[str, Any]], growth: int) -> list[dict[str, Any]]:
    ptk1, wiki1, ptk_big, wiki_big = runs
    found = [verdict(f"throughput ptk / wikiextractor at {ptk['copies']}×",
                     ratio(ptk["mb_per_s"], wiki["mb_per_s"]), at_least=TARGET_THROUGHPUT)
             for ptk, wiki in ((ptk1, wiki1), (ptk_big, wiki_big))]
    found += [verdict(f"{kind} per MB ptk / wikiextractor",
                      ratio(ptk1[f"{kind}_per_mb"], wiki1[f"{kind}_per_mb"]), at_most=TARGET_LEFTOVERS)
              for kind in ("markup", "orphans", "leftovers")]
    found.append(verdict(f"ptk peak memory {growth}× input / 1×",
                         ratio(ptk_big["peak_mb"], ptk1["peak_mb"]), at_most=TARGET_GROWTH))
    found.append(verdict(f"wikiextractor peak memory {growth}× input / 1×",
                         ratio(wiki_big["peak_mb"], wiki1["peak_mb"])))
    return found


def machine() -> dict[str, Any]:
    from pretrain_cli import __version__

    cpuinfo = Path("/proc/cpuinfo")
    models = re.findall(r"model name\s*:\s*(.*)", cpuinfo.read_text()) if cpuinfo.exists() else []
    cpu = models[0] if models else platform.processor() or platform.machine()
    return {"cpus": os.cpu_count(), "cpu": cpu,
            "python": platform.python_version(), "ptk": __version__,
            "wikiextractor": version("wikiextractor"),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def print_report(info: dict[str, Any], runs: list[dict[str, Any]], found: list[dict[str, Any]]) -> None:
    print(f"\nbench_corpus: {info['cpus']} CPUs ({info['cpu']}), Python {info['python']}, ptk {info['ptk']}, "
          f"wikiextractor {info['wikiextractor']}, {info['date']}; both tools with {PROCESSES} processes")
    print(f"ptk corpus build {' '.join(PTK_FLAGS)}: exact and near dedup off (the repeated input is all "
          f"duplicates and WikiExtractor does no dedup), the rest at defaults")
    if (repeat := len(runs[0]["walls_s"])) > 1:
        print(f"each tool ran {repeat} times per input, taking turns: the fastest wall time and the highest "
              f"peak count")
    print(f"\n{'tool':<15}{'input':>7}{'wikitext MB':>13}{'wall s':>9}{'MB/s':>8}{'peak MB':>10}"
          f"{'docs':>8}{'out MB':>9}{'markup/MB':>11}{'orphans/MB':>12}{'total/MB':>10}")
    for r in runs:
        print(f"{r['tool']:<15}{r['copies']:>6}×{r['wikitext_mb']:>13.1f}{r['wall_s']:>9.1f}"
              f"{r['mb_per_s']:>8.2f}{r['peak_mb']:>10.0f}{r['documents']:>8,}{r['output_mb']:>9.1f}"
              f"{r['markup_per_mb']:>11.2f}{r['orphans_per_mb']:>12.2f}{r['leftovers_per_mb']:>10.2f}")
    ptk1, wiki1 = runs[:2]
    print(f"\nper MB of output text at {ptk1['copies']}×:\n{'pattern':<10}{'ptk':>10}{'wikiextractor':>15}")
    for pattern in MARKUP + ORPHANS:
        print(f"{pattern!r:<10}{ptk1['counts'][pattern] / ptk1['output_mb']:>10.2f}"
              f"{wiki1['counts'][pattern] / wiki1['output_mb']:>15.2f}")
    print()
    for v in found:
        outcome = "" if v["pass"] is None else ("PASS" if v["pass"] else "FAIL")
        print(f"{v['name']:<48}{v['value']:>8.3f}  {v['target']:<12}{outcome}")


def main() -> None:
    args = parse_args()
    bindir = Path(sys.executable).parent
    missing = [name for name in TOOLS if not (bindir / name).exists()]
    if missing or importlib.util.find_spec("psutil") is None:
        raise SystemExit(f"{bindir} lacks {', '.join(missing) or 'psutil'}: pip install -e '.[bench]'")
    sample = load_sample()
    small = math.ceil(args.mb * 1e6 / sample.wikitext_bytes)
    print(f"input: the enwiki sample ({len(sample.pages)} pages, {sample.wikitext_bytes / 1e6:.2f} MB of "
          f"wikitext) repeated {small}× and {small * args.growth}×", flush=True)
    sources = [make_input(sample, args.work, small), make_input(sample, args.work, small * args.growth)]
    runs = [run for source in sources for run in bench(source, args.work, args.repeat)]
    info, found = machine(), verdicts(runs, args.growth)
    print_report(info, runs, found)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "processes": PROCESSES, "inputs": sources,
                                         "runs": runs, "ratios": found}, indent=1))
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
