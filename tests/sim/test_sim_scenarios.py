"""Scenario physics, checked end to end: decoded frames from the simulator, plus the pure model."""

from __future__ import annotations

from collections import defaultdict

import can
import pytest

from carlink_sim import SCENARIOS, Simulator, VehicleModel, load_demo_dbc
from carlink_sim.vehicle import Ignition, Selector

DB = load_demo_dbc()


def _series(frames: list[can.Message]) -> dict[str, list[tuple[float, object]]]:
    """Every decoded signal value over time, choices as strings."""
    series: dict[str, list[tuple[float, object]]] = defaultdict(list)
    for frame in frames:
        for name, value in DB.decode_message(frame.arbitration_id, frame.data).items():
            series[name].append((frame.timestamp, value if isinstance(value, (int, float)) else str(value)))
    return series


def _values(series: dict[str, list[tuple[float, object]]], name: str) -> list[float]:
    return [float(v) for _, v in series[name]]  # type: ignore[arg-type]


def test_registry_has_the_named_scenarios() -> None:
    assert {"city-drive", "highway", "tire-leak", "overheat", "low-battery", "service-due", "idle"} <= set(SCENARIOS)
    assert all(s.duration_s >= 600 and s.description for s in SCENARIOS.values())


def test_tire_leak_rear_left_only() -> None:
    series = _series(Simulator("tire-leak", seed=1, time_scale=120).frames(5.0))  # 10 model minutes
    rear_left = _values(series, "TirePressureRL")
    assert rear_left[0] - rear_left[-1] >= 8.0  # 1.2 kPa/min from t=60 s
    for tire in ("FL", "FR", "RR"):
        values = _values(series, f"TirePressure{tire}")
        assert 235.0 < min(values) and max(values) - min(values) <= 2.0, tire
    assert all(v == 0 for v in _values(series, "TirePressureLowRL"))  # not yet below 75 % of 240


def test_overheat_passes_115() -> None:
    series = _series(Simulator("overheat", seed=1, time_scale=120).frames(5.0))
    coolant = _values(series, "CoolantTemperature")
    assert 85 <= coolant[0] <= 95
    assert max(coolant) > 115
    assert max(_values(series, "CoolingFanDuty")) == 100.0


def test_low_battery_drops_below_11_8_volts() -> None:
    frames = Simulator("low-battery", seed=1, time_scale=300).frames(5.0)  # 25 model minutes
    series = _series(frames)
    volts = _values(series, "BatteryVoltage")
    assert volts[0] > 12.2 and min(volts) < 11.8
    assert {str(v) for _, v in series["IgnitionState"]} == {"Off"}
    assert "EngineSpeed" not in series  # the engine controller sleeps
    assert {v for _, v in series["LowBeam"]} == {"On"}


def test_service_due_goes_negative() -> None:
    series = _series(Simulator("service-due", seed=1, time_scale=120).frames(5.0))
    distance = _values(series, "ServiceDistance")
    assert distance[0] > 0 > distance[-1]
    assert max(_values(series, "OilLife")) <= 1.0
    assert {v for _, v in series["ServiceDueWarning"]} == {"Due"}


def test_city_drive_stops_and_door_only_at_standstill() -> None:
    frames = Simulator("city-drive", seed=1, time_scale=60).frames(10.0)
    speed = 0.0
    door_open_speeds = []
    moving_then_stopped = 0
    for frame in frames:
        decoded = DB.decode_message(frame.arbitration_id, frame.data)
        if "VehicleSpeed" in decoded:
            if speed > 5.0 and decoded["VehicleSpeed"] == 0.0:
                moving_then_stopped += 1
            speed = decoded["VehicleSpeed"]
            assert speed <= 65.0
        if str(decoded.get("DoorFR")) == "Open":
            door_open_speeds.append(speed)
    assert moving_then_stopped >= 4
    assert door_open_speeds and max(door_open_speeds) == 0.0


def test_highway_speeds() -> None:
    series = _series(Simulator("highway", seed=2, time_scale=60).frames(10.0))
    cruising = [v for t, v in series["VehicleSpeed"] if t > 1.0]  # past the on-ramp
    assert 95.0 <= min(cruising) and max(cruising) <= 133.0  # type: ignore[type-var]
    rpm = sorted(_values(series, "EngineSpeed"))
    assert max(rpm) < 5200 and 1800 < rpm[len(rpm) // 2] < 3000


def test_idle_warms_slowly_in_park() -> None:
    series = _series(Simulator("idle", seed=1, time_scale=120).frames(5.0))
    assert set(_values(series, "VehicleSpeed")) == {0.0}
    assert {str(v) for _, v in series["Gear"]} == {"P"}
    rpm = [v for t, v in series["EngineSpeed"] if t > 0.1]
    assert 700 < min(rpm) and max(rpm) < 1200  # type: ignore[type-var, operator]
    coolant = _values(series, "CoolantTemperature")
    assert coolant[-1] - coolant[0] >= 15


def _step(model: VehicleModel, seconds: float, dt: float = 0.05) -> None:
    for _ in range(round(seconds / dt)):
        model.step(dt)


def test_model_battery_rests_and_charges() -> None:
    model = VehicleModel(seed=3)
    _step(model, 5.0)
    assert 12.4 <= model.battery_voltage <= 12.7
    model.ignition = Ignition.START
    _step(model, 1.0)
    model.ignition = Ignition.RUN
    _step(model, 5.0)
    assert model.engine_running and 14.0 <= model.battery_voltage <= 14.4
    model.ignition = Ignition.OFF
    _step(model, 3600.0, dt=1.0)
    assert not model.engine_running and 12.4 <= model.battery_voltage <= 12.9


def test_model_tire_pressure_follows_temperature() -> None:
    model = VehicleModel(seed=3)
    cold = model.tire_pressure_kpa("FL")
    model.warm_start(120.0)
    assert model.tire_pressure_kpa("FL") - cold == pytest.approx(18.0, abs=4.0)
    assert model.selector == Selector.D and model.powertrain.gear == 6


def test_model_accelerates_and_shifts_up() -> None:
    model = VehicleModel(seed=3)
    model.warm_start(0.0)
    model.selector = Selector.D
    model.throttle = 0.5
    gears = set()
    for _ in range(round(15.0 / 0.02)):
        model.step(0.02)
        gears.add(model.powertrain.gear)
    assert 60.0 < model.speed_kmh < 160.0
    assert {1, 2, 3} <= gears
    assert model.odometer_km > 42_137.1
