"""`ptk run PIPELINE.yaml`: run stages in order, each skipped when its output is up to date.

    ptk run examples/demo.yaml

A pipeline file is a list of steps; each names its stage and gives that stage's options, the same
names as the CLI flags with underscores (`vocab_size: 8192`). Relative paths are relative to the
directory ptk runs in. Every step is parsed (stage names, option names and types) before the first
one runs, so a typo in the last step does not cost the hours the first ones take; checks that need
an earlier step's output (does the model directory exist?) run when the step starts.

    steps:
      - stage: corpus
        inputs: [sample:enwiki]
        out: work/docs
      - stage: tokenize
        docs: work/docs
        out: work/tokens
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, ClassVar

from pretrain_cli.config import StageConfig, option
from pretrain_cli.console import say
from pretrain_cli.errors import UserError


@dataclasses.dataclass(kw_only=True)
class PipelineConfig(StageConfig):
    """Run a pipeline file: every stage in order, skipping those already up to date."""

    stage: ClassVar[str] = "run"

    pipeline: Path = option(help="Pipeline YAML file: a `steps` list of {stage: NAME, option: value}.",
                            argument=True)

    def problems(self) -> list[str]:
        return [] if self.pipeline.is_file() else [f"{self.pipeline}: no such pipeline file"]


def load_steps(cfg: PipelineConfig) -> list[StageConfig]:
    """Parse every step up front."""
    import yaml

    from pretrain_cli.stages import STAGES, config_class

    try:
        document = yaml.safe_load(cfg.pipeline.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{cfg.pipeline}: not valid YAML ({str(exc).splitlines()[0]})") from None
    steps = document.get("steps") if isinstance(document, dict) else None
    if not isinstance(steps, list) or not steps:
        raise UserError(f"{cfg.pipeline}: expected a top-level `steps:` list of stages")
    configs = []
    for number, step in enumerate(steps, start=1):
        where = f"{cfg.pipeline}: step {number}"
        if not isinstance(step, dict) or "stage" not in step:
            raise UserError(f"{where}: each step needs `stage: NAME`")
        options: dict[str, Any] = dict(step)
        name = options.pop("stage")
        if name not in STAGES or name == cfg.stage:
            known = ", ".join(s for s in STAGES if s != cfg.stage)
            raise UserError(f"{where}: unknown stage {name!r}; known stages: {known}")
        stage_cfg = config_class(name).from_dict(options, where=f"{where} ({name})")
        stage_cfg.force = stage_cfg.force or cfg.force
        configs.append(stage_cfg)
    return configs


def run(cfg: PipelineConfig) -> None:
    from pretrain_cli.stages import runner

    configs = load_steps(cfg)
    started = time.perf_counter()
    for number, stage_cfg in enumerate(configs, start=1):
        say(f"── step {number}/{len(configs)}: ptk {stage_cfg.stage}")
        try:
            stage_cfg.validate()
        except UserError as exc:
            raise UserError(f"{cfg.pipeline}: step {number}: {exc}") from None
        runner(stage_cfg.stage)(stage_cfg)
    say(f"pipeline {cfg.pipeline} finished in {time.perf_counter() - started:.1f} s")
