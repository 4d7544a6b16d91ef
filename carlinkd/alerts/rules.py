"""Signal rules (pure): thresholds with hysteresis and hold time, slow leaks, DTC severities.

Every rule is fed the latest value of each signal and the current time, and reports
:class:`Verdict` objects only when its conclusion changes. Nothing here reads a clock.
"""

from __future__ import annotations

import enum
import re
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from .lifecycle import Verdict
from .settings import SlowLeak, ThresholdRule

Value = float | int | str

_WHEEL = re.compile(r"Axle\.Row(\d)\.Wheel\.(Left|Right)")
_ROWS = {"1": "front", "2": "rear", "3": "third-row"}
_NAMES = {
    "Vehicle.Powertrain.CombustionEngine.ECT": "coolant temperature",
    "Vehicle.LowVoltageBattery.CurrentVoltage": "battery voltage",
    "Vehicle.Powertrain.FuelSystem.RelativeLevel": "fuel level",
}


def where(signal: str) -> str:
    """A speakable place or name for a signal: ``rear left`` for a wheel, else its last part."""
    m = _WHEEL.search(signal)
    if m:
        return f"{_ROWS.get(m.group(1), 'row ' + m.group(1))} {m.group(2).lower()}"
    if signal in _NAMES:
        return _NAMES[signal]
    last = signal.rsplit(".", 1)[-1]
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", last).lower()


def slug(text: str) -> str:
    """Key-safe form of a place: ``rear left`` -> ``rear_left``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def fmt(value: float) -> str:
    """A number for people: at most one decimal, no trailing ``.0``."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def render(template: str, place: str, value: float, limit: float, unit: str) -> str:
    """Fill a rule's text template; the first letter is capitalised."""
    text = template.format(where=place, value=fmt(value), limit=fmt(limit), unit=unit)
    return text[:1].upper() + text[1:]


class Phase(enum.Enum):
    """Debounce phases of one condition."""

    NORMAL = "normal"
    PENDING = "pending"        # breached, waiting for the hold time
    ACTIVE = "active"
    RECOVERING = "recovering"  # past the clearing limit, waiting for the clear hold time


class Debounce:
    """Hold-time debounce with separate raise and clear conditions (the hysteresis band)."""

    __slots__ = ("hold_s", "clear_hold_s", "phase", "since")

    def __init__(self, hold_s: float, clear_hold_s: float) -> None:
        self.hold_s = hold_s
        self.clear_hold_s = clear_hold_s
        self.phase = Phase.NORMAL
        self.since = 0.0

    @property
    def timing(self) -> bool:
        """True while a hold timer runs (the rule must be evaluated on ticks)."""
        return self.phase is Phase.PENDING or self.phase is Phase.RECOVERING

    def step(self, breached: bool, recovered: bool, now: float) -> bool | None:
        """Advance; True when the alert should be raised now, False when cleared, else None."""
        phase = self.phase
        if phase is Phase.NORMAL:
            if not breached:
                return None
            self.phase, self.since = Phase.PENDING, now
        elif phase is Phase.ACTIVE:
            if not recovered:
                return None
            self.phase, self.since = Phase.RECOVERING, now
        if self.phase is Phase.PENDING:
            if not breached:
                self.phase = Phase.NORMAL
            elif now - self.since >= self.hold_s:
                self.phase = Phase.ACTIVE
                return True
            return None
        if not recovered:
            self.phase = Phase.ACTIVE
        elif now - self.since >= self.clear_hold_s:
            self.phase = Phase.NORMAL
            return False
        return None


@dataclass(slots=True)
class _Watched:
    signal: str
    key: str
    place: str
    debounce: Debounce
    last: float = 0.0


class ThresholdAlert:
    """One configured threshold rule over one or more signals (one alert key per signal)."""

    def __init__(self, name: str, rule: ThresholdRule) -> None:
        self.name = name
        self.rule = rule
        self.high = rule.above is not None
        limit = rule.above if rule.above is not None else rule.below
        assert limit is not None and rule.clear_at is not None
        self.limit: float = limit
        self.clear_at: float = rule.clear_at
        self.gate = {sig: frozenset(vals) for sig, vals in rule.only_if.items()}
        self.watched: list[_Watched] = []
        for signal in rule.signals:
            place = where(signal)
            key = name if len(rule.signals) == 1 else f"{name}:{slug(place)}"
            self.watched.append(_Watched(signal, key, place,
                                         Debounce(rule.hold_s, rule.clear_hold_s)))
        self.signals = frozenset(rule.signals) | frozenset(self.gate)

    @property
    def timing(self) -> bool:
        """True while any hold timer runs."""
        return any(w.debounce.timing for w in self.watched)

    def adopt(self, key: str) -> bool:
        """Treat ``key`` as already active (restored after a restart)."""
        for w in self.watched:
            if w.key == key:
                w.debounce.phase = Phase.ACTIVE
                return True
        return False

    def _gate_open(self, latest: Mapping[str, Value]) -> bool:
        for signal, allowed in self.gate.items():
            value = latest.get(signal)
            if value is None or str(value) not in allowed:
                return False
        return True

    def evaluate(self, latest: Mapping[str, Value], now: float) -> list[Verdict]:
        """Step every watched signal; verdicts for those whose conclusion changed."""
        out: list[Verdict] = []
        gate = self._gate_open(latest) if self.gate else True
        for w in self.watched:
            value = latest.get(w.signal)
            if not isinstance(value, int | float):
                continue
            w.last = float(value)
            if self.high:
                breached, recovered = value > self.limit, value <= self.clear_at
            else:
                breached, recovered = value < self.limit, value >= self.clear_at
            change = w.debounce.step(breached and gate, recovered, now)
            if change is not None:
                out.append(self._verdict(w, change))
        return out

    def _verdict(self, w: _Watched, active: bool) -> Verdict:
        rule = self.rule
        unit = _unit(w.signal)
        return Verdict(w.key, self.name, active, rule.severity,
                       render(rule.spoken, w.place, w.last, self.limit, unit),
                       render(rule.text, w.place, w.last, self.limit, unit),
                       "" if active else f"back past {fmt(self.clear_at)} {unit}".rstrip())


def _unit(signal: str) -> str:
    if signal.endswith("Pressure"):
        return "kPa"
    return {"Vehicle.Powertrain.CombustionEngine.ECT": "°C",
            "Vehicle.LowVoltageBattery.CurrentVoltage": "V",
            "Vehicle.Powertrain.FuelSystem.RelativeLevel": "%"}.get(signal, "")


def slope_per_min(samples: deque[tuple[float, float]]) -> float:
    """Least-squares slope of (time s, value) samples, in units per minute."""
    n = len(samples)
    t0 = samples[0][0]
    mean_t = sum(t - t0 for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    num = sum((t - t0 - mean_t) * (v - mean_v) for t, v in samples)
    den = sum((t - t0 - mean_t) ** 2 for t, _ in samples)
    return 0.0 if den == 0 else 60.0 * num / den


class SlowLeakAlert:
    """A tire losing pressure faster than the median of the others, over a sliding window.

    Pressure of every tire follows its temperature (speed, sun, ambient), so the rule compares
    each tire's trend with the others' instead of with zero: only one tire falling counts.
    Values are sampled every ``sample_s`` (the bus reports only changes), and the slope is a
    least-squares fit over ``window_s`` once the samples span ``min_span_s``.
    """

    def __init__(self, rule: SlowLeak) -> None:
        self.rule = rule
        self.signals = frozenset(rule.signals)
        self.samples = {s: deque[tuple[float, float]]() for s in rule.signals}
        self.places = {s: where(s) for s in rule.signals}
        self.keys = {s: f"slow_leak:{slug(self.places[s])}" for s in rule.signals}
        self.debounce = {s: Debounce(rule.hold_s, rule.clear_hold_s) for s in rule.signals}
        self.last_sample = -1e18
        self.relative: dict[str, float | None] = dict.fromkeys(rule.signals)

    def adopt(self, key: str) -> bool:
        """Treat ``key`` as already active (restored after a restart)."""
        for signal, k in self.keys.items():
            if k == key:
                self.debounce[signal].phase = Phase.ACTIVE
                return True
        return False

    def evaluate(self, latest: Mapping[str, Value], now: float) -> list[Verdict]:
        """Sample when due, then judge each tire against the others."""
        rule = self.rule
        if now - self.last_sample < rule.sample_s:
            return []
        self.last_sample = now
        slopes: dict[str, float] = {}
        for signal, buf in self.samples.items():
            value = latest.get(signal)
            if isinstance(value, int | float):
                buf.append((now, float(value)))
            while buf and now - buf[0][0] > rule.window_s:
                buf.popleft()
            if len(buf) >= 5 and buf[-1][0] - buf[0][0] >= rule.min_span_s:
                slopes[signal] = slope_per_min(buf)
        out: list[Verdict] = []
        for signal in self.samples:
            verdict = self._judge(signal, slopes, latest, now)
            if verdict is not None:
                out.append(verdict)
        return out

    def _judge(self, signal: str, slopes: dict[str, float], latest: Mapping[str, Value],
               now: float) -> Verdict | None:
        rule = self.rule
        own = slopes.get(signal)
        others = [v for s, v in slopes.items() if s != signal]
        if own is None or len(others) < 2:
            self.relative[signal] = None
            breached = recovered = False
        else:
            rel = own - statistics.median(others)
            self.relative[signal] = rel
            breached = rel <= -rule.rate_kpa_per_min and own < 0
            recovered = rel >= -rule.clear_rate_kpa_per_min
        change = self.debounce[signal].step(breached, recovered, now)
        if change is None:
            return None
        place = self.places[signal]
        key = self.keys[signal]
        if not change:
            return Verdict(key, "slow_leak", False, reason="pressure steady again")
        rate = -(self.relative[signal] or 0.0)
        value = latest.get(signal)
        now_kpa = f"; now {fmt(float(value))} kPa" if isinstance(value, int | float) else ""
        spoken = f"Possible slow leak in the {place} tire. Check it soon."
        text = (f"{place.capitalize()} tire is losing about {fmt(rate)} kPa per minute more than "
                f"the others{now_kpa}. Check for a puncture before it goes flat.")
        return Verdict(key, "slow_leak", True, rule.severity, spoken, text)


_FAMILY = {"P": "Engine", "C": "Chassis", "B": "Body", "U": "Network"}


def dtc_severity(code: str, table: Mapping[str, str]) -> str:
    """Severity of a trouble code: the longest matching prefix in ``table`` (default warning)."""
    for n in range(len(code), 0, -1):
        found = table.get(code[:n])
        if found is not None:
            return found
    return "warning"


def dtc_verdict(ecu: int, code: str, description: str, severity: str) -> Verdict:
    """The alert for a newly reported trouble code."""
    noun = _FAMILY.get(code[:1], "Vehicle")
    if severity == "critical":
        spoken = f"{noun} fault {code}. Stop safely and get the car checked."
    elif severity == "warning":
        spoken = f"{noun} fault {code}. Have the car checked soon."
    else:
        spoken = f"{noun} notice {code} recorded."
    what = description or "no description available"
    text = f"Trouble code {code}: {what} (ECU 0x{ecu:X})."
    return Verdict(f"dtc:{code}", "dtc", True, severity, spoken, text)


def mil_verdict(on: bool, dtc_count: int, severity: str) -> Verdict:
    """The malfunction-indicator-lamp alert."""
    if not on:
        return Verdict("mil", "mil", False, reason="lamp off")
    codes = f"; {dtc_count} trouble code{'s' if dtc_count != 1 else ''} stored" if dtc_count else ""
    return Verdict("mil", "mil", True, severity, "Check engine light is on. Have the car checked.",
                   f"The malfunction indicator lamp is on{codes}.")
