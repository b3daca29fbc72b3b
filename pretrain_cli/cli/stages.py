"""Registration of every stage command, in pipeline order.

To add a stage, add it to `STAGES` in `pretrain_cli/stages/__init__.py`; nothing here changes.
Stage modules keep heavy libraries (torch, transformers, tokenizers) out of their import-time
code, so `ptk --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pretrain_cli.cli.build import fail, stage_command
from pretrain_cli.stages import STAGES, config_class, runner

GROUP_HELP = {"corpus": "Build clean document corpora from dumps and text."}


def register(app: typer.Typer) -> None:
    groups: dict[str, typer.Typer] = {}
    for stage, (words, _, _) in STAGES.items():
        cls = config_class(stage)
        command = stage_command(cls, lambda cfg, stage=stage: runner(stage)(cfg))
        help_text = (cls.__doc__ or "").strip().split("\n")[0]
        if len(words) == 1:
            app.command(words[0], help=help_text)(command)
            continue
        group = words[0]
        if group not in groups:
            groups[group] = typer.Typer(help=GROUP_HELP.get(group), no_args_is_help=True,
                                        rich_markup_mode=None)
            app.add_typer(groups[group], name=group)
        groups[group].command(words[1], help=help_text)(command)
    groups["corpus"].command("stats", help="Show what corpus builds kept and dropped, by reason.")(stats)


def stats(directories: Annotated[list[Path], typer.Argument(help="Corpus directories (parts are summed).")]
          ) -> None:
    from rich.console import Console

    from pretrain_cli.errors import UserError
    from pretrain_cli.stages.corpus.stats import corpus_stats

    try:
        Console().print(corpus_stats(directories))  # stdout: the table is the command's output
    except UserError as error:
        raise fail(error) from None
