"""Odometer and fault evidence in the signed chain, and the trends a condition report plots.

:class:`EvidenceCore` (pure, fed signals and DTC events with ``now``) decides what goes into the
chain, at a modest rate:

- an odometer reading (``Vehicle.TraveledDistance``, from the DBC or OBD PID 0xA6) once per
  ignition cycle, when at least ``ODOMETER_INTERVAL_S`` passed or ``ODOMETER_STEP_KM`` were
  driven since the last one, and always when it is lower than the last one recorded (a
  rollback is recorded, never skipped);
- each DTC set and cleared (they are rare), with its date.

It also says when to sample the battery voltage and tyre pressures into the store's
``samples`` table (every ``TREND_INTERVAL_S``), for the report's trend plots.
:class:`EvidenceService` is the hub adapter: it appends to the chain through
:class:`~carlinkd.records.history.ServiceHistory`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, UTC
from typing import TYPE_CHECKING, Any

from ..aio import cancel_all
from ..errors import CarlinkError
from ..events import DtcCleared, DtcSet, Event, SignalsUpdated

if TYPE_CHECKING:
    from ..hub import Hub, Subscription
    from ..store.db import Store
    from .history import ServiceHistory

log = logging.getLogger(__name__)

ODOMETER = "Vehicle.TraveledDistance"
IGNITION = "Vehicle.LowVoltageSystemState"
BATTERY = "Vehicle.LowVoltageBattery.CurrentVoltage"
TYRES = tuple(f"Vehicle.Chassis.Axle.{row}.Wheel.{side}.Tire.Pressure"
              for row in ("Row1", "Row2") for side in ("Left", "Right"))
ODOMETER_INTERVAL_S = 20 * 3600   # about one reading a day for a car driven daily
ODOMETER_STEP_KM = 500            # ... or one per 500 km on a long trip
TREND_INTERVAL_S = 600.0          # battery and tyre samples every 10 min while running
ROLLBACK_TOLERANCE_KM = 2


def day_of(now: float) -> str:
    """UTC date of a unix time, YYYY-MM-DD."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def ignition_state(value: object) -> bool | None:
    """``Vehicle.LowVoltageSystemState`` as on/off (None: unknown); the DBC's IgnitionState is
    0 Off, 1 Accessory, 2 Run, 3 Start."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("off", "lock", "locked", "acc", "accessory"):
            return False
        return True if text in ("on", "run", "start") else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value >= 2
    return None


@dataclass
class EvidenceCore:
    """Decides which odometer readings and DTC changes enter the chain (pure)."""

    last_km: int | None = None      # last recorded reading
    last_at: float = -1e18
    cycle_recorded: bool = False    # a reading was considered in this ignition cycle
    ignition: bool | None = None
    active: set[str] = field(default_factory=set)   # "ecu:code" of DTCs set
    trend_at: float = -1e18

    def restore(self, readings: list[tuple[int, float]], active_dtcs: set[str]) -> None:
        """State from the chain: (km, recorded_at) readings in order, DTCs still set."""
        for km, at in readings:
            self.last_km, self.last_at = km, at
        self.active = set(active_dtcs)

    def signals(self, values: dict[str, Any], now: float) -> list[dict[str, Any]]:
        """Evidence to append for a batch of signal values (``{name: (value, source)}``)."""
        if IGNITION in values:
            on = ignition_state(values[IGNITION][0])
            if on and not self.ignition:
                self.cycle_recorded = False  # a new ignition cycle
            self.ignition = on
        if ODOMETER not in values or self.cycle_recorded or self.ignition is False:
            return []
        value, source = values[ODOMETER]
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            return []
        self.cycle_recorded = True
        km = int(value)
        rollback = self.last_km is not None and km < self.last_km - ROLLBACK_TOLERANCE_KM
        due = self.last_km is None or now - self.last_at >= ODOMETER_INTERVAL_S or \
            km - self.last_km >= ODOMETER_STEP_KM
        if not (rollback or due) or km == self.last_km:
            return []
        self.last_km, self.last_at = km, now
        return [{"odometer": {"km": km, "source": source, "date": day_of(now)}}]

    def dtc(self, ecu: int, code: str, event: str, description: str,
            now: float) -> list[dict[str, Any]]:
        """Evidence for a DTC set or cleared (only real transitions)."""
        key = f"{ecu}:{code}"
        if (event == "set") == (key in self.active):
            return []
        (self.active.add if event == "set" else self.active.discard)(key)
        return [{"dtc": {"code": code, "ecu": ecu, "event": event, "description": description,
                         "date": day_of(now)}}]

    def trend_due(self, now: float) -> bool:
        """Whether to sample battery and tyres now."""
        if now - self.trend_at < TREND_INTERVAL_S:
            return False
        self.trend_at = now
        return True


def restore_state(core: EvidenceCore, entries: list[Any]) -> None:
    """Feed the chain's odometer entries and open DTCs back into a fresh core."""
    readings: list[tuple[int, float]] = []
    active: set[str] = set()
    for e in entries:
        odo, dtc = e.body.get("odometer"), e.body.get("dtc")
        if isinstance(odo, dict) and isinstance(odo.get("km"), int):
            readings.append((odo["km"], float(e.body.get("recorded_at", 0))))
        elif isinstance(dtc, dict):
            key = f"{dtc.get('ecu')}:{dtc.get('code')}"
            (active.add if dtc.get("event") == "set" else active.discard)(key)
    core.restore(readings, active)


class EvidenceService:
    """Hub adapter: signals and DTC events in, chain entries and trend samples out."""

    def __init__(self, hub: Hub, store: Store, history: ServiceHistory,
                 clock: Callable[[], float]) -> None:
        self.hub, self.store, self.history, self.clock = hub, store, history, clock
        self.core = EvidenceCore()
        self.latest: dict[str, float] = {}  # battery and tyres, as last decoded
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Restore from the chain, subscribe, start consuming."""
        restore_state(self.core, await self.history.entries())
        self._sub = self.hub.subscribe(SignalsUpdated, DtcSet, DtcCleared, name="evidence")
        self._tasks.append(asyncio.create_task(self._consume(self._sub), name="evidence"))

    async def stop(self) -> None:
        """Stop consuming."""
        await cancel_all(self._tasks)
        if self._sub is not None:
            self._sub.close()

    async def handle(self, event: Event) -> None:
        """One hub event: append what the core decides, sample trends."""
        now = self.clock()
        todo: list[dict[str, Any]] = []
        if isinstance(event, SignalsUpdated):
            values = {n: (sv.value, sv.source) for n, sv in event.values.items()}
            todo = self.core.signals(values, now)
            self._trends(values, now)
        elif isinstance(event, DtcSet):
            todo = self.core.dtc(event.ecu, event.code, "set", event.description, now)
        elif isinstance(event, DtcCleared):
            todo = self.core.dtc(event.ecu, event.code, "cleared", "", now)
        for extra in todo:
            entry = await self.history.add(None, now, extra)
            log.info("evidence #%d recorded: %s", entry.seq, extra)

    def _trends(self, values: dict[str, tuple[Any, str]], now: float) -> None:
        for name in (BATTERY, *TYRES):
            value = values.get(name, (None,))[0]
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.latest[name] = float(value)
        if self.latest and self.core.trend_due(now):
            for name, value in self.latest.items():
                self.store.add_sample(name, now, value)

    async def _consume(self, sub: Subscription) -> None:
        async for event in sub:
            try:
                await self.handle(event)
            except CarlinkError as err:  # e.g. a chain that no longer verifies
                log.warning("evidence not recorded: %s", err)
