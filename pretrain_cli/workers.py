"""Worker processes for the data stages: speed changes with `--workers`, the output never does."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
    """`map(fn, items)` on `workers` processes, results in input order (so output never depends on it).

    At most two items per worker are in flight, so a long stream (a whole dump) is read only as
    fast as it is processed and memory stays flat; `Executor.map` would read all of it up front.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    # spawn, not fork: the parent may already run tokenizers' or torch's thread pools.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque[Future[Any]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
