"""The head-unit API without I/O: names, argument checks, property state and signal throttling.

Everything here is plain data in, plain data out (time is passed as ``now``), so it is tested
without a bus; :mod:`carlinkd.hmi.dbus` moves these values on and off D-Bus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import HmiInvalidArgs
from ..events import (BusState, CloudState, Event, GroupsListed, HelperChanged, IntentRecognized,
                      OutboxStats, SignalValue, VehicleIdentified, VoiceActivity, VoiceState)

BUS_NAME = "org.carlinkd.Daemon1"
INTERFACE = "org.carlinkd.Daemon1"  # the major version is in the name; Version carries minor
OBJECT_PATH = "/org/carlinkd/Daemon1"
API_VERSION = "1.2"  # 1.1: Spoken signal; VoiceState says "confirming"; 1.2: protocol 2
# (help life cycle, helper opt-in, groups, booking choice/cancel, message/alert/service lists)
ERROR_PREFIX = INTERFACE + ".Error."
ORIGIN = "dbus"  # Command.origin for everything asked over D-Bus

MAX_TEXT = 500
SERVICES = ("oil_change", "tire_rotation", "inspection", "brake_service", "car_wash", "repair")
DAYS = ("today", "tomorrow", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
        "sunday")
_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")

# The VoiceState property's values: the voice service's own states, passed through as they are.
VOICE_STATES = tuple(a.value for a in VoiceActivity)

AlertRow = tuple[str, str, str, str]  # key, severity, spoken, text


def check_text(text: str, what: str = "text") -> str:
    """A non-empty, at most MAX_TEXT characters long text, stripped."""
    stripped = text.strip()
    if not stripped:
        raise HmiInvalidArgs(f"{what} must not be empty")
    if len(stripped) > MAX_TEXT:
        raise HmiInvalidArgs(f"{what} is {len(stripped)} characters; at most {MAX_TEXT} allowed")
    if any(ord(c) < 32 and c not in "\t\n" for c in stripped):
        raise HmiInvalidArgs(f"{what} contains control characters")
    return stripped


def check_group(group: str, known: Iterable[str]) -> str:
    """The known group's own spelling for ``group`` (case-insensitive), else InvalidArgs."""
    wanted = group.strip().casefold()
    names = sorted(set(known))
    for name in names:
        if name.casefold() == wanted:
            return name
    listed = ", ".join(names) if names else "none known"
    raise HmiInvalidArgs(f"unknown group {group!r}; known groups: {listed}")


def check_booking(service: str, day: str, time: str) -> dict[str, str]:
    """Command arguments for ``book_service``, normalised, or InvalidArgs naming the bad one."""
    service, day, time = service.strip().lower(), day.strip().lower(), time.strip()
    if service not in SERVICES:
        raise HmiInvalidArgs(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    if day not in DAYS:
        raise HmiInvalidArgs(f"unknown day {day!r}; expected one of {', '.join(DAYS)}")
    if not _TIME.fullmatch(time):
        raise HmiInvalidArgs(f"time {time!r} is not HH:MM on a 24-hour clock")
    return {"service": service, "day": day, "time": time}


def check_read_out(mode: str) -> str:
    """A group read-out mode: read, announce or off."""
    if mode not in READ_OUT_MODES:
        raise HmiInvalidArgs(f"read-out {mode!r} is not one of {', '.join(READ_OUT_MODES)}")
    return mode


def check_limit(limit: int, most: int = 500) -> int:
    """A list length: 1..most (0 means the default of 50)."""
    if limit == 0:
        return 50
    if not 0 < limit <= most:
        raise HmiInvalidArgs(f"limit {limit} is not between 1 and {most}")
    return limit


def check_key(key: str) -> str:
    """A non-empty alert key."""
    if not key.strip():
        raise HmiInvalidArgs("alert key must not be empty")
    return key.strip()


def signal_tuple(sv: SignalValue) -> tuple[str, bool | int | float | str, str, float]:
    """(D-Bus type code, value, unit or "", timestamp) for one signal value."""
    value = sv.value
    if isinstance(value, bool):
        code = "b"
    elif isinstance(value, int):
        code = "x"
    elif isinstance(value, float):
        code = "d"
    else:
        code, value = "s", str(value)
    return code, value, sv.unit or "", float(sv.timestamp)


def intent_args(event: IntentRecognized) -> tuple[str, str, str]:
    """IntentRecognized signal arguments: intent ("" when none), slots as JSON, text."""
    slots = json.dumps(dict(event.slots), ensure_ascii=False, sort_keys=True)
    return event.intent or "", slots, event.text


@dataclass(frozen=True)
class HmiState:
    """The values behind the D-Bus properties (names as on the bus)."""

    CloudState: str = "offline"
    BusState: str = "stopped"
    Vin: str = ""
    ActiveAlerts: tuple[AlertRow, ...] = ()
    VoiceState: str = "idle"
    OutboxDepth: int = 0
    OldestOutboxAgeSeconds: float = 0.0
    Helper: bool = False
    Location: str = "help"
    cloud_groups: frozenset[str] = field(default=frozenset())
    groups: GroupsListed | None = None

    def apply(self, event: Event) -> HmiState:
        """The state after one hub event (unchanged for events that do not touch properties)."""
        if isinstance(event, CloudState):
            return replace(self, CloudState=event.state)
        if isinstance(event, BusState):
            return replace(self, BusState=event.state)
        if isinstance(event, VoiceState):
            return replace(self, VoiceState=event.state)
        if isinstance(event, OutboxStats):
            depth, oldest = outbox_figures(event.classes)
            return replace(self, OutboxDepth=depth, OldestOutboxAgeSeconds=oldest)
        if isinstance(event, GroupsListed):
            return replace(self, groups=event, cloud_groups=frozenset(
                (*event.joined, *event.available)))
        if isinstance(event, HelperChanged):
            return replace(self, Helper=event.helper)
        if isinstance(event, VehicleIdentified):
            return replace(self, Vin=event.vin)
        return self

    def changed(self, older: HmiState) -> dict[str, Any]:
        """D-Bus properties whose values differ from ``older``, with their new values."""
        return {name: getattr(self, name) for name in PROPERTIES
                if getattr(self, name) != getattr(older, name)}


PROPERTIES = ("CloudState", "BusState", "Vin", "ActiveAlerts", "VoiceState", "OutboxDepth",
              "OldestOutboxAgeSeconds", "Helper", "Location")
READ_OUT_MODES = ("read", "announce", "off")


def outbox_figures(classes: Mapping[str, Mapping[str, float]]) -> tuple[int, float]:
    """Total queued items and the oldest item's age over all outbox classes."""
    depth = sum(int(c.get("items", 0)) for c in classes.values())
    oldest = max((float(c.get("oldest_age_s", 0.0)) for c in classes.values()), default=0.0)
    # Whole seconds: a growing age would otherwise emit PropertiesChanged on every report.
    return depth, float(round(oldest))


class SignalThrottle:
    """Coalesces changed signals so at most one batch leaves per ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.pending: dict[str, SignalValue] = {}
        self.last_sent = float("-inf")

    def offer(self, values: Mapping[str, SignalValue]) -> None:
        """Add changed values; newer values of a signal replace older pending ones."""
        self.pending.update(values)

    def due_in(self, now: float) -> float | None:
        """Seconds until the pending batch may go (0: now), None when nothing is pending."""
        if not self.pending:
            return None
        return max(0.0, self.last_sent + self.interval - now)

    def take(self, now: float) -> dict[str, SignalValue]:
        """The pending batch, marking it sent at ``now``."""
        batch, self.pending = self.pending, {}
        if batch:
            self.last_sent = now
        return batch
