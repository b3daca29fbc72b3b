"""Every CLI option is a config field (and back), with help text and a shown default."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from pretrain_cli.cli.app import app
from pretrain_cli.stages import STAGES, config_class

runner = CliRunner()


def command_for(stage: str):
    words = STAGES[stage][0]
    group = typer.main.get_command(app)
    for word in words:
        group = group.commands[word]  # type: ignore[attr-defined]
    return group


def test_top_level_help_lists_every_stage() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for words, _, _ in STAGES.values():
        assert words[0] in result.output


@pytest.mark.parametrize("stage", list(STAGES))
def test_options_match_config_fields(stage: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(config_class(stage))}
    params = {p.name: p for p in command_for(stage).params}
    assert set(params) == set(fields)
    for name, field in fields.items():
        assert field.metadata.get("help"), f"{stage}.{name} has no help text"
        assert params[name].help == field.metadata["help"]


@pytest.mark.parametrize("stage", list(STAGES))
def test_help_documents_every_option_with_default(stage: str) -> None:
    result = runner.invoke(app, [*STAGES[stage][0], "--help"], terminal_width=200)
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    for field in dataclasses.fields(config_class(stage)):
        if field.metadata.get("argument"):
            continue
        assert "--" + field.name.replace("_", "-") in flat
    defaults = [f for f in dataclasses.fields(config_class(stage))
                if f.default is not dataclasses.MISSING and f.default not in (None, "")
                and not f.metadata.get("argument")]
    assert flat.count("[default:") >= len(defaults)
