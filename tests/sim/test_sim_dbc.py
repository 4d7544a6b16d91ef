"""The hand-written demo DBC: loads strictly and carries the names the signal catalog relies on."""

from __future__ import annotations

import cantools
import pytest

from carlink_sim import demo_dbc_path, load_demo_dbc

# name -> (frame id, cycle time ms, extended)
REQUIRED_MESSAGES = {
    "EngineData": (0x0C9, 10, False),
    "WheelSpeeds": (0x1A0, 10, False),
    "VehicleSpeed": (0x1F5, 20, False),
    "IgnitionStatus": (0x1F1, 100, False),
    "EngineTemps": (0x3D1, 100, False),
    "BatteryStatus": (0x3F1, 100, False),
    "FuelStatus": (0x3E9, 500, False),
    "Odometer": (0x4C1, 1000, False),
    "MaintenanceStatus": (0x5A0, 1000, False),
    "TPMS": (0x385, 250, False),
    "DoorStatus": (0x18FF10A0, 200, True),
    "SteeringWheelButtons": (0x2B0, 50, False),
}
REQUIRED_SIGNALS = {
    "EngineData": ["EngineSpeed", "AcceleratorPedal", "EngineRunning", "EngineData_Counter"],
    "WheelSpeeds": ["WheelSpeedFL", "WheelSpeedFR", "WheelSpeedRL", "WheelSpeedRR"],
    "VehicleSpeed": ["VehicleSpeed", "Gear"],
    "IgnitionStatus": ["IgnitionState"],
    "EngineTemps": ["CoolantTemperature", "OilTemperature", "IntakeAirTemperature"],
    "BatteryStatus": ["BatteryVoltage"],
    "FuelStatus": ["FuelLevel", "FuelRange"],
    "Odometer": ["Odometer", "TripDistance"],
    "MaintenanceStatus": ["OilLife", "ServiceDistance", "ServiceDays"],
    "TPMS": ["TirePosition"] + [f"{kind}{pos}" for kind in ("TirePressure", "TireTemperature")
                                for pos in ("FL", "FR", "RL", "RR")],
    "DoorStatus": ["DoorFL", "DoorFR", "DoorRL", "DoorRR", "Trunk", "Hood"],
    "SteeringWheelButtons": ["PushToTalk", "VolumeUp", "VolumeDown", "NextTrack"],
}


@pytest.fixture(scope="module")
def db() -> cantools.database.can.Database:
    """The demo DBC, loaded strictly from the path sim reports."""
    return cantools.database.load_file(str(demo_dbc_path()), strict=True)


def test_demo_dbc_path_points_at_the_file() -> None:
    path = demo_dbc_path()
    assert path.is_file() and path.name == "carlinkd_demo.dbc"
    assert load_demo_dbc().get_message_by_name("EngineData").frame_id == 0x0C9


@pytest.mark.parametrize("name", sorted(REQUIRED_MESSAGES))
def test_required_messages(db: cantools.database.can.Database, name: str) -> None:
    frame_id, cycle_ms, extended = REQUIRED_MESSAGES[name]
    message = db.get_message_by_name(name)
    assert (message.frame_id, message.cycle_time, message.is_extended_frame) == (frame_id, cycle_ms, extended)
    names = {s.name for s in message.signals}
    assert set(REQUIRED_SIGNALS[name]) <= names


def test_signal_details(db: cantools.database.can.Database) -> None:
    sig = db.get_message_by_name("EngineData").get_signal_by_name
    assert (sig("EngineSpeed").length, sig("EngineSpeed").scale, sig("EngineSpeed").unit) == (16, 0.25, "rpm")
    assert (sig("AcceleratorPedal").scale, sig("EngineRunning").length, sig("EngineData_Counter").length) == (0.4, 1, 4)
    assert db.get_message_by_name("WheelSpeeds").get_signal_by_name("WheelSpeedRL").scale == 0.01
    gear = db.get_message_by_name("VehicleSpeed").get_signal_by_name("Gear")
    assert {k: str(v) for k, v in gear.choices.items()} == {0: "P", 1: "R", 2: "N", 3: "D"}
    ignition = db.get_message_by_name("IgnitionStatus").get_signal_by_name("IgnitionState")
    assert {k: str(v) for k, v in ignition.choices.items()} == {0: "Off", 1: "Accessory", 2: "Run", 3: "Start"}
    coolant = db.get_message_by_name("EngineTemps").get_signal_by_name("CoolantTemperature")
    assert (coolant.length, coolant.offset, coolant.unit) == (8, -40, "degC")
    service = db.get_message_by_name("MaintenanceStatus").get_signal_by_name("ServiceDistance")
    assert service.is_signed and service.length == 16
    assert db.get_message_by_name("MaintenanceStatus").get_signal_by_name("ServiceDays").is_signed
    odometer = db.get_message_by_name("Odometer").get_signal_by_name("Odometer")
    assert (odometer.length, odometer.scale) == (32, 0.1)
    ptt = db.get_message_by_name("SteeringWheelButtons").get_signal_by_name("PushToTalk")
    assert {k: str(v) for k, v in ptt.choices.items()} == {0: "Released", 1: "Pressed"}
    door = db.get_message_by_name("DoorStatus").get_signal_by_name("Trunk")
    assert {k: str(v) for k, v in door.choices.items()} == {0: "Closed", 1: "Open"}


def test_mixed_byte_order_and_multiplexing(db: cantools.database.can.Database) -> None:
    orders = {s.byte_order for m in db.messages for s in m.signals}
    assert orders == {"little_endian", "big_endian"}
    assert db.get_message_by_name("BatteryStatus").get_signal_by_name("BatteryVoltage").byte_order == "big_endian"
    tpms = db.get_message_by_name("TPMS")
    assert tpms.is_multiplexed()
    assert tpms.get_signal_by_name("TirePressureRL").multiplexer_ids == [2]
    assert {m.senders[0] for m in db.messages} >= {"ECM", "TCM", "ABS", "BCM", "TPMS", "SWM", "IPC"}


def test_tpms_round_trip_names_the_tire(db: cantools.database.can.Database) -> None:
    tpms = db.get_message_by_name("TPMS")
    data = tpms.encode({"TirePosition": 2, "TpmsSystemFault": 0, "TirePressureRL": 231.5,
                        "TireTemperatureRL": 31, "TireSensorBatteryLowRL": 0, "TirePressureLowRL": 0})
    decoded = db.decode_message(tpms.frame_id, data)
    assert str(decoded["TirePosition"]) == "RL" and decoded["TirePressureRL"] == 231.5
    assert "TirePressureFL" not in decoded
