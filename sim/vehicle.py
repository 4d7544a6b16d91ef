"""A physically plausible passenger car: a pure model advanced by ``step(dt)``, no I/O, no clock.

Inputs (throttle, brake, selector, ignition, steering, doors, lights, buttons) are plain
attributes that a scenario script or a test sets; ``step(dt)`` integrates the physics with
explicit Euler steps. Random sensor noise comes only from ``random.Random(seed)``, so a
model built with the same seed and fed the same inputs produces the same states.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import IntEnum

from carlink_sim.navigation import Navigation
from carlink_sim.powertrain import Powertrain, PowertrainParams
from carlink_sim.systems import Battery, ThermalSystem, Tire

GRAVITY = 9.81
AIR_DENSITY = 1.2
BRAKE_MAX_DECEL_G = 1.0
ROTATING_MASS_FACTOR = 1.05  # wheels, driveline and engine inertia as extra equivalent mass
CRANK_TIME_S = 0.8  # starter engaged this long before the engine fires
AUTO_LOCK_KMH = 15.0
WHEEL_PULSES_PER_REV = 48
TIRE_POSITIONS = ("FL", "FR", "RL", "RR")
DOORS = ("DoorFL", "DoorFR", "DoorRL", "DoorRR", "Trunk", "Hood")
BUTTONS = ("PushToTalk", "VolumeUp", "VolumeDown", "NextTrack", "PreviousTrack", "Mute")

# Electrical loads in amperes by power mode; see Battery for the electrical model.
LOAD_PARASITIC_A = 0.03
LOAD_ACCESSORY_A = 8.0
LOAD_RUN_A = 14.0
LOAD_HEADLIGHTS_A = 9.5
LOAD_STARTER_A = 150.0


class Ignition(IntEnum):
    """Ignition switch / power mode, values as in the DBC's IgnitionState."""

    OFF = 0
    ACCESSORY = 1
    RUN = 2
    START = 3


class Selector(IntEnum):
    """Selector lever position, values as in the DBC's Gear."""

    P = 0
    R = 1
    N = 2
    D = 3


@dataclass(frozen=True)
class ChassisParams:
    """Fixed body and chassis properties of the simulated car."""

    mass_kg: float = 1450.0
    drag_area_m2: float = 0.65  # drag coefficient times frontal area
    rolling_resistance: float = 0.011
    wheel_radius_m: float = 0.32
    wheelbase_m: float = 2.70
    track_m: float = 1.58
    steering_ratio: float = 15.0
    understeer_s2_m2: float = 0.0025
    tank_l: float = 55.0
    placard_kpa: float = 240.0
    oil_change_interval_km: float = 15000.0


def clamp(value: float, low: float, high: float) -> float:
    """Limit value to the closed interval [low, high]."""
    return max(low, min(value, high))


class VehicleModel:
    """Physically plausible state of one car, advanced by :meth:`step`."""

    def __init__(self, seed: int = 0, ambient_c: float = 20.0, chassis: ChassisParams | None = None,
                 powertrain: PowertrainParams | None = None,
                 start: tuple[float, float] | None = None) -> None:
        """``start``: (latitude, longitude) in degrees; default sim.navigation.DEFAULT_START."""
        self.chassis = chassis or ChassisParams()
        self.rng = random.Random(seed)
        self.time = 0.0
        self.ambient_c = ambient_c
        self._init_inputs()
        self._init_state(powertrain or PowertrainParams())
        self.nav = Navigation.seeded(seed, start)

    def _init_inputs(self) -> None:
        """Driver and body inputs that scenarios and tests set."""
        self.ignition = Ignition.OFF
        self.selector = Selector.P
        self.throttle = 0.0
        self.brake = 0.0
        self.parking_brake = False
        self.steering_target_deg = 0.0
        self.headlights = False
        self.high_beam = False
        self.turn_signal = 0  # -1 left, 0 off, +1 right
        self.hazard = False
        self.cruise_main = False
        self.cruise_active = False
        self.cruise_set_kmh = 0.0
        self.passenger_present = False
        self.climate_setpoint_c = 21.0
        self.doors = {name: False for name in DOORS}
        self.doors_locked = False
        self._button_release: dict[str, float] = {}
        # Trouble codes the simulated OBD-II ECUs report (sim/obd_bus.py), by ECU name
        # ("engine", "transmission"); scenarios set them. A stored code lights the MIL.
        self.stored_dtcs: dict[str, tuple[str, ...]] = {}
        self.pending_dtcs: dict[str, tuple[str, ...]] = {}

    def _init_state(self, powertrain: PowertrainParams) -> None:
        """Physical state, integrated by :meth:`step`."""
        ambient_c = self.ambient_c
        self.powertrain = Powertrain(powertrain)
        self.thermal = ThermalSystem(ambient_c)
        self.battery = Battery()
        self.tires = {pos: Tire(cold_kpa=self.chassis.placard_kpa, temperature_c=ambient_c)
                      for pos in TIRE_POSITIONS}
        self.speed_mps = 0.0
        self.accel_mps2 = 0.0
        self.steering_deg = 0.0
        self.steering_rate_dps = 0.0
        self.yaw_rate_rps = 0.0
        self.lateral_accel = 0.0
        self.vertical_accel = GRAVITY
        self.pitch_rate_dps = 0.0
        self.wheel_kmh = {pos: 0.0 for pos in TIRE_POSITIONS}
        self.wheel_revs = {pos: 0.0 for pos in TIRE_POSITIONS}
        self.engine_running = False
        self.cranking = False
        self._crank_time = 0.0
        self.fuel_l = 0.6 * self.chassis.tank_l
        self.fuel_used_l = 0.0
        self.fuel_rate_lph = 0.0
        self.odometer_km = 42_137.0
        self.trip_km = 0.0
        self.oil_life_pct = 62.0
        self.service_distance_km = 5_600.0
        self.service_days = 140.0
        self.cabin_c = ambient_c

    # ---- convenience views -------------------------------------------------------------

    @property
    def speed_kmh(self) -> float:
        """Speed over ground in km/h (always positive)."""
        return abs(self.speed_mps) * 3.6

    @property
    def engine_rpm(self) -> float:
        """Crankshaft speed."""
        return self.powertrain.rpm

    @property
    def coolant_c(self) -> float:
        """Engine coolant temperature."""
        return self.thermal.coolant_c

    @property
    def battery_voltage(self) -> float:
        """12 V battery terminal voltage."""
        return self.battery.voltage

    def tire_pressure_kpa(self, position: str) -> float:
        """Gauge pressure of one tire (FL, FR, RL, RR)."""
        return self.tires[position].pressure_kpa

    def button_pressed(self, name: str) -> bool:
        """True while a steering wheel button is held."""
        return self.time < self._button_release.get(name, -1.0)

    def press_button(self, name: str, hold: float = 0.3) -> None:
        """Press a steering wheel button for ``hold`` seconds of model time."""
        if name not in BUTTONS:
            raise ValueError(f"unknown button {name!r}; known: {', '.join(BUTTONS)}")
        self._button_release[name] = self.time + hold

    def set_door(self, name: str, is_open: bool) -> None:
        """Open or close a door, the trunk or the hood; opening unlocks the car."""
        if name not in self.doors:
            raise ValueError(f"unknown door {name!r}; known: {', '.join(DOORS)}")
        self.doors[name] = is_open
        if is_open:
            self.doors_locked = False

    def resistance_force(self) -> float:
        """Aerodynamic drag plus rolling resistance at the current speed, in newtons."""
        c = self.chassis
        v = self.speed_mps
        return 0.5 * AIR_DENSITY * c.drag_area_m2 * v * abs(v) + c.rolling_resistance * c.mass_kg * GRAVITY

    def max_drive_force(self) -> float:
        """Tractive force at full throttle at the current engine speed, in newtons."""
        return self.powertrain.max_wheel_torque(self.selector) / self.chassis.wheel_radius_m

    def max_brake_force(self) -> float:
        """Braking force with the pedal fully pressed, in newtons."""
        return BRAKE_MAX_DECEL_G * self.chassis.mass_kg * GRAVITY

    @property
    def effective_mass(self) -> float:
        """Mass including the rotating parts' equivalent mass."""
        return self.chassis.mass_kg * ROTATING_MASS_FACTOR

    # ---- scenario helpers --------------------------------------------------------------

    def warm_start(self, speed_kmh: float = 0.0) -> None:
        """Put the car in a warmed-up, running, driving state at ``speed_kmh`` (D selected)."""
        self.ignition = Ignition.RUN
        self.engine_running = True
        self.selector = Selector.D if speed_kmh > 0 else Selector.P
        self.speed_mps = speed_kmh / 3.6
        self.powertrain.settle(self.selector, self.wheel_rpm())
        self.thermal.settle_warm()
        self.battery.settle_charging()
        self.doors_locked = speed_kmh > AUTO_LOCK_KMH
        for tire in self.tires.values():
            tire.temperature_c = tire.equilibrium_c(self.ambient_c, speed_kmh)
        self.cabin_c = self.climate_setpoint_c

    def wheel_rpm(self) -> float:
        """Average wheel speed in revolutions per minute."""
        return abs(self.speed_mps) / self.chassis.wheel_radius_m * 60.0 / (2 * math.pi)

    # ---- integration -------------------------------------------------------------------

    def step(self, dt: float) -> None:
        """Advance the model by ``dt`` seconds of simulated time."""
        self.time += dt
        self._step_ignition(dt)
        self.powertrain.step(dt, self.selector, self.throttle, self.wheel_rpm(), self.engine_running,
                             self.cranking, self.thermal.coolant_c, self.rng)
        self._step_motion(dt)
        self._step_steering(dt)
        self.nav.step(dt, self.speed_mps, self.yaw_rate_rps)
        self._step_wheels(dt)
        power_kw = self.powertrain.fuel_power_kw(self.engine_running)
        self._step_fuel(dt, power_kw)
        self.thermal.step(dt, power_kw, self.speed_kmh, self.engine_running, self.ambient_c)
        self.battery.step(dt, self._electrical_load_a(), self._alternator_on(), self.rng)
        for tire in self.tires.values():
            tire.step(dt, self.ambient_c, self.speed_kmh)
        self._step_body(dt)

    def _step_ignition(self, dt: float) -> None:
        if self.ignition == Ignition.START and self.fuel_l > 0:
            self.cranking = not self.engine_running
            self._crank_time += dt
            if self._crank_time >= CRANK_TIME_S:
                self.engine_running = True
                self.cranking = False
        else:
            self.cranking = False
            self._crank_time = 0.0
            if self.ignition < Ignition.RUN or self.fuel_l <= 0:
                self.engine_running = False

    def _step_motion(self, dt: float) -> None:
        c = self.chassis
        v = self.speed_mps
        drive = self.powertrain.wheel_torque(self.selector) / c.wheel_radius_m
        hold = self.brake * self.max_brake_force()
        if self.parking_brake or self.selector == Selector.P:
            hold += self.max_brake_force()
        rolling = c.rolling_resistance * c.mass_kg * GRAVITY
        if abs(v) < 1e-3:
            if abs(drive) <= hold + rolling:
                self.speed_mps = self.accel_mps2 = self.pitch_rate_dps = 0.0
                return
            net = drive - math.copysign(hold + rolling, drive)
        else:
            drag = 0.5 * AIR_DENSITY * c.drag_area_m2 * v * v
            net = drive - math.copysign(drag + rolling + hold, v)
        accel = net / self.effective_mass
        new_v = v + accel * dt
        if v != 0.0 and new_v * v < 0:
            new_v = 0.0  # brakes and resistance stop the car; they cannot reverse it
        measured = (new_v - v) / dt
        # The body pitches about 0.3 degrees per m/s^2 of longitudinal acceleration.
        self.pitch_rate_dps = clamp(-0.3 * (measured - self.accel_mps2) / dt, -20.0, 20.0)
        self.accel_mps2 = measured
        self.speed_mps = new_v

    def _step_steering(self, dt: float) -> None:
        c = self.chassis
        rate = clamp((self.steering_target_deg - self.steering_deg) / 0.3, -400.0, 400.0)
        self.steering_deg += rate * dt
        self.steering_rate_dps = rate
        road_wheel = math.radians(self.steering_deg / c.steering_ratio)
        v = self.speed_mps
        self.yaw_rate_rps = v * math.tan(road_wheel) / (c.wheelbase_m * (1 + c.understeer_s2_m2 * v * v))
        self.lateral_accel = v * self.yaw_rate_rps
        bump = min(1.0, abs(v) / 10.0)
        self.vertical_accel = GRAVITY + self.rng.gauss(0.0, 0.15) * bump

    def _step_wheels(self, dt: float) -> None:
        c = self.chassis
        base = abs(self.speed_mps) * 3.6
        spread = self.yaw_rate_rps * c.track_m / 2 * 3.6
        for pos in TIRE_POSITIONS:
            side = -1.0 if pos.endswith("L") else 1.0
            kmh = max(0.0, base + side * spread)
            if kmh > 0.3:
                kmh = max(0.0, kmh + self.rng.gauss(0.0, 0.02))
            else:
                kmh = 0.0  # wheel speed sensors cannot resolve a crawl
            self.wheel_kmh[pos] = kmh
            self.wheel_revs[pos] += kmh / 3.6 / (2 * math.pi * c.wheel_radius_m) * dt

    def _step_fuel(self, dt: float, fuel_power_kw: float) -> None:
        grams_per_s = fuel_power_kw / 43.0  # petrol: about 43 kJ per gram
        litres = grams_per_s * dt / 745.0  # petrol density about 745 g/L
        self.fuel_rate_lph = grams_per_s * 3600.0 / 745.0
        self.fuel_l = max(0.0, self.fuel_l - litres)
        self.fuel_used_l += litres
        km = abs(self.speed_mps) * dt / 1000.0
        self.odometer_km += km
        self.trip_km += km
        self.oil_life_pct = max(0.0, self.oil_life_pct - km / self.chassis.oil_change_interval_km * 100.0)
        self.service_distance_km -= km
        self.service_days -= dt / 86400.0

    def _electrical_load_a(self) -> float:
        load = LOAD_PARASITIC_A + self.battery.extra_drain_a
        if self.ignition >= Ignition.ACCESSORY:
            load += LOAD_ACCESSORY_A
        if self.ignition >= Ignition.RUN:
            load += LOAD_RUN_A
        if self.headlights:
            load += LOAD_HEADLIGHTS_A
        if self.cranking:
            load += LOAD_STARTER_A
        return load

    def _alternator_on(self) -> bool:
        return self.engine_running and self.powertrain.rpm > 600

    def _step_body(self, dt: float) -> None:
        if self.speed_kmh > AUTO_LOCK_KMH and not any(self.doors.values()):
            self.doors_locked = True
        if self.selector == Selector.P and self.speed_mps == 0.0 and self.ignition == Ignition.OFF:
            self.doors_locked = self.doors_locked and not any(self.doors.values())
        hvac_on = self.ignition >= Ignition.RUN
        target = self.climate_setpoint_c if hvac_on else self.ambient_c
        self.cabin_c += (target - self.cabin_c) * min(1.0, dt / (240.0 if hvac_on else 1800.0))

    # ---- derived outputs for the bus ---------------------------------------------------

    def wheel_pulses(self, position: str) -> int:
        """Rolling wheel pulse count of one wheel (48 teeth per revolution, wraps at 256)."""
        return int(self.wheel_revs[position] * WHEEL_PULSES_PER_REV) % 256

    def turn_lamp_lit(self, side: int) -> bool:
        """True while the left (-1) or right (+1) indicator lamp is lit (1.5 Hz flash)."""
        flashing = self.hazard or self.turn_signal == side
        return flashing and int(self.time * 3.0) % 2 == 0

    def instant_economy_l100(self) -> float:
        """Instantaneous consumption in L/100 km, capped at 99.9 at a crawl."""
        if self.speed_kmh < 3.0:
            return 99.9
        return min(99.9, self.fuel_rate_lph / self.speed_kmh * 100.0)

    def average_economy_l100(self) -> float:
        """Average consumption since the trip was reset."""
        if self.trip_km < 0.5:
            return 0.0
        return min(99.9, self.fuel_used_l / self.trip_km * 100.0)

    def fuel_range_km(self) -> float:
        """Range on the remaining fuel at the trip average (7.5 L/100 km before 5 km)."""
        average = self.average_economy_l100() if self.trip_km >= 5.0 else 7.5
        return self.fuel_l / max(average, 3.0) * 100.0
