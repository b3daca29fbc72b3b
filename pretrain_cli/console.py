"""Where ptk talks to the user: rich consoles on stderr, so stdout stays clean for pipes."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False)


def say(message: str) -> None:
    """One status line (markup off: paths and option values may contain brackets)."""
    console.print(message, markup=False, soft_wrap=True)
