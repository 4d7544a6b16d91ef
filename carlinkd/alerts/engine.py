"""The alert engine (pure): signal values, DTCs and time in; alert events out.

Nothing here reads a clock or does I/O: every call takes ``now`` (seconds on a monotonic time
base; a value older than the last one seen is treated as the last one) and returns the hub
events to publish, stamped in that time base. Maintenance due dates are counted in days from
service records stamped in wall time: ``wall_offset`` (wall - monotonic, set by the adapter)
converts ``now`` for them. :class:`carlinkd.alerts.service.AlertService` is the adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..events import Event
from .lifecycle import Alert, AlertBook, Verdict
from .maintenance import ItemStatus, MaintenanceTracker, ServiceDone
from .rules import SlowLeakAlert, ThresholdAlert, Value, dtc_severity, dtc_verdict, mil_verdict
from .settings import ODOMETER, AlertsConfig, ThresholdRule

# Maintenance due dates move slowly; re-evaluated on its signals and at most this often otherwise.
MAINTENANCE_EVERY_S = 60.0
BUILT_IN_THRESHOLDS = ("tire_pressure_low", "coolant_high", "coolant_critical", "battery_low",
                       "fuel_low")


class AlertEngine:
    """Every rule, the maintenance tracker and the alert book, fed by plain data."""

    def __init__(self, cfg: AlertsConfig) -> None:
        self.cfg = cfg
        self.wall_offset = 0.0  # wall - monotonic; maintenance due dates are in wall time
        self.book = AlertBook(cfg.reraise_quiet_s, cfg.critical_reminder_s)
        rules: dict[str, ThresholdRule] = {n: getattr(cfg, n) for n in BUILT_IN_THRESHOLDS}
        rules.update(cfg.extra)
        self.thresholds = [ThresholdAlert(name, rule) for name, rule in rules.items()
                           if rule.enabled]
        self.slow_leak = SlowLeakAlert(cfg.slow_leak) if cfg.slow_leak.enabled else None
        self.maintenance = MaintenanceTracker(cfg.maintenance, ODOMETER)
        self.latest: dict[str, Value] = {}
        self.now = -1e18
        self._maintenance_at = -1e18
        self._maintenance_dirty = True
        self._by_signal: dict[str, list[ThresholdAlert]] = {}
        for rule in self.thresholds:
            for signal in rule.signals:
                self._by_signal.setdefault(signal, []).append(rule)

    def _clock(self, now: float) -> float:
        if now > self.now:
            self.now = now
        return self.now

    def update(self, values: Mapping[str, Value], now: float) -> list[Event]:
        """Take changed signal values (canonical name -> value) and evaluate what they touch."""
        now = self._clock(now)
        self.latest.update(values)
        touched: set[int] = set()
        verdicts: list[Verdict] = []
        for name in values:
            for rule in self._by_signal.get(name, ()):
                if id(rule) not in touched:
                    touched.add(id(rule))
                    verdicts += rule.evaluate(self.latest, now)
            if name in self.maintenance.signals:
                self._maintenance_dirty = True
        return self._apply(verdicts, now) + self.tick(now, _skip=touched)

    def tick(self, now: float, _skip: set[int] | None = None) -> list[Event]:
        """Advance time: hold timers, slow-leak sampling, maintenance, critical reminders."""
        now = self._clock(now)
        verdicts: list[Verdict] = []
        for rule in self.thresholds:
            if rule.timing and (_skip is None or id(rule) not in _skip):
                verdicts += rule.evaluate(self.latest, now)
        if self.slow_leak is not None:
            verdicts += self.slow_leak.evaluate(self.latest, now)
        if self._maintenance_dirty or now - self._maintenance_at >= MAINTENANCE_EVERY_S:
            self._maintenance_dirty = False
            self._maintenance_at = now
            verdicts += self.maintenance.evaluate(self.latest, now + self.wall_offset)
        return self._apply(verdicts, now) + self.book.tick(now)

    def dtc_set(self, ecu: int, code: str, description: str, now: float) -> list[Event]:
        """An ECU reported a trouble code."""
        now = self._clock(now)
        severity = dtc_severity(code, self.cfg.dtc_severity)
        return self.book.apply(dtc_verdict(ecu, code, description, severity), now)

    def dtc_cleared(self, code: str, now: float) -> list[Event]:
        """A trouble code is gone (cleared by a tool or healed)."""
        now = self._clock(now)
        return self.book.apply(Verdict(f"dtc:{code}", "dtc", False, reason="code cleared"), now)

    def mil(self, on: bool, dtc_count: int, now: float) -> list[Event]:
        """The malfunction indicator lamp changed."""
        now = self._clock(now)
        return self.book.apply(mil_verdict(on, dtc_count, self.cfg.mil_severity), now)

    def acknowledge(self, key: str | None, now: float, origin: str = "") -> list[Event]:
        """The driver acknowledged an alert (``None``: the newest raised one)."""
        return self.book.acknowledge(key, self._clock(now), origin)

    def set_service_history(self, done: Iterable[ServiceDone]) -> None:
        """Replace the service history maintenance is computed from (re-evaluated next tick)."""
        self.maintenance.set_history(done)
        self._maintenance_dirty = True

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Adopt alerts active before a restart: not announced again, cleared when conditions say."""
        alerts = list(alerts)
        for alert in alerts:
            for rule in self.thresholds:
                if rule.adopt(alert.key):
                    break
            else:
                if self.slow_leak is None or not self.slow_leak.adopt(alert.key):
                    self.maintenance.adopt(alert.key, alert.severity)
        self.book.restore(alerts)

    def active(self) -> list[Alert]:
        """Active alerts, most severe first."""
        return self.book.active()

    def maintenance_status(self) -> dict[str, ItemStatus]:
        """The last evaluated stage of every maintenance item."""
        return dict(self.maintenance.status)

    def _apply(self, verdicts: list[Verdict], now: float) -> list[Event]:
        out: list[Event] = []
        for verdict in verdicts:
            out += self.book.apply(verdict, now)
        return out
