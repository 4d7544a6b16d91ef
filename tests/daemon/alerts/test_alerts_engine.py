"""The pure alert engine: thresholds, hysteresis, slow leak, DTC, MIL, maintenance, lifecycle."""

from __future__ import annotations

import dataclasses
import random

import pytest

from carlinkd.alerts.engine import AlertEngine
from carlinkd.alerts.lifecycle import Alert, AlertState
from carlinkd.alerts.maintenance import DAY_S, ServiceDone, Stage
from carlinkd.alerts.rules import Debounce, dtc_severity, slope_per_min
from carlinkd.alerts.settings import (
    BATTERY_V, ECT, FUEL_LEVEL, MAX_SPOKEN_WORDS, ODOMETER, OIL_LIFE, POWER_STATE, SERVICE_DAYS,
    SERVICE_KM, TIRES, AlertsConfig, CoolantHigh)
from carlinkd.events import AlertAcknowledged, AlertCleared, AlertRaised, Event

RL = TIRES[2]


def raised(events: list[Event]) -> list[AlertRaised]:
    return [e for e in events if isinstance(e, AlertRaised)]


def cleared(events: list[Event]) -> list[AlertCleared]:
    return [e for e in events if isinstance(e, AlertCleared)]


def feed(engine: AlertEngine, name: str, values: list[float], t0: float = 0.0,
         dt: float = 1.0) -> list[tuple[float, Event]]:
    out = []
    for i, v in enumerate(values):
        now = t0 + i * dt
        out += [(now, e) for e in engine.update({name: v}, now)]
    return out


def test_threshold_waits_for_hold_time_then_clears_past_hysteresis() -> None:
    engine = AlertEngine(AlertsConfig())
    # 5 s hold: 111 at t=0..4 is not enough, continuous from t=10 raises at t=15
    events = feed(engine, ECT, [111.0] * 4 + [100.0] * 6 + [111.0] * 10)
    assert [(t, e.key) for t, e in events if isinstance(e, AlertRaised)] == [(15.0, "coolant_high")]
    # between clear_at (103) and the limit nothing clears; below 103 for 20 s clears
    events = feed(engine, ECT, [106.0] * 60 + [102.0] * 25, t0=20.0)
    assert [(t, e.key) for t, e in events if isinstance(e, AlertCleared)] == [(100.0, "coolant_high")]


def test_gate_keeps_battery_alert_to_ignition_off() -> None:
    engine = AlertEngine(AlertsConfig())
    engine.update({POWER_STATE: "Run"}, 0.0)
    assert not raised([e for _, e in feed(engine, BATTERY_V, [11.0] * 120)])
    engine.update({POWER_STATE: "Off"}, 120.0)
    events = feed(engine, BATTERY_V, [11.5] * 70, t0=121.0)
    assert [e.key for _, e in events if isinstance(e, AlertRaised)] == ["battery_low"]


@pytest.mark.parametrize("seed", range(8))
def test_hysteresis_with_noise_never_flaps(seed: int) -> None:
    """A slow ramp through the limit and back, with noise smaller than the band: one raise,
    one clear, and the raise only after the true value is past the limit."""
    rng = random.Random(seed)
    engine = AlertEngine(AlertsConfig())
    rule = CoolantHigh()
    band = rule.above - rule.clear_at  # type: ignore[operator]
    truth = [95 + 0.05 * i for i in range(500)] + [120 - 0.05 * i for i in range(600)]
    noisy = [v + rng.uniform(-band / 2.5, band / 2.5) for v in truth]
    events = feed(engine, ECT, noisy)
    keys = [(type(e).__name__, t) for t, e in events if e.key == "coolant_high"]  # type: ignore[attr-defined]
    assert [k for k, _ in keys] == ["AlertRaised", "AlertCleared"]
    raise_t, clear_t = keys[0][1], keys[1][1]
    assert truth[int(raise_t)] > rule.above - band / 2.5
    assert truth[int(clear_t)] < rule.clear_at + band / 2.5


def test_debounce_is_a_pure_state_machine() -> None:
    d = Debounce(hold_s=2.0, clear_hold_s=3.0)
    assert d.step(True, False, 0.0) is None and d.timing
    assert d.step(True, False, 2.0) is True
    assert d.step(False, True, 3.0) is None
    assert d.step(False, False, 4.0) is None  # back inside the band: stays active
    assert d.step(False, True, 5.0) is None
    assert d.step(False, True, 8.0) is False


def _tires(engine: AlertEngine, minutes: float, leak_per_min: float, seed: int = 1,
           step_s: float = 5.0) -> list[tuple[float, Event]]:
    rng = random.Random(seed)
    out = []
    for i in range(int(minutes * 60 / step_s)):
        now = i * step_s
        common = 2.0 * (now / 3600.0)  # all tires warm up together
        vals = {}
        for sig in TIRES:
            leak = leak_per_min * now / 60.0 if sig == RL else 0.0
            vals[sig] = round((250.0 + common - leak + rng.gauss(0, 0.3)) * 2) / 2
        out += [(now, e) for e in engine.update(vals, now)]
    return out


def test_slow_leak_caught_long_before_low_threshold() -> None:
    engine = AlertEngine(AlertsConfig())
    events = _tires(engine, 30, leak_per_min=1.0)
    leaks = [(t, e) for t, e in events if isinstance(e, AlertRaised)]
    assert [e.key for _, e in leaks] == ["slow_leak:rear_left"]
    t = leaks[0][0]
    assert t <= 300.0
    assert 250.0 - t / 60.0 > 240.0  # still far above the 180 kPa low threshold
    assert len(leaks[0][1].spoken.split()) <= MAX_SPOKEN_WORDS


def test_no_slow_leak_when_all_tires_move_together() -> None:
    engine = AlertEngine(AlertsConfig())
    assert not raised([e for _, e in _tires(engine, 30, leak_per_min=0.0)])


def test_slope_is_least_squares_per_minute() -> None:
    from collections import deque
    samples = deque((float(t), 100.0 - 0.02 * t) for t in range(0, 300, 5))
    assert slope_per_min(samples) == pytest.approx(-1.2)


def test_dtc_severity_by_longest_prefix_and_lifecycle() -> None:
    table = AlertsConfig().dtc_severity
    assert dtc_severity("P0301", table) == "critical"
    assert dtc_severity("P0420", table) == "info"
    assert dtc_severity("P0171", table) == "warning"
    assert dtc_severity("B1234", table) == "info"
    engine = AlertEngine(AlertsConfig())
    ev = engine.dtc_set(0x7E8, "P0301", "Cylinder 1 misfire detected", 10.0)
    assert [(e.key, e.severity) for e in raised(ev)] == [("dtc:P0301", "critical")]
    assert "Cylinder 1 misfire" in raised(ev)[0].text
    assert engine.dtc_set(0x7E8, "P0301", "Cylinder 1 misfire detected", 11.0) == []  # dedup
    assert [e.key for e in cleared(engine.dtc_cleared("P0301", 20.0))] == ["dtc:P0301"]
    on = engine.mil(True, 2, 21.0)
    assert [e.key for e in raised(on)] == ["mil"]
    assert [e.key for e in cleared(engine.mil(False, 0, 30.0))] == ["mil"]


def test_lifecycle_ack_quiet_return_escalation_and_critical_reminders() -> None:
    cfg = AlertsConfig(reraise_quiet_s=600.0, critical_reminder_s=300.0)
    engine = AlertEngine(cfg)
    engine.dtc_set(1, "P0171", "System too lean", 0.0)
    ack = engine.acknowledge(None, 5.0, "voice")
    assert ack == [AlertAcknowledged("dtc:P0171", 5.0, "voice")]
    assert engine.acknowledge("dtc:P0171", 6.0) == []  # already acknowledged
    assert engine.tick(400.0) == []  # non-critical: silent while acknowledged
    engine.dtc_cleared("P0171", 410.0)
    back = raised(engine.dtc_set(1, "P0171", "System too lean", 420.0))
    assert [(e.reason, e.announce) for e in back] == [("returned", False)]  # shown, not spoken
    engine.dtc_cleared("P0171", 430.0)
    later = raised(engine.dtc_set(1, "P0171", "System too lean", 2000.0))
    assert [(e.reason, e.announce) for e in later] == [("returned", True)]
    # critical: acknowledged but reminded; returning within the quiet time still announced
    engine.dtc_set(1, "P0217", "Engine over temperature", 3000.0)
    engine.acknowledge("dtc:P0217", 3001.0)
    assert [(e.reason, e.announce) for e in raised(engine.tick(3300.0))] == [("reminder", True)]
    engine.dtc_cleared("P0217", 3310.0)
    again = raised(engine.dtc_set(1, "P0217", "Engine over temperature", 3320.0))
    assert [(e.reason, e.announce) for e in again] == [("returned", True)]


def test_escalation_re_raises_and_resets_acknowledgement() -> None:
    engine = AlertEngine(AlertsConfig())
    first = raised(engine.update({SERVICE_KM: 500, SERVICE_DAYS: 200}, 0.0))
    assert [(e.key, e.severity) for e in first] == [("maintenance:inspection", "info")]
    engine.acknowledge("maintenance:inspection", 2.0)
    ev = raised(engine.update({SERVICE_KM: -1}, 3.0))
    assert [(e.key, e.severity, e.reason) for e in ev] == [
        ("maintenance:inspection", "warning", "escalated")]
    assert engine.book.alerts["maintenance:inspection"].state is AlertState.RAISED


def test_maintenance_from_history_due_soon_before_overdue() -> None:
    engine = AlertEngine(AlertsConfig())
    day0 = 1_700_000_000.0
    engine.set_service_history([ServiceDone("tire_rotation", day0, 40_000.0),
                                ServiceDone("brake_fluid", day0, 40_000.0)])
    engine.update({ODOMETER: 48_000.0}, day0 + DAY_S)
    assert engine.maintenance_status()["tire_rotation"].stage is Stage.OK
    ev = raised(engine.update({ODOMETER: 49_100.0}, day0 + 2 * DAY_S))
    assert [(e.key, e.severity) for e in ev] == [("maintenance:tire_rotation", "info")]
    ev = raised(engine.update({ODOMETER: 50_000.5}, day0 + 3 * DAY_S))
    assert [(e.key, e.severity) for e in ev] == [("maintenance:tire_rotation", "warning")]
    # brake fluid by time: due soon 30 days before two years, overdue after
    ev = raised(engine.tick(day0 + 701 * DAY_S))
    assert [(e.key, e.severity) for e in ev] == [("maintenance:brake_fluid", "info")]
    ev = raised(engine.tick(day0 + 731 * DAY_S))
    assert [(e.key, e.severity) for e in ev] == [("maintenance:brake_fluid", "warning")]
    # a new record clears it
    engine.set_service_history([ServiceDone("brake_fluid", day0 + 731 * DAY_S, 50_100.0)])
    ev = engine.tick(day0 + 732 * DAY_S)
    assert "maintenance:brake_fluid" in [e.key for e in cleared(ev)]
    # items never serviced are unknown, not nagged
    assert engine.maintenance_status()["inspection"].stage is Stage.UNKNOWN


def test_oil_life_signal_wins_and_does_not_flap_at_the_edge() -> None:
    engine = AlertEngine(AlertsConfig())
    engine.set_service_history([ServiceDone("oil", 0.0, 0.0)])  # history would say overdue
    events: list[Event] = []
    for i, life in enumerate([40, 20, 15, 16, 15, 16, 15, 16, 14, 5, 6, 5, 4]):
        events += engine.update({OIL_LIFE: life, ODOMETER: 100_000.0}, float(i))
    oil = [(e.severity, e.reason) for e in raised(events) if e.key == "maintenance:oil"]
    assert oil == [("info", "new"), ("warning", "escalated")]
    assert not cleared(events)
    assert cleared(engine.update({OIL_LIFE: 100}, 20.0))  # reset after the oil change


def test_fuel_low_and_every_default_spoken_text_is_one_breath() -> None:
    engine = AlertEngine(AlertsConfig())
    events = feed(engine, FUEL_LEVEL, [11.0] * 40)
    assert [e.key for _, e in events if isinstance(e, AlertRaised)] == ["fuel_low"]
    cfg = AlertsConfig()
    spoken = [getattr(cfg, f.name).spoken for f in dataclasses.fields(cfg)
              if hasattr(getattr(cfg, f.name), "spoken")]
    spoken += ["Possible slow leak in the rear left tire. Check it soon.",
               "Engine fault P0301. Stop safely and get the car checked.",
               "Service inspection is overdue. Please book a service.",
               "Check engine light is on. Have the car checked."]
    for text in spoken:
        filled = text.format(where="front right", value="1", limit="2", unit="kPa")
        assert len(filled.split()) <= MAX_SPOKEN_WORDS, filled


def test_restored_alerts_are_silent_then_clear_on_evidence() -> None:
    engine = AlertEngine(AlertsConfig())
    engine.restore([Alert("coolant_high", "coolant_high", "warning", "s", "t",
                          AlertState.ACKNOWLEDGED, 0.0, 0.0, 0.0)])
    assert feed(engine, ECT, [112.0] * 10, t0=100.0) == []
    events = feed(engine, ECT, [90.0] * 30, t0=110.0)
    assert [e.key for _, e in events if isinstance(e, AlertCleared)] == ["coolant_high"]


def test_time_going_backwards_is_treated_as_now() -> None:
    engine = AlertEngine(AlertsConfig())
    feed(engine, ECT, [115.0] * 3, t0=100.0)
    assert raised(engine.update({ECT: 115.0}, 50.0)) == []  # clock stepped back: no early raise
    assert [e.key for e in raised(engine.tick(105.0))] == ["coolant_high"]
