"""Worker processes for the data stages: speed changes with `--workers`, the output never does."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
    """`map(fn, items)` on `workers` processes, results in input order (so output never depends on it)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    # spawn, not fork: the parent may already run tokenizers' or torch's thread pools.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(fn, items)
