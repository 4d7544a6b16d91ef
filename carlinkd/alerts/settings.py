"""Alert rule configuration: frozen dataclasses with demo-car defaults, merged by carlinkd.config.

Each built-in rule is its own dataclass *type* whose class defaults are the demo values, so a
file that overrides one key (``[alerts.coolant_high] above = 112``) keeps every other default:
the generic merge builds a section from its class defaults plus the keys given. Validation in
``__post_init__`` raises ``TypeError``, which the merge reports as a one-line ConfigError naming
the file and the key path.

Times are seconds of the clock the alert service is given (wall time in the daemon).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

TIRES = tuple(f"Vehicle.Chassis.Axle.{row}.Wheel.{side}.Tire.Pressure"
              for row in ("Row1", "Row2") for side in ("Left", "Right"))
ECT = "Vehicle.Powertrain.CombustionEngine.ECT"
BATTERY_V = "Vehicle.LowVoltageBattery.CurrentVoltage"
POWER_STATE = "Vehicle.LowVoltageSystemState"
FUEL_LEVEL = "Vehicle.Powertrain.FuelSystem.RelativeLevel"
ODOMETER = "Vehicle.TraveledDistance"
TRIP = "Vehicle.TraveledDistanceSinceStart"
OIL_LIFE = "Vehicle.Service.EngineOilLife"
SERVICE_KM = "Vehicle.Service.DistanceToService"
SERVICE_DAYS = "Vehicle.Service.DaysToService"

# Fields a text template may use; a template naming anything else is rejected at start-up.
TEMPLATE_FIELDS = frozenset({"where", "value", "limit", "unit"})
MAX_SPOKEN_WORDS = 12


def _check_template(owner: str, name: str, template: str, fields: frozenset[str]) -> None:
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise TypeError(f"{name}: invalid template {template!r}: {err}") from err
    unknown = sorted(used - fields)
    if unknown:
        raise TypeError(f"{name}: unknown placeholder {{{unknown[0]}}} in {owner}; "
                        f"expected some of {', '.join(sorted(fields))}")


@dataclass(frozen=True)
class ThresholdRule:
    """Raise when a signal stays past a limit for ``hold_s``; clear once past ``clear_at``."""

    signals: tuple[str, ...] = ()
    above: float | None = None
    below: float | None = None
    # Hysteresis: the value must come back past clear_at (not just past the limit) to clear.
    clear_at: float | None = None
    hold_s: float = 5.0
    clear_hold_s: float = 5.0
    severity: Severity = "warning"
    # Gate: raise only while each named signal has one of the listed values.
    only_if: dict[str, tuple[str, ...]] = field(default_factory=dict)
    spoken: str = "{where} reading is out of range."
    text: str = "{where}: {value} {unit} (limit {limit} {unit})."
    enabled: bool = True

    def __post_init__(self) -> None:
        if (self.above is None) == (self.below is None):
            raise TypeError("set exactly one of 'above' or 'below'")
        limit = self.above if self.above is not None else self.below
        assert limit is not None
        if self.clear_at is None:
            raise TypeError("'clear_at' is required (the hysteresis limit)")
        if self.above is not None and self.clear_at > self.above:
            raise TypeError(f"clear_at ({self.clear_at}) must not be above 'above' ({self.above})")
        if self.below is not None and self.clear_at < self.below:
            raise TypeError(f"clear_at ({self.clear_at}) must not be below 'below' ({self.below})")
        if self.hold_s < 0 or self.clear_hold_s < 0:
            raise TypeError("hold_s and clear_hold_s must be >= 0")
        if not self.signals:
            raise TypeError("'signals' must name at least one signal")
        _check_template("spoken", "spoken", self.spoken, TEMPLATE_FIELDS)
        _check_template("text", "text", self.text, TEMPLATE_FIELDS)


@dataclass(frozen=True)
class TirePressureLow(ThresholdRule):
    """Tire below 75 % of the 240 kPa placard (FMVSS 138 warns at 25 % under-inflation)."""

    signals: tuple[str, ...] = TIRES
    below: float | None = 180.0
    clear_at: float | None = 200.0
    hold_s: float = 10.0
    clear_hold_s: float = 10.0
    severity: Severity = "warning"
    spoken: str = "{where} tire pressure is low."
    text: str = "{where} tire pressure {value} kPa, below {limit} kPa. Check and inflate the tire."


@dataclass(frozen=True)
class CoolantHigh(ThresholdRule):
    """Coolant hotter than a healthy thermostat and fan allow."""

    signals: tuple[str, ...] = (ECT,)
    above: float | None = 110.0
    clear_at: float | None = 103.0
    hold_s: float = 5.0
    clear_hold_s: float = 20.0
    severity: Severity = "warning"
    spoken: str = "Engine is running hot. Ease off and watch the temperature."
    text: str = "Coolant temperature {value} {unit}, above {limit} {unit}."


@dataclass(frozen=True)
class CoolantCritical(ThresholdRule):
    """Coolant close to boiling over: stop the engine."""

    signals: tuple[str, ...] = (ECT,)
    above: float | None = 120.0
    clear_at: float | None = 110.0
    hold_s: float = 3.0
    clear_hold_s: float = 20.0
    severity: Severity = "critical"
    spoken: str = "Engine overheating. Stop safely and switch off the engine."
    text: str = "Coolant temperature {value} {unit}, above {limit} {unit}: risk of engine damage."


@dataclass(frozen=True)
class BatteryLow(ThresholdRule):
    """12 V battery draining while the car is parked (ignition off or accessory)."""

    signals: tuple[str, ...] = (BATTERY_V,)
    below: float | None = 11.8
    clear_at: float | None = 12.3
    hold_s: float = 60.0
    clear_hold_s: float = 30.0
    severity: Severity = "warning"
    only_if: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {POWER_STATE: ("Off", "Accessory")})
    spoken: str = "Battery is low. Switch off lights and accessories."
    text: str = "12 V battery at {value} V with the ignition off (below {limit} V)."


@dataclass(frozen=True)
class FuelLow(ThresholdRule):
    """Fuel reserve."""

    signals: tuple[str, ...] = (FUEL_LEVEL,)
    below: float | None = 12.0
    clear_at: float | None = 15.0
    hold_s: float = 30.0
    clear_hold_s: float = 30.0
    severity: Severity = "info"
    spoken: str = "Fuel is low. Time to refuel."
    text: str = "Fuel level {value} %, below {limit} %."


@dataclass(frozen=True)
class SlowLeak:
    """One tire losing pressure faster than the others, by least-squares slope over a window."""

    signals: tuple[str, ...] = TIRES
    window_s: float = 300.0
    min_span_s: float = 150.0  # the window must cover this much before a slope is trusted
    sample_s: float = 5.0
    # kPa per minute faster than the median of the other tires (temperature moves all of them).
    rate_kpa_per_min: float = 0.4
    clear_rate_kpa_per_min: float = 0.1
    hold_s: float = 30.0
    clear_hold_s: float = 60.0
    severity: Severity = "warning"
    enabled: bool = True

    def __post_init__(self) -> None:
        if len(self.signals) < 3:
            raise TypeError("'signals' needs at least three tires to compare")
        if not 0 < self.min_span_s <= self.window_s:
            raise TypeError("need 0 < min_span_s <= window_s")
        if not 0 <= self.clear_rate_kpa_per_min < self.rate_kpa_per_min:
            raise TypeError("need 0 <= clear_rate_kpa_per_min < rate_kpa_per_min")
        if self.sample_s <= 0:
            raise TypeError("sample_s must be > 0")


@dataclass(frozen=True)
class MaintenanceItem:
    """One maintenance item: due by distance and/or time since it was last done, or by signals."""

    label: str = "service"
    interval_km: float | None = None
    interval_days: float | None = None
    soon_km: float = 1000.0
    soon_days: float = 30.0
    # Where the car computes it itself: % life left, km left, days left (signals win over history).
    life_signal: str | None = None
    life_soon_pct: float = 15.0
    life_due_pct: float = 5.0
    distance_signal: str | None = None
    days_signal: str | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        sources = (self.interval_km, self.interval_days, self.life_signal, self.distance_signal,
                   self.days_signal)
        if all(s is None for s in sources):
            raise TypeError("give an interval or a signal")
        if self.life_due_pct > self.life_soon_pct:
            raise TypeError("life_due_pct must not exceed life_soon_pct")


@dataclass(frozen=True)
class OilChange(MaintenanceItem):
    """Engine oil: the car's oil-life signal where present, else 15,000 km or a year."""

    label: str = "oil change"
    interval_km: float | None = 15000.0
    interval_days: float | None = 365.0
    life_signal: str | None = OIL_LIFE


@dataclass(frozen=True)
class TireRotation(MaintenanceItem):
    """Tire rotation every 10,000 km."""

    label: str = "tire rotation"
    interval_km: float | None = 10000.0


@dataclass(frozen=True)
class BrakeFluid(MaintenanceItem):
    """Brake fluid absorbs water: every two years."""

    label: str = "brake fluid change"
    interval_days: float | None = 730.0


@dataclass(frozen=True)
class Inspection(MaintenanceItem):
    """The car's own service reminder where it has one, else yearly or 30,000 km."""

    label: str = "service inspection"
    interval_km: float | None = 30000.0
    interval_days: float | None = 365.0
    distance_signal: str | None = SERVICE_KM
    days_signal: str | None = SERVICE_DAYS


@dataclass(frozen=True)
class MaintenanceConfig:
    """The maintenance items, by the item names service records use."""

    oil: OilChange = field(default_factory=OilChange)
    tire_rotation: TireRotation = field(default_factory=TireRotation)
    brake_fluid: BrakeFluid = field(default_factory=BrakeFluid)
    inspection: Inspection = field(default_factory=Inspection)


def _dtc_defaults() -> dict[str, Severity]:
    # Longest prefix wins. Families per SAE J2012: P powertrain, C chassis, B body, U network.
    return {
        "P": "warning", "C": "warning", "B": "info", "U": "warning",
        "P030": "critical",   # misfire (P0300-P0309): catalyst damage, flashing MIL
        "P0217": "critical",  # engine over-temperature
        "P0218": "critical",  # transmission over-temperature
        "P0520": "critical", "P0521": "critical", "P0522": "critical", "P0523": "critical",
        "P0524": "critical",  # engine oil pressure
        "P044": "info", "P045": "info",  # evaporative emission system
        "P0420": "info", "P0430": "info",  # catalyst efficiency below threshold
        "C0035": "warning", "C0040": "warning",  # wheel speed sensors (ABS degraded)
    }


@dataclass(frozen=True)
class AlertsConfig:
    """Alert rules, maintenance items and the lifecycle policy."""

    enabled: bool = True
    tick_s: float = 1.0
    tire_pressure_low: TirePressureLow = field(default_factory=TirePressureLow)
    coolant_high: CoolantHigh = field(default_factory=CoolantHigh)
    coolant_critical: CoolantCritical = field(default_factory=CoolantCritical)
    battery_low: BatteryLow = field(default_factory=BatteryLow)
    fuel_low: FuelLow = field(default_factory=FuelLow)
    slow_leak: SlowLeak = field(default_factory=SlowLeak)
    # Further threshold rules by name (each fully specified).
    extra: dict[str, ThresholdRule] = field(default_factory=dict)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    dtc_severity: dict[str, Severity] = field(default_factory=_dtc_defaults)
    mil_severity: Severity = "warning"
    # A non-critical alert that returns within this time of clearing is shown but not spoken.
    reraise_quiet_s: float = 900.0
    # An acknowledged critical alert that is still active is spoken again this often (0: never).
    critical_reminder_s: float = 300.0
    # Odometer/trip samples go to the store at most this often.
    sample_interval_s: float = 60.0
