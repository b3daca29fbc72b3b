"""Turn a stage config dataclass into a Typer command, so every option is a config field and back.

    app.command("tokenize", help="...")(stage_command(TokenizeConfig, tokenize.run))

The generated command builds the config from the parsed options, validates it, calls the stage's
`run(cfg)` and turns a `UserError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer

from pretrain_cli.config import StageConfig
from pretrain_cli.console import console
from pretrain_cli.errors import UserError


def fail(error: UserError) -> typer.Exit:
    """Print a user error as the one line the CLI contract promises; return the exit to raise."""
    console.print(f"error: {error}", markup=False, soft_wrap=True, style="bold red")
    return typer.Exit(code=error.exit_code)


def stage_command(config_cls: type[StageConfig], run: Callable[[Any], Any]) -> Callable[..., None]:
    hints = typing.get_type_hints(config_cls)
    params = []
    for field in dataclasses.fields(config_cls):
        help_text = field.metadata.get("help", "")
        if field.metadata.get("argument"):
            marker: Any = typer.Argument(help=help_text, show_default=True, metavar=field.name.upper())
        else:
            marker = typer.Option(help=help_text, show_default=True)
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = inspect.Parameter.empty
        params.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[hints[field.name], marker]))

    def command(**options: Any) -> None:
        try:
            cfg = config_cls(**options)
            cfg.validate()
            run(cfg)
        except UserError as error:
            raise fail(error) from None

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = config_cls.__doc__
    return command
