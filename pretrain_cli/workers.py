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
    When reading `items` fails (a damaged input), the results of every item read before the
    failure are still yielded, then the error is raised: work done before the damage is kept.
    """
    source = iter(items)
    if workers <= 1:
        yield from map(fn, source)
        return
    # spawn, not fork: the parent may already run tokenizers' or torch's thread pools.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque[Future[Any]] = deque()
        failure: Exception | None = None
        while failure is None:
            try:
                item = next(source)
            except StopIteration:
                break
            except Exception as error:  # noqa: BLE001 - re-raised below, after the finished work
                failure = error
                break
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        if failure is not None:
            raise failure
