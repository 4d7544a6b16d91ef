"""The signal catalog: DBC signal names mapped to canonical COVESA VSS-style names with units.

Only catalogued (or explicitly subscribed) signals travel onward as events. Keys are
``"Message.Signal"`` as the DBC names them; the built-in entries cover the demo vehicle,
and ``[decode.catalog]`` in the configuration adds or overrides entries for a real car.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_ROW = {"FL": ("Row1", "Left"), "FR": ("Row1", "Right"), "RL": ("Row2", "Left"),
        "RR": ("Row2", "Right")}
_DOOR = {"FL": "Row1.DriverSide", "FR": "Row1.PassengerSide", "RL": "Row2.DriverSide",
         "RR": "Row2.PassengerSide"}


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """Where one DBC signal goes: its canonical name and unit."""

    name: str
    unit: str | None = None


def _demo_entries() -> dict[str, CatalogEntry]:
    e = CatalogEntry
    entries = {
        "EngineData.EngineSpeed": e("Vehicle.Powertrain.CombustionEngine.Speed", "rpm"),
        "EngineData.AcceleratorPedal": e("Vehicle.Chassis.Accelerator.PedalPosition", "%"),
        "EngineData.EngineRunning": e("Vehicle.Powertrain.CombustionEngine.IsRunning", None),
        "VehicleSpeed.VehicleSpeed": e("Vehicle.Speed", "km/h"),
        "VehicleSpeed.Gear": e("Vehicle.Powertrain.Transmission.SelectedGear", None),
        "IgnitionStatus.IgnitionState": e("Vehicle.LowVoltageSystemState", None),
        "EngineTemps.CoolantTemperature": e("Vehicle.Powertrain.CombustionEngine.ECT", "degC"),
        "EngineTemps.OilTemperature": e("Vehicle.Powertrain.CombustionEngine.EOT", "degC"),
        "EngineTemps.IntakeAirTemperature": e("Vehicle.OBD.IntakeTemp", "degC"),
        "BatteryStatus.BatteryVoltage": e("Vehicle.LowVoltageBattery.CurrentVoltage", "V"),
        "FuelStatus.FuelLevel": e("Vehicle.Powertrain.FuelSystem.RelativeLevel", "%"),
        "FuelStatus.FuelRange": e("Vehicle.Powertrain.FuelSystem.Range", "km"),
        "Odometer.Odometer": e("Vehicle.TraveledDistance", "km"),
        "Odometer.TripDistance": e("Vehicle.TraveledDistanceSinceStart", "km"),
        "MaintenanceStatus.OilLife": e("Vehicle.Service.EngineOilLife", "%"),
        "MaintenanceStatus.ServiceDistance": e("Vehicle.Service.DistanceToService", "km"),
        "MaintenanceStatus.ServiceDays": e("Vehicle.Service.DaysToService", "d"),
        "SteeringWheelButtons.PushToTalk":
            e("Vehicle.Cabin.SteeringWheel.Switches.PushToTalk", None),
        "DoorStatus.Trunk": e("Vehicle.Body.Trunk.Rear.IsOpen", None),
        "DoorStatus.Hood": e("Vehicle.Body.Hood.IsOpen", None),
        "NavPosition.Latitude": e("Vehicle.CurrentLocation.Latitude", "deg"),
        "NavPosition.Longitude": e("Vehicle.CurrentLocation.Longitude", "deg"),
        "NavStatus.Heading": e("Vehicle.CurrentLocation.Heading", "deg"),
        "NavStatus.HorizontalAccuracy": e("Vehicle.CurrentLocation.HorizontalAccuracy", "m"),
        "NavStatus.FixType": e("Vehicle.CurrentLocation.GNSSReceiver.FixType", None),
    }
    for pos, (row, side) in _ROW.items():
        wheel = f"Vehicle.Chassis.Axle.{row}.Wheel.{side}"
        entries[f"WheelSpeeds.WheelSpeed{pos}"] = e(f"{wheel}.Speed", "km/h")
        entries[f"TPMS.TirePressure{pos}"] = e(f"{wheel}.Tire.Pressure", "kPa")
        entries[f"TPMS.TireTemperature{pos}"] = e(f"{wheel}.Tire.Temperature", "degC")
        entries[f"DoorStatus.Door{pos}"] = e(f"Vehicle.Cabin.Door.{_DOOR[pos]}.IsOpen", None)
    return entries


DEMO_CATALOG: Mapping[str, CatalogEntry] = _demo_entries()


class Catalog:
    """Lookup from (message, signal) to the canonical entry, plus raw subscriptions."""

    def __init__(self, entries: Mapping[str, CatalogEntry] | None = None,
                 subscribe: Iterable[str] = ()) -> None:
        self.entries: dict[str, CatalogEntry] = dict(DEMO_CATALOG if entries is None else entries)
        for raw in subscribe:
            self.entries.setdefault(raw, CatalogEntry(raw, None))

    def lookup(self, message: str, signal: str, dbc_unit: str | None = None) -> CatalogEntry | None:
        """The entry for a DBC signal, or None when it does not travel onward."""
        entry = self.entries.get(f"{message}.{signal}")
        if entry is not None and entry.unit is None and dbc_unit:
            return CatalogEntry(entry.name, dbc_unit)
        return entry
