"""Settings of the CAN input ([can]) and the DBC decoder ([decode])."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .catalog import CatalogEntry

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
