"""Engine, torque converter and 6-speed automatic transmission of the simulated car (pure)."""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass

# Full-load torque curve of a 2.0 L turbo petrol engine: (rpm, Nm).
TORQUE_CURVE: tuple[tuple[float, float], ...] = (
    (0.0, 0.0), (800.0, 150.0), (1500.0, 215.0), (2000.0, 240.0), (4500.0, 250.0),
    (5500.0, 235.0), (6500.0, 190.0), (7000.0, 0.0),
)
ACCESSORY_KW = 1.2  # alternator, pumps and A/C drawn from the crankshaft
BRAKE_EFFICIENCY = 0.30  # fuel energy that becomes crankshaft work
CREEP_TORQUE_NM = 10.0  # idle controller torque reaching the converter at stall
AIR_DENSITY_G_PER_L = 1.2
VOLUMETRIC_EFFICIENCY = 0.85
SELECTOR_P, SELECTOR_R, SELECTOR_N, SELECTOR_D = 0, 1, 2, 3
GEAR_CODE_NEUTRAL, GEAR_CODE_REVERSE, GEAR_CODE_PARK = 0, 14, 15


@dataclass(frozen=True)
class PowertrainParams:
    """Fixed engine and transmission properties."""

    gear_ratios: tuple[float, ...] = (4.17, 2.34, 1.52, 1.14, 0.87, 0.69)
    reverse_ratio: float = 3.40
    final_drive: float = 3.36
    driveline_efficiency: float = 0.90
    displacement_l: float = 2.0
    idle_rpm: float = 750.0
    cold_idle_boost_rpm: float = 350.0  # extra idle speed with coolant at 20 degC or below
    stall_rpm: float = 2300.0
    redline_rpm: float = 6500.0
    shift_time_s: float = 0.35
    min_shift_interval_s: float = 0.8
    converter_multiplication: float = 0.9  # extra torque factor at stall


def interpolate(table: tuple[tuple[float, float], ...], x: float) -> float:
    """Piecewise-linear lookup in a table of (x, y) points sorted by x, clamped at both ends."""
    xs = [point[0] for point in table]
    i = bisect_right(xs, x)
    if i == 0:
        return table[0][1]
    if i == len(table):
        return table[-1][1]
    (x0, y0), (x1, y1) = table[i - 1], table[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class Powertrain:
    """Engine speed and torque, converter slip and automatic gear selection."""

    def __init__(self, params: PowertrainParams) -> None:
        self.params = params
        self.rpm = 0.0
        self.gear = 1
        self.gear_target = 1
        self.shift_timer = 0.0
        self._since_shift = 10.0
        self.converter_locked = False
        self.fuel_cut = False
        self.throttle = 0.0
        self.torque_net = 0.0
        self.torque_requested = 0.0
        self.torque_max = 0.0
        self.friction_torque = 0.0
        self.turbine_rpm = 0.0
        self.output_rpm = 0.0
        self.running = False

    @property
    def shifting(self) -> bool:
        """True while a gear change is in progress."""
        return self.shift_timer > 0.0

    def ratio(self, selector: int, gear: int | None = None) -> float:
        """Overall signed ratio from crankshaft to wheels; 0 in P and N."""
        p = self.params
        if selector == SELECTOR_D:
            return p.gear_ratios[(gear or self.gear) - 1] * p.final_drive
        if selector == SELECTOR_R:
            return -p.reverse_ratio * p.final_drive
        return 0.0

    def gear_code(self, selector: int) -> int:
        """Engaged gear as the DBC's TransmissionGear value (15 Park, 14 Reverse, 0 Neutral)."""
        codes = {SELECTOR_P: GEAR_CODE_PARK, SELECTOR_R: GEAR_CODE_REVERSE, SELECTOR_N: GEAR_CODE_NEUTRAL}
        return codes.get(selector, self.gear)

    def idle_rpm(self, coolant_c: float) -> float:
        """Idle speed target, raised while the engine is cold."""
        p = self.params
        coldness = min(1.0, max(0.0, (70.0 - coolant_c) / 50.0))
        return p.idle_rpm + p.cold_idle_boost_rpm * coldness

    def step(self, dt: float, selector: int, throttle: float, wheel_rpm: float, running: bool,
             cranking: bool, coolant_c: float, rng: random.Random) -> None:
        """Advance engine speed, gear selection and torque by ``dt`` seconds."""
        self.running = running
        self.throttle = throttle if running else 0.0
        self.output_rpm = wheel_rpm * self.params.final_drive
        self._step_shift(dt, selector, wheel_rpm)
        self.turbine_rpm = wheel_rpm * abs(self.ratio(selector))
        if running:
            target, tau = self._running_target_rpm(selector, coolant_c), 0.12
        else:
            target, tau = (250.0 if cranking else 0.0), 0.2
        self.rpm += (target - self.rpm) * min(1.0, dt / tau)
        if running:
            self.rpm = max(0.0, self.rpm + rng.gauss(0.0, 2.0))
        self._step_torque(selector, coolant_c)

    def _step_shift(self, dt: float, selector: int, wheel_rpm: float) -> None:
        p = self.params
        self._since_shift += dt
        if selector != SELECTOR_D:
            self.gear = self.gear_target = 1
            self.shift_timer = 0.0
            return
        if self.shift_timer > 0.0:
            self.shift_timer -= dt
            if self.shift_timer <= 0.0:
                self.shift_timer = 0.0
                self.gear = self.gear_target
            return
        if wheel_rpm < 30.0:  # below about 3.6 km/h the box is back in first
            self.gear = self.gear_target = 1
            return
        rpm_now = wheel_rpm * self.ratio(selector)
        upshift = 1700.0 + self.throttle * 2600.0 + max(0.0, self.throttle - 0.7) * 4000.0
        kickdown = max(0.0, self.throttle - 0.85) * 8000.0
        downshift = 900.0 + self.throttle * 1000.0 + kickdown
        target = self.gear
        if self.gear < len(p.gear_ratios) and rpm_now > upshift:
            target += 1
        elif self.gear > 1 and rpm_now < downshift:
            target -= 1
        if target != self.gear and self._since_shift >= p.min_shift_interval_s:
            self.gear_target = target
            self.shift_timer = p.shift_time_s
            self._since_shift = 0.0

    def _running_target_rpm(self, selector: int, coolant_c: float) -> float:
        p = self.params
        idle = self.idle_rpm(coolant_c)
        if self.ratio(selector) == 0.0:
            self.converter_locked = False
            return min(p.redline_rpm, idle + self.throttle * 3000.0)
        turbine = self.turbine_rpm
        self.converter_locked = (selector == SELECTOR_D and self.gear >= 3 and turbine > 1200.0
                                 and self.throttle < 0.6 and not self.shifting)
        if self.converter_locked:
            return max(turbine, 0.0)
        slip = idle + self.throttle * (p.stall_rpm - idle)
        fade = max(0.0, 1.0 - turbine / p.stall_rpm)
        return min(p.redline_rpm, max(turbine * 1.03, slip * fade + turbine * (1.0 - fade)))

    def _step_torque(self, selector: int, coolant_c: float) -> None:
        idle = self.idle_rpm(coolant_c)
        self.torque_max = interpolate(TORQUE_CURVE, self.rpm)
        self.friction_torque = 8.0 + 0.004 * self.rpm if self.rpm > 50.0 else 0.0
        self.torque_requested = self.throttle * self.torque_max
        in_gear = self.ratio(selector) != 0.0
        self.fuel_cut = (self.running and in_gear and self.throttle < 0.01
                         and self.rpm > idle + 300.0)
        if not self.running:
            self.torque_net = 0.0
        elif self.fuel_cut:
            self.torque_net = -self.friction_torque
        else:
            creep = CREEP_TORQUE_NM * max(0.0, 1.0 - self.turbine_rpm / idle) if in_gear else 0.0
            self.torque_net = max(self.torque_requested, self.friction_torque + creep) - self.friction_torque

    def _multiplication(self) -> float:
        if self.converter_locked:
            return 1.0
        fade = max(0.0, 1.0 - self.turbine_rpm / self.params.stall_rpm)
        return 1.0 + self.params.converter_multiplication * fade

    def wheel_torque(self, selector: int) -> float:
        """Signed torque at the driven wheels in Nm."""
        ratio = self.ratio(selector)
        if ratio == 0.0 or not self.running:
            return 0.0
        torque = self.torque_net * self._multiplication() * ratio * self.params.driveline_efficiency
        if self.shifting:
            torque *= 0.6  # torque is cut during the shift
        if self.torque_net < 0 and not self.converter_locked:
            torque *= 0.5  # an open converter passes little engine braking
        return torque

    def max_wheel_torque(self, selector: int) -> float:
        """Wheel torque at full throttle and the current engine speed, as a magnitude."""
        ratio = abs(self.ratio(selector))
        tmax = interpolate(TORQUE_CURVE, max(self.rpm, self.params.idle_rpm))
        return tmax * self._multiplication() * ratio * self.params.driveline_efficiency

    def fuel_power_kw(self, running: bool) -> float:
        """Chemical power of the fuel being burnt, in kW."""
        if not running or self.fuel_cut:
            return 0.0
        omega = self.rpm * 2 * math.pi / 60.0
        brake_kw = max(self.torque_net, 0.0) * omega / 1000.0
        friction_kw = self.friction_torque * omega / 1000.0
        return (brake_kw + friction_kw + ACCESSORY_KW) / BRAKE_EFFICIENCY

    def settle(self, selector: int, wheel_rpm: float) -> None:
        """Jump to a steady cruising state: the highest gear that keeps the engine above 1,300 rpm."""
        self.running = True
        self.gear = self.gear_target = 1
        if selector == SELECTOR_D:
            for gear in range(len(self.params.gear_ratios), 0, -1):
                if wheel_rpm * self.ratio(selector, gear) >= 1300.0 or gear == 1:
                    self.gear = self.gear_target = gear
                    break
        self.turbine_rpm = wheel_rpm * abs(self.ratio(selector))
        self.rpm = max(self.params.idle_rpm, self.turbine_rpm)
        self.converter_locked = self.gear >= 3

    # ---- air path and combustion values for the bus ------------------------------------

    def throttle_plate_pct(self) -> float:
        """Throttle plate opening: pedal plus the idle air the controller needs."""
        if not self.running:
            return 0.0
        return min(100.0, 3.0 + 97.0 * self.throttle)

    def manifold_kpa(self) -> float:
        """Intake manifold absolute pressure."""
        if not self.running:
            return 101.0 if self.rpm < 50.0 else 90.0
        return 25.0 + 0.74 * self.throttle_plate_pct()

    def mass_air_flow_gps(self) -> float:
        """Air mass flow into the engine."""
        litres_per_s = self.params.displacement_l * self.rpm / 120.0
        return litres_per_s * AIR_DENSITY_G_PER_L * self.manifold_kpa() / 101.3 * VOLUMETRIC_EFFICIENCY

    def injector_ms(self) -> float:
        """Fuel injector opening time per cycle."""
        if not self.running or self.fuel_cut:
            return 0.0
        return 0.8 + 9.0 * self.manifold_kpa() / 100.0

    def lambda_ratio(self) -> float:
        """Air-fuel equivalence ratio: lean during fuel cut, rich at full load."""
        if not self.running or self.fuel_cut:
            return 6.0 if self.rpm > 50.0 else 1.0
        return 1.0 - 0.12 * max(0.0, self.throttle - 0.8) / 0.2

    def ignition_advance_deg(self) -> float:
        """Spark advance before top dead centre."""
        if not self.running:
            return 0.0
        load = self.manifold_kpa() / 100.0
        return max(5.0, min(40.0, 8.0 + 0.005 * self.rpm * (1.0 - 0.6 * load)))
