"""The ``org.carlinkd.Daemon1`` D-Bus interface as a dbus-fast ServiceInterface.

No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus signatures from the
annotations at class creation, and a ``-> None`` method only works as the real ``None``.

The interface holds no state of its own: property getters read an :class:`Backend`, methods call
it, and :class:`carlinkd.errors.HmiError` becomes a D-Bus error named
``org.carlinkd.Daemon1.Error.<Kind>`` with the one-line message.
"""

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Protocol

from dbus_fast import DBusError, Variant
from dbus_fast.annotations import DBusDouble, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from ..errors import HmiError, HmiInvalidArgs, HmiUnavailable, HmiUnknownAlert, HmiUnknownSignal
from ..events import SignalValue
from .api import API_VERSION, ERROR_PREFIX, INTERFACE, AlertRow, HmiState, signal_tuple

log = logging.getLogger(__name__)

SignalMap = Annotated[dict[str, tuple[Variant, str, float]], DBusSignature("a{s(vsd)}")]
AlertList = Annotated[list[tuple[str, str, str, str]], DBusSignature("a(ssss)")]
StrList = Annotated[list[str], DBusSignature("as")]
Str4 = Annotated[tuple[str, str, str, str], DBusSignature("ssss")]
Str3 = Annotated[tuple[str, str, str], DBusSignature("sss")]
Str2 = Annotated[tuple[str, str], DBusSignature("ss")]
Message = Annotated[tuple[str, str, str, int], DBusSignature("sssx")]
Booking = Annotated[tuple[str, str, str, str, str, str], DBusSignature("ssssss")]
Help = Annotated[tuple[str, str, float, float, float, str], DBusSignature("ssddds")]

# Error kinds as the D-Bus error name's last element (org.carlinkd.Daemon1.Error.<kind>).
ERROR_KINDS: tuple[tuple[type[HmiError], str], ...] = (
    (HmiInvalidArgs, "InvalidArgs"), (HmiUnknownAlert, "UnknownAlert"),
    (HmiUnknownSignal, "UnknownSignal"), (HmiUnavailable, "Unavailable"))

# Argument names shown by introspection (dbus-fast leaves signal and return arguments unnamed).
SIGNAL_ARGS = {
    "AlertRaised": ("key", "severity", "spoken", "text"),
    "AlertAcknowledged": ("key", "origin"),
    "AlertCleared": ("key",),
    "MessageReceived": ("group", "sender", "text", "seq"),
    "BookingUpdated": ("status", "shop", "service", "day", "time", "reason"),
    "HelpRequested": ("request_id", "sender", "latitude", "longitude", "distance_km", "note"),
    "IntentRecognized": ("intent", "slots_json", "text"),
    "CommandRejected": ("command", "reason", "origin"),
    "Spoken": ("text", "priority"),
    "SignalsChanged": ("signals",),
}
RETURN_ARGS = {"GetSignals": ("signals",)}


class Backend(Protocol):
    """What the interface needs from the service behind it (raises HmiError on refusal)."""

    state: HmiState

    def push_to_talk(self) -> None:
        """Start listening for a voice command."""

    def submit_text(self, text: str) -> None:
        """Handle typed text as if it had been spoken."""

    def say(self, text: str) -> None:
        """Speak text aloud."""

    def acknowledge_alert(self, key: str) -> None:
        """Acknowledge one active alert."""

    def get_signals(self, names: Sequence[str]) -> dict[str, SignalValue]:
        """Latest values of the named signals (all when empty)."""

    def send_message(self, group: str, text: str) -> None:
        """Send a chat message to a group."""

    def book_service(self, service: str, day: str, time: str) -> None:
        """Ask the cloud to book a service appointment."""

    def export_report(self, path: str) -> None:
        """Write the condition report (carlinkd.report) to path; the car says where."""


def to_dbus_error(err: HmiError) -> DBusError:
    """The D-Bus error a client sees for one refusal."""
    kind = next((name for cls, name in ERROR_KINDS if isinstance(err, cls)), "Unavailable")
    return DBusError(ERROR_PREFIX + kind, str(err).splitlines()[0] if str(err) else kind)


@contextlib.contextmanager
def dbus_errors(member: str) -> Iterator[None]:
    """Turn HmiError into its D-Bus error, anything unexpected into Unavailable (logged)."""
    try:
        yield
    except HmiError as err:
        log.info("D-Bus %s refused: %s", member, err)
        raise to_dbus_error(err) from err
    except DBusError:
        raise
    except Exception as err:
        log.exception("D-Bus %s failed", member)
        raise DBusError(ERROR_PREFIX + "Unavailable",
                        f"{member} failed inside carlinkd; see its log") from err


def signal_map(values: Mapping[str, SignalValue]) -> dict[str, tuple[Variant, str, float]]:
    """The a{s(vsd)} form of signal values: name -> (value, unit, timestamp)."""
    out = {}
    for name, sv in values.items():
        code, value, unit, ts = signal_tuple(sv)
        out[name] = (Variant(code, value), unit, ts)
    return out


class Daemon1Interface(ServiceInterface):
    """``org.carlinkd.Daemon1``: read-only properties, command methods and event signals."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(INTERFACE)
        self._backend = backend
        _name_arguments(self)

    # -- properties (read-only; PropertiesChanged is emitted by the service) --

    @dbus_property(access=PropertyAccess.READ, name="Version")
    def version(self) -> DBusStr:
        """API version "major.minor"; the major version is also in the interface name."""
        return API_VERSION

    @dbus_property(access=PropertyAccess.READ, name="CloudState")
    def cloud_state(self) -> DBusStr:
        """Cloud connection: offline, connecting, online, unauthorized, ..."""
        return self._backend.state.CloudState

    @dbus_property(access=PropertyAccess.READ, name="BusState")
    def bus_state(self) -> DBusStr:
        """Vehicle bus: stopped, connecting, up, down."""
        return self._backend.state.BusState

    @dbus_property(access=PropertyAccess.READ, name="Vin")
    def vin(self) -> DBusStr:
        """Vehicle identification number, "" until the vehicle reported it."""
        return self._backend.state.Vin

    @dbus_property(access=PropertyAccess.READ, name="ActiveAlerts")
    def active_alerts(self) -> AlertList:
        """Active alerts, most severe first: (key, severity, spoken, text)."""
        return list(self._backend.state.ActiveAlerts)

    @dbus_property(access=PropertyAccess.READ, name="VoiceState")
    def voice_state(self) -> DBusStr:
        """Voice: idle, listening (recording, or waiting for an answer), thinking (working out
        what was said), confirming (waiting for yes or cancel) or speaking."""
        return self._backend.state.VoiceState

    @dbus_property(access=PropertyAccess.READ, name="OutboxDepth")
    def outbox_depth(self) -> DBusUInt32:
        """Items waiting for the cloud, over all outbox classes."""
        return self._backend.state.OutboxDepth

    @dbus_property(access=PropertyAccess.READ, name="OldestOutboxAgeSeconds")
    def oldest_outbox_age(self) -> DBusDouble:
        """Age in whole seconds of the oldest item waiting for the cloud (0 when empty)."""
        return self._backend.state.OldestOutboxAgeSeconds

    # -- methods (each publishes a Command on the hub with origin "dbus") --

    @dbus_method(name="PushToTalk")
    def push_to_talk(self) -> None:
        """Start listening for a voice command, like the steering-wheel button."""
        with dbus_errors("PushToTalk"):
            self._backend.push_to_talk()

    @dbus_method(name="SubmitText")
    def submit_text(self, text: DBusStr) -> None:
        """Handle typed text as a voice command would be handled."""
        with dbus_errors("SubmitText"):
            self._backend.submit_text(text)

    @dbus_method(name="Say")
    def say(self, text: DBusStr) -> None:
        """Speak text aloud."""
        with dbus_errors("Say"):
            self._backend.say(text)

    @dbus_method(name="AcknowledgeAlert")
    def acknowledge_alert(self, key: DBusStr) -> None:
        """Acknowledge the active alert with this key."""
        with dbus_errors("AcknowledgeAlert"):
            self._backend.acknowledge_alert(key)

    @dbus_method(name="GetSignals")
    def get_signals(self, names: StrList) -> SignalMap:
        """Latest values with unit and timestamp; an empty list asks for every known value."""
        with dbus_errors("GetSignals"):
            return signal_map(self._backend.get_signals(names))
        raise AssertionError("unreachable")  # dbus_errors re-raises

    @dbus_method(name="SendMessage")
    def send_message(self, group: DBusStr, text: DBusStr) -> None:
        """Send a chat message to one of the car's groups."""
        with dbus_errors("SendMessage"):
            self._backend.send_message(group, text)

    @dbus_method(name="BookService")
    def book_service(self, service: DBusStr, day: DBusStr, time: DBusStr) -> None:
        """Ask the cloud to book a service appointment."""
        with dbus_errors("BookService"):
            self._backend.book_service(service, day, time)

    @dbus_method(name="ExportReport")
    def export_report(self, path: DBusStr) -> None:
        """Write the condition report to an absolute FILE.html or FILE.pdf ('' = the state
        directory's reports folder) with its bundle beside it; the car says where when done."""
        with dbus_errors("ExportReport"):
            self._backend.export_report(path)

    # -- signals (called by the service; the return value is what goes on the bus) --

    @dbus_signal(name="AlertRaised")
    def alert_raised(self, row: AlertRow) -> Str4:
        """An alert became active or was raised again."""
        return row

    @dbus_signal(name="AlertAcknowledged")
    def alert_acknowledged(self, key: str, origin: str) -> Str2:
        """An active alert was acknowledged (from voice, D-Bus or the CLI)."""
        return key, origin

    @dbus_signal(name="AlertCleared")
    def alert_cleared(self, key: str) -> DBusStr:
        """An alert is no longer active."""
        return key

    @dbus_signal(name="MessageReceived")
    def message_received(self, group: str, sender: str, text: str, seq: int) -> Message:
        """A chat message from a group member arrived."""
        return group, sender, text, seq

    @dbus_signal(name="BookingUpdated")
    def booking_updated(self, status: str, shop: str, service: str, day: str, time: str,
                        reason: str) -> Booking:
        """A booking was confirmed, declined or is due soon."""
        return status, shop, service, day, time, reason

    @dbus_signal(name="HelpRequested")
    def help_requested(self, request_id: str, sender: str, lat: float, lon: float,
                       distance_km: float, note: str) -> Help:
        """A nearby car asked for roadside help."""
        return request_id, sender, lat, lon, distance_km, note

    @dbus_signal(name="IntentRecognized")
    def intent_recognized(self, intent: str, slots_json: str, text: str) -> Str3:
        """The voice path understood an utterance ("" intent when it did not)."""
        return intent, slots_json, text

    @dbus_signal(name="CommandRejected")
    def command_rejected(self, command: str, reason: str, origin: str) -> Str3:
        """An accepted command could not be carried out later (e.g. the outbox is full)."""
        return command, reason, origin

    @dbus_signal(name="Spoken")
    def spoken(self, text: str, priority: str) -> Str2:
        """The car started saying ``text`` (a caption); priority is critical, alert, reply or
        chat."""
        return text, priority

    @dbus_signal(name="SignalsChanged")
    def signals_changed(self, values: Mapping[str, SignalValue]) -> SignalMap:
        """Signals that changed since the last SignalsChanged (throttled, coalesced)."""
        return signal_map(values)


def _name_arguments(iface: ServiceInterface) -> None:
    """Give signal and return arguments the names in SIGNAL_ARGS/RETURN_ARGS (introspection)."""
    members: list[Any] = [*ServiceInterface._get_signals(iface),
                          *ServiceInterface._get_methods(iface)]
    for member in members:
        names = SIGNAL_ARGS.get(member.name) or RETURN_ARGS.get(member.name) or ()
        intro = member.introspection
        outs = getattr(intro, "out_args", None) or getattr(intro, "args", [])
        for arg, name in zip(outs, names):
            arg.name = name
