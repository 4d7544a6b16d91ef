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


@dataclass(frozen=True, slots=True)
class IntentRecognized(Event):
    """The voice path understood (or failed to understand) one utterance; never dropped."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    text: str
    intent: str | None
    slots: Mapping[str, str]
    lang: str
    origin: str = "voice"


class VoiceActivity(enum.Enum):
    """What voice is doing: the values ``VoiceState.state`` carries."""

    IDLE = "idle"
    LISTENING = "listening"    # recording, or waiting for the answer to a question
    THINKING = "thinking"      # recognizing what was said
    CONFIRMING = "confirming"  # waiting for yes or cancel
    SPEAKING = "speaking"


@dataclass(frozen=True, slots=True)
class VoiceState(Event):
    """Voice changed state (a :class:`VoiceActivity` value); latest wins."""

    overflow: ClassVar[Overflow] = Overflow.COALESCE
    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Spoken(Event):
    """An utterance started playing (priority "critical", "alert", "reply" or "chat").

    A transcript of what the car says, for screens and demo views; never dropped (a few per
    minute at most: each one lasts as long as it takes to say).
    """

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    text: str
    priority: str
    lang: str


@dataclass(frozen=True, slots=True)
class SpeakRequest(Event):
    """Something to say aloud; priority "critical" preempts, "chat" waits; never dropped."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    text: str
    priority: str = "reply"
    lang: str | None = None


@dataclass(frozen=True, slots=True)
class AlertRaised(Event):
    """An alert became active (or was re-raised by policy); ``announce`` says whether to speak it."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    key: str
    kind: str
    severity: str
    spoken: str
    text: str
    timestamp: float
    announce: bool = True
    reason: str = "new"  # new, escalated, returned, reminder


@dataclass(frozen=True, slots=True)
class AlertAcknowledged(Event):
    """The driver (or the HMI) acknowledged an active alert; never dropped."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    key: str
    timestamp: float
    origin: str = ""


@dataclass(frozen=True, slots=True)
class AlertCleared(Event):
    """An alert's clearing condition held; it is no longer active. Never dropped."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    key: str
    timestamp: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DtcSet(Event):
    """An ECU reports a diagnostic trouble code (SAE J2012 text, e.g. P0301); never dropped."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    ecu: int
    code: str
    description: str
    timestamp: float


@dataclass(frozen=True, slots=True)
class DtcCleared(Event):
    """A previously reported trouble code is no longer stored by its ECU; never dropped."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    ecu: int
    code: str
    timestamp: float


@dataclass(frozen=True, slots=True)
class MilState(Event):
    """The malfunction indicator lamp (SAE J1979 mode 01 PID 01) turned on or off; never dropped."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    on: bool
    ecu: int = 0
    dtc_count: int = 0
    timestamp: float = 0.0


@dataclass(frozen=True, slots=True)
class VehicleIdentified(Event):
    """An ECU reported the vehicle's VIN (SAE J1979 mode 09 InfoType 02); never dropped."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    vin: str
    ecu: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class CloudState(Event):
    """The cloud sync connection changed state (offline, connecting, online, unauthorized...)."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OutboxStats(Event):
    """Outbox depth, bytes and oldest-item age per class; coalesces to the latest."""

    overflow: ClassVar[Overflow] = Overflow.COALESCE
    classes: Mapping[str, Mapping[str, float]]
    timestamp: float


@dataclass(frozen=True, slots=True)
class SyncRejected(Event):
    """A command or item could not be queued or was refused by the cloud; tell the driver."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    what: str
    reason: str
    origin: str


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """A chat message from a group member arrived from the cloud."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    group: str
    sender: str
    text: str
    seq: int


@dataclass(frozen=True, slots=True)
class BookingUpdated(Event):
    """A service booking was confirmed, declined or is due soon (status says which)."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    status: str
    shop: str
    service: str
    day: str
    time: str
    reason: str = ""
    booking_id: int = 0  # the cloud's id of a confirmed booking (0: none given)
    address: str = ""


@dataclass(frozen=True, slots=True)
class HelpRequest(Event):
    """A nearby car asked for roadside help."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    request_id: str
    sender: str
    latitude: float  # NaN: not given (protocol 2 sends helpers a distance, not a position)
    longitude: float
    distance_km: float
    note: str = ""
    created: float = 0.0
    expires: float = 0.0  # wall clock, epoch s; 0 = not given


@dataclass(frozen=True, slots=True)
class HelpDetail(Event):
    """Where a car we offered to help is, and what it said (only to the helper who said yes)."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    request_id: str
    sender: str
    latitude: float
    longitude: float
    note: str = ""
    vehicle: Mapping[str, float | int | str] | None = None


@dataclass(frozen=True, slots=True)
class HelpCancelled(Event):
    """A car that asked for help no longer needs it (its request was cancelled)."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    request_id: str
    sender: str


@dataclass(frozen=True, slots=True)
class HelpStatus(Event):
    """Our own help request's life: sent, no_position, rejected, cancelled, none_open."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    state: str
    request_id: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HelperChanged(Event):
    """Whether this car offers help to others now (opt-in; only a coarse cell is shared)."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    helper: bool
    origin: str = ""


@dataclass(frozen=True, slots=True)
class ShopOption:
    """One shop with a free slot, as the cloud offers it (distance None: no position sent)."""

    shop: str
    distance_km: float | None
    day: str
    time: str


@dataclass(frozen=True, slots=True)
class BookingOptions(Event):
    """Shops with a free slot for a booking request, nearest first (at most three)."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    request_id: str
    service: str
    day: str
    time: str
    options: tuple[ShopOption, ...]


@dataclass(frozen=True, slots=True)
class GroupJoinRequest(Event):
    """A car asks to join a group this car owns (approve with ``approve_group``)."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    group: str
    sender: str


@dataclass(frozen=True, slots=True)
class HelpResponse(Event):
    """Someone answered our (or a shared) help request, e.g. "on my way"."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    request_id: str
    responder: str
    text: str


@dataclass(frozen=True, slots=True)
class GroupsListed(Event):
    """The groups this car belongs to or may join, as the cloud sees them."""

    overflow: ClassVar[Overflow] = Overflow.COALESCE
    joined: tuple[str, ...]
    available: tuple[str, ...]
    invited: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
