"""`ptk corpus stats`: what a corpus build kept and dropped, by reason, from its manifests.

    ptk corpus stats work/docs
    ptk corpus stats work/docs-*        # the parts of a --num-shards build, summed

Reads only `manifest.json` files, so it is instant on any corpus size.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.table import Table

from pretrain_cli.store import read_manifest


def corpus_stats(directories: list[Path]) -> Table:
    """One table: records read, documents kept, and every drop reason with its share of the records."""
    totals: Counter = Counter()
    dropped: Counter = Counter()
    languages: Counter = Counter()
    for directory in directories:
        stats = read_manifest(directory, "corpus").stats
        totals.update({k: v for k, v in stats.items() if isinstance(v, (int, float))})
        dropped.update(stats.get("dropped", {}))
        languages.update(stats.get("languages", {}))
    read = totals["records"]
    table = Table(title=", ".join(map(str, directories)), show_edge=False)
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("share of input", justify="right")

    def row(name: str, count: float) -> None:
        table.add_row(name, f"{count:,}", f"{100 * count / read:.1f}%" if read else "")

    row("input records", read)
    row("kept documents", totals["documents"])
    for reason, count in dropped.most_common():
        row(f"  dropped: {reason.replace('_', ' ')}", count)
    table.add_section()
    table.add_row("sentences", f"{totals['sentences']:,}", "")
    table.add_row("characters kept / read",
                  f"{totals['characters']:,} / {totals['input_characters']:,}", "")
    table.add_row("duplicate paragraphs removed", f"{totals['duplicate_paragraphs_removed']:,}", "")
    for code, count in languages.most_common(10):
        table.add_row(f"  language {code or '?'}", f"{count:,}",
                      f"{100 * count / max(totals['documents'], 1):.1f}% of kept")
    return table
