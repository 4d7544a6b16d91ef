"""What each demo-DBC signal reads from the vehicle model: name -> getter returning a physical value.

Enumerated signals return their raw number (``Gear`` 3 is "D"). Rolling counters and checksums
are not here; :mod:`sim.traffic` fills those in. A DBC signal with no getter is sent at its
``GenSigStartValue`` (or 0), so a custom DBC still encodes.
"""

from __future__ import annotations

from collections.abc import Callable

from carlink_sim.vehicle import BUTTONS, DOORS, TIRE_POSITIONS, Ignition, Selector, VehicleModel

SignalGetter = Callable[[VehicleModel], float]
TPMS_LOW_FRACTION = 0.75  # warning below 75 % of placard, as FMVSS 138 requires at most


def _const(value: float) -> SignalGetter:
    return lambda m: value


def _flag(predicate: Callable[[VehicleModel], bool]) -> SignalGetter:
    return lambda m: 1.0 if predicate(m) else 0.0


def _running(m: VehicleModel) -> bool:
    return m.ignition >= Ignition.RUN


_POWERTRAIN: dict[str, SignalGetter] = {
    "EngineTorqueActual": lambda m: m.powertrain.torque_net,
    "EngineTorqueRequested": lambda m: m.powertrain.torque_requested,
    "EngineFrictionTorque": lambda m: m.powertrain.friction_torque,
    "EngineTorqueMax": lambda m: m.powertrain.torque_max if m.engine_running else 0.0,
    "EngineSpeed": lambda m: m.powertrain.rpm,
    "AcceleratorPedal": lambda m: m.throttle * 100.0,
    "EngineRunning": _flag(lambda m: m.engine_running),
    "EngineCranking": _flag(lambda m: m.cranking),
    "IgnitionAdvance": lambda m: m.powertrain.ignition_advance_deg(),
    "Lambda": lambda m: m.powertrain.lambda_ratio(),
    "InjectorPulseWidth": lambda m: m.powertrain.injector_ms(),
    "KnockRetard": _const(0.0),
    "ThrottlePosition": lambda m: m.powertrain.throttle_plate_pct(),
    "ManifoldPressure": lambda m: m.powertrain.manifold_kpa(),
    "MassAirFlow": lambda m: m.powertrain.mass_air_flow_gps(),
    "TransmissionGear": lambda m: m.powertrain.gear_code(m.selector),
    "TransmissionGearTarget": lambda m: (m.powertrain.gear_target if m.selector == Selector.D
                                         else m.powertrain.gear_code(m.selector)),
    "ShiftInProgress": _flag(lambda m: m.powertrain.shifting),
    "TorqueConverterLockup": _flag(lambda m: m.powertrain.converter_locked),
    "TurbineSpeed": lambda m: m.powertrain.turbine_rpm,
    "OutputShaftSpeed": lambda m: m.powertrain.output_rpm,
    "TorqueConverterSlip": lambda m: m.powertrain.rpm - m.powertrain.turbine_rpm,
    "TransmissionOilTemperature": lambda m: m.thermal.trans_oil_c,
    "TransmissionOverheat": _flag(lambda m: m.thermal.trans_oil_c > 130.0),
    "CruiseMainOn": _flag(lambda m: m.cruise_main),
    "CruiseActive": _flag(lambda m: m.cruise_active),
    "CruiseSetSpeed": lambda m: m.cruise_set_kmh if m.cruise_main else 0.0,
    "CoolantTemperature": lambda m: m.thermal.coolant_c,
    "OilTemperature": lambda m: m.thermal.oil_c,
    "IntakeAirTemperature": lambda m: m.thermal.intake_c,
    "CoolingFanDuty": lambda m: m.thermal.fan_duty * 100.0,
    "FuelLevel": lambda m: m.fuel_l / m.chassis.tank_l * 100.0,
    "FuelRange": lambda m: m.fuel_range_km(),
    "FuelLowWarning": _flag(lambda m: m.fuel_l < 0.12 * m.chassis.tank_l),
    "FuelRate": lambda m: m.fuel_rate_lph,
    "InstantFuelEconomy": lambda m: m.instant_economy_l100(),
    "AverageFuelEconomy": lambda m: m.average_economy_l100(),
}

_CHASSIS: dict[str, SignalGetter] = {
    "SteeringWheelAngle": lambda m: m.steering_deg,
    "SteeringWheelRate": lambda m: m.steering_rate_dps,
    "SteeringAngleValid": _const(1.0),
    "DriverTorque": lambda m: max(-20.0, min(20.0, m.lateral_accel * 0.35 + m.steering_rate_dps * 0.004)),
    "AssistTorque": lambda m: max(-20.0, min(20.0, m.lateral_accel * 0.9 + m.steering_rate_dps * 0.01)),
    "EpsMotorCurrent": lambda m: min(120.0, abs(m.lateral_accel) * 6.0 + abs(m.steering_rate_dps) * 0.05),
    "EpsFault": _const(0.0),
    "BrakePressure": lambda m: m.brake * 120.0,
    "BrakePedalPressed": _flag(lambda m: m.brake > 0.02),
    "ParkingBrakeEngaged": _flag(lambda m: m.parking_brake),
    "BrakeLightsRequest": _flag(lambda m: m.brake > 0.02),
    "TorqueReductionRequest": _const(0.0),
    "TorqueReductionActive": _const(0.0),
    "YawRate": lambda m: m.yaw_rate_rps * 57.29578,
    "LateralAccel": lambda m: m.lateral_accel,
    "LongitudinalAccel": lambda m: m.accel_mps2,
    "RollRate": lambda m: m.steering_rate_dps * m.speed_mps * 0.0004,
    "VerticalAccel": lambda m: m.vertical_accel,
    "PitchRate": lambda m: m.pitch_rate_dps,
    "EscActive": _flag(lambda m: abs(m.lateral_accel) > 6.0),
    "TractionControlActive": _flag(lambda m: m.throttle > 0.9 and m.speed_kmh < 20.0),
    "AbsActive": _flag(lambda m: m.brake > 0.8 and m.speed_kmh > 5.0),
    "EscDisabled": _const(0.0),
    "HillHoldActive": _const(0.0),
    "VehicleSpeed": lambda m: m.speed_kmh,
    "Gear": lambda m: int(m.selector),
}

_BODY: dict[str, SignalGetter] = {
    "AirbagWarningLamp": _const(0.0),
    "SeatBeltDriver": _flag(lambda m: _running(m) and not m.doors["DoorFL"]),
    "SeatBeltPassenger": _flag(lambda m: _running(m) and m.passenger_present and not m.doors["DoorFR"]),
    "PassengerSeatOccupied": _flag(lambda m: m.passenger_present),
    "CrashDetected": _const(0.0),
    "IgnitionState": lambda m: int(m.ignition),
    "KeyPresent": _flag(lambda m: m.ignition > Ignition.OFF or not m.doors_locked),
    "LowBeam": _flag(lambda m: m.headlights),
    "HighBeam": _flag(lambda m: m.high_beam),
    "TurnSignalLeft": _flag(lambda m: m.turn_lamp_lit(-1)),
    "TurnSignalRight": _flag(lambda m: m.turn_lamp_lit(1)),
    "HazardLights": _flag(lambda m: m.hazard),
    "BrakeLights": _flag(lambda m: m.brake > 0.02),
    "ReverseLights": _flag(lambda m: m.selector == Selector.R and _running(m)),
    "FogLights": _const(0.0),
    "AmbientLightLevel": _const(72.0),
    "CabinTemperature": lambda m: m.cabin_c,
    "OutsideTemperature": lambda m: m.ambient_c,
    "ClimateSetpoint": lambda m: m.climate_setpoint_c,
    "BlowerLevel": lambda m: 3.0 if _running(m) else 0.0,
    "AcCompressorOn": _flag(lambda m: m.engine_running and m.ambient_c > 15.0),
    "RecirculationOn": _const(0.0),
    "BatteryVoltage": lambda m: m.battery.voltage,
    "BatteryCurrent": lambda m: m.battery.current_a,
    "BatteryStateOfCharge": lambda m: m.battery.soc * 100.0,
    "Odometer": lambda m: m.odometer_km,
    "TripDistance": lambda m: m.trip_km,
    "OilLife": lambda m: m.oil_life_pct,
    "ServiceDistance": lambda m: m.service_distance_km,
    "ServiceDays": lambda m: m.service_days,
    "ServiceDueWarning": _flag(lambda m: m.service_distance_km <= 1000.0 or m.oil_life_pct <= 5.0
                               or m.service_days <= 30.0),
    "DoorsLocked": _flag(lambda m: m.doors_locked),
    "TpmsSystemFault": _const(0.0),
}

_NAVIGATION: dict[str, SignalGetter] = {
    "Latitude": lambda m: m.nav.latitude,
    "Longitude": lambda m: m.nav.longitude,
    "Heading": lambda m: m.nav.heading,
    "GroundSpeed": lambda m: m.speed_kmh,
    "FixType": _const(2.0),  # a 3D fix: the simulated sky is always clear
    "Satellites": lambda m: m.nav.satellites,
    "HorizontalAccuracy": lambda m: m.nav.accuracy_m,
}


def _wheel_getters(pos: str) -> dict[str, SignalGetter]:
    """Getters for the per-wheel signals of one position (FL, FR, RL, RR)."""
    brake_share = 120.0 if pos.startswith("F") else 80.0  # front calipers get more pressure

    def low(m: VehicleModel) -> bool:
        """Below the TPMS warning threshold."""
        return m.tires[pos].pressure_kpa < TPMS_LOW_FRACTION * m.chassis.placard_kpa

    return {
        f"WheelSpeed{pos}": lambda m: m.wheel_kmh[pos],
        f"WheelPulses{pos}": lambda m: m.wheel_pulses(pos),
        f"BrakePressure{pos}": lambda m: m.brake * brake_share,
        f"TirePressure{pos}": lambda m: m.tires[pos].pressure_kpa,
        f"TireTemperature{pos}": lambda m: m.tires[pos].temperature_c,
        f"TireSensorBatteryLow{pos}": _flag(lambda m: m.tires[pos].sensor_battery_low),
        f"TirePressureLow{pos}": _flag(low),
    }


def _button_getter(name: str) -> SignalGetter:
    return _flag(lambda m: m.button_pressed(name))


def _door_getter(name: str) -> SignalGetter:
    return _flag(lambda m: m.doors[name])


SIGNAL_GETTERS: dict[str, SignalGetter] = {
    **_POWERTRAIN, **_CHASSIS, **_BODY, **_NAVIGATION,
    **{k: v for pos in TIRE_POSITIONS for k, v in _wheel_getters(pos).items()},
    **{name: _button_getter(name) for name in BUTTONS},
    **{name: _door_getter(name) for name in DOORS},
}
