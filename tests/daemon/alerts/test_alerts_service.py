"""The alerts adapter on a real hub and a real store; alert/store configuration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from carlinkd.alerts.service import ACK_COMMAND, AlertService
from carlinkd.alerts.settings import ECT, ODOMETER, SERVICE_KM
from carlinkd.clock import Clock
from carlinkd.config import Config, build_config, load_config
from carlinkd.errors import ConfigError
from carlinkd.events import (
    AlertAcknowledged, AlertCleared, AlertRaised, Command, DtcCleared, DtcSet, MilState,
    SignalsUpdated, SignalValue)
from carlinkd.hub import Hub
from carlink_protocol.chain import ServiceRecord
from carlinkd.records.history import ServiceHistory
from carlinkd.records.keys import load_or_create_device_key
from carlinkd.store.db import Store


class FakeClock:
    """Test-controlled time base (the service's documented injection point)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def signals(**values: float) -> SignalsUpdated:
    names = {"ect": ECT, "odo": ODOMETER, "service_km": SERVICE_KM}
    return SignalsUpdated({names[k]: SignalValue(names[k], v, None, 0.0) for k, v in values.items()})


async def drain(sub: object, n: int) -> list[object]:
    out = []
    for _ in range(n):
        out.append(await asyncio.wait_for(sub.get(), 2.0))  # type: ignore[attr-defined]
    return out


async def test_signals_to_alert_events_persisted_and_restored_silently(tmp_path: Path) -> None:
    clock = FakeClock()
    store = await Store.open(tmp_path / "c.db", background=False)
    hub = Hub()
    listener = hub.subscribe(AlertRaised, AlertAcknowledged, AlertCleared)
    service = AlertService(Config(), hub, store, clock=clock)
    await service.start()
    try:
        for _ in range(7):
            service.handle(signals(ect=115.0, odo=42_000.0))
            clock.now += 1.0
        raised = await drain(listener, 1)
        assert isinstance(raised[0], AlertRaised) and raised[0].key == "coolant_high"
        hub.publish(Command(ACK_COMMAND, {"key": "coolant_high"}, "voice"))
        ack = await drain(listener, 1)
        assert ack == [AlertAcknowledged("coolant_high", clock.now, "voice")]
        assert [a.key for a in service.active()] == ["coolant_high"]
    finally:
        await service.stop()
    await store.flush()
    assert [r.state for r in await store.active_alerts()] == ["acknowledged"]
    assert [(r[1], r[2]) for r in await store.alert_history()] == [
        ("coolant_high", "acknowledged"), ("coolant_high", "raised")]
    assert await store.samples(ODOMETER) == [(1_700_000_000.0, 42_000.0)]
    # a restart: the alert is known, not announced again, and clears on evidence
    hub2 = Hub()
    listener2 = hub2.subscribe(AlertRaised, AlertCleared)
    again = AlertService(Config(), hub2, store, clock=clock)
    await again.start()
    try:
        for _ in range(25):
            again.handle(signals(ect=90.0))
            clock.now += 1.0
        events = await drain(listener2, 1)
        assert [type(e).__name__ for e in events] == ["AlertCleared"]
    finally:
        await again.stop()
        await store.close()


async def test_dtc_and_mil_events_raise_clear_and_log(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.db", background=False)
    hub = Hub()
    listener = hub.subscribe(AlertRaised, AlertCleared)
    service = AlertService(Config(), hub, store, clock=FakeClock())
    await service.start()
    try:
        hub.publish(DtcSet(0x7E8, "P0301", "Cylinder 1 misfire detected", 1.0))
        hub.publish(MilState(True, 0x7E8, 1, 1.0))
        hub.publish(DtcCleared(0x7E8, "P0301", 2.0))
        events = await drain(listener, 3)
        assert [(type(e).__name__, e.key) for e in events] == [  # type: ignore[attr-defined]
            ("AlertRaised", "dtc:P0301"), ("AlertRaised", "mil"), ("AlertCleared", "dtc:P0301")]
        assert events[0].severity == "critical"  # type: ignore[attr-defined]
    finally:
        await service.stop()
    await store.flush()
    assert [(r[2], r[3]) for r in await store.dtc_history()] == [("P0301", "cleared"),
                                                                  ("P0301", "set")]
    await store.close()


async def test_service_history_drives_maintenance(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.db", background=False)
    history = ServiceHistory(store, load_or_create_device_key(tmp_path / "k.pem"))
    await history.add(ServiceRecord("2023-11-14", 30_000, "ATU", ("tire_rotation",)))
    clock = FakeClock()  # 2023-11-14
    hub = Hub()
    listener = hub.subscribe(AlertRaised)
    service = AlertService(Config(), hub, store, clock=clock)
    await service.start()
    try:
        service.handle(signals(odo=39_500.0))
        events = await drain(listener, 1)
        assert events[0].key == "maintenance:tire_rotation"  # type: ignore[attr-defined]
        assert service.maintenance_status()["tire_rotation"].measures.km == pytest.approx(500.0)
    finally:
        await service.stop()
        await store.close()


def test_alert_and_store_config_defaults_partial_overrides_and_errors(tmp_path: Path) -> None:
    cfg = Config()
    assert cfg.alerts.coolant_high.above == 110.0
    path = tmp_path / "c.toml"
    path.write_text("[alerts.coolant_high]\nabove = 112.0\n[store]\nbatch_max = 100\n")
    cfg = load_config(path, env={})
    assert cfg.alerts.coolant_high.above == 112.0
    assert cfg.alerts.coolant_high.signals == (ECT,)  # the other defaults stay
    assert cfg.store.batch_max == 100 and cfg.store.flush_interval_s == 1.0
    assert cfg.store.db_path(Path("/s")) == Path("/s/carlinkd.db")
    env = load_config(None, env={"CARLINKD_ALERTS_RERAISE_QUIET_S": "60"})
    assert env.alerts.reraise_quiet_s == 60.0
    for text, key in [("[alerts.coolant_high]\nclear_at = 120.0\n", "alerts.coolant_high"),
                      ("[alerts.fuel_low]\nseverity = 'loud'\n", "alerts.fuel_low.severity"),
                      ("[alerts.coolant_high]\nspoken = 'hot {temp}'\n", "alerts.coolant_high"),
                      ("[store]\nbatch_max = 'x'\n", "store.batch_max"),
                      ("[alerts]\nbogus = 1\n", "alerts.bogus")]:
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        assert str(info.value).startswith(f"{path}: {key}:"), str(info.value)
        assert "\n" not in str(info.value)
    # The store's outbox is gone (the cloud outbox is carlinkd/sync/outbox.py): an old file that
    # still configures it gets the ordinary one-line unknown-key error.
    path.write_text("[store.outbox.telemetry]\nmax_bytes = 1000\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}: store.outbox: unknown key; expected one of: ")
    assert "\n" not in str(info.value)
    extra = build_config([("t", {"alerts": {"extra": {"oil_hot": {
        "signals": ["Vehicle.Powertrain.CombustionEngine.EOT"], "above": 140.0,
        "clear_at": 130.0}}}})])
    assert extra.alerts.extra["oil_hot"].above == 140.0


class JumpyClock:
    """A board without a real-time clock: monotonic time runs on, wall time jumps when NTP answers."""

    def __init__(self) -> None:
        self.mono, self.wall = 500.0, 1_000_000.0  # booted "in 1970"

    def clock(self) -> Clock:
        return Clock(lambda: self.mono, lambda: self.wall)

    def advance(self, s: float) -> None:
        self.mono += s
        self.wall += s


async def hot_engine_after_ntp_jump(clock: Clock, jumpy: JumpyClock, tmp_path: Path) -> list[object]:
    """Coolant above 110 °C for 2 s of real time, with a one-hour NTP jump in between."""
    store = await Store.open(tmp_path / "c.db", background=False)
    hub = Hub()
    listener = hub.subscribe(AlertRaised)
    service = AlertService(Config(), hub, store, clock=clock)
    await service.start()
    try:
        service.handle(signals(ect=115.0, odo=42_000.0))
        jumpy.advance(1.0)
        jumpy.wall += 3600.0  # NTP sets the clock
        service.handle(signals(ect=115.5, odo=42_000.0))
        jumpy.advance(1.0)
        service.handle(signals(ect=116.0, odo=42_000.0))
        raised: list[object] = []
        while (event := listener.get_nowait()) is not None:
            raised.append(event)
        return raised
    finally:
        await service.stop()
        await store.close()


async def test_a_wall_clock_jump_does_not_satisfy_a_hold(tmp_path: Path) -> None:
    jumpy = JumpyClock()
    assert await hot_engine_after_ntp_jump(jumpy.clock(), jumpy, tmp_path / "a") == []
    # The same hour measured on wall time (the old single clock) raised the alert at once.
    jumpy = JumpyClock()
    early = await hot_engine_after_ntp_jump(Clock.single(lambda: jumpy.wall), jumpy, tmp_path / "b")
    assert [e.key for e in early] == ["coolant_high"]  # type: ignore[attr-defined]


async def test_alert_held_on_monotonic_time_is_stamped_in_wall_time(tmp_path: Path) -> None:
    jumpy = JumpyClock()
    store = await Store.open(tmp_path / "c.db", background=False)
    hub = Hub()
    listener = hub.subscribe(AlertRaised)
    service = AlertService(Config(), hub, store, clock=jumpy.clock())
    await service.start()
    try:
        jumpy.wall += 3600.0
        for _ in range(7):  # coolant_high holds 5 s
            service.handle(signals(ect=115.0, odo=42_000.0))
            jumpy.advance(1.0)
        raised = await asyncio.wait_for(listener.get(), 2.0)
        assert isinstance(raised, AlertRaised) and raised.key == "coolant_high"
        assert abs(raised.timestamp - jumpy.wall) < 10  # wall time, not the monotonic 500 s
        await store.flush()
        rows = await store.active_alerts()
        assert [r.key for r in rows] == ["coolant_high"] and abs(rows[0].raised_at - jumpy.wall) < 10
    finally:
        await service.stop()
        await store.close()
