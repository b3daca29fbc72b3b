"""Stage configs: one dataclass per stage is at once the library API, the CLI and the manifest record.

    @dataclass(kw_only=True)
    class TokenizeConfig(StageConfig):
        stage: ClassVar[str] = "tokenize"
        vocab_size: int = option(8192, "Size of the WordPiece vocabulary to train.")

        def problems(self) -> list[str]:
            return ["--vocab-size must be at least 128"] if self.vocab_size < 128 else []

Every field becomes a CLI option (`--vocab-size`) whose help text is the field's doc, so the CLI and
the config cannot drift apart. `validate()` gathers every problem and raises one `UserError`.
`config_hash()` covers only the fields that change what the stage writes (`hashed=True`), so a rerun
with more workers or another progress style is still "up to date".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

from pretrain_cli.errors import UserError


def option(default: Any = dataclasses.MISSING, help: str = "", *, argument: bool = False,
           hashed: bool = True) -> Any:
    """A config field that is also a CLI option.

    default: the value when the user says nothing (lists are copied per instance).
    help: the one-line doc shown by `--help`; required, a test checks every field has one.
    argument: a positional CLI argument instead of an `--option`.
    hashed: whether the field changes the stage's output (and so belongs in the config hash).
    """
    metadata = {"help": help, "argument": argument, "hashed": hashed}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(kw_only=True)
class StageConfig:
    """Base of every stage config: validation, serialisation and hashing."""

    stage: ClassVar[str] = ""

    force: bool = option(False, "Replace an existing output made with other options or inputs.",
                         hashed=False)

    def problems(self) -> list[str]:
        """Every problem with these options, as user-facing phrases; stages extend this."""
        return []

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise UserError(f"ptk {self.stage}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def inactive(self) -> tuple[str, ...]:
        """Fields that do not apply to this run's mode (another objective's options, say); stages
        extend this. They stay out of the hash, so a mode's new options leave older outputs up to date."""
        return ()

    def hashed_dict(self) -> dict[str, Any]:
        inactive = set(self.inactive())
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata.get("hashed", True) and f.name not in inactive}

    def config_hash(self) -> str:
        blob = json.dumps({"stage": self.stage, **self.hashed_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str) -> StageConfig:
        """Build a config from YAML/JSON values, converting paths; `where` names the source."""
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{where}: unknown option(s) {', '.join(unknown)} for `ptk {cls.stage}`; "
                            f"see `ptk {cls.stage} --help` for the valid ones")
        kwargs = {name: _coerce(hints[name], value, f"{where}: {name}") for name, value in values.items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required field is missing
            raise UserError(f"{where}: {exc}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check a YAML value against the field's type hint, converting paths; UserError if it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, where)
    if origin is list:
        return [_coerce(args[0], v, where) for v in (value if isinstance(value, list) else [value])]
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if hint is Path and isinstance(value, str):
        return Path(value)
    if hint is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:  # YAML 1.1 reads `1e-3` (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if hint in (int, bool) and type(value) is hint:
        return value
    raise UserError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def field_help(config_cls: type[StageConfig]) -> dict[str, str]:
    """Field name → help text, for the CLI builder and the option/field parity test."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(config_cls)}
