"""Registration of every stage command, in pipeline order.

The stage modules hold only configs at import time (heavy libraries are imported inside `run`),
so `ptk --help` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer


def lazy_run(module: str) -> Any:
    """`run` of a stage module, imported only when the command runs."""
    return lambda cfg: importlib.import_module(module).run(cfg)


def register(app: typer.Typer) -> None:
    # STAGES: one block per stage, added as each stage lands.
    pass
