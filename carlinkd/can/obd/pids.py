"""Mode 01 parameter ids (SAE J1979 / ISO 15031-5): the PID table and how each PID's bytes scale.

The table is data: one :class:`PidSpec` per PID with its canonical snake_case name, unit (spelled
as the signal catalog spells it), data byte count, scaling and, where the meaning matches, the
COVESA VSS path the daemon's signal catalog uses. Scalar PIDs share one :class:`Linear` scaling
(``raw * scale + offset``); bitmaps, PID 01 and PID 1C have structured decoders; PIDs whose
size is known but whose content is a multi-field record are kept as raw bytes (``kind=RAW``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from carlinkd.can.obd.errors import ObdEncodeError

SUPPORTED_PID_BASES = (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0, 0xE0)


class PidKind(Enum):
    """How a PID's data bytes are interpreted."""

    SCALAR = "scalar"
    SUPPORTED = "supported"
    MONITOR_STATUS = "monitor_status"
    OBD_STANDARD = "obd_standard"
    RAW = "raw"


@dataclass(frozen=True, slots=True)
class Linear:
    """A J1979 linear scaling: value = raw * scale + offset, raw big-endian (optionally signed)."""

    scale: float
    offset: float = 0.0
    signed: bool = False

    def decode(self, data: bytes) -> float:
        """Return the physical value of ``data``."""
        raw = int.from_bytes(data, "big", signed=self.signed)
        return raw * self.scale + self.offset

    def limits(self, size: int) -> tuple[float, float]:
        """Return the smallest and largest physical value ``size`` bytes can carry."""
        low, high = _raw_range(size, self.signed)
        return low * self.scale + self.offset, high * self.scale + self.offset

    def encode(self, value: float, size: int, *, clamp: bool = False) -> bytes:
        """Return the ``size`` bytes nearest to ``value``; out of range raises unless ``clamp``."""
        if not math.isfinite(value):
            raise ObdEncodeError(f"cannot encode non-finite value {value!r}")
        raw = round((value - self.offset) / self.scale)
        low, high = _raw_range(size, self.signed)
        if not low <= raw <= high:
            if not clamp:
                lo, hi = self.limits(size)
                raise ObdEncodeError(f"value {value:g} outside encodable range {lo:g}..{hi:g}")
            raw = min(max(raw, low), high)
        return raw.to_bytes(size, "big", signed=self.signed)


def _raw_range(size: int, signed: bool) -> tuple[int, int]:
    bits = 8 * size
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


# PID 01 byte B, C and D bit names (J1979). None marks a reserved bit.
_CONTINUOUS_MONITORS = ("misfire", "fuel_system", "components")
_SPARK_MONITORS: tuple[str | None, ...] = (
    "catalyst", "heated_catalyst", "evaporative_system", "secondary_air_system",
    "ac_refrigerant", "oxygen_sensor", "oxygen_sensor_heater", "egr_vvt_system",
)
_COMPRESSION_MONITORS: tuple[str | None, ...] = (
    "nmhc_catalyst", "nox_scr_aftertreatment", None, "boost_pressure",
    None, "exhaust_gas_sensor", "pm_filter", "egr_vvt_system",
)


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    """PID 01: MIL state, number of confirmed emission DTCs, and readiness monitors."""

    mil_on: bool
    dtc_count: int
    compression_ignition: bool = False
    supported: frozenset[str] = field(default_factory=frozenset)
    incomplete: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def decode(cls, data: bytes) -> MonitorStatus:
        """Decode the four PID 01 data bytes A B C D."""
        a, b, c, d = data[0], data[1], data[2], data[3]
        diesel = bool(b & 0x08)
        names = _COMPRESSION_MONITORS if diesel else _SPARK_MONITORS
        supported = _bits_to_names(b, _CONTINUOUS_MONITORS) | _bits_to_names(c, names)
        incomplete = _bits_to_names(b >> 4, _CONTINUOUS_MONITORS) | _bits_to_names(d, names)
        return cls(bool(a & 0x80), a & 0x7F, diesel, supported, incomplete)

    def encode(self) -> bytes:
        """Return the four PID 01 data bytes (DTC count saturates at 127)."""
        names = _COMPRESSION_MONITORS if self.compression_ignition else _SPARK_MONITORS
        a = (0x80 if self.mil_on else 0) | min(max(self.dtc_count, 0), 0x7F)
        b = _names_to_bits(self.supported, _CONTINUOUS_MONITORS)
        b |= _names_to_bits(self.incomplete, _CONTINUOUS_MONITORS) << 4
        b |= 0x08 if self.compression_ignition else 0
        c = _names_to_bits(self.supported, names)
        d = _names_to_bits(self.incomplete, names)
        return bytes((a, b, c, d))


def _bits_to_names(byte: int, names: tuple[str | None, ...]) -> frozenset[str]:
    return frozenset(n for i, n in enumerate(names) if n is not None and byte & (1 << i))


def _names_to_bits(selected: frozenset[str], names: tuple[str | None, ...]) -> int:
    return sum(1 << i for i, n in enumerate(names) if n is not None and n in selected)


# PID 1C values (J1979 table "OBD requirements to which vehicle is certified").
OBD_STANDARDS: Mapping[int, str] = MappingProxyType({
    1: "OBD-II (CARB)", 2: "OBD (EPA)", 3: "OBD and OBD-II", 4: "OBD-I", 5: "not OBD compliant",
    6: "EOBD", 7: "EOBD and OBD-II", 8: "EOBD and OBD", 9: "EOBD, OBD and OBD-II", 10: "JOBD",
    11: "JOBD and OBD-II", 12: "JOBD and EOBD", 13: "JOBD, EOBD and OBD-II", 17: "EMD", 18: "EMD+",
    19: "HD OBD-C", 20: "HD OBD", 21: "WWH OBD", 23: "HD EOBD-I", 24: "HD EOBD-I N",
    25: "HD EOBD-II", 26: "HD EOBD-II N", 28: "OBDBr-1", 29: "OBDBr-2", 30: "KOBD", 31: "IOBD I",
    32: "IOBD II", 33: "HD EOBD-VI",
})


@dataclass(frozen=True, slots=True)
class ObdStandard:
    """PID 1C: the OBD requirements the vehicle was certified to."""

    code: int

    @property
    def name(self) -> str:
        """Return the standard's name, or a placeholder for reserved codes."""
        return OBD_STANDARDS.get(self.code, f"reserved standard code {self.code}")


PidData = float | frozenset[int] | MonitorStatus | ObdStandard | bytes
"""What a decoded PID holds: a scalar, a supported-PID set, a record, or raw bytes."""


@dataclass(frozen=True, slots=True)
class PidSpec:
    """One mode 01 PID: number, name, data size, unit, scaling and VSS path."""

    pid: int
    name: str
    size: int
    unit: str | None = None
    scaling: Linear | None = None
    vss: str | None = None
    kind: PidKind = PidKind.SCALAR

    @property
    def resolution(self) -> float | None:
        """Return the value of one raw step, for scalar PIDs."""
        return abs(self.scaling.scale) if self.scaling is not None else None

    def decode(self, data: bytes) -> PidData:
        """Decode exactly ``size`` data bytes (the caller checks the length)."""
        if self.kind is PidKind.SCALAR and self.scaling is not None:
            return self.scaling.decode(data)
        if self.kind is PidKind.SUPPORTED:
            return decode_supported_bitmap(self.pid, data)
        if self.kind is PidKind.MONITOR_STATUS:
            return MonitorStatus.decode(data)
        if self.kind is PidKind.OBD_STANDARD:
            return ObdStandard(data[0])
        return bytes(data)

    def encode(self, value: PidData | int, *, clamp: bool = False) -> bytes:
        """Encode ``value`` back to ``size`` data bytes (the inverse of :meth:`decode`)."""
        number = _as_number(value)
        if self.kind is PidKind.SCALAR and self.scaling is not None and number is not None:
            return self.scaling.encode(number, self.size, clamp=clamp)
        if self.kind is PidKind.SUPPORTED and isinstance(value, frozenset | set):
            return encode_supported_bitmap(self.pid, value)
        if self.kind is PidKind.MONITOR_STATUS and isinstance(value, MonitorStatus):
            return value.encode()
        if self.kind is PidKind.OBD_STANDARD:
            code = value.code if isinstance(value, ObdStandard) else number
            if code is not None:
                return Linear(1.0).encode(code, 1, clamp=clamp)
        if isinstance(value, bytes | bytearray) and len(value) == self.size:
            return bytes(value)
        raise ObdEncodeError(f"PID 0x{self.pid:02X} ({self.name}) cannot encode {value!r}")


def _as_number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def decode_supported_bitmap(base: int, data: bytes) -> frozenset[int]:
    """Turn the 4-byte bitmap answering PID ``base`` into the set of PIDs base+1..base+0x20 it marks."""
    bits = int.from_bytes(data[:4], "big")
    return frozenset(base + 1 + i for i in range(32) if bits & (1 << (31 - i)))


def encode_supported_bitmap(base: int, pids: Iterable[int]) -> bytes:
    """Return the 4-byte bitmap for PID ``base`` marking the given PIDs that fall in its range."""
    bits = 0
    for pid in pids:
        if base < pid <= base + 0x20:
            bits |= 1 << (31 - (pid - base - 1))
    return bits.to_bytes(4, "big")


def supported_bitmap_pids(supported: Iterable[int]) -> frozenset[int]:
    """Return the bitmap PIDs (00, 20, ...) an ECU supporting ``supported`` must answer."""
    highest = max((p for p in supported if p not in SUPPORTED_PID_BASES), default=0)
    return frozenset(b for b in SUPPORTED_PID_BASES if b == 0 or b < highest)


# Unit strings as carlinkd's signal catalog writes them (carlinkd/can/catalog.py).
PCT, DEGC, KPA, KM = "%", "degC", "kPa", "km"
_PCT_255 = Linear(100 / 255)
_TRIM = Linear(100 / 128, -100.0)
_TEMP = Linear(1.0, -40.0)
_CAT_TEMP = Linear(0.1, -40.0)
_SUPPORTED, _RAW = PidKind.SUPPORTED, PidKind.RAW

_SPECS: tuple[PidSpec, ...] = (
    *(PidSpec(b, f"pids_supported_{b + 1:02x}_{b + 0x20:02x}", 4, kind=_SUPPORTED)
      for b in SUPPORTED_PID_BASES),
    PidSpec(0x01, "monitor_status", 4, kind=PidKind.MONITOR_STATUS),
    PidSpec(0x02, "freeze_frame_dtc", 2, kind=_RAW),
    PidSpec(0x03, "fuel_system_status", 2, kind=_RAW),
    PidSpec(0x04, "engine_load", 1, PCT, _PCT_255),
    PidSpec(0x05, "coolant_temperature", 1, DEGC, _TEMP, "Vehicle.Powertrain.CombustionEngine.ECT"),
    PidSpec(0x06, "short_term_fuel_trim_bank1", 1, PCT, _TRIM),
    PidSpec(0x07, "long_term_fuel_trim_bank1", 1, PCT, _TRIM),
    PidSpec(0x08, "short_term_fuel_trim_bank2", 1, PCT, _TRIM),
    PidSpec(0x09, "long_term_fuel_trim_bank2", 1, PCT, _TRIM),
    PidSpec(0x0A, "fuel_pressure", 1, KPA, Linear(3.0)),
    PidSpec(0x0B, "intake_manifold_pressure", 1, KPA, Linear(1.0)),
    PidSpec(0x0C, "engine_speed", 2, "rpm", Linear(0.25), "Vehicle.Powertrain.CombustionEngine.Speed"),
    PidSpec(0x0D, "vehicle_speed", 1, "km/h", Linear(1.0), "Vehicle.Speed"),
    PidSpec(0x0E, "timing_advance", 1, "deg", Linear(0.5, -64.0)),
    PidSpec(0x0F, "intake_air_temperature", 1, DEGC, _TEMP, "Vehicle.OBD.IntakeTemp"),
    PidSpec(0x10, "maf_air_flow_rate", 2, "g/s", Linear(0.01)),
    PidSpec(0x11, "throttle_position", 1, PCT, _PCT_255),
    PidSpec(0x12, "commanded_secondary_air_status", 1, kind=_RAW),
    PidSpec(0x13, "oxygen_sensors_present_2_banks", 1, kind=_RAW),
    *(PidSpec(0x14 + i, f"oxygen_sensor_{i + 1}_voltage_and_trim", 2, kind=_RAW) for i in range(8)),
    PidSpec(0x1C, "obd_standard", 1, kind=PidKind.OBD_STANDARD),
    PidSpec(0x1D, "oxygen_sensors_present_4_banks", 1, kind=_RAW),
    PidSpec(0x1E, "auxiliary_input_status", 1, kind=_RAW),
    PidSpec(0x1F, "run_time_since_engine_start", 2, "s", Linear(1.0)),
    PidSpec(0x21, "distance_with_mil_on", 2, KM, Linear(1.0)),
    PidSpec(0x22, "fuel_rail_pressure_relative", 2, KPA, Linear(0.079)),
    PidSpec(0x23, "fuel_rail_gauge_pressure", 2, KPA, Linear(10.0)),
    *(PidSpec(0x24 + i, f"oxygen_sensor_{i + 1}_lambda_and_voltage", 4, kind=_RAW) for i in range(8)),
    PidSpec(0x2C, "commanded_egr", 1, PCT, _PCT_255),
    PidSpec(0x2D, "egr_error", 1, PCT, _TRIM),
    PidSpec(0x2E, "commanded_evaporative_purge", 1, PCT, _PCT_255),
    PidSpec(0x2F, "fuel_tank_level", 1, PCT, _PCT_255, "Vehicle.Powertrain.FuelSystem.RelativeLevel"),
    PidSpec(0x30, "warm_ups_since_codes_cleared", 1, None, Linear(1.0)),
    PidSpec(0x31, "distance_since_codes_cleared", 2, KM, Linear(1.0)),
    PidSpec(0x32, "evap_system_vapor_pressure", 2, "Pa", Linear(0.25, signed=True)),
    PidSpec(0x33, "barometric_pressure", 1, KPA, Linear(1.0)),
    *(PidSpec(0x34 + i, f"oxygen_sensor_{i + 1}_lambda_and_current", 4, kind=_RAW) for i in range(8)),
    PidSpec(0x3C, "catalyst_temperature_bank1_sensor1", 2, DEGC, _CAT_TEMP),
    PidSpec(0x3D, "catalyst_temperature_bank2_sensor1", 2, DEGC, _CAT_TEMP),
    PidSpec(0x3E, "catalyst_temperature_bank1_sensor2", 2, DEGC, _CAT_TEMP),
    PidSpec(0x3F, "catalyst_temperature_bank2_sensor2", 2, DEGC, _CAT_TEMP),
    PidSpec(0x41, "monitor_status_this_drive_cycle", 4, kind=_RAW),
    PidSpec(0x42, "control_module_voltage", 2, "V", Linear(0.001),
            "Vehicle.LowVoltageBattery.CurrentVoltage"),
    PidSpec(0x43, "absolute_load", 2, PCT, _PCT_255),
    PidSpec(0x44, "commanded_equivalence_ratio", 2, "ratio", Linear(2 / 65536)),
    PidSpec(0x45, "relative_throttle_position", 1, PCT, _PCT_255),
    PidSpec(0x46, "ambient_air_temperature", 1, DEGC, _TEMP, "Vehicle.Exterior.AirTemperature"),
    PidSpec(0x47, "absolute_throttle_position_b", 1, PCT, _PCT_255),
    PidSpec(0x48, "absolute_throttle_position_c", 1, PCT, _PCT_255),
    PidSpec(0x49, "accelerator_pedal_position_d", 1, PCT, _PCT_255),
    PidSpec(0x4A, "accelerator_pedal_position_e", 1, PCT, _PCT_255),
    PidSpec(0x4B, "accelerator_pedal_position_f", 1, PCT, _PCT_255),
    PidSpec(0x4C, "commanded_throttle_actuator", 1, PCT, _PCT_255),
    PidSpec(0x4D, "time_run_with_mil_on", 2, "min", Linear(1.0)),
    PidSpec(0x4E, "time_since_codes_cleared", 2, "min", Linear(1.0)),
    PidSpec(0x4F, "maximum_values_lambda_voltage_current_pressure", 4, kind=_RAW),
    PidSpec(0x50, "maximum_maf_air_flow_rate", 4, kind=_RAW),
    PidSpec(0x51, "fuel_type", 1, kind=_RAW),
    PidSpec(0x52, "ethanol_fuel_percentage", 1, PCT, _PCT_255),
    PidSpec(0x53, "absolute_evap_system_vapor_pressure", 2, KPA, Linear(1 / 200)),
    PidSpec(0x54, "evap_system_vapor_pressure_wide", 2, kind=_RAW),
    PidSpec(0x55, "short_term_secondary_o2_trim_bank1_bank3", 2, kind=_RAW),
    PidSpec(0x56, "long_term_secondary_o2_trim_bank1_bank3", 2, kind=_RAW),
    PidSpec(0x57, "short_term_secondary_o2_trim_bank2_bank4", 2, kind=_RAW),
    PidSpec(0x58, "long_term_secondary_o2_trim_bank2_bank4", 2, kind=_RAW),
    PidSpec(0x59, "fuel_rail_absolute_pressure", 2, KPA, Linear(10.0)),
    PidSpec(0x5A, "relative_accelerator_pedal_position", 1, PCT, _PCT_255,
            "Vehicle.Chassis.Accelerator.PedalPosition"),
    PidSpec(0x5B, "hybrid_battery_remaining_life", 1, PCT, _PCT_255),
    PidSpec(0x5C, "engine_oil_temperature", 1, DEGC, _TEMP, "Vehicle.Powertrain.CombustionEngine.EOT"),
    PidSpec(0x5D, "fuel_injection_timing", 2, "deg", Linear(1 / 128, -210.0)),
    PidSpec(0x5E, "engine_fuel_rate", 2, "L/h", Linear(0.05)),
    PidSpec(0x5F, "emission_requirements", 1, kind=_RAW),
    PidSpec(0x61, "driver_demand_engine_torque", 1, PCT, Linear(1.0, -125.0)),
    PidSpec(0x62, "actual_engine_torque", 1, PCT, Linear(1.0, -125.0)),
    PidSpec(0x63, "engine_reference_torque", 2, "Nm", Linear(1.0)),
    PidSpec(0x64, "engine_percent_torque_data", 5, kind=_RAW),
    PidSpec(0x65, "auxiliary_io_supported", 2, kind=_RAW),
    PidSpec(0xA6, "odometer", 4, KM, Linear(0.1), "Vehicle.TraveledDistance"),
)

PIDS: Mapping[int, PidSpec] = MappingProxyType({spec.pid: spec for spec in _SPECS})
"""Every mode 01 PID the codec knows, by number."""

PIDS_BY_NAME: Mapping[str, PidSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
"""The same table, by canonical name."""

PIDS_BY_VSS: Mapping[str, PidSpec] = MappingProxyType({s.vss: s for s in _SPECS if s.vss})
"""PIDs that feed a VSS signal, by VSS path."""


def pid_spec(pid: int) -> PidSpec | None:
    """Return the table entry for ``pid``, or None for a PID the codec does not know."""
    return PIDS.get(pid)
