"""The generic configuration merge: TOML file, environment and overrides onto the typed settings.

Each feature keeps its settings beside its code (``carlinkd/<feature>/settings.py``);
:class:`carlinkd.settings.Config` puts them together. This module only knows how to merge.

Precedence, lowest to highest: built-in defaults, the TOML file, ``CARLINKD_<SECTION>_<KEY>``
environment variables, command-line overrides. Modules receive these objects; they never read
files or the environment themselves. Where ``[can]`` is silent, python-can's own conventions
(``CAN_INTERFACE``, ``CAN_CHANNEL``, ``can.conf``) apply because unset keys are not passed on.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

from .errors import ConfigError
from .settings import Config as Config  # re-exported: the type load_config and build_config return

DEFAULT_CONFIG_PATH = Path("/etc/carlinkd/carlinkd.toml")
ENV_PREFIX = "CARLINKD_"


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    required: bool = False,
) -> Config:
    """Build the effective configuration from defaults, file, environment and overrides."""
    layers: list[tuple[str, dict[str, Any]]] = []
    file_path = path if path is not None else DEFAULT_CONFIG_PATH
    if path is not None or required or file_path.exists():
        layers.append((str(file_path), read_toml(file_path)))
    env_layer = env_overrides(os.environ if env is None else env)
    if env_layer:
        layers.append(("environment", env_layer))
    if overrides:
        layers.append(("command line", dict(overrides)))
    return build_config(layers)


def read_toml(path: Path) -> dict[str, Any]:
    """Read one TOML file, translating I/O and syntax errors to ConfigError."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as err:
        raise ConfigError(str(path), "", "file not found") from err
    except OSError as err:
        raise ConfigError(str(path), "", f"cannot read: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), "", f"invalid TOML: {err}") from err


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Collect ``CARLINKD_SECTION_KEY=value`` variables as a nested dict of strings."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    out: dict[str, Any] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX):].lower()
        section, _, key = rest.partition("_")
        if section in sections and key:
            out.setdefault(section, {})[key] = _EnvString(value)
    return out


class _EnvString(str):
    """A value from the environment: parsed to the field's type instead of type-checked."""


def build_config(layers: list[tuple[str, dict[str, Any]]]) -> Config:
    """Merge layers (lowest precedence first) onto the defaults and validate every key."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, data in layers:
        _merge(merged, data, origin, source, "")
    cfg: Config = _build(Config, merged, origin, "")
    return cfg


def _merge(dst: dict[str, Any], src: Mapping[str, Any], origin: dict[str, str],
           source: str, prefix: str) -> None:
    for key, value in src.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _merge(dst[key], value, origin, source, path + ".")
        else:
            dst[key] = dict(value) if isinstance(value, Mapping) else value
            _record_origin(value, origin, source, path)


def _record_origin(value: Any, origin: dict[str, str], source: str, path: str) -> None:
    origin[path] = source
    if isinstance(value, Mapping):
        for k, v in value.items():
            _record_origin(v, origin, source, f"{path}.{k}")


def _where(origin: dict[str, str], path: str) -> str:
    probe = path
    while probe:
        if probe in origin:
            return origin[probe]
        probe = probe.rpartition(".")[0]
    return "defaults"


def _build(cls: type[Any], data: Any, origin: dict[str, str], path: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(_where(origin, path), path, f"expected a table, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(_where(origin, key), key,
                          f"unknown key; expected one of: {', '.join(sorted(names))}")
    kwargs = {}
    for name in names & set(data):
        key = f"{path}.{name}" if path else name
        kwargs[name] = _convert(hints[name], data[name], origin, key)
        _check_range(name, kwargs[name], origin, key)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(_where(origin, path), path, str(err)) from err


#: Name endings of quantities that can never be negative (durations, distances, rates).
_QUANTITY_SUFFIXES = ("_s", "_days", "_km", "_per_s", "_per_min")
#: Words in a quantity's name that make zero meaningless too: a zero interval busy-loops.
_POSITIVE_WORDS = ("interval", "period", "tick", "timeout", "sample", "budget", "retry", "window")


def _check_range(name: str, value: Any, origin: dict[str, str], key: str) -> None:
    """Durations, distances and rates must be finite and not negative; intervals, periods and
    timeouts must be above zero (``status_interval_s = 0`` would busy-loop)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if not name.endswith(_QUANTITY_SUFFIXES):
        return
    positive = any(word in name for word in _POSITIVE_WORDS)
    if value != value or value in (float("inf"), float("-inf")):
        problem = "must be a finite number"
    elif positive and value <= 0:
        problem = f"must be greater than 0, got {value!r}"
    elif value < 0:
        problem = f"must not be negative, got {value!r}"
    else:
        return
    raise ConfigError(_where(origin, key), key, problem)


def _convert(tp: Any, value: Any, origin: dict[str, str], key: str) -> Any:
    """Check (or, for environment strings, parse) one value against a field type."""
    origin_type = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin_type in (Union, types.UnionType):
        if value is None or (isinstance(value, _EnvString) and value == "" and type(None) in args):
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, origin, key)
        return _scalar_union(tuple(inner), value, origin, key)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, origin, key)
    if origin_type is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            _fail(origin, key, f"expected one of {choices}, got {value!r}")
        return str(value)
    if origin_type is tuple:
        items = _split_env(value) if isinstance(value, _EnvString) else value
        if not isinstance(items, list | tuple):
            _fail(origin, key, f"expected an array, got {_kind(value)}")
        return tuple(_convert(args[0], v, origin, f"{key}[{i}]") for i, v in enumerate(items))
    if origin_type is dict:
        if not isinstance(value, Mapping):
            _fail(origin, key, f"expected a table, got {_kind(value)}")
        return {str(k): _convert(args[1], v, origin, f"{key}.{k}") for k, v in value.items()}
    return _scalar(tp, value, origin, key)


def _scalar(tp: Any, value: Any, origin: dict[str, str], key: str) -> Any:
    if isinstance(value, _EnvString):
        return _parse_env(tp, value, origin, key)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    if tp is Path and isinstance(value, str):
        return Path(value)
    _fail(origin, key, f"expected {_type_name(tp)}, got {_kind(value)} {value!r}")


def _scalar_union(options: tuple[Any, ...], value: Any, origin: dict[str, str], key: str) -> Any:
    """A value of one of several scalar types (e.g. ``str | int | float | bool``)."""
    if isinstance(value, _EnvString):
        for tp in (int, float):
            if tp in options:
                try:
                    return tp(value)
                except ValueError:
                    pass
        low = value.lower()
        if bool in options and low in ("true", "false"):
            return low == "true"
        return str(value)
    if type(value) in options:
        return value
    names = " or ".join(_type_name(o) for o in options)
    _fail(origin, key, f"expected {names}, got {_kind(value)}")


def _parse_env(tp: Any, text: str, origin: dict[str, str], key: str) -> Any:
    try:
        if tp is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if tp is int:
            return int(text, 0)
        if tp is float:
            return float(text)
        if tp is Path:
            return Path(text)
        return str(text)
    except ValueError:
        _fail(origin, key, f"expected {_type_name(tp)}, got {text!r}")


def _split_env(text: str) -> list[_EnvString]:
    return [_EnvString(part.strip()) for part in text.split(",") if part.strip()]


def _fail(origin: dict[str, str], key: str, problem: str) -> typing.NoReturn:
    raise ConfigError(_where(origin, key), key, problem)


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _type_name(tp: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            Path: "a path string"}.get(tp, str(tp))


def to_toml(cfg: Any) -> str:
    """Render a configuration dataclass as TOML (what ``config check`` prints)."""
    lines: list[str] = []
    _emit_table(dataclasses.asdict(cfg), "", lines)
    return "\n".join(lines).strip() + "\n"


def _emit_table(data: Mapping[str, Any], prefix: str, lines: list[str]) -> None:
    tables = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif value is not None:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        else:
            lines.append(f"# {_toml_key(key)} is unset")
    for key, value in tables:
        name = f"{prefix}{_toml_key(key)}"
        lines.append("")
        lines.append(f"[{name}]")
        _emit_table(value, name + ".", lines)


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum()
    return key if bare else '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()
                                if v is not None) + " }"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
