"""Named driving scenarios: scripted driver inputs and injected faults over simulated (model) time.

A :class:`Scenario` is a recipe; ``scenario.start(model, seed)`` builds a :class:`Script` for one
run: a speed plan, a steering plan and timed events, all drawn up front from a seeded
``random.Random``, so the same seed always gives the same drive. Call ``script.update(model, dt)``
before each ``model.step(dt)``. After a scenario's natural length the last inputs simply persist.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from carlink_sim.vehicle import Ignition, Selector, VehicleModel, clamp

Action = Callable[[VehicleModel], None]
Continuous = Callable[[VehicleModel], None]
COAST_FORCE_N = 300.0  # decelerations smaller than engine braking need no brake pedal
STOP_HOLD_BRAKE = 0.35


class Driver:
    """Follows a target speed with throttle and brake like a calm human driver."""

    ACCEL_LIMIT = 2.0  # m/s^2 the driver is happy to accelerate at in town; less when faster
    DECEL_LIMIT = 2.0  # m/s^2 braking for a planned stop
    EASE_OFF_LIMIT = 0.8  # m/s^2 when only slowing down to a lower speed

    def __init__(self) -> None:
        self.v_ref: float | None = None

    def control(self, model: VehicleModel, target_mps: float, dt: float) -> None:
        """Set ``model.throttle`` and ``model.brake`` for one step toward ``target_mps``."""
        v = model.speed_mps
        if self.v_ref is None:
            self.v_ref = v  # take over at the current speed
        if not model.engine_running or model.selector not in (Selector.D, Selector.R):
            throttle, brake = 0.0, (0.4 if v > 0.3 else 0.0)
            self.v_ref = v
        elif target_mps <= 0.0 and v < 1.5:
            throttle, brake = 0.0, STOP_HOLD_BRAKE
            self.v_ref = 0.0
        else:
            throttle, brake = self._follow(model, target_mps, dt)
        wobble = 1.0 + 0.03 * math.sin(model.time * 0.9) * math.sin(model.time * 0.37)
        model.throttle += (clamp(throttle * wobble, 0.0, 1.0) - model.throttle) * min(1.0, dt / 0.3)
        model.brake += (brake - model.brake) * min(1.0, dt / 0.2)

    def _follow(self, model: VehicleModel, target_mps: float, dt: float) -> tuple[float, float]:
        v = model.speed_mps
        previous = self.v_ref if self.v_ref is not None else v
        self.v_ref = previous
        if target_mps > self.v_ref:
            gentle = self.ACCEL_LIMIT * clamp(1.0 - (v - 8.0) / 30.0, 0.3, 1.0)  # 2.0 to 0.6 m/s^2
            self.v_ref = min(target_mps, self.v_ref + gentle * dt, v + 2.0)
        else:
            limit = self.DECEL_LIMIT if target_mps <= 0.0 else self.EASE_OFF_LIMIT
            self.v_ref = max(target_mps, self.v_ref - limit * dt)
        slope = (self.v_ref - previous) / dt
        accel = clamp(slope + 0.8 * (self.v_ref - v), -4.5, 3.0)
        force = model.effective_mass * accel + model.resistance_force()
        if force >= 0.0:
            return clamp(force / max(model.max_drive_force(), 1.0), 0.0, 1.0), 0.0
        return 0.0, clamp((-force - COAST_FORCE_N) / model.max_brake_force(), 0.0, 1.0)


def _lookup(times: list[float], values: list[float], t: float) -> float:
    i = bisect_right(times, t)
    return values[i - 1] if i else values[0]


class Script:
    """One run of a scenario: speed and steering plans plus timed events for one model."""

    def __init__(self, speeds: list[tuple[float, float]], steers: list[tuple[float, float]],
                 events: list[tuple[float, Action]], continuous: list[Continuous]) -> None:
        speeds = sorted(speeds, key=lambda p: p[0])
        steers = sorted(steers, key=lambda p: p[0])
        self._speed_t = [p[0] for p in speeds]
        self._speed_v = [p[1] for p in speeds]
        self._steer_t = [p[0] for p in steers]
        self._steer_v = [p[1] for p in steers]
        self._events = sorted(events, key=lambda e: e[0])
        self._next_event = 0
        self._continuous = continuous
        self.driver = Driver()

    def target_kmh(self, t: float) -> float:
        """Planned speed at model time ``t``."""
        return _lookup(self._speed_t, self._speed_v, t)

    def apply_events(self, model: VehicleModel) -> None:
        """Run the events that are due at the model's current time."""
        while self._next_event < len(self._events) and self._events[self._next_event][0] <= model.time:
            self._events[self._next_event][1](model)
            self._next_event += 1

    def update(self, model: VehicleModel, dt: float) -> None:
        """Apply due events and set the driver inputs for the next ``dt`` seconds."""
        t = model.time
        self.apply_events(model)
        for update in self._continuous:
            update(model)
        wander = (2.0 * math.sin(0.31 * t) + 1.2 * math.sin(0.83 * t + 1.0)) * min(1.0, model.speed_mps / 5.0)
        model.steering_target_deg = _lookup(self._steer_t, self._steer_v, t) + wander
        self.driver.control(model, self.target_kmh(t) / 3.6, dt)


@dataclass
class Plan:
    """Accumulates a speed plan, a steering plan and events while a scenario is built."""

    speeds: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 0.0)])
    steers: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 0.0)])
    events: list[tuple[float, Action]] = field(default_factory=list)
    continuous: list[Continuous] = field(default_factory=list)

    def speed(self, t: float, kmh: float) -> None:
        """From model time ``t`` on, aim for ``kmh``."""
        self.speeds.append((t, kmh))

    def at(self, t: float, action: Action) -> None:
        """Run ``action(model)`` once at model time ``t``."""
        self.events.append((t, action))

    def set(self, t: float, attribute: str, value: object) -> None:
        """Set a model attribute at model time ``t``."""
        self.at(t, lambda model: setattr(model, attribute, value))

    def door(self, t: float, name: str, seconds: float) -> None:
        """Open a door at ``t`` and close it ``seconds`` later."""
        self.at(t, lambda model: model.set_door(name, True))
        self.at(t + seconds, lambda model: model.set_door(name, False))

    def crank(self, t: float) -> None:
        """Starter engaged at ``t`` (all ECUs awake); the engine fires and the key returns to Run."""
        self.set(t, "ignition", Ignition.START)
        self.set(t + 1.2, "ignition", Ignition.RUN)

    def turn(self, t: float, side: int) -> None:
        """Indicate, then turn at a junction: side -1 is left, +1 right."""
        self.set(t - 4.0, "turn_signal", side)
        self.steers.append((t, -300.0 * side))  # positive steering angle is to the left
        self.steers.append((t + 4.0, 0.0))
        self.set(t + 5.0, "turn_signal", 0)

    def lane_change(self, t: float, side: int) -> None:
        """Indicate and move over one lane: side -1 is left, +1 right."""
        self.set(t - 3.0, "turn_signal", side)
        self.steers.extend([(t, -8.0 * side), (t + 1.5, 8.0 * side), (t + 3.0, 0.0)])
        self.set(t + 3.5, "turn_signal", 0)

    def park(self, t: float) -> None:
        """Stop, select P, switch off and let the driver out, starting at ``t``."""
        self.speed(t, 0.0)
        self.set(t + 10.0, "selector", Selector.P)
        self.set(t + 12.0, "ignition", Ignition.OFF)
        self.door(t + 15.0, "DoorFL", 4.0)

    def script(self) -> Script:
        """Freeze the plan into a :class:`Script`."""
        return Script(self.speeds, self.steers, self.events, self.continuous)


@dataclass(frozen=True)
class Scenario:
    """A named, reproducible drive: builds a :class:`Script` for a model and a seed."""

    name: str
    description: str
    duration_s: float
    build: Callable[[VehicleModel, random.Random, float], Plan]

    def start(self, model: VehicleModel, seed: int) -> Script:
        """Prepare ``model`` and return the script that drives it."""
        rng = random.Random(f"{self.name}:{seed}")
        script = self.build(model, rng, self.duration_s).script()
        script.apply_events(model)  # inputs scheduled at t=0 hold from the very first frame
        return script


def _build_city(model: VehicleModel, rng: random.Random, length: float) -> Plan:
    plan = Plan()
    model.passenger_present = True
    plan.crank(0.0)  # the driver has just turned the key: traffic from the first frame
    plan.set(3.0, "selector", Selector.D)
    plan.at(420.0, lambda m: m.press_button("VolumeUp", 0.4))
    t, stops = 5.0, 0
    while t < length - 90.0:
        cruise = float(rng.randrange(30, 61, 5))
        plan.speed(t, cruise)
        leg = rng.uniform(25.0, 75.0)
        if leg > 45.0:
            plan.speed(t + leg / 2, max(25.0, cruise - rng.uniform(5.0, 15.0)))
        t += leg
        plan.speed(t, 0.0)  # red light ahead
        stops += 1
        wait = rng.uniform(12.0, 40.0)
        if stops == 3:  # the passenger gets out at the third stop
            wait = max(wait, 30.0)
            plan.door(t + 12.0, "DoorFR", 7.0)
            plan.set(t + 14.0, "passenger_present", False)
        t += 8.0 + wait  # about 8 s to brake to a stop, then the light
        if rng.random() < 0.4:
            plan.speed(t, 18.0)
            plan.turn(t + 1.0, rng.choice((-1, 1)))
            t += 7.0
    plan.park(t)
    return plan


def _build_highway(model: VehicleModel, rng: random.Random, length: float) -> Plan:
    model.warm_start(50.0)  # on the on-ramp, engine warm
    plan = Plan(speeds=[(0.0, 50.0)])
    plan.speed(5.0, 105.0)
    plan.lane_change(25.0, -1)
    plan.set(40.0, "cruise_main", True)
    t = 45.0
    while t < length - 120.0:
        kmh = float(rng.randrange(100, 131, 5))
        plan.speed(t, kmh)
        plan.set(t, "cruise_active", False)
        plan.set(t + 20.0, "cruise_set_kmh", kmh)
        plan.set(t + 20.0, "cruise_active", True)
        hold = rng.uniform(60.0, 180.0)
        if rng.random() < 0.5:
            plan.lane_change(t + hold / 2, rng.choice((-1, 1)))
        t += hold
    plan.set(t, "cruise_active", False)
    plan.lane_change(t + 5.0, 1)
    plan.speed(t + 10.0, 60.0)  # exit ramp to a rest area
    plan.speed(t + 50.0, 30.0)
    plan.park(t + 80.0)
    return plan


def _build_cruise(plan: Plan, rng: random.Random, length: float, low: int, high: int) -> None:
    t = 0.0
    while t < length:
        plan.speed(t, float(rng.randrange(low, high + 1, 5)))
        t += rng.uniform(90.0, 240.0)


def _build_tire_leak(model: VehicleModel, rng: random.Random, length: float) -> Plan:
    model.warm_start(90.0)
    plan = Plan(speeds=[(0.0, 90.0)])
    _build_cruise(plan, rng, length, 85, 95)
    plan.set(30.0, "headlights", True)

    def puncture(m: VehicleModel) -> None:
        """A nail in the rear left tire."""
        m.tires["RL"].leak_kpa_per_min = 1.2

    plan.at(60.0, puncture)
    return plan


def _build_overheat(model: VehicleModel, rng: random.Random, length: float) -> Plan:
    model.warm_start(80.0)
    plan = Plan(speeds=[(0.0, 80.0)])
    _build_cruise(plan, rng, length, 70, 100)

    def failing_cooling(m: VehicleModel) -> None:
        """A coolant leak and a dying fan: the radiator's effect fades over 4 minutes from t=120 s."""
        fade = clamp((m.time - 120.0) / 240.0, 0.0, 1.0)
        m.thermal.radiator_efficiency = 1.0 - 0.98 * fade

    plan.continuous.append(failing_cooling)
    return plan


def _build_low_battery(model: VehicleModel, rng: random.Random, length: float) -> Plan:
    model.warm_start(0.0)
    model.ignition = Ignition.OFF
    model.engine_running = False
    model.battery.capacity_ah = 18.0  # an old battery with most of its capacity gone
    model.battery.soc = 0.5
    model.headlights = True  # left on by the driver
    plan = Plan()
    plan.door(2.0, "DoorFL", 3.0)
    plan.set(9.0, "doors_locked", True)
    return plan


def _build_service_due(model: VehicleModel, rng: random.Random, length: float) -> Plan:
    model.warm_start(100.0)
    model.oil_life_pct = 0.25
    model.service_distance_km = 12.0
    model.service_days = 3.0
    model.odometer_km = 74_980.0
    plan = Plan(speeds=[(0.0, 100.0)])
    _build_cruise(plan, rng, length, 90, 120)
    return plan


def _engine_dtcs(stored: tuple[str, ...], pending: tuple[str, ...]) -> Action:
    """Set the engine ECU's stored and pending trouble codes (sim/obd_bus.py reports them)."""
    def action(model: VehicleModel) -> None:
        model.stored_dtcs = {**model.stored_dtcs, "engine": stored}
        model.pending_dtcs = {**model.pending_dtcs, "engine": pending}
    return action


def _build_dtc(model: VehicleModel, rng: random.Random, length: float) -> Plan:
    model.warm_start(60.0)
    plan = Plan(speeds=[(0.0, 60.0)])
    _build_cruise(plan, rng, length, 50, 80)
    plan.at(30.0, _engine_dtcs((), ("P0301",)))             # a misfire seen once: pending
    plan.at(90.0, _engine_dtcs(("P0301",), ()))             # confirmed: stored, MIL on
    plan.at(300.0, _engine_dtcs(("P0301",), ("P0420",)))    # the catalyst suffers
    plan.at(420.0, _engine_dtcs(("P0301", "P0420"), ()))
    return plan


def _build_idle(model: VehicleModel, rng: random.Random, length: float) -> Plan:
    plan = Plan()
    plan.crank(0.0)
    return plan


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("city-drive", "cold start, stop-and-go town driving at 0-60 km/h; a passenger gets out at a light",
                 1800.0, _build_city),
        Scenario("highway", "from the on-ramp: motorway at 100-130 km/h, cruise control, lane changes",
                 1800.0, _build_highway),
        Scenario("tire-leak", "steady 90 km/h; the rear left tire loses 1.2 kPa per minute from t=60 s",
                 1800.0, _build_tire_leak),
        Scenario("overheat", "country road; the cooling fails from t=120 s and coolant passes 115 degC",
                 1200.0, _build_overheat),
        Scenario("low-battery", "parked with the ignition off and headlights left on; the old battery "
                 "drops below 11.8 V", 1800.0, _build_low_battery),
        Scenario("service-due", "motorway with oil life near 0 %; the service distance goes negative",
                 1800.0, _build_service_due),
        Scenario("idle", "cold start, then idling in P", 1800.0, _build_idle),
        Scenario("dtc", "country road; the engine ECU reports misfire P0301 (stored at 90 s, MIL on), "
                 "then catalyst P0420 (stored at 420 s); OBD-II ECUs needed (--obd)", 900.0, _build_dtc),
    )
}


def get_scenario(name: str) -> Scenario:
    """Look up a scenario by name; ``KeyError`` names the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}") from None
