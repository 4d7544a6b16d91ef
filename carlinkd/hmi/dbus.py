"""The D-Bus adapter: hub events -> properties and signals; method calls -> hub Commands.

Wiring (daemon), after the alert and sync services have started so every Command a client can
send already has its consumer::

    self.hmi = HmiService(cfg.hmi, self)
    await self.hmi.start()      # never raises for an unreachable bus; logs and retries
    ...                         # READY=1 once self.hmi.ready (or await self.hmi.wait_ready(t))
    await self.hmi.stop()       # first in Daemon.stop(), before the other services stop

``start()`` subscribes to the hub at once (state is tracked even while the bus is away), then
connects, exports the object and requests ``org.carlinkd.Daemon1`` without queueing. When the
bus cannot be reached or the name is refused, it logs one warning and a background task retries
with backoff; losing the bus later does the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from dbus_fast import BusType, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus

from ..aio import cancel_all
from ..errors import HmiInvalidArgs, HmiUnavailable, HmiUnknownAlert, HmiUnknownSignal
from ..events import (AlertAcknowledged, AlertCleared, AlertRaised, BookingOptions,
                      BookingUpdated, BusState, CloudState, Command, Event, GroupJoinRequest,
                      GroupsListed, HelpCancelled, HelpDetail, HelperChanged, HelpRequest,
                      HelpStatus, IntentRecognized, MessageReceived, OutboxStats, SignalsUpdated,
                      SignalValue, Spoken, SyncRejected, VehicleIdentified, VoiceState)
from ..logutil import RateLimitedLogger
from .api import (BUS_NAME, OBJECT_PATH, ORIGIN, AlertRow, HmiState, SignalThrottle,
                  check_booking, check_group, check_key, check_limit, check_read_out, check_text,
                  intent_args)
from .interface import Daemon1Interface

if TYPE_CHECKING:
    from .settings import HmiConfig
    from ..daemon import Daemon
    from ..store.db import Store
    from ..hub import Subscription

log = logging.getLogger(__name__)
_warn = RateLimitedLogger(log, interval=300.0)

# Connecting: a local socket answers at once; a bus that does not is treated as absent.
CONNECT_TIMEOUT_S = 5.0
# Reconnect after the bus went away or refused the name: first delay, doubling, up to the cap.
RECONNECT_INITIAL_S = 1.0
RECONNECT_MAX_S = 30.0
# The alert acknowledgement command the alert service consumes (carlinkd.alerts.service).
ACK_COMMAND = "alert.acknowledge"

EVENTS: tuple[type[Event], ...] = (
    SignalsUpdated, BusState, CloudState, VoiceState, OutboxStats, GroupsListed,
    AlertRaised, AlertAcknowledged, AlertCleared, MessageReceived, BookingUpdated, HelpRequest,
    IntentRecognized, SyncRejected, VehicleIdentified, Spoken, HelpDetail, HelpCancelled,
    HelpStatus, HelperChanged, BookingOptions, GroupJoinRequest)


class HmiService:
    """Serves ``org.carlinkd.Daemon1`` for one :class:`carlinkd.daemon.Daemon`."""

    def __init__(self, cfg: HmiConfig, daemon: Daemon) -> None:
        self.cfg = cfg
        self.daemon = daemon
        self.hub = daemon.hub
        self.state = HmiState()
        self.interface = Daemon1Interface(self)
        self.throttle = SignalThrottle(cfg.signals_interval_s)
        self.bus: MessageBus | None = None
        self._alerts: dict[str, AlertRow] = {}  # from events, when there is no alert service
        self._ready = asyncio.Event()
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._flush: asyncio.TimerHandle | None = None
        self.counters = {"commands": 0, "refused": 0, "signals_changed": 0, "connects": 0}

    @property
    def ready(self) -> bool:
        """Whether the bus name is owned (what READY=1 waits for)."""
        return self._ready.is_set()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the name; return whether it is owned."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            pass
        return self.ready

    async def start(self) -> None:
        """Subscribe, take the current state, connect and own the name (or keep retrying).

        With ``hmi.enabled = false`` it does nothing and ``ready`` stays False."""
        if not self.cfg.enabled:
            log.info("D-Bus API disabled (hmi.enabled = false)")
            return
        self._sub = self.hub.subscribe(*EVENTS, name="hmi")
        self._seed()
        self._tasks.append(asyncio.create_task(self._consume(self._sub), name="hmi-events"))
        await self._connect()
        self._tasks.append(asyncio.create_task(self._supervise(), name="hmi-bus"))

    async def stop(self) -> None:
        """Drop the name and the connection, stop following the hub."""
        if self._sub is not None:
            self._sub.close()
        await cancel_all(self._tasks)
        self._tasks.clear()
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        await self._disconnect()

    # -- the bus connection --

    def _describe_bus(self) -> str:
        return f"the {self.cfg.bus} bus" if self.cfg.bus in ("system", "session") \
            else f"bus {self.cfg.bus}"

    async def _connect(self) -> bool:
        """One attempt to connect, export and own the name; logs and returns False on failure."""
        bus: MessageBus | None = None
        try:
            if self.cfg.bus == "system":
                bus = MessageBus(bus_type=BusType.SYSTEM, auth_timeout=CONNECT_TIMEOUT_S)
            elif self.cfg.bus == "session":
                bus = MessageBus(bus_type=BusType.SESSION, auth_timeout=CONNECT_TIMEOUT_S)
            else:
                bus = MessageBus(bus_address=self.cfg.bus, auth_timeout=CONNECT_TIMEOUT_S)
            await asyncio.wait_for(bus.connect(), CONNECT_TIMEOUT_S)
            bus.export(OBJECT_PATH, self.interface)
            reply = await asyncio.wait_for(bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE),
                                           CONNECT_TIMEOUT_S)
        # dbus-fast reports an unusable address, a missing socket, a refused authentication or
        # a policy denial with many exception types; all mean "no D-Bus API for now".
        except Exception as err:
            _warn.warning(("connect", self.cfg.bus), "D-Bus API unavailable: cannot serve %s "
                          "on %s: %s; retrying in the background", BUS_NAME,
                          self._describe_bus(), _one_line(err))
            _close(bus)
            return False
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            _warn.warning(("owned", self.cfg.bus), "D-Bus API unavailable: %s is owned by "
                          "another connection on %s; retrying in the background", BUS_NAME,
                          self._describe_bus())
            _close(bus)
            return False
        self.bus = bus
        self.counters["connects"] += 1
        self._ready.set()
        log.info("D-Bus API up: %s at %s on %s (%s)", BUS_NAME, OBJECT_PATH,
                 self._describe_bus(), bus.unique_name)
        return True

    async def _disconnect(self) -> None:
        bus, self.bus = self.bus, None
        self._ready.clear()
        if bus is not None:
            bus.disconnect()
            try:
                await asyncio.wait_for(_disconnected(bus), CONNECT_TIMEOUT_S)
            except Exception as err:  # already broken: nothing left to close
                log.debug("D-Bus disconnect: %s", _one_line(err))

    async def _supervise(self) -> None:
        delay = RECONNECT_INITIAL_S
        while True:
            if self.bus is not None:
                try:
                    await _disconnected(self.bus)
                    detail = "closed"
                except Exception as err:
                    detail = _one_line(err)
                log.warning("D-Bus API down: lost the connection to %s (%s); reconnecting",
                            self._describe_bus(), detail)
                self.bus = None
                self._ready.clear()
                delay = RECONNECT_INITIAL_S
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)
            await self._connect()

    # -- hub events in --

    def _seed(self) -> None:
        """Properties from what the daemon already knows (events before start() are gone)."""
        d = self.daemon
        self.state = replace(self.state, BusState=d.source.state.value)
        if d.sync is not None:
            self.state = replace(self.state, CloudState=str(d.sync.status().get("state")),
                                 Helper=d.sync.consent.helper, Location=d.sync.consent.location)
        self._refresh_alerts()

    async def _consume(self, sub: Subscription) -> None:
        async for event in sub:
            try:
                self.handle(event)
            except Exception:  # one bad event must not end the API
                log.exception("D-Bus API failed on %s", type(event).__name__)

    def handle(self, event: Event) -> None:
        """Translate one hub event into property changes and signals."""
        if isinstance(event, SignalsUpdated):
            self._offer_signals(event)
            return
        before = self.state
        self.state = before.apply(event)
        if isinstance(event, AlertRaised):
            self._alerts[event.key] = (event.key, event.severity, event.spoken, event.text)
        elif isinstance(event, AlertCleared):
            self._alerts.pop(event.key, None)
        if isinstance(event, (AlertRaised, AlertAcknowledged, AlertCleared)):
            self._refresh_alerts()
        if self.bus is None:
            return  # state is kept; there is nobody to tell
        self._emit_changes(before)
        self._emit_signal(event)

    def _emit_signal(self, event: Event) -> None:
        iface = self.interface
        if isinstance(event, AlertRaised):
            iface.alert_raised((event.key, event.severity, event.spoken, event.text))
        elif isinstance(event, AlertAcknowledged):
            iface.alert_acknowledged(event.key, event.origin)
        elif isinstance(event, AlertCleared):
            iface.alert_cleared(event.key)
        elif isinstance(event, MessageReceived):
            iface.message_received(event.group, event.sender, event.text, int(event.seq))
        elif isinstance(event, BookingUpdated):
            iface.booking_updated(event.status, event.shop, event.service, event.day,
                                  event.time, event.reason)
        elif isinstance(event, HelpRequest):
            iface.help_requested(event.request_id, event.sender, float(event.latitude),
                                 float(event.longitude), float(event.distance_km), event.note)
        elif isinstance(event, IntentRecognized):
            iface.intent_recognized(*intent_args(event))
        elif isinstance(event, SyncRejected):
            iface.command_rejected(event.what, event.reason, event.origin)
        elif isinstance(event, Spoken):
            iface.spoken(event.text, event.priority)
        else:
            self._emit_v2_signal(event)

    def _emit_v2_signal(self, event: Event) -> None:
        """The signals added with API 1.2 (protocol 2)."""
        iface = self.interface
        if isinstance(event, HelpDetail):
            iface.help_detail(event.request_id, event.sender, event.latitude, event.longitude,
                              event.note)
        elif isinstance(event, HelpCancelled):
            iface.help_cancelled(event.request_id, event.sender)
        elif isinstance(event, HelpStatus):
            iface.help_status(event.state, event.request_id, event.detail)
        elif isinstance(event, BookingOptions):
            iface.booking_options_signal(event.request_id, [
                (o.shop, -1.0 if o.distance_km is None else float(o.distance_km), o.day, o.time)
                for o in event.options])
        elif isinstance(event, GroupsListed):
            iface.groups_changed(list(event.joined), list(event.available),
                                 list(event.invited), list(event.pending))
        elif isinstance(event, GroupJoinRequest):
            iface.group_join_requested(event.group, event.sender)

    def _refresh_alerts(self) -> None:
        alerts = self.daemon.alerts
        if alerts is not None:
            rows = tuple((a.key, a.severity, a.spoken, a.text) for a in alerts.active())
        else:
            rows = tuple(self._alerts.values())
        if rows != self.state.ActiveAlerts:
            self.state = replace(self.state, ActiveAlerts=rows)

    def _emit_changes(self, before: HmiState) -> None:
        changed = self.state.changed(before)
        if changed:
            if "ActiveAlerts" in changed:
                changed["ActiveAlerts"] = list(changed["ActiveAlerts"])
            self.interface.emit_properties_changed(changed)

    def _offer_signals(self, event: SignalsUpdated) -> None:
        self.throttle.offer(event.values)
        if self._flush is None:
            loop = asyncio.get_running_loop()
            delay = self.throttle.due_in(loop.time())
            if delay is not None:
                self._flush = loop.call_later(delay, self._send_signals)

    def _send_signals(self) -> None:
        self._flush = None
        batch = self.throttle.take(asyncio.get_running_loop().time())
        if batch and self.bus is not None:
            self.counters["signals_changed"] += 1
            self.interface.signals_changed(batch)

    # -- method calls out (Backend for the interface; raise HmiError to refuse) --

    def _publish(self, name: str, args: dict[str, str] | None = None) -> None:
        if self.hub.closed:
            raise HmiUnavailable("carlinkd is shutting down")
        self.hub.publish(Command(name, args or {}, ORIGIN))
        self.counters["commands"] += 1

    def push_to_talk(self) -> None:
        """Start listening for a voice command."""
        self._publish("push_to_talk")

    def submit_text(self, text: str) -> None:
        """Typed text, handled like a recognised utterance."""
        self._publish("submit_text", {"text": check_text(text)})

    def say(self, text: str) -> None:
        """Speak text aloud."""
        self._publish("say", {"text": check_text(text)})

    def acknowledge_alert(self, key: str) -> None:
        """Acknowledge one active alert by key."""
        key = check_key(key)
        if self.daemon.alerts is None:
            raise HmiUnavailable("alerts are disabled (alerts.enabled = false)")
        active = [a.key for a in self.daemon.alerts.active()]
        if key not in active:
            listed = ", ".join(active) if active else "none"
            raise HmiUnknownAlert(f"no active alert {key!r}; active: {listed}")
        self._publish(ACK_COMMAND, {"key": key})

    def get_signals(self, names: Sequence[str]) -> dict[str, SignalValue]:
        """Latest values of the named signals; all latest values when ``names`` is empty."""
        latest = self.daemon.signals
        if not names:
            return dict(latest)
        known = self.daemon.decoder.wanted_names()
        out: dict[str, SignalValue] = {}
        for name in names:
            value = latest.get(name)
            if value is not None:
                out[name] = value
            elif name not in known:
                raise HmiUnknownSignal(f"unknown signal {name!r} (names are VSS paths such as "
                                       "Vehicle.Speed)")
        return out  # known signals without a value yet are simply absent

    def send_message(self, group: str, text: str) -> None:
        """Queue a chat message to a known group."""
        groups = {g for names in self.daemon.cfg.voice.groups.values() for g in names}
        group = check_group(group, groups | self.state.cloud_groups)
        self._publish("send_message", {"group": group, "text": check_text(text)})

    def book_service(self, service: str, day: str, time: str) -> None:
        """Queue a service booking request."""
        self._publish("book_service", check_booking(service, day, time))

    def export_report(self, path: str) -> None:
        """Queue a condition report (carlinkd.report.service writes it and says where)."""
        from ..errors import HmiInvalidArgs
        from ..report.service import COMMAND, check_report_path

        try:
            checked = check_report_path(path)
        except ValueError as err:
            raise HmiInvalidArgs(str(err)) from None
        self._publish(COMMAND, {"path": checked})

    # -- API 1.2 (protocol 2): everything the voice path can ask for, too --

    def request_help(self, note: str) -> None:
        """A help request the driver confirmed on the screen (position per [sync] location)."""
        self._publish("emergency_help", {"note": note.strip()[:500]})

    def respond_help(self, request_id: str, to: str, text: str) -> None:
        """Answer another car's help request ("on my way")."""
        self._publish("help_respond", {"request_id": check_text(request_id, "request_id"),
                                       "to": check_text(to, "to"),
                                       "text": check_text(text or "on my way")[:200]})

    def cancel_help(self) -> None:
        """Cancel our open help request(s) ("I'm OK now")."""
        self._publish("help_cancel")

    def set_helper(self, on: bool) -> None:
        """Offer help to nearby drivers (only a coarse cell is shared) or stop."""
        self._publish("set_helper", {"state": "on" if on else "off"})

    def join_group(self, group: str) -> None:
        """Ask to join a group (the cloud decides: joined or pending the owner's approval)."""
        self._publish("join_group", {"group": check_text(group, "group")})

    def leave_group(self, group: str) -> None:
        """Leave a group."""
        self._publish("leave_group", {"group": check_text(group, "group")})

    def approve_group(self, group: str, device: str) -> None:
        """Let a car that asked join a group we own."""
        self._publish("approve_group", {"group": check_text(group, "group"),
                                        "device": check_text(device, "device")})

    def list_groups(self) -> tuple[list[str], list[str], list[str], list[str]]:
        """The groups the cloud last listed (joined, available, invited, pending); refreshes."""
        self._publish("list_groups")
        g = self.state.groups
        if g is None:
            return [], [], [], []
        return list(g.joined), list(g.available), list(g.invited), list(g.pending)

    def set_group_read_out(self, group: str, mode: str) -> None:
        """How a group's messages are spoken: read, announce or off (mute; still listed)."""
        voice = self.daemon.voice
        if voice is None:
            raise HmiUnavailable("voice is disabled (voice.enabled = false)")
        voice.social.set_read_out(check_text(group, "group"), check_read_out(mode))

    def booking_options(self, service: str, day: str, time: str) -> None:
        """Ask which shops have the slot (answered by the BookingOptions signal)."""
        self._publish("booking_options", check_booking(service, day, time))

    def book(self, service: str, day: str, time: str, shop: str) -> None:
        """Book at a chosen shop."""
        args = check_booking(service, day, time)
        self._publish("book_service", {**args, "shop": check_text(shop, "shop")})

    def cancel_booking(self, booking_id: int) -> None:
        """Cancel one of our bookings (frees the slot)."""
        if booking_id <= 0:
            raise HmiInvalidArgs(f"booking_id {booking_id} is not a booking id")
        self._publish("booking_cancel", {"booking_id": str(booking_id)})

    def list_messages(self, limit: int) -> list[tuple[int, str, str, str, float, bool]]:
        """The newest chat messages, newest first: (id, group, sender, text, time, read)."""
        voice = self.daemon.voice
        if voice is None:
            raise HmiUnavailable("voice is disabled (voice.enabled = false); no inbox")
        return [(m.ident, m.group, m.sender, m.text, m.timestamp, read)
                for m, read in voice.social.inbox.recent(check_limit(limit))]

    async def alert_history(self, limit: int) -> list[tuple[float, str, str, str, str, str]]:
        """Newest alert-log rows: (at, key, event, severity, text, detail)."""
        store = self._store()
        rows = await store.alert_history(check_limit(limit))
        def text(v: object) -> str:
            return "" if v is None else str(v)
        return [(float(r[0]), text(r[1]), text(r[2]), text(r[3]), text(r[4]), text(r[5]))
                for r in rows]

    async def service_history(self, limit: int) -> list[tuple[int, str, str]]:
        """Newest service-history entries: (position, body JSON, hash)."""
        rows = await self._store().service_rows()
        return [(r.pos, r.body, r.hash) for r in reversed(rows[-check_limit(limit):])]

    def _store(self) -> Store:
        if self.daemon.store is None:
            raise HmiUnavailable("the store is disabled; no history")
        return self.daemon.store


async def _disconnected(bus: MessageBus) -> None:
    """Wait for the bus to close; shielded, since cancelling a waiter would cancel dbus-fast's
    own disconnect future and break its later wait_for_disconnect() calls."""
    await asyncio.shield(bus.wait_for_disconnect())  # type: ignore[no-untyped-call]


def _close(bus: MessageBus | None) -> None:
    if bus is not None and bus.connected:
        bus.disconnect()


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
