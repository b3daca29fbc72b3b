"""`ptk`: raw text → corpus → tokens → examples → pretrained BERT → fine-tuned model → report.

    ptk corpus build wiki.xml.bz2 --out work/docs
    ptk tokenize work/docs --out work/tokens --vocab-size 8192
    ptk mask work/tokens --out work/examples
    ptk pretrain work/examples --out work/ckpt --preset tiny
    ptk finetune rotten_tomatoes --model work/ckpt/final --out work/ft
    ptk evaluate work/ckpt/final work/ft --out work/report
    ptk run examples/demo.yaml
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

# Offline by default: nothing may reach a hub unless the user names a hub id and clears this.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")



class OneLineErrors(TyperGroup):
    """Option-parsing errors (an unknown flag, a value outside its choices) as the same one
    `error:` line and exit code 2 as every other user error, instead of Click's usage block."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _CLICK_ERROR as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # `ptk corpus` alone: show its help
                error.show()
                sys.exit(error.exit_code)
            from pretrain_cli.cli.build import fail
            from pretrain_cli.errors import UserError

            context = getattr(error, "ctx", None)
            where = f"{context.command_path}: " if context is not None else ""
            fail(UserError(f"{where}{error.format_message()} (see --help)"))
            sys.exit(2)
        except typer.Abort:
            sys.exit(130)  # Ctrl-C: the shell's convention
        sys.exit(code if isinstance(code, int) else 0)


# typer ≥ 0.22 vendors its own click; either way its BadParameter derives from click's base error.
_CLICK_ERROR = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


app = typer.Typer(name="ptk", help=__doc__.split("\n")[0], no_args_is_help=True, cls=OneLineErrors,
                  rich_markup_mode=None,  # plain help: rich tables truncate long option names
                  add_completion=False, pretty_exceptions_enable=False)

# Each stage module adds its command(s) here; keep the pipeline order.
from pretrain_cli.cli import stages  # noqa: E402

stages.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
