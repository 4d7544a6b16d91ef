"""The alerts adapter: hub events in, the pure engine in the middle, alert events and store rows out.

It subscribes to ``SignalsUpdated``, ``DtcSet``, ``DtcCleared``, ``MilState`` and ``Command``
(``alert.acknowledge`` with an optional ``key`` argument), ticks the engine every
``alerts.tick_s`` and publishes ``AlertRaised`` / ``AlertAcknowledged`` / ``AlertCleared``.
Store writes are buffered by the store (never awaited on the event path). Active alerts are
restored at start so a restart does not announce them again; the service history is reloaded
when its record count changes (``carlinkd records add`` runs in another process).

``clock`` is the daemon's :class:`~carlinkd.clock.Clock` pair. The engine runs on its monotonic
time (hold times, quiet periods, reminders, leak windows), so a wall-clock jump (NTP on a board
without a real-time clock) cannot satisfy a hold early; events, store rows and maintenance due
dates are in wall time, converted at this boundary. A simulator running faster than real time
passes its model clock as both, so hold times and windows mean vehicle seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..aio import cancel_all
from ..clock import Clock
from ..errors import StoreError
from ..events import (
    AlertAcknowledged, AlertCleared, AlertRaised, Command, DtcCleared, DtcSet, Event, MilState,
    SignalsUpdated)
from .engine import AlertEngine
from .lifecycle import Alert, AlertState
from .maintenance import ItemStatus
from .settings import ODOMETER, TRIP

if TYPE_CHECKING:
    from ..config import Config
    from ..hub import Hub, Subscription
    from ..store.db import Store

log = logging.getLogger(__name__)

ACK_COMMAND = "alert.acknowledge"
HISTORY_CHECK_S = 30.0  # how often the service-record count is compared (cheap COUNT(*))


class AlertService:
    """Feeds :class:`AlertEngine` from the hub; publishes and persists what it decides."""

    def __init__(self, cfg: Config, hub: Hub, store: Store | None = None, *,
                 clock: Clock | Callable[[], float] | None = None) -> None:
        self.cfg = cfg.alerts
        self.hub = hub
        self.store = store
        self.clock = Clock.of(clock)
        # wall - monotonic at the last engine call: converts engine time to wall stamps.
        self._offset = self.clock.offset()
        self.engine = AlertEngine(cfg.alerts)
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sample_at = -1e18
        self._history_count = -1
        self.counters = {"signal_events": 0, "alerts_raised": 0, "alerts_cleared": 0}

    async def start(self) -> None:
        """Restore state from the store, subscribe, start the tick task."""
        if self.store is not None:
            await self._restore()
            await self._reload_history()
        self._sub = self.hub.subscribe(SignalsUpdated, DtcSet, DtcCleared, MilState, Command,
                                       name="alerts")
        self._tasks = [asyncio.create_task(self._consume(self._sub), name="alerts-consume"),
                       asyncio.create_task(self._tick_loop(), name="alerts-tick")]

    async def stop(self) -> None:
        """Unsubscribe and stop the tasks (the store's owner flushes and closes it)."""
        if self._sub is not None:
            self._sub.close()
        await cancel_all(self._tasks)
        self._tasks.clear()

    def active(self) -> list[Alert]:
        """Active alerts, most severe first (for the demo view and the HMI)."""
        return self.engine.active()

    def maintenance_status(self) -> dict[str, ItemStatus]:
        """Stage and remaining km/days of every maintenance item."""
        return self.engine.maintenance_status()

    def acknowledge(self, key: str | None = None, origin: str = "") -> None:
        """Acknowledge an alert (None: the newest raised one)."""
        self._emit(self.engine.acknowledge(key, self._now(), origin))

    def handle(self, event: Event) -> None:
        """Process one hub event synchronously (also used by tests and benchmarks)."""
        now = self._now()
        wall = now + self._offset
        if isinstance(event, SignalsUpdated):
            self.counters["signal_events"] += 1
            values = {name: sv.value for name, sv in event.values.items()}
            self._emit(self.engine.update(values, now))
            self._sample(values, now, wall)
        elif isinstance(event, DtcSet):
            self._emit(self.engine.dtc_set(event.ecu, event.code, event.description, now))
            if self.store is not None:
                self.store.log_dtc(wall, event.ecu, event.code, "set", event.description)
        elif isinstance(event, DtcCleared):
            self._emit(self.engine.dtc_cleared(event.code, now))
            if self.store is not None:
                self.store.log_dtc(wall, event.ecu, event.code, "cleared")
        elif isinstance(event, MilState):
            self._emit(self.engine.mil(event.on, event.dtc_count, now))
        elif isinstance(event, Command) and event.name == ACK_COMMAND:
            self.acknowledge(event.args.get("key") or None, event.origin)

    async def _consume(self, sub: Subscription) -> None:
        async for event in sub:
            try:
                self.handle(event)
            except Exception:  # one bad event must not end alerting
                log.exception("alert engine failed on %s", type(event).__name__)

    async def _tick_loop(self) -> None:
        next_history = self.clock.monotonic() + HISTORY_CHECK_S
        while True:
            await asyncio.sleep(self.cfg.tick_s)
            try:
                self._emit(self.engine.tick(self._now()))
                if self.store is not None and self.clock.monotonic() >= next_history:
                    next_history = self.clock.monotonic() + HISTORY_CHECK_S
                    await self._reload_history()
            except StoreError as err:
                log.warning("alerts: cannot read the service history: %s", err)
            except Exception:
                log.exception("alert engine tick failed")

    def _now(self) -> float:
        """Engine time (monotonic) now; also refreshes the wall offset the engine and the
        stamps use."""
        now = self.clock.monotonic()
        self._offset = self.clock.wall() - now
        self.engine.wall_offset = self._offset
        return now

    def _stamped(self, event: Event) -> Event:
        """The event with its engine-time stamp turned into wall time."""
        if isinstance(event, AlertRaised | AlertAcknowledged | AlertCleared):
            return dataclasses.replace(event, timestamp=event.timestamp + self._offset)
        return event

    def _emit(self, events: Iterable[Event]) -> None:
        for event in map(self._stamped, events):
            if not self.hub.closed:
                self.hub.publish(event)
            if isinstance(event, AlertRaised):
                self.counters["alerts_raised"] += 1
                log.log(logging.WARNING if event.severity != "info" else logging.INFO,
                        "alert %s (%s, %s): %s", event.key, event.severity, event.reason,
                        event.text)
            elif isinstance(event, AlertCleared):
                self.counters["alerts_cleared"] += 1
            self._persist(event)

    def _persist(self, event: Event) -> None:
        store = self.store
        if store is None:
            return
        if isinstance(event, AlertRaised):
            store.log_alert(event.timestamp, event.key, "raised", event.severity, event.text,
                            event.reason)
        elif isinstance(event, AlertAcknowledged):
            store.log_alert(event.timestamp, event.key, "acknowledged", detail=event.origin)
        elif isinstance(event, AlertCleared):
            store.log_alert(event.timestamp, event.key, "cleared", detail=event.reason)
        else:
            return
        alert = self.engine.book.alerts.get(event.key)
        if alert is not None:
            from ..store.db import AlertRow

            store.put_alert_state(AlertRow(alert.key, alert.kind, alert.severity, alert.spoken,
                                           alert.text, alert.state.value,
                                           alert.raised_at + self._offset,
                                           alert.updated_at + self._offset))

    def _sample(self, values: dict[str, Any], now: float, wall: float) -> None:
        if self.store is None or now - self._sample_at < self.cfg.sample_interval_s:
            return
        latest = self.engine.latest
        odo = latest.get(ODOMETER)
        if not isinstance(odo, int | float):
            return
        self._sample_at = now
        self.store.add_sample(ODOMETER, wall, float(odo))
        trip = latest.get(TRIP)
        if isinstance(trip, int | float):
            self.store.add_sample(TRIP, wall, float(trip))

    async def _restore(self) -> None:
        assert self.store is not None
        rows = await self.store.active_alerts()
        off = self._offset = self.clock.offset()  # stored rows are wall time; the engine's is not
        self.engine.restore(
            Alert(r.key, r.kind, r.severity, r.spoken, r.text, AlertState(r.state),
                  r.raised_at - off, r.updated_at - off, r.updated_at - off) for r in rows)

    async def _reload_history(self) -> None:
        assert self.store is not None
        count = await self.store.service_count()
        if count == self._history_count:
            return
        from ..records.history import entry_from_row, service_done

        rows = await self.store.service_rows()
        self.engine.set_service_history(service_done([entry_from_row(r) for r in rows]))
        self._history_count = count
