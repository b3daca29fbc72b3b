"""The library behind each `ptk` stage: one module (or package) per stage, each `run(cfg) -> Manifest`.

`STAGES` is the one list of stages: the CLI registers a command for each and `ptk run` looks
pipeline steps up in it. Each entry: CLI command path, module holding `run`, config class name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pretrain_cli.config import StageConfig

# stage name → (command words, module with the config and `run`, config class name)
STAGES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "corpus": (("corpus", "build"), "pretrain_cli.stages.corpus.build", "CorpusConfig"),
    "tokenize": (("tokenize",), "pretrain_cli.stages.tokenize.stage", "TokenizeConfig"),
    "mask": (("mask",), "pretrain_cli.stages.mask.stage", "MaskConfig"),
    "pretrain": (("pretrain",), "pretrain_cli.stages.pretrain", "PretrainConfig"),
    "finetune": (("finetune",), "pretrain_cli.stages.finetune", "FinetuneConfig"),
    "evaluate": (("evaluate",), "pretrain_cli.stages.evaluate", "EvaluateConfig"),
    "export": (("export",), "pretrain_cli.stages.export", "ExportConfig"),
    # new stages go above this line, in pipeline order; `run` chains them and stays last
    "run": (("run",), "pretrain_cli.stages.pipeline", "PipelineConfig"),
}


def config_class(stage: str) -> type[StageConfig]:
    _, module, name = STAGES[stage]
    return getattr(importlib.import_module(module), name)


def runner(stage: str) -> Callable[[Any], Any]:
    return importlib.import_module(STAGES[stage][1]).run
