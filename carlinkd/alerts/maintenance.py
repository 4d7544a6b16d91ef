"""Maintenance due (pure): per item, by distance and time since last done, or by the car's signals.

For each item the remaining distance and days come from, in order of preference:

- the car's own signals where configured and seen (oil life %, distance/days to service);
- the last service record listing the item, plus its interval, against the odometer and ``now``.

An item with neither is *unknown* and raises nothing: a car with no history is not nagged.
Stages are ``ok`` < ``soon`` (info) < ``overdue`` (warning). A stage only drops back when the
measure is clear of the boundary by a margin, so a jittering signal at the edge does not flap.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .lifecycle import Verdict
from .rules import fmt
from .settings import MaintenanceConfig, MaintenanceItem

DAY_S = 86400.0
# Margins a measure must clear before a stage drops back (hysteresis).
KM_MARGIN = 50.0
DAYS_MARGIN = 1.0
PCT_MARGIN = 2.0


class Stage(enum.IntEnum):
    """How due an item is."""

    UNKNOWN = -1
    OK = 0
    SOON = 1
    OVERDUE = 2


@dataclass(frozen=True, slots=True)
class ServiceDone:
    """One item done at a service: when (Unix time of the day) and at what odometer."""

    item: str
    at: float
    odometer_km: float


@dataclass(frozen=True, slots=True)
class Measures:
    """What is left before an item is due; None where unknown."""

    km: float | None = None
    days: float | None = None
    life_pct: float | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class ItemStatus:
    """The evaluated state of one maintenance item."""

    item: str
    label: str
    stage: Stage
    measures: Measures


def measures(item: MaintenanceItem, last: ServiceDone | None, odometer: float | None,
             values: Mapping[str, float | int | str], now: float) -> Measures:
    """Remaining km / days / life for one item."""
    km = days = life = None
    sources = []
    if item.life_signal is not None and isinstance(values.get(item.life_signal), int | float):
        life = float(values[item.life_signal])
        sources.append("oil-life signal")
    if item.distance_signal is not None and \
            isinstance(values.get(item.distance_signal), int | float):
        km = float(values[item.distance_signal])
        sources.append("service indicator")
    if item.days_signal is not None and isinstance(values.get(item.days_signal), int | float):
        days = float(values[item.days_signal])
        if "service indicator" not in sources:
            sources.append("service indicator")
    if life is None and last is not None:
        if km is None and item.interval_km is not None and odometer is not None:
            km = last.odometer_km + item.interval_km - odometer
        if days is None and item.interval_days is not None:
            days = (last.at + item.interval_days * DAY_S - now) / DAY_S
        sources.append("service history")
    return Measures(km, days, life, " and ".join(sources))


def stage_of(item: MaintenanceItem, m: Measures, shift: float = 0.0) -> Stage:
    """The stage for measures; ``shift`` > 0 makes higher stages stickier (the hysteresis)."""
    if m.km is None and m.days is None and m.life_pct is None:
        return Stage.UNKNOWN
    km = None if m.km is None else m.km - shift * KM_MARGIN
    days = None if m.days is None else m.days - shift * DAYS_MARGIN
    life = None if m.life_pct is None else m.life_pct - shift * PCT_MARGIN
    if (km is not None and km <= 0) or (days is not None and days <= 0) or \
            (life is not None and life <= item.life_due_pct):
        return Stage.OVERDUE
    if (km is not None and km <= item.soon_km) or (days is not None and days <= item.soon_days) \
            or (life is not None and life <= item.life_soon_pct):
        return Stage.SOON
    return Stage.OK


def next_stage(item: MaintenanceItem, m: Measures, previous: Stage) -> Stage:
    """The new stage, dropping below ``previous`` only when clear of the margin."""
    strict = stage_of(item, m)
    if strict is Stage.UNKNOWN:
        return previous  # nothing known (yet): keep what we had, e.g. a restored alert
    if strict >= previous:
        return strict
    return max(strict, min(previous, stage_of(item, m, shift=1.0)))


def _describe(label: str, stage: Stage, m: Measures) -> tuple[str, str]:
    parts = []
    if m.life_pct is not None:
        parts.append(f"{fmt(max(m.life_pct, 0.0))} % oil life left")
    if m.km is not None:
        parts.append(f"{fmt(abs(m.km))} km {'left' if m.km > 0 else 'over'}")
    if m.days is not None:
        parts.append(f"{fmt(abs(m.days))} days {'left' if m.days > 0 else 'over'}")
    detail = ", ".join(parts)
    source = f" (from the {m.source})" if m.source else ""
    if stage is Stage.OVERDUE:
        return (f"{label.capitalize()} is overdue. Please book a service.",
                f"{label.capitalize()} overdue: {detail}{source}.")
    return (f"{label.capitalize()} is due soon.", f"{label.capitalize()} due soon: {detail}{source}.")


class MaintenanceTracker:
    """Stages of every configured item; verdicts when a stage changes."""

    def __init__(self, cfg: MaintenanceConfig, odometer_signal: str) -> None:
        self.items: dict[str, MaintenanceItem] = {
            name: item for name, item in vars(cfg).items() if item.enabled}
        self.odometer_signal = odometer_signal
        self.stages = dict.fromkeys(self.items, Stage.UNKNOWN)
        self.last_done: dict[str, ServiceDone] = {}
        self.status: dict[str, ItemStatus] = {}
        self.signals = frozenset(
            s for item in self.items.values()
            for s in (item.life_signal, item.distance_signal, item.days_signal) if s
        ) | {odometer_signal}

    def set_history(self, done: Iterable[ServiceDone]) -> None:
        """Replace the service history the due dates are computed from."""
        last: dict[str, ServiceDone] = {}
        for d in done:
            prev = last.get(d.item)
            if prev is None or (d.at, d.odometer_km) >= (prev.at, prev.odometer_km):
                last[d.item] = d
        self.last_done = last

    def adopt(self, key: str, severity: str) -> bool:
        """Treat an alert restored after a restart as the current stage."""
        name = key.removeprefix("maintenance:")
        if not key.startswith("maintenance:") or name not in self.stages:
            return False
        self.stages[name] = Stage.OVERDUE if severity != "info" else Stage.SOON
        return True

    def evaluate(self, values: Mapping[str, float | int | str], now: float) -> list[Verdict]:
        """Re-evaluate every item; verdicts for stage changes."""
        odo = values.get(self.odometer_signal)
        odometer = float(odo) if isinstance(odo, int | float) else None
        out = []
        for name, item in self.items.items():
            m = measures(item, self.last_done.get(name), odometer, values, now)
            previous = self.stages[name]
            stage = next_stage(item, m, previous)
            self.status[name] = ItemStatus(name, item.label, stage, m)
            if stage == previous:
                continue
            self.stages[name] = stage
            key = f"maintenance:{name}"
            if stage >= Stage.SOON:
                spoken, text = _describe(item.label, stage, m)
                severity = "warning" if stage is Stage.OVERDUE else "info"
                out.append(Verdict(key, "maintenance", True, severity, spoken, text))
            elif previous >= Stage.SOON:
                out.append(Verdict(key, "maintenance", False, reason="serviced"))
        return out
