"""Scenarios from the simulator, decoded by the real decoder, judged by the real engine.

The engine's clock is *model* time (frame timestamp x time_scale): the scenarios' ground truth
is in vehicle seconds, and hold times and windows are meant in vehicle seconds too. Ground truth
comes from the simulator's model state, sampled as the frames are produced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from carlinkd.alerts.engine import AlertEngine
from carlinkd.alerts.settings import AlertsConfig
from carlinkd.can.catalog import Catalog
from carlinkd.can.database import load_database
from carlinkd.can.decode import Decoder
from carlinkd.events import AlertCleared, AlertRaised, Event

sim = pytest.importorskip("carlink_sim")

SCALE = 60.0
BATCH_BUS_S = 0.05  # 3 model seconds per batch


@dataclass
class Run:
    sim: Any
    engine: AlertEngine
    decoder: Decoder
    events: list[tuple[float, Event, dict[str, float]]] = field(default_factory=list)

    def until(self, model_s: float, truth: Callable[[Any], dict[str, float]] = lambda m: {}) -> None:
        while self.sim.model_time < model_s - 1e-6:
            frames = self.sim.frames(BATCH_BUS_S)
            changed = self.decoder.ingest(frames)
            now = (frames[-1].timestamp if frames else self.sim.time) * SCALE
            values = {k: v.value for k, v in changed.items()}
            out = self.engine.update(values, now) if values else self.engine.tick(now)
            snapshot = truth(self.sim.model)
            self.events += [(now, e, snapshot) for e in out]

    def raised(self) -> list[tuple[float, AlertRaised, dict[str, float]]]:
        return [(t, e, s) for t, e, s in self.events if isinstance(e, AlertRaised)]

    def cleared(self) -> list[tuple[float, AlertCleared, dict[str, float]]]:
        return [(t, e, s) for t, e, s in self.events if isinstance(e, AlertCleared)]

    def assert_no_flapping(self) -> None:
        starts = Counter(e.key for _, e, _ in self.raised() if e.reason in ("new", "returned"))
        clears = Counter(e.key for _, e, _ in self.cleared())
        assert all(n == 1 for n in starts.values()), starts
        assert all(n <= 1 for n in clears.values()), clears


@pytest.fixture(scope="module")
def decoder_db() -> Any:
    return load_database([])


def start(scenario: str, db: Any) -> Run:
    s = sim.Simulator(scenario=scenario, seed=1, time_scale=SCALE)
    return Run(s, AlertEngine(AlertsConfig()), Decoder(db, Catalog()))


def test_tire_leak_reported_while_still_well_inflated_then_clears(decoder_db: Any) -> None:
    run = start("tire-leak", decoder_db)
    run.until(1800.0, lambda m: {"rl": m.tire_pressure_kpa("RL"), "fl": m.tire_pressure_kpa("FL")})
    leaks = run.raised()
    assert [e.key for _, e, _ in leaks] == ["slow_leak:rear_left"]
    t, event, truth = leaks[0]
    assert 60.0 < t < 60.0 + 360.0  # the nail goes in at t=60 s
    assert truth["rl"] > 240.0 > 180.0  # far above the low-pressure threshold
    assert event.severity == "warning" and "rear left" in event.spoken
    # the driver pumps the tire back up: the alert clears, once
    run.sim.model.tires["RL"].leak_kpa_per_min = 0.0
    run.sim.model.tires["RL"].cold_kpa = 240.0
    run.until(2400.0)
    assert [e.key for _, e, _ in run.cleared()] == ["slow_leak:rear_left"]
    run.assert_no_flapping()


def test_overheat_warns_then_critical_then_clears_after_engine_off(decoder_db: Any) -> None:
    from carlink_sim.vehicle import Ignition

    run = start("overheat", decoder_db)
    crossings: dict[str, float] = {}

    def truth(m: Any) -> dict[str, float]:
        c = m.thermal.coolant_c
        for name, limit in (("high", 110.0), ("critical", 120.0)):
            if c > limit and name not in crossings:
                crossings[name] = m.time
        return {"coolant": c}

    run.until(1200.0, truth)
    got = {e.key: (t, e, s) for t, e, s in reversed(run.raised())}  # first raise per key
    assert set(got) == {"coolant_high", "coolant_critical"}
    # while critical and active it is spoken again every critical_reminder_s (300 s)
    reminders = [t for t, e, _ in run.raised() if e.reason == "reminder"]
    assert reminders and all(e.key == "coolant_critical" for _, e, _ in run.raised()
                             if e.reason == "reminder")
    for key, name, hold in (("coolant_high", "high", 5.0), ("coolant_critical", "critical", 3.0)):
        t, event, snap = got[key]
        # raised after the hold time, within a couple of batches and a decode step of the truth
        assert crossings[name] + hold <= t + 3.0 <= crossings[name] + hold + 12.0
    assert got["coolant_critical"][1].severity == "critical"
    run.sim.model.ignition = Ignition.OFF  # the driver stops and switches off; the ECM goes quiet
    run.until(2700.0)
    assert run.cleared() == []  # no evidence yet: a silent bus does not clear an alert
    run.sim.model.ignition = Ignition.RUN  # key on after cooling down (engine not started)
    run.until(2800.0, lambda m: {"coolant": m.thermal.coolant_c})
    assert all(s["coolant"] < 103.0 for _, _, s in run.cleared())
    assert {e.key for _, e, _ in run.cleared()} == {"coolant_high", "coolant_critical"}
    run.assert_no_flapping()


def test_low_battery_raises_below_11_8_v_with_ignition_off_and_clears_on_start(
        decoder_db: Any) -> None:
    from carlink_sim.vehicle import Ignition

    run = start("low-battery", decoder_db)
    run.until(1800.0, lambda m: {"v": m.battery.voltage})
    lows = run.raised()
    assert [e.key for _, e, _ in lows] == ["battery_low"]
    t, _, snap = lows[0]
    assert snap["v"] < 11.8 and 900.0 < t < 1800.0
    run.sim.model.ignition = Ignition.RUN
    run.sim.model.engine_running = True
    run.until(1900.0)
    assert [e.key for _, e, _ in run.cleared()] == ["battery_low"]
    run.assert_no_flapping()


def test_service_due_soon_then_overdue_then_cleared_by_the_service(decoder_db: Any) -> None:
    run = start("service-due", decoder_db)
    crossed: list[float] = []

    def truth(m: Any) -> dict[str, float]:
        if m.service_distance_km <= 0 and not crossed:
            crossed.append(m.time)
        return {"km": m.service_distance_km}

    run.until(1800.0, truth)
    seq = [(e.key, e.severity, e.reason) for _, e, _ in run.raised()]
    assert seq[:2] == [("maintenance:oil", "warning", "new"),
                       ("maintenance:inspection", "info", "new")]
    assert seq[2:] == [("maintenance:inspection", "warning", "escalated")]
    t_overdue = run.raised()[2][0]
    assert crossed and crossed[0] - 1.0 <= t_overdue <= crossed[0] + 90.0
    m = run.sim.model  # the shop resets the car's service indicators
    m.oil_life_pct, m.service_distance_km, m.service_days = 100.0, 30000.0, 365.0
    run.until(1900.0)
    assert {e.key for _, e, _ in run.cleared()} == {"maintenance:oil", "maintenance:inspection"}
    run.assert_no_flapping()


def test_city_drive_raises_nothing(decoder_db: Any) -> None:
    run = start("city-drive", decoder_db)
    run.until(1800.0)
    assert run.raised() == []
