"""Typed configuration: frozen dataclasses per subsystem, built once by one generic merge.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from .alerts.settings import AlertsConfig
from .can.catalog import CatalogEntry
from .errors import ConfigError
from .store.settings import StoreConfig

DEFAULT_CONFIG_PATH = Path("/etc/carlinkd/carlinkd.toml")
ENV_PREFIX = "CARLINKD_"

LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True)
class CanFilter:
    """One python-can acceptance filter."""

    can_id: int
    can_mask: int = 0x7FF
    extended: bool = False


@dataclass(frozen=True)
class CanConfig:
    """Which CAN interface to open and how to keep it open."""

    interface: str | None = None
    channel: str | None = None
    bitrate: int | None = None
    fd: bool = False
    data_bitrate: int | None = None
    filters: tuple[CanFilter, ...] = ()
    # Interface-specific keyword arguments passed to can.Bus as they are (e.g. host, port).
    options: dict[str, str | int | float | bool] = field(default_factory=dict)
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    # A bus whose recv keeps spinning without frames for this long is treated as closed
    # (python-can's socketcand client does this after the server hangs up).
    dead_after_s: float = 0.5


@dataclass(frozen=True)
class DecodeConfig:
    """Which CAN databases to load and which signals travel onward."""

    # Empty: the demo vehicle's DBC shipped with carlinkd.
    dbc: tuple[Path, ...] = ()
    strict: bool = True
    # "Message.Signal" -> canonical name, in addition to the built-in catalog.
    catalog: dict[str, CatalogEntry] = field(default_factory=dict)
    # DBC signals ("Message.Signal") forwarded under their own names though not catalogued.
    subscribe: tuple[str, ...] = ()
    warn_interval_s: float = 10.0


@dataclass(frozen=True)
class HubConfig:
    """Event hub sizing."""

    queue_size: int = 1000


@dataclass(frozen=True)
class DaemonConfig:
    """Process-wide settings."""

    state_dir: Path = Path("/var/lib/carlinkd")
    log_level: LogLevel = "info"


VoiceBackend = Literal["auto", "pocketsphinx", "vosk"]


def _default_groups() -> dict[str, tuple[str, ...]]:
    return {"en": ("family", "friends", "car club"), "zh": ("家人", "朋友", "车友会")}


@dataclass(frozen=True)
class VoiceConfig:
    """Offline voice: recognizer backend and models, dialog timeouts, speech output."""

    enabled: bool = True
    language: Literal["en", "zh"] = "en"
    # "auto": vosk when a model directory is configured for the language, else pocketsphinx (en).
    backend: VoiceBackend = "auto"
    # Language code -> vosk model directory (e.g. vosk-model-small-en-us-0.15).
    vosk_models: dict[str, Path] = field(default_factory=dict)
    # Language code -> message group names known to the car (later also from the cloud).
    groups: dict[str, tuple[str, ...]] = field(default_factory=_default_groups)
    # Dialog: reprompt after this much silence, give up after the same again.
    silence_timeout_s: float = 8.0
    # End-of-speech detection on a live microphone: trailing silence and hard cap.
    end_of_speech_s: float = 0.8
    max_utterance_s: float = 10.0
    # Microphone (sounddevice, optional); None = the default input device and its rate.
    input_device: str | None = None
    # Speech out: espeak-ng voice per language, words per minute, pitch 0-99.
    tts_voices: dict[str, str] = field(default_factory=lambda: {"en": "en-us", "zh": "cmn"})
    tts_speed: int = 165
    tts_pitch: int = 50
    # Where spoken replies are written as WAV; unset = the audio device when there is one.
    reply_dir: Path | None = None
    # Chat messages as they arrive: "read" aloud (then marked read), "announce" the sender
    # only (the message waits for "read my messages"), or "off" (it just waits).
    incoming_messages: Literal["read", "announce", "off"] = "read"


@dataclass(frozen=True)
class SyncConfig:
    """Cloud sync (docs/protocol.md): where, who we are, and how hard to try. No url = offline."""

    # ws://host:port/ or wss://host:port/; unset keeps the daemon offline (outbox still fills).
    url: str | None = None
    # Device token sent as "Authorization: Bearer <token>"; token_file is read at start-up.
    token: str | None = None
    token_file: Path | None = None
    # TLS: verification stays on unless verify_tls = false; ca_file replaces the system CAs.
    verify_tls: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    # Outbox and inbound log database; default <daemon.state_dir>/sync.db.
    db: Path | None = None
    # Reconnect backoff: first delay, growth factor, cap, and the connected time after which a
    # connection counts as healthy and the backoff starts again from the first delay.
    backoff_initial_s: float = 1.0
    backoff_factor: float = 2.0
    backoff_max_s: float = 300.0
    healthy_after_s: float = 30.0
    # After the cloud refused our token/certificate, or speaks another protocol version.
    auth_retry_s: float = 900.0
    version_retry_s: float = 3600.0
    # Unacknowledged upstream items in flight; also advertised for downstream items.
    window: int = 64
    # websockets limits: largest incoming message, frames buffered, write-buffer high-water mark.
    max_size: int = 1024 * 1024
    max_queue: int = 16
    write_limit: int = 64 * 1024
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    open_timeout_s: float = 10.0
    # Clean shutdown waits this long for queued items to be acknowledged.
    flush_timeout_s: float = 5.0
    # How often the car's latest status snapshot is queued (coalesced per key).
    status_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(("ws://", "wss://")):
            raise TypeError("url must start with ws:// or wss://")
        if self.window <= 0 or self.max_size <= 0 or self.max_queue <= 0:
            raise TypeError("window, max_size and max_queue must be > 0")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s or self.backoff_factor < 1:
            raise TypeError("need 0 < backoff_initial_s <= backoff_max_s and backoff_factor >= 1")
        if self.ping_interval_s >= 30:
            raise TypeError("ping_interval_s must be < 30 (NAT and carrier idle timeouts)")

    def db_path(self, state_dir: Path) -> Path:
        """The sync database file."""
        return self.db if self.db is not None else state_dir / "sync.db"


@dataclass(frozen=True)
class HmiConfig:
    """Head-unit D-Bus API (carlinkd.hmi): which bus, and how often SignalsChanged may fire."""

    enabled: bool = True
    # "system", "session", or a D-Bus address such as "unix:path=/run/hmi/bus".
    bus: str = "system"
    # At most one SignalsChanged per interval; values changing in between are coalesced.
    signals_interval_s: float = 0.5

    def __post_init__(self) -> None:
        if self.bus not in ("system", "session") and ":" not in self.bus:
            raise TypeError(f"bus must be 'system', 'session' or a D-Bus address, got {self.bus!r}")
        if not self.signals_interval_s > 0:
            raise TypeError("signals_interval_s must be > 0")


@dataclass(frozen=True)
class ObdConfig:
    """OBD-II poller (carlinkd.can.obd): addressing, request budget, per-PID rates, timeouts."""

    enabled: bool = True
    # "11bit": requests on 0x7DF / 0x7E0-0x7E7; "29bit": 0x18DB33F1 / 0x18DA<ecu>F1 (ISO 15765-4).
    addressing: Literal["11bit", "29bit"] = "11bit"
    # At most this many requests per second, all ECUs together (ISO-TP flow control not counted).
    budget_per_s: float = 10.0
    # Poll periods: fast_pids, slow_pids, every other supported PID; stored DTCs (also at ignition on).
    fast_period_s: float = 1.0
    normal_period_s: float = 10.0
    slow_period_s: float = 60.0
    dtc_period_s: float = 300.0
    fast_pids: tuple[int, ...] = (0x0C, 0x0D)
    slow_pids: tuple[int, ...] = (0x1F, 0x21, 0x2F, 0x31, 0x4D, 0x4E, 0xA6)
    # Poll only these PIDs (empty: every supported PID the codec decodes to a number).
    pids: tuple[int, ...] = ()
    # P2 (first answer), P2* (after "response pending", NRC 0x78), N_Cr (between ISO-TP frames).
    response_timeout_s: float = 0.15
    pending_timeout_s: float = 5.0
    frame_timeout_s: float = 1.0
    # Nobody answered: rediscover after backoff_initial_s, doubling up to backoff_max_s.
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 300.0
    # Requests in a row without any answer before the ECUs count as gone (asleep, unplugged).
    max_misses: int = 3
    # Wait this long after start-up before the first request, so the DBC's ignition signal
    # (Vehicle.LowVoltageSystemState) can arrive first and a parked car is never woken.
    startup_delay_s: float = 1.0

    def __post_init__(self) -> None:
        periods = (self.fast_period_s, self.normal_period_s, self.slow_period_s, self.dtc_period_s)
        if not self.budget_per_s > 0 or min(periods) <= 0:
            raise TypeError("budget_per_s and every *_period_s must be > 0")
        if not 0 < self.response_timeout_s <= self.pending_timeout_s or self.frame_timeout_s <= 0:
            raise TypeError("need 0 < response_timeout_s <= pending_timeout_s and frame_timeout_s > 0")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s or self.max_misses < 1:
            raise TypeError("need 0 < backoff_initial_s <= backoff_max_s and max_misses >= 1")
        if any(not 0 < pid <= 0xFF for pid in (*self.fast_pids, *self.slow_pids, *self.pids)):
            raise TypeError("PIDs must be 0x01-0xFF")


@dataclass(frozen=True)
class Config:
    """The whole effective configuration."""

    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    can: CanConfig = field(default_factory=CanConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    obd: ObdConfig = field(default_factory=ObdConfig)
    hmi: HmiConfig = field(default_factory=HmiConfig)


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
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(_where(origin, path), path, str(err)) from err


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
