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
from dbus_fast.annotations import (DBusBool, DBusDouble, DBusInt64, DBusSignature, DBusStr,
                                   DBusUInt32)
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
HelpAt = Annotated[tuple[str, str, float, float, str], DBusSignature("ssdds")]
Options = Annotated[tuple[str, list[tuple[str, float, str, str]]], DBusSignature("sa(sdss)")]
Groups = Annotated[tuple[list[str], list[str], list[str], list[str]], DBusSignature("asasasas")]
Messages = Annotated[list[tuple[int, str, str, str, float, bool]], DBusSignature("a(xsssdb)")]
Alerts = Annotated[list[tuple[float, str, str, str, str, str]], DBusSignature("a(dsssss)")]
Records = Annotated[list[tuple[int, str, str]], DBusSignature("a(xss)")]

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
    "HelpDetail": ("request_id", "sender", "latitude", "longitude", "note"),
    "HelpCancelled": ("request_id", "sender"),
    "HelpStatus": ("state", "request_id", "detail"),
    "BookingOptions": ("request_id", "options"),
    "GroupsChanged": ("joined", "available", "invited", "pending"),
    "GroupJoinRequested": ("group", "sender"),
}
RETURN_ARGS = {"GetSignals": ("signals",), "ListGroups": ("joined", "available", "invited",
                                                          "pending"),
               "ListMessages": ("messages",), "AlertHistory": ("alerts",),
               "ServiceHistory": ("records",)}


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

    def request_help(self, note: str) -> None:
        """Send a help request the driver confirmed."""

    def respond_help(self, request_id: str, to: str, text: str) -> None:
        """Answer another car's help request."""

    def cancel_help(self) -> None:
        """Cancel our open help request."""

    def set_helper(self, on: bool) -> None:
        """Offer help to nearby drivers or stop."""

    def join_group(self, group: str) -> None:
        """Ask to join a group."""

    def leave_group(self, group: str) -> None:
        """Leave a group."""

    def approve_group(self, group: str, device: str) -> None:
        """Let a car join a group we own."""

    def list_groups(self) -> tuple[list[str], list[str], list[str], list[str]]:
        """Joined, available, invited and pending groups."""

    def set_group_read_out(self, group: str, mode: str) -> None:
        """read, announce or off for one group."""

    def booking_options(self, service: str, day: str, time: str) -> None:
        """Ask which shops have a slot."""

    def book(self, service: str, day: str, time: str, shop: str) -> None:
        """Book at a chosen shop."""

    def cancel_booking(self, booking_id: int) -> None:
        """Cancel a booking."""

    def list_messages(self, limit: int) -> list[tuple[int, str, str, str, float, bool]]:
        """Newest chat messages."""

    async def alert_history(self, limit: int) -> list[tuple[float, str, str, str, str, str]]:
        """Newest alert-log rows."""

    async def service_history(self, limit: int) -> list[tuple[int, str, str]]:
        """Newest service-history entries."""


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

    @dbus_property(access=PropertyAccess.READ, name="Helper")
    def helper(self) -> DBusBool:
        """Whether this car offers help to nearby drivers (shares a coarse cell only)."""
        return self._backend.state.Helper

    @dbus_property(access=PropertyAccess.READ, name="Location")
    def location(self) -> DBusStr:
        """[sync] location: off, help (only with a help request) or always."""
        return self._backend.state.Location

    @dbus_method(name="RequestHelp")
    def request_help(self, note: DBusStr) -> None:
        """Send a help request the driver confirmed (exact position unless location = off)."""
        with dbus_errors("RequestHelp"):
            self._backend.request_help(note)

    @dbus_method(name="RespondHelp")
    def respond_help(self, request_id: DBusStr, to: DBusStr, text: DBusStr) -> None:
        """Answer another car's help request; its position follows as HelpDetail."""
        with dbus_errors("RespondHelp"):
            self._backend.respond_help(request_id, to, text)

    @dbus_method(name="CancelHelp")
    def cancel_help(self) -> None:
        """Cancel our open help request (the helpers asked are told)."""
        with dbus_errors("CancelHelp"):
            self._backend.cancel_help()

    @dbus_method(name="SetHelper")
    def set_helper(self, on: DBusBool) -> None:
        """Offer help to nearby drivers (true) or stop (false)."""
        with dbus_errors("SetHelper"):
            self._backend.set_helper(bool(on))

    @dbus_method(name="JoinGroup")
    def join_group(self, group: DBusStr) -> None:
        """Ask to join a group; GroupsChanged tells the outcome."""
        with dbus_errors("JoinGroup"):
            self._backend.join_group(group)

    @dbus_method(name="LeaveGroup")
    def leave_group(self, group: DBusStr) -> None:
        """Leave a group."""
        with dbus_errors("LeaveGroup"):
            self._backend.leave_group(group)

    @dbus_method(name="ApproveGroup")
    def approve_group(self, group: DBusStr, device: DBusStr) -> None:
        """Let a car that asked (GroupJoinRequested) join a group we own."""
        with dbus_errors("ApproveGroup"):
            self._backend.approve_group(group, device)

    @dbus_method(name="ListGroups")
    def list_groups(self) -> Groups:
        """The groups as the cloud last listed them (and ask it again)."""
        with dbus_errors("ListGroups"):
            return self._backend.list_groups()
        raise AssertionError("unreachable")

    @dbus_method(name="SetGroupReadOut")
    def set_group_read_out(self, group: DBusStr, mode: DBusStr) -> None:
        """read, announce or off (mute: not spoken, still in ListMessages) for one group."""
        with dbus_errors("SetGroupReadOut"):
            self._backend.set_group_read_out(group, mode)

    @dbus_method(name="BookingOptions")
    def booking_options(self, service: DBusStr, day: DBusStr, time: DBusStr) -> None:
        """Ask which shops have the slot; the BookingOptions signal answers."""
        with dbus_errors("BookingOptions"):
            self._backend.booking_options(service, day, time)

    @dbus_method(name="Book")
    def book(self, service: DBusStr, day: DBusStr, time: DBusStr, shop: DBusStr) -> None:
        """Book at the chosen shop."""
        with dbus_errors("Book"):
            self._backend.book(service, day, time, shop)

    @dbus_method(name="CancelBooking")
    def cancel_booking(self, booking_id: DBusInt64) -> None:
        """Cancel one of our bookings; the slot is freed."""
        with dbus_errors("CancelBooking"):
            self._backend.cancel_booking(int(booking_id))

    @dbus_method(name="ListMessages")
    def list_messages(self, limit: DBusUInt32) -> Messages:
        """Newest chat messages (muted groups' too): (id, group, sender, text, time, read)."""
        with dbus_errors("ListMessages"):
            return self._backend.list_messages(int(limit))
        raise AssertionError("unreachable")

    @dbus_method(name="AlertHistory")
    async def alert_history(self, limit: DBusUInt32) -> Alerts:
        """Newest alert-log rows: (at, key, event, severity, text, detail)."""
        with dbus_errors("AlertHistory"):
            return await self._backend.alert_history(int(limit))
        raise AssertionError("unreachable")

    @dbus_method(name="ServiceHistory")
    async def service_history(self, limit: DBusUInt32) -> Records:
        """Newest service-history entries: (position, body JSON, hash)."""
        with dbus_errors("ServiceHistory"):
            return await self._backend.service_history(int(limit))
        raise AssertionError("unreachable")

    # -- signals (called by the service; the return value is what goes on the bus) --

    @dbus_signal(name="HelpDetail")
    def help_detail(self, request_id: str, sender: str, lat: float, lon: float,
                    note: str) -> HelpAt:
        """Where the car we said yes to is (sent only to the helper who said yes)."""
        return request_id, sender, lat, lon, note

    @dbus_signal(name="HelpCancelled")
    def help_cancelled(self, request_id: str, sender: str) -> Str2:
        """A car that asked for help no longer needs it."""
        return request_id, sender

    @dbus_signal(name="HelpStatus")
    def help_status(self, state: str, request_id: str, detail: str) -> Str3:
        """Our own help request: sent, no_position, rejected, cancelled or none_open."""
        return state, request_id, detail

    @dbus_signal(name="BookingOptions")
    def booking_options_signal(self, request_id: str,
                               options: list[tuple[str, float, str, str]]) -> Options:
        """Shops with the slot, nearest first: (shop, distance_km or -1, day, time)."""
        return request_id, options

    @dbus_signal(name="GroupsChanged")
    def groups_changed(self, joined: list[str], available: list[str], invited: list[str],
                       pending: list[str]) -> Groups:
        """The cloud's list of our groups changed."""
        return joined, available, invited, pending

    @dbus_signal(name="GroupJoinRequested")
    def group_join_requested(self, group: str, sender: str) -> Str2:
        """A car asks to join a group we own (ApproveGroup lets it in)."""
        return group, sender

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
