"""A network configuration as data: the dict form of JSON and TOML files, read into a checked
:class:`~igcnas.search_space.config.NetworkConfig` and written back.

This is where configurations enter from user input (``igc-nas space check``, ``count``, exported
models, trial records), so it is the explicit validation point: a config read here has had its
family parameters and every layer shape checked by :func:`~igcnas.search_space.plan.resolve`, and
each error is one line naming the field and the allowed values. Configs built in code (the zoo, the
search template) are checked where they are resolved.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from igcnas.errors import BadInput
from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.families import get_family
from igcnas.search_space.plan import resolve

__all__ = ["config_from_dict", "config_to_dict", "load_config"]

_STAGE_FIELDS = {f.name for f in fields(StageConfig)}
_NETWORK_FIELDS = {f.name for f in fields(NetworkConfig)}


def config_to_dict(config: NetworkConfig) -> dict[str, Any]:
    """A JSON-ready dict; ``None`` stage fields are dropped to keep files short."""
    data = asdict(config)
    data["stages"] = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in stage.items() if v is not None}
        for stage in data["stages"]
    ]
    if data.get("name") is None:
        data.pop("name", None)
    if data.get("head_width") is None:
        data.pop("head_width", None)
    return data


def _check_fields(data: dict[str, Any], allowed: Any, required: tuple[str, ...], *, unknown: str, missing: str,
                  quote_missing: bool = True) -> None:
    """BadInput naming the first unknown field (with the allowed ones) or the first missing required one."""
    extra = set(data) - set(allowed)
    if extra:
        raise BadInput(f"{unknown.format(repr(sorted(extra)[0]))}; allowed fields: {', '.join(sorted(allowed))}")
    for name in required:
        if name not in data:
            raise BadInput(missing.format(repr(name) if quote_missing else name))


def config_from_dict(data: Any) -> NetworkConfig:
    """Parse a dict (from JSON or TOML) into a :class:`NetworkConfig` whose network resolves."""
    if not isinstance(data, dict):
        raise BadInput(f"config must be a JSON object, got {type(data).__name__}")
    _check_fields(data, _NETWORK_FIELDS, ("family", "stages", "stem_width"), unknown="unknown config field {}",
                  missing="config field {} is missing")
    stages_raw = data["stages"]
    if not isinstance(stages_raw, list):
        raise BadInput("stages must be a list of stage objects")
    stages = []
    for index, stage in enumerate(stages_raw):
        if not isinstance(stage, dict):
            raise BadInput(f"stages[{index}] must be an object")
        _check_fields(stage, _STAGE_FIELDS, ("width", "blocks"), unknown=f"unknown field {{}} in stages[{index}]",
                      missing=f"stages[{index}].{{}} is missing", quote_missing=False)
        stage = dict(stage)
        if isinstance(stage.get("chain"), list):
            stage["chain"] = tuple(stage["chain"])
        stages.append(StageConfig(**stage))
    rest = {k: v for k, v in data.items() if k != "stages"}
    config = NetworkConfig(stages=tuple(stages), **rest)
    get_family(config.family)  # first: JSON may give a list, which resolve's cache could not hash
    resolve(config)  # then every stage's family parameters and every layer shape; the first misfit is the error
    return config


def load_config(path: str | Path) -> NetworkConfig:
    """Read a configuration file as data (JSON, or TOML by extension); never executed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"config file {str(path)!r} cannot be read: {exc}") from None
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BadInput(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"config file {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    return config_from_dict(data)
