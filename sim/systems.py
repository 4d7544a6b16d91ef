"""Cooling, 12 V battery and tire models of the simulated car (pure, lumped-parameter)."""

from __future__ import annotations

import random
from dataclasses import dataclass

STANDARD_ATMOSPHERE_KPA = 101.325
KELVIN = 273.15
TIRE_REFERENCE_C = 20.0  # cold inflation pressures are quoted at this temperature
TIRE_TIME_CONSTANT_S = 480.0
COOLANT_HEAT_SHARE = 0.30  # fraction of the fuel power that ends up in the coolant
COOLANT_CAPACITY_KJ_PER_K = 60.0  # block, head and about 7 L of coolant
BASE_LOSS_KW_PER_K = 0.02  # convection from the block with the thermostat shut
THERMOSTAT_OPEN_C, THERMOSTAT_FULL_C = 89.0, 99.0
FAN_ON_C, FAN_FULL_C = 96.0, 102.0
BOILING_C = 130.0  # pressurised coolant boils over here; the cap vents the excess
ALTERNATOR_V = 14.2
SURFACE_CHARGE_V = 0.35  # extra open-circuit voltage right after charging
SURFACE_CHARGE_TAU_S = 600.0


class ThermalSystem:
    """Coolant, oil, intake air and transmission fluid temperatures."""

    def __init__(self, ambient_c: float) -> None:
        self.coolant_c = ambient_c
        self.oil_c = ambient_c
        self.intake_c = ambient_c
        self.trans_oil_c = ambient_c
        self.fan_duty = 0.0
        self.thermostat_open = 0.0
        self.radiator_efficiency = 1.0  # scenarios lower this to inject a cooling fault

    def settle_warm(self) -> None:
        """Jump to fully warmed-up temperatures."""
        self.coolant_c = 89.0
        self.oil_c = 95.0
        self.trans_oil_c = 80.0
        self.intake_c = max(self.intake_c, 28.0)

    def step(self, dt: float, fuel_kw: float, speed_kmh: float, running: bool, ambient_c: float) -> None:
        """Advance all temperatures by ``dt`` seconds."""
        heat_kw = COOLANT_HEAT_SHARE * fuel_kw
        self.thermostat_open = min(1.0, max(0.0, (self.coolant_c - THERMOSTAT_OPEN_C)
                                            / (THERMOSTAT_FULL_C - THERMOSTAT_OPEN_C)))
        self.fan_duty = min(1.0, max(0.0, (self.coolant_c - FAN_ON_C) / (FAN_FULL_C - FAN_ON_C))) if running else 0.0
        airflow = min(1.2, 0.35 + 0.03 * speed_kmh) + 0.6 * self.fan_duty
        radiator = airflow * self.thermostat_open * self.radiator_efficiency if running else 0.0
        loss_kw = (BASE_LOSS_KW_PER_K + radiator) * (self.coolant_c - ambient_c)
        self.coolant_c = min(BOILING_C, self.coolant_c + (heat_kw - loss_kw) * dt / COOLANT_CAPACITY_KJ_PER_K)
        if running:
            oil_target, oil_tau = self.coolant_c + 0.08 * fuel_kw, 240.0
            trans_target = self.coolant_c - 8.0 + 0.05 * fuel_kw
            soak = max(0.0, 1.0 - speed_kmh / 40.0)
            intake_target = ambient_c + 3.0 + 0.15 * (self.coolant_c - ambient_c) * soak
        else:
            oil_target, oil_tau = self.coolant_c, 1200.0
            trans_target = self.coolant_c
            intake_target = ambient_c + 0.3 * (self.coolant_c - ambient_c)
        self.oil_c += (oil_target - self.oil_c) * min(1.0, dt / oil_tau)
        self.trans_oil_c += (trans_target - self.trans_oil_c) * min(1.0, dt / 600.0)
        self.intake_c += (intake_target - self.intake_c) * min(1.0, dt / 60.0)


class Battery:
    """12 V lead-acid battery: open-circuit voltage from state of charge, internal resistance,
    surface charge after charging, alternator regulation while the engine runs."""

    def __init__(self, capacity_ah: float = 60.0, soc: float = 0.85) -> None:
        self.capacity_ah = capacity_ah
        self.soc = soc
        self.surface_v = 0.0
        self.extra_drain_a = 0.0  # a fault such as a module that never sleeps
        self.resistance_base_ohm = 0.012
        self.current_a = 0.0
        self.voltage = self.open_circuit_v()

    def open_circuit_v(self) -> float:
        """Resting voltage for the state of charge, with the knee below 20 %."""
        return 11.7 + 0.95 * self.soc - 1.5 * max(0.0, 0.2 - self.soc)

    def internal_resistance(self) -> float:
        """Internal resistance in ohms; rises as the battery discharges."""
        return self.resistance_base_ohm + 0.02 * (1.0 - self.soc)

    def settle_charging(self) -> None:
        """Jump to a steady state of charging with the engine running."""
        self.surface_v = SURFACE_CHARGE_V
        self.voltage = ALTERNATOR_V

    def step(self, dt: float, load_a: float, alternator_on: bool, rng: random.Random) -> None:
        """Advance charge and terminal voltage by ``dt`` seconds."""
        resistance = self.internal_resistance()
        if alternator_on:
            headroom = ALTERNATOR_V - self.open_circuit_v() - self.surface_v
            self.current_a = min(40.0, max(0.0, headroom / (resistance + 0.12)))
            self.surface_v += (SURFACE_CHARGE_V - self.surface_v) * min(1.0, dt / 300.0)
            self.voltage = ALTERNATOR_V + rng.gauss(0.0, 0.02)
        else:
            self.current_a = -load_a
            self.surface_v -= self.surface_v * min(1.0, dt / SURFACE_CHARGE_TAU_S)
            self.voltage = (self.open_circuit_v() + self.surface_v - load_a * resistance
                            + rng.gauss(0.0, 0.004))
        self.soc = min(1.0, max(0.0, self.soc + self.current_a * dt / 3600.0 / self.capacity_ah))


@dataclass
class Tire:
    """One tire: the air it holds (as gauge pressure at 20 degC), its temperature and any leak."""

    cold_kpa: float = 240.0
    temperature_c: float = 20.0
    leak_kpa_per_min: float = 0.0
    sensor_battery_low: bool = False

    @property
    def pressure_kpa(self) -> float:
        """Gauge pressure now: the gas law applied to absolute pressure."""
        absolute = (self.cold_kpa + STANDARD_ATMOSPHERE_KPA) * (self.temperature_c + KELVIN)
        return absolute / (TIRE_REFERENCE_C + KELVIN) - STANDARD_ATMOSPHERE_KPA

    @staticmethod
    def equilibrium_c(ambient_c: float, speed_kmh: float) -> float:
        """Temperature the tire air settles at when driven steadily at ``speed_kmh``."""
        return ambient_c + 0.12 * speed_kmh

    def step(self, dt: float, ambient_c: float, speed_kmh: float) -> None:
        """Advance temperature and leak by ``dt`` seconds."""
        target = self.equilibrium_c(ambient_c, speed_kmh)
        self.temperature_c += (target - self.temperature_c) * min(1.0, dt / TIRE_TIME_CONSTANT_S)
        self.cold_kpa = max(0.0, self.cold_kpa - self.leak_kpa_per_min * dt / 60.0)
