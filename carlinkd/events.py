"""Typed events that travel through the hub, each with its overflow policy.

Telemetry coalesces to the latest value per key; alerts and commands are never dropped;
status events may be dropped (counted) when a subscriber falls behind.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import ClassVar


class Overflow(enum.Enum):
    """What a full subscriber queue does with one more event of a type."""

    COALESCE = "coalesce"      # merge with the queued event of the same key, else drop the new one
    NEVER_DROP = "never-drop"  # always queued, even past the bound (counted and warned)
    DROP_NEWEST = "drop"       # dropped and counted


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all hub events."""

    overflow: ClassVar[Overflow] = Overflow.DROP_NEWEST

    def coalesce_key(self) -> Hashable:
        """Key under which queued events of this type are merged."""
        return type(self).__name__

    def merge(self, older: Event) -> Event:
        """Combine with an older queued event of the same key (newest wins by default)."""
        return self


@dataclass(frozen=True, slots=True)
class SignalValue:
    """One decoded signal: canonical name, value, unit and when it was seen."""

    name: str
    value: float | int | str
    unit: str | None
    timestamp: float
    source: str = "dbc"


@dataclass(frozen=True, slots=True)
class SignalsUpdated(Event):
    """Signals whose values changed, keyed by canonical name; coalesces by merging."""

    overflow: ClassVar[Overflow] = Overflow.COALESCE
    values: Mapping[str, SignalValue]

    def merge(self, older: Event) -> Event:
        """Newer values win; signals only in the older event are kept."""
        assert isinstance(older, SignalsUpdated)
        return SignalsUpdated({**older.values, **self.values})


@dataclass(frozen=True, slots=True)
class BusState(Event):
    """The CAN source changed state (connecting, up, down, closed)."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class BusStats(Event):
    """Periodic counters from the CAN source and decoder; coalesces to the latest."""

    overflow: ClassVar[Overflow] = Overflow.COALESCE
    counters: Mapping[str, int]
    timestamp: float


@dataclass(frozen=True, slots=True)
class Command(Event):
    """Something the driver, the HMI or the cloud asked for; never dropped."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    name: str
    args: Mapping[str, str]
    origin: str
