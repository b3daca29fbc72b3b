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

import typer

# Offline by default: nothing may reach a hub unless the user names a hub id and clears this.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(name="ptk", help=__doc__.split("\n")[0], no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)

# Each stage module adds its command(s) here; keep the pipeline order.
from pretrain_cli.cli import stages  # noqa: E402

stages.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
