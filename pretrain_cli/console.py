"""Where ptk talks to the user: rich consoles on stderr, so stdout stays clean for pipes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

console = Console(stderr=True, highlight=False)


def say(message: str) -> None:
    """One status line (markup off: paths and option values may contain brackets)."""
    console.print(message, markup=False, soft_wrap=True)


@contextmanager
def progress_bar(name: str, total: int) -> Iterator[Callable[[], None]]:
    """A transient rich progress bar on stderr: `with progress_bar("mask", n) as advance: advance()`."""
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(name, total=total)
        yield lambda: bar.advance(task)
