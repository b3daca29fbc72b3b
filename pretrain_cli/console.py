"""Where ptk talks to the user: rich consoles on stderr, so stdout stays clean for pipes."""

from __future__ import annotations

import warnings
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


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load-report tables and progress bars; ptk reports what matters itself."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            # peft asks a transformers API that transformers 5 deprecates; nothing for a user to do
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
