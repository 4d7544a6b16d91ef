"""Mode 01 PID table: hand-computed J1979 vectors, bitmaps, PID 01/1C records, encode/decode inverses."""

from __future__ import annotations

import random

import pytest

from carlinkd.can.obd import PIDS, MonitorStatus, ObdEncodeError, ObdStandard, PidKind, pid_spec
from carlinkd.can.obd.pids import (
    PIDS_BY_NAME, PIDS_BY_VSS, Linear, decode_supported_bitmap, encode_supported_bitmap,
    supported_bitmap_pids,
)

# (pid, data bytes, expected value, the J1979 arithmetic)
VECTORS = [
    (0x04, "33", 20.0, "51 * 100 / 255"),
    (0x04, "FF", 100.0, "255 * 100 / 255"),
    (0x05, "7B", 83.0, "123 - 40"),
    (0x05, "00", -40.0, "0 - 40"),
    (0x06, "90", 12.5, "(144 - 128) * 100 / 128"),
    (0x06, "00", -100.0, "(0 - 128) * 100 / 128"),
    (0x07, "70", -12.5, "(112 - 128) * 100 / 128"),
    (0x08, "A0", 25.0, "(160 - 128) * 100 / 128"),
    (0x09, "60", -25.0, "(96 - 128) * 100 / 128"),
    (0x0A, "64", 300.0, "3 * 100"),
    (0x0B, "21", 33.0, "33"),
    (0x0C, "1AF8", 1726.0, "(256 * 26 + 248) / 4"),
    (0x0C, "FFFF", 16383.75, "(256 * 255 + 255) / 4"),
    (0x0D, "32", 50.0, "50"),
    (0x0E, "94", 10.0, "148 / 2 - 64"),
    (0x0E, "00", -64.0, "0 / 2 - 64"),
    (0x0F, "3C", 20.0, "60 - 40"),
    (0x10, "01F4", 5.0, "(256 * 1 + 244) / 100"),
    (0x11, "33", 20.0, "51 * 100 / 255"),
    (0x1F, "012C", 300.0, "256 * 1 + 44"),
    (0x21, "000F", 15.0, "256 * 0 + 15"),
    (0x2F, "CC", 80.0, "204 * 100 / 255"),
    (0x31, "04D2", 1234.0, "256 * 4 + 210"),
    (0x32, "FF9C", -25.0, "signed 0xFF9C = -100, -100 / 4"),
    (0x33, "65", 101.0, "101"),
    (0x3C, "1194", 410.0, "(256 * 17 + 148) / 10 - 40"),
    (0x42, "36B0", 14.0, "(256 * 54 + 176) / 1000"),
    (0x46, "37", 15.0, "55 - 40"),
    (0x5C, "82", 90.0, "130 - 40"),
    (0x5D, "6900", 0.0, "(256 * 105 + 0) / 128 - 210"),
    (0x5E, "00C8", 10.0, "(256 * 0 + 200) / 20"),
    (0x61, "7D", 0.0, "125 - 125"),
    (0xA6, "0001E240", 12345.6, "(65536 * 1 + 256 * 226 + 64) / 10"),
]


@pytest.mark.parametrize(("pid", "data", "expected", "arithmetic"), VECTORS)
def test_pid_vector(pid: int, data: str, expected: float, arithmetic: str) -> None:
    spec = PIDS[pid]
    raw = bytes.fromhex(data)
    assert len(raw) == spec.size
    assert spec.decode(raw) == pytest.approx(expected), arithmetic
    assert spec.encode(expected) == raw, f"encode is the inverse of {arithmetic}"


BRIEF_TABLE = {
    0x04: ("engine_load", "%", None),
    0x05: ("coolant_temperature", "degC", "Vehicle.Powertrain.CombustionEngine.ECT"),
    0x06: ("short_term_fuel_trim_bank1", "%", None), 0x07: ("long_term_fuel_trim_bank1", "%", None),
    0x08: ("short_term_fuel_trim_bank2", "%", None), 0x09: ("long_term_fuel_trim_bank2", "%", None),
    0x0B: ("intake_manifold_pressure", "kPa", None),
    0x0C: ("engine_speed", "rpm", "Vehicle.Powertrain.CombustionEngine.Speed"),
    0x0D: ("vehicle_speed", "km/h", "Vehicle.Speed"), 0x0E: ("timing_advance", "deg", None),
    0x0F: ("intake_air_temperature", "degC", "Vehicle.OBD.IntakeTemp"),
    0x10: ("maf_air_flow_rate", "g/s", None),
    0x11: ("throttle_position", "%", None), 0x1F: ("run_time_since_engine_start", "s", None),
    0x21: ("distance_with_mil_on", "km", None),
    0x2F: ("fuel_tank_level", "%", "Vehicle.Powertrain.FuelSystem.RelativeLevel"),
    0x31: ("distance_since_codes_cleared", "km", None), 0x33: ("barometric_pressure", "kPa", None),
    0x42: ("control_module_voltage", "V", "Vehicle.LowVoltageBattery.CurrentVoltage"),
    0x46: ("ambient_air_temperature", "degC", "Vehicle.Exterior.AirTemperature"),
    0x5C: ("engine_oil_temperature", "degC", "Vehicle.Powertrain.CombustionEngine.EOT"),
    0x5A: ("relative_accelerator_pedal_position", "%", "Vehicle.Chassis.Accelerator.PedalPosition"),
    0x5E: ("engine_fuel_rate", "L/h", None), 0xA6: ("odometer", "km", "Vehicle.TraveledDistance"),
}


@pytest.mark.parametrize("pid", sorted(BRIEF_TABLE))
def test_table_entry_names_units_and_vss(pid: int) -> None:
    spec = pid_spec(pid)
    assert spec is not None and spec.kind is PidKind.SCALAR
    assert (spec.name, spec.unit, spec.vss) == BRIEF_TABLE[pid]
    assert PIDS_BY_NAME[spec.name] is spec
    if spec.vss:
        assert PIDS_BY_VSS[spec.vss] is spec


def test_table_is_consistent() -> None:
    assert pid_spec(0x99) is None
    for pid, spec in PIDS.items():
        assert spec.pid == pid and spec.size >= 1
        assert spec.name.isidentifier() and spec.name == spec.name.lower()
        assert (spec.kind is PidKind.SCALAR) == (spec.scaling is not None), spec.name


def test_supported_bitmap_classic_example() -> None:
    # BE = 1011 1110 -> 01 03 04 05 06 07; 1F = 0001 1111 -> 0C 0D 0E 0F 10;
    # A8 = 1010 1000 -> 11 13 15; 13 = 0001 0011 -> 1C 1F 20
    expected = {0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x13, 0x15,
                0x1C, 0x1F, 0x20}
    assert PIDS[0x00].decode(bytes.fromhex("BE1FA813")) == frozenset(expected)
    assert encode_supported_bitmap(0x00, expected) == bytes.fromhex("BE1FA813")


@pytest.mark.parametrize("base", [0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0])
def test_supported_bitmap_every_range(base: int) -> None:
    # MSB of the first byte is base+1, LSB of the last byte is base+0x20.
    assert decode_supported_bitmap(base, bytes.fromhex("80000001")) == {base + 1, base + 0x20}
    assert PIDS[base].kind is PidKind.SUPPORTED and PIDS[base].size == 4
    rng = random.Random(base)
    pids = {base + 1 + i for i in range(32) if rng.random() < 0.4}
    assert decode_supported_bitmap(base, encode_supported_bitmap(base, pids)) == pids


def test_supported_bitmap_pids_chain() -> None:
    assert supported_bitmap_pids({0x0C}) == {0x00}
    assert supported_bitmap_pids({0x0C, 0x21}) == {0x00, 0x20}
    assert supported_bitmap_pids({0xA6}) == {0x00, 0x20, 0x40, 0x60, 0x80, 0xA0}


def test_monitor_status_mil_on_three_codes_spark() -> None:
    # A = 0x83: MIL bit 7 set, 3 DTCs; B = 0x07: misfire/fuel/components supported, all complete;
    # C = 0x65 = 0110 0101: catalyst, evap, O2 sensor, O2 heater supported; D = 0x04: evap incomplete.
    status = PIDS[0x01].decode(bytes.fromhex("83076504"))
    assert isinstance(status, MonitorStatus)
    assert status.mil_on and status.dtc_count == 3 and not status.compression_ignition
    assert status.supported == {"misfire", "fuel_system", "components", "catalyst", "evaporative_system",
                                "oxygen_sensor", "oxygen_sensor_heater"}
    assert status.incomplete == {"evaporative_system"}
    assert status.encode() == bytes.fromhex("83076504")


def test_monitor_status_mil_off_diesel() -> None:
    # A = 0x00: MIL off, no DTCs; B = 0x1B: bit 3 compression ignition, misfire incomplete (bit 4).
    status = MonitorStatus.decode(bytes.fromhex("001B4040"))
    assert not status.mil_on and status.dtc_count == 0 and status.compression_ignition
    assert "misfire" in status.incomplete and "pm_filter" in status.supported
    assert status.encode() == bytes.fromhex("001B4040")


def test_obd_standard() -> None:
    standard = PIDS[0x1C].decode(b"\x06")
    assert standard == ObdStandard(6) and standard.name == "EOBD"
    assert ObdStandard(99).name == "reserved standard code 99"
    assert PIDS[0x1C].encode(7) == b"\x07"


def test_encode_out_of_range_raises_unless_clamped() -> None:
    speed = PIDS[0x0D]
    with pytest.raises(ObdEncodeError, match="outside encodable range 0..255"):
        speed.encode(300.0)
    assert speed.encode(300.0, clamp=True) == b"\xff"
    assert PIDS[0x05].encode(-60.0, clamp=True) == b"\x00"
    with pytest.raises(ObdEncodeError):
        speed.encode(float("nan"))
    with pytest.raises(ObdEncodeError, match="cannot encode"):
        PIDS[0x0C].encode("fast")  # type: ignore[arg-type]


def test_raw_pids_keep_bytes() -> None:
    spec = PIDS[0x14]
    assert spec.kind is PidKind.RAW and spec.decode(b"\x5a\x80") == b"\x5a\x80"
    assert spec.encode(b"\x5a\x80") == b"\x5a\x80"


SCALARS = sorted(pid for pid, spec in PIDS.items() if spec.kind is PidKind.SCALAR)


@pytest.mark.parametrize("pid", SCALARS)
def test_property_raw_decode_encode_is_identity(pid: int) -> None:
    spec = PIDS[pid]
    rng = random.Random(pid)
    for _ in range(200):
        raw = bytes(rng.randrange(256) for _ in range(spec.size))
        assert spec.encode(spec.decode(raw)) == raw


@pytest.mark.parametrize("pid", SCALARS)
def test_property_value_encode_decode_within_resolution(pid: int) -> None:
    spec = PIDS[pid]
    assert spec.scaling is not None and spec.resolution is not None
    low, high = spec.scaling.limits(spec.size)
    rng = random.Random(1000 + pid)
    for _ in range(200):
        value = rng.uniform(low, high)
        decoded = spec.decode(spec.encode(value))
        assert isinstance(decoded, float)
        assert abs(decoded - value) <= spec.resolution / 2 + 1e-9


def test_linear_signed_limits() -> None:
    assert Linear(0.25, signed=True).limits(2) == (-8192.0, 8191.75)
