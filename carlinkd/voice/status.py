"""Answers to ``vehicle_status`` questions from the latest signal values (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..events import SignalValue

_WHEELS = (("Row1", "Left"), ("Row1", "Right"), ("Row2", "Left"), ("Row2", "Right"))
_WHEEL_NAMES = {"en": ("front left", "front right", "rear left", "rear right"),
                "zh": ("左前", "右前", "左后", "右后")}
# Below this a tire is called out by name; the alerts subsystem owns the real thresholds.
TIRE_LOW_KPA = 180.0

SIGNALS: Mapping[str, str] = {
    "fuel": "Vehicle.Powertrain.FuelSystem.RelativeLevel",
    "range": "Vehicle.Powertrain.FuelSystem.Range",
    "speed": "Vehicle.Speed",
    "engine_temperature": "Vehicle.Powertrain.CombustionEngine.ECT",
    "battery": "Vehicle.LowVoltageBattery.CurrentVoltage",
    "odometer": "Vehicle.TraveledDistance",
}

_EN = {
    "fuel": "Fuel is at {v:.0f} percent.",
    "range": "Range is {v:.0f} kilometers.",
    "speed": "Speed is {v:.0f} kilometers per hour.",
    "engine_temperature": "Engine temperature is {v:.0f} degrees.",
    "battery": "Battery is at {v:.1f} volts.",
    "odometer": "Odometer reads {v:.0f} kilometers.",
    "unknown": "No {item} reading yet.",
    "tires_ok": "Tire pressures are {lo:.0f} to {hi:.0f} kPa.",
    "tire_low": "The {wheel} tire is low: {v:.0f} kPa.",
    "service": "Next service in {km:.0f} kilometers or {days:.0f} days.",
    "no_faults": "No faults reported.",
    "faults": "{n} warning(s): {first}.",
}
_ZH = {
    "fuel": "油量{v:.0f}%。",
    "range": "续航{v:.0f}公里。",
    "speed": "车速每小时{v:.0f}公里。",
    "engine_temperature": "水温{v:.0f}度。",
    "battery": "电瓶电压{v:.1f}伏。",
    "odometer": "总里程{v:.0f}公里。",
    "unknown": "暂时没有{item}数据。",
    "tires_ok": "胎压{lo:.0f}到{hi:.0f}千帕。",
    "tire_low": "{wheel}轮胎压偏低：{v:.0f}千帕。",
    "service": "距下次保养{km:.0f}公里或{days:.0f}天。",
    "no_faults": "没有故障。",
    "faults": "{n}个警告：{first}。",
}
_ITEM_NAMES = {"en": {"tire_pressure": "tire pressure", "engine_temperature": "engine temperature",
                      "next_service": "service"},
               "zh": {"fuel": "油量", "range": "续航", "speed": "车速", "tire_pressure": "胎压",
                      "engine_temperature": "水温", "battery": "电瓶", "next_service": "保养",
                      "odometer": "里程"}}


def describe(item: str, signals: Mapping[str, SignalValue], faults: Sequence[str] = (),
             lang: str = "en") -> str:
    """One short spoken sentence answering ``item`` from the signals seen so far."""
    t = _ZH if lang == "zh" else _EN
    if item == "faults":
        return t["faults"].format(n=len(faults), first=faults[0]) if faults else t["no_faults"]
    if item == "tire_pressure":
        return _tires(signals, t, lang)
    if item == "next_service":
        km = _num(signals, "Vehicle.Service.DistanceToService")
        days = _num(signals, "Vehicle.Service.DaysToService")
        if km is not None and days is not None:
            return t["service"].format(km=km, days=days)
    elif item in SIGNALS:
        value = _num(signals, SIGNALS[item])
        if value is not None:
            return t[item].format(v=value)
    name = _ITEM_NAMES.get(lang, {}).get(item, item.replace("_", " "))
    return t["unknown"].format(item=name)


def _tires(signals: Mapping[str, SignalValue], t: Mapping[str, str], lang: str) -> str:
    values = [_num(signals, f"Vehicle.Chassis.Axle.{row}.Wheel.{side}.Tire.Pressure")
              for row, side in _WHEELS]
    known = [(v, i) for i, v in enumerate(values) if v is not None]
    if not known:
        name = _ITEM_NAMES.get(lang, {}).get("tire_pressure", "tire pressure")
        return t["unknown"].format(item=name)
    low, idx = min(known)
    if low < TIRE_LOW_KPA:
        return t["tire_low"].format(wheel=_WHEEL_NAMES.get(lang, _WHEEL_NAMES["en"])[idx], v=low)
    return t["tires_ok"].format(lo=low, hi=max(v for v, _ in known))


def _num(signals: Mapping[str, SignalValue], name: str) -> float | None:
    sig = signals.get(name)
    if sig is None or isinstance(sig.value, str):
        return None
    return float(sig.value)
