"""Odometer and DTC evidence: once per ignition cycle at a modest rate, rollbacks always."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carlink_protocol.audit import ROLLBACK
from carlinkd.events import DtcCleared, DtcSet, SignalsUpdated, SignalValue
from carlinkd.hub import Hub
from carlinkd.records.evidence import (
    BATTERY, IGNITION, ODOMETER, ODOMETER_INTERVAL_S, EvidenceCore, EvidenceService)
from carlinkd.records.history import ServiceHistory
from carlinkd.store.db import Store

DAY = 86_400.0
T0 = 1_700_000_000.0


def drive(core: EvidenceCore, km: float, now: float, source: str = "dbc") -> list[dict]:
    """One ignition cycle: off, on, then readings."""
    core.signals({IGNITION: (0, source)}, now)
    core.signals({IGNITION: (2, source)}, now)
    out = core.signals({ODOMETER: (km, source)}, now)
    return out + core.signals({ODOMETER: (km + 3, source)}, now + 60)


def test_one_reading_per_cycle_and_per_day() -> None:
    core = EvidenceCore()
    first = drive(core, 10_000.4, T0)
    assert first == [{"odometer": {"km": 10_000, "source": "dbc", "date": "2023-11-14"}}]
    assert drive(core, 10_020, T0 + 3600) == []  # same day: not due
    assert drive(core, 10_040, T0 + ODOMETER_INTERVAL_S)[0]["odometer"]["km"] == 10_040
    assert drive(core, 10_600, T0 + ODOMETER_INTERVAL_S + 60)[0]["odometer"]["km"] == 10_600


def test_a_lower_reading_is_always_recorded() -> None:
    core = EvidenceCore()
    drive(core, 50_000, T0)
    rolled = drive(core, 20_000, T0 + 600, "obd")  # same day, yet recorded
    assert rolled == [{"odometer": {"km": 20_000, "source": "obd", "date": "2023-11-14"}}]


def test_dtc_transitions_only() -> None:
    core = EvidenceCore()
    assert core.dtc(0x7E8, "P0171", "set", "lean", T0)[0]["dtc"]["event"] == "set"
    assert core.dtc(0x7E8, "P0171", "set", "lean", T0 + 5) == []
    assert core.dtc(0x7E8, "P0171", "cleared", "", T0 + DAY)[0]["dtc"]["date"] == "2023-11-15"
    assert core.dtc(0x7E8, "P0171", "cleared", "", T0 + DAY) == []


def signals(t: float, **named: float) -> SignalsUpdated:
    names = {"odo": ODOMETER, "ign": IGNITION, "bat": BATTERY}
    return SignalsUpdated({names[k]: SignalValue(names[k], v, None, t, "dbc")
                           for k, v in named.items()})


async def test_service_appends_to_the_chain_and_survives_a_restart(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "carlinkd.db", background=False)
    history = ServiceHistory(store, Ed25519PrivateKey.generate())
    now = [T0]
    hub = Hub(64)
    svc = EvidenceService(hub, store, history, lambda: now[0])
    await svc.start()
    try:
        await svc.handle(signals(now[0], ign=2, odo=30_000, bat=12.6))
        await svc.handle(DtcSet(0x7E8, "P0171", "System too lean", now[0]))
        now[0] += DAY
        await svc.handle(DtcCleared(0x7E8, "P0171", now[0]))
        again = EvidenceService(hub, store, history, lambda: now[0])
        await again.start()  # a restart: the same DTC is not set twice, the odometer knows
        await again.handle(DtcCleared(0x7E8, "P0171", now[0]))
        await again.handle(signals(now[0], ign=0))
        await again.handle(signals(now[0], ign=2, odo=12_000))
        await again.stop()
        kinds = [(e.kind, e.body.get("dtc", {}).get("event")) for e in await history.entries()]
        assert kinds == [("odometer", None), ("dtc", "set"), ("dtc", "cleared"),
                         ("odometer", None)]
        report = await history.verify()
        assert report.ok and report.names() == [ROLLBACK]
        await store.flush()
        assert [v for _, v in await store.samples(BATTERY)] == [12.6]
    finally:
        await svc.stop()
        hub.close()
        await store.close()
    await asyncio.sleep(0)
