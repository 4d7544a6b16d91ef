"""Short spoken-style descriptions of generic SAE J2012 powertrain codes, and a severity hint per code.

The wording is carlinkd's own, kept short because the alert engine speaks it ("catalyst efficiency
below threshold, bank 1"). Codes not in the table fall back to the J2012 group their number belongs
to, then to the letter's family ("powertrain fault, manufacturer-specific" for P1xxx).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType

from carlinkd.can.obd.dtc import normalize_dtc


class Severity(str, Enum):
    """How urgently the driver should hear about a code (a hint; the alert rules decide)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


def _series(first: int, texts: list[str]) -> dict[str, str]:
    """Map P0 codes counting up in decimal from ``first`` (130 is P0130) to ``texts``."""
    return {f"P{first + i:04d}": t for i, t in enumerate(texts)}


def _numbered(first: int, count: int, template: str) -> dict[str, str]:
    """Map ``count`` P0 codes from ``first`` (decimal) to ``template`` filled with n = 1, 2, ..."""
    return {f"P{first + i:04d}": template.format(n=i + 1) for i in range(count)}


def _o2_sensor(first: int, where: str) -> dict[str, str]:
    """The six-code block J2012 repeats for each oxygen sensor position."""
    return _series(first, [
        f"oxygen sensor circuit fault, {where}", f"oxygen sensor reads lean or low voltage, {where}",
        f"oxygen sensor reads rich or high voltage, {where}", f"oxygen sensor responds slowly, {where}",
        f"oxygen sensor shows no activity, {where}", f"oxygen sensor heater circuit fault, {where}",
    ])


def _sensor_circuit(
    first: int, sensor: str, intermittent: bool = False, where: str = "",
) -> dict[str, str]:
    """The circuit / range / low / high (/ intermittent) block J2012 uses for most sensors."""
    texts = [f"{sensor} circuit fault", f"{sensor} reading out of range", f"{sensor} signal low",
             f"{sensor} signal high"] + ([f"{sensor} signal intermittent"] if intermittent else [])
    return _series(first, [f"{text}, {where}" if where else text for text in texts])


_DESCRIPTIONS: dict[str, str] = {
    # P00xx: variable valve timing, oxygen sensor heaters, auxiliary emission controls
    **_series(10, [
        "intake camshaft actuator circuit fault, bank 1",
        "intake camshaft timing too far advanced, bank 1",
        "intake camshaft timing too far retarded, bank 1",
        "exhaust camshaft actuator circuit fault, bank 1",
        "exhaust camshaft timing too far advanced, bank 1",
        "exhaust camshaft timing too far retarded, bank 1",
        "crankshaft and camshaft positions disagree, bank 1 sensor A",
        "crankshaft and camshaft positions disagree, bank 1 sensor B",
        "crankshaft and camshaft positions disagree, bank 2 sensor A",
        "crankshaft and camshaft positions disagree, bank 2 sensor B",
        "intake camshaft actuator circuit fault, bank 2",
        "intake camshaft timing too far advanced, bank 2",
        "intake camshaft timing too far retarded, bank 2",
        "exhaust camshaft actuator circuit fault, bank 2",
        "exhaust camshaft timing too far advanced, bank 2",
        "exhaust camshaft timing too far retarded, bank 2",
    ]),
    **_series(30, ["oxygen sensor heater control fault, bank 1 sensor 1",
                       "oxygen sensor heater circuit low, bank 1 sensor 1",
                       "oxygen sensor heater circuit high, bank 1 sensor 1"]),
    **_series(36, ["oxygen sensor heater control fault, bank 1 sensor 2",
                       "oxygen sensor heater circuit low, bank 1 sensor 2",
                       "oxygen sensor heater circuit high, bank 1 sensor 2"]),
    **_series(50, ["oxygen sensor heater control fault, bank 2 sensor 1",
                       "oxygen sensor heater circuit low, bank 2 sensor 1",
                       "oxygen sensor heater circuit high, bank 2 sensor 1"]),
    **_series(56, ["oxygen sensor heater control fault, bank 2 sensor 2",
                       "oxygen sensor heater circuit low, bank 2 sensor 2",
                       "oxygen sensor heater circuit high, bank 2 sensor 2"]),
    "P0068": "manifold pressure or air flow does not match throttle position",
    **_sensor_circuit(70, "ambient air temperature sensor"),
    "P0087": "fuel rail pressure too low",
    "P0088": "fuel rail pressure too high",
    "P0089": "fuel pressure regulator not performing as expected",
    "P0093": "large fuel system leak detected",
    # P01xx: fuel and air metering
    **_sensor_circuit(100, "mass air flow sensor", intermittent=True),
    **_sensor_circuit(105, "manifold pressure sensor", intermittent=True),
    **_sensor_circuit(110, "intake air temperature sensor", intermittent=True),
    **_sensor_circuit(115, "coolant temperature sensor", intermittent=True),
    **_sensor_circuit(120, "throttle position sensor A", intermittent=True),
    "P0125": "engine too cold for closed-loop fuel control",
    "P0128": "coolant stays below thermostat temperature, thermostat may be stuck open",
    **_o2_sensor(130, "bank 1 sensor 1"),
    **_o2_sensor(136, "bank 1 sensor 2"),
    **_o2_sensor(142, "bank 1 sensor 3"),
    **_o2_sensor(150, "bank 2 sensor 1"),
    **_o2_sensor(156, "bank 2 sensor 2"),
    "P0170": "fuel trim fault, bank 1",
    "P0171": "engine running too lean, bank 1",
    "P0172": "engine running too rich, bank 1",
    "P0173": "fuel trim fault, bank 2",
    "P0174": "engine running too lean, bank 2",
    "P0175": "engine running too rich, bank 2",
    **_sensor_circuit(180, "fuel temperature sensor A", intermittent=True),
    **_sensor_circuit(190, "fuel rail pressure sensor", intermittent=True),
    # P02xx: fuel and air metering, injector circuits
    "P0200": "fuel injector circuit fault",
    **_numbered(201, 12, "fuel injector circuit fault, cylinder {n}"),
    "P0217": "engine overheating",
    "P0218": "transmission fluid overheating",
    "P0219": "engine over-revving",
    **_sensor_circuit(220, "throttle position sensor B", intermittent=True),
    "P0230": "fuel pump primary circuit fault",
    "P0234": "turbo or supercharger overboost",
    "P0299": "turbo or supercharger underboost",
    # P03xx: ignition system and misfire
    "P0300": "random or multiple cylinder misfire",
    **_numbered(301, 12, "cylinder {n} misfire"),
    "P0313": "misfire detected with low fuel",
    "P0314": "single cylinder misfire, cylinder not identified",
    "P0316": "misfire detected during engine start",
    **_sensor_circuit(325, "knock sensor 1", intermittent=True, where="bank 1"),
    **_sensor_circuit(330, "knock sensor 2", intermittent=True, where="bank 2"),
    **_sensor_circuit(335, "crankshaft position sensor A", intermittent=True),
    **_sensor_circuit(340, "camshaft position sensor A", intermittent=True, where="bank 1"),
    "P0345": "camshaft position sensor A circuit fault, bank 2",
    "P0350": "ignition coil circuit fault",
    **{f"P035{i + 1}": f"ignition coil {chr(0x41 + i)} circuit fault" for i in range(8)},
    # P04xx: auxiliary emission controls
    "P0400": "exhaust gas recirculation flow fault",
    "P0401": "exhaust gas recirculation flow too low",
    "P0402": "exhaust gas recirculation flow too high",
    "P0403": "exhaust gas recirculation control circuit fault",
    "P0404": "exhaust gas recirculation not performing as expected",
    "P0405": "exhaust gas recirculation sensor A signal low",
    "P0406": "exhaust gas recirculation sensor A signal high",
    "P0410": "secondary air injection fault",
    "P0411": "secondary air injection flow incorrect",
    "P0420": "catalyst efficiency below threshold, bank 1",
    "P0421": "warm-up catalyst efficiency below threshold, bank 1",
    "P0430": "catalyst efficiency below threshold, bank 2",
    "P0431": "warm-up catalyst efficiency below threshold, bank 2",
    "P0440": "evaporative emission system fault",
    "P0441": "evaporative system purge flow incorrect",
    "P0442": "small evaporative system leak",
    "P0443": "evaporative purge valve circuit fault",
    "P0446": "evaporative vent control circuit fault",
    "P0449": "evaporative vent valve circuit fault",
    "P0450": "evaporative system pressure sensor circuit fault",
    "P0451": "evaporative system pressure sensor reading out of range",
    "P0452": "evaporative system pressure sensor signal low",
    "P0453": "evaporative system pressure sensor signal high",
    "P0455": "large evaporative system leak",
    "P0456": "very small evaporative system leak",
    "P0457": "evaporative system leak, fuel cap loose or missing",
    **_sensor_circuit(460, "fuel level sensor A", intermittent=True),
    "P0480": "cooling fan 1 control circuit fault",
    "P0481": "cooling fan 2 control circuit fault",
    "P0491": "secondary air injection flow too low, bank 1",
    "P0492": "secondary air injection flow too low, bank 2",
    # P05xx: vehicle speed, idle control, auxiliary inputs
    "P0500": "vehicle speed sensor A fault",
    "P0501": "vehicle speed sensor A reading out of range",
    "P0502": "vehicle speed sensor A signal low",
    "P0503": "vehicle speed sensor A signal erratic or high",
    "P0505": "idle air control fault",
    "P0506": "idle speed lower than expected",
    "P0507": "idle speed higher than expected",
    **_sensor_circuit(520, "oil pressure sensor"),
    "P0524": "engine oil pressure too low",
    "P0530": "air conditioning refrigerant pressure sensor circuit fault",
    "P0532": "air conditioning refrigerant pressure sensor signal low",
    "P0533": "air conditioning refrigerant pressure sensor signal high",
    "P0560": "system voltage fault",
    "P0561": "system voltage unstable",
    "P0562": "system voltage low",
    "P0563": "system voltage high",
    "P0571": "brake switch A circuit fault",
    # P06xx: control modules and output circuits
    "P0600": "control module serial communication fault",
    "P0601": "control module memory checksum error",
    "P0602": "control module not programmed",
    "P0603": "control module keep-alive memory error",
    "P0604": "control module RAM error",
    "P0605": "control module ROM error",
    "P0606": "control module processor fault",
    "P0607": "control module performance fault",
    "P0620": "alternator control circuit fault",
    "P0622": "alternator field circuit fault",
    "P0627": "fuel pump control circuit open",
    "P0641": "sensor reference voltage A open",
    "P0645": "air conditioning clutch relay circuit fault",
    "P0650": "check engine lamp circuit fault",
    "P0651": "sensor reference voltage B open",
    # P07xx: transmission
    "P0700": "transmission control system fault",
    "P0705": "transmission range sensor circuit fault",
    "P0706": "transmission range sensor reading out of range",
    **_sensor_circuit(710, "transmission fluid temperature sensor", intermittent=True),
    "P0715": "transmission input speed sensor circuit fault",
    "P0716": "transmission input speed sensor reading out of range",
    "P0717": "no signal from transmission input speed sensor",
    "P0720": "transmission output speed sensor circuit fault",
    "P0721": "transmission output speed sensor reading out of range",
    "P0722": "no signal from transmission output speed sensor",
    "P0725": "engine speed input to transmission fault",
    "P0730": "transmission gear ratio incorrect",
    **_numbered(731, 5, "gear {n} ratio incorrect"),
    "P0736": "reverse gear ratio incorrect",
    "P0740": "torque converter clutch circuit fault",
    "P0741": "torque converter clutch slipping or stuck off",
    "P0742": "torque converter clutch stuck on",
    "P0743": "torque converter clutch electrical fault",
    **{f"P07{50 + 5 * i}": f"shift solenoid {s} fault" for i, s in enumerate("ABCDE")},
    **{f"P07{51 + 5 * i}": f"shift solenoid {s} stuck off or not performing"
       for i, s in enumerate("ABC")},
    **{f"P07{52 + 5 * i}": f"shift solenoid {s} stuck on" for i, s in enumerate("ABC")},
    **{f"P07{53 + 5 * i}": f"shift solenoid {s} electrical fault" for i, s in enumerate("ABC")},
    "P0780": "transmission shift malfunction",
}

DESCRIPTIONS: Mapping[str, str] = MappingProxyType(_DESCRIPTIONS)
"""Generic P0xxx descriptions by code."""

# J2012 groups within P0: the third character narrows the system.
_P0_GROUPS = {
    "0": "fuel, air or emission control fault", "1": "fuel and air metering fault",
    "2": "fuel and air metering fault, injector circuit", "3": "ignition system or misfire fault",
    "4": "emission control fault", "5": "speed, idle control or auxiliary input fault",
    "6": "control module or output circuit fault", "7": "transmission fault", "8": "transmission fault",
    "9": "transmission fault", "A": "hybrid propulsion fault",
}
_FAMILIES = {
    "P": "powertrain fault", "C": "chassis fault", "B": "body fault", "U": "network communication fault",
}

_INFO = frozenset({"P0125", "P0128"})
_CRITICAL = frozenset({"P0093", "P0217", "P0218", "P0219", "P0524"})
_WARNING_RANGES = (
    ("P0087", "P0089"), ("P0115", "P0119"), ("P0120", "P0124"), ("P0171", "P0175"), ("P0220", "P0224"),
    ("P0230", "P0234"), ("P0299", "P0299"), ("P0300", "P0316"), ("P0335", "P0345"), ("P0420", "P0431"),
    ("P0480", "P0481"), ("P0500", "P0503"), ("P0520", "P0523"), ("P0560", "P0563"), ("P0600", "P0607"),
    ("P0700", "P0799"),
)
_INFO_PREFIXES = ("P003", "P005", "P007", "P044", "P045", "P013", "P014", "P015", "P016", "P046")


def _is_manufacturer_specific(code: str) -> bool:
    """J2012: P1, P30-P33, B1, B2, C1, C2, U1 and U2 are assigned by each manufacturer."""
    letter, digit = code[0], code[1]
    if letter == "P":
        return digit == "1" or (digit == "3" and code[2] in "0123")
    return digit in "12"


def describe(code: str) -> str:
    """Return a short description of ``code``: the table entry, else its J2012 group or family."""
    text = normalize_dtc(code)
    known = _DESCRIPTIONS.get(text)
    if known is not None:
        return known
    if text[1] == "0" and text[0] == "P":
        return _P0_GROUPS.get(text[2], _FAMILIES["P"])
    family = _FAMILIES[text[0]]
    return f"{family}, manufacturer-specific" if _is_manufacturer_specific(text) else family


def severity_family(code: str) -> Severity:
    """Return a severity hint for the alert engine (overheating and oil pressure are critical)."""
    text = normalize_dtc(code)
    if text in _CRITICAL:
        return Severity.CRITICAL
    if any(low <= text <= high for low, high in _WARNING_RANGES):
        return Severity.WARNING
    if text in _INFO or text.startswith(_INFO_PREFIXES) or text[0] == "B":
        return Severity.INFO
    return Severity.WARNING
