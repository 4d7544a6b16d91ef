"""Alert lifecycle (pure): raised -> acknowledged -> cleared, deduplicated by a stable key.

Rules report *verdicts* (this key is active with this severity and text, or no longer active);
:class:`AlertBook` turns them into hub events according to one stated policy:

- **Dedup.** While an alert is active (raised or acknowledged) a repeated verdict for its key
  only refreshes its text; nothing is published.
- **Escalation.** A verdict with a higher severity than the active alert re-raises it
  (``reason="escalated"``, spoken, needs a new acknowledgement).
- **Acknowledged** alerts stay silent until cleared, except critical ones (below).
- **Return after clearing.** A non-critical alert that comes back within ``reraise_quiet_s`` of
  being cleared is raised again for screens but not spoken (``announce=False``,
  ``reason="returned"``); after that it is new again.
- **Critical alerts are never suppressed**: always announced, also when returning, and an
  active critical alert is announced again every ``critical_reminder_s`` (``reason="reminder"``)
  whether or not it was acknowledged.

State changes happen only in :meth:`AlertBook._transition`, which logs each one.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ..events import AlertAcknowledged, AlertCleared, AlertRaised, Event

log = logging.getLogger(__name__)

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class AlertState(enum.Enum):
    """Where an alert is in its lifecycle."""

    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a rule concluded about one alert key at one moment."""

    key: str
    kind: str
    active: bool
    severity: str = "info"
    spoken: str = ""
    text: str = ""
    reason: str = ""


@dataclass(slots=True)
class Alert:
    """One alert as the book tracks it."""

    key: str
    kind: str
    severity: str
    spoken: str
    text: str
    state: AlertState
    raised_at: float
    updated_at: float
    announced_at: float
    times_raised: int = 1

    @property
    def active(self) -> bool:
        """Raised or acknowledged (not cleared)."""
        return self.state is not AlertState.CLEARED

    def raised_event(self, now: float, announce: bool, reason: str) -> AlertRaised:
        """The AlertRaised event describing this alert now."""
        return AlertRaised(self.key, self.kind, self.severity, self.spoken, self.text, now,
                           announce, reason)


class AlertBook:
    """Every known alert by key, and the policy that turns verdicts into events."""

    def __init__(self, reraise_quiet_s: float = 900.0, critical_reminder_s: float = 300.0) -> None:
        self.reraise_quiet_s = reraise_quiet_s
        self.critical_reminder_s = critical_reminder_s
        self.alerts: dict[str, Alert] = {}

    def active(self) -> list[Alert]:
        """Active alerts, most severe first, then newest first."""
        items = [a for a in self.alerts.values() if a.active]
        return sorted(items, key=lambda a: (-SEVERITY_RANK[a.severity], -a.raised_at))

    def apply(self, verdict: Verdict, now: float) -> list[Event]:
        """Apply one rule verdict; return the events it causes (often none)."""
        alert = self.alerts.get(verdict.key)
        if not verdict.active:
            if alert is None or not alert.active:
                return []
            self._transition(alert, AlertState.CLEARED, now, verdict.reason or "condition cleared")
            return [AlertCleared(alert.key, now, verdict.reason)]
        if alert is not None and alert.active:
            return self._refresh(alert, verdict, now)
        critical = verdict.severity == "critical"
        recent = alert is not None and now - alert.updated_at < self.reraise_quiet_s
        announce = critical or not recent
        reason = "returned" if alert is not None else "new"
        times = alert.times_raised + 1 if alert is not None else 1
        alert = Alert(verdict.key, verdict.kind, verdict.severity, verdict.spoken, verdict.text,
                      AlertState.CLEARED, now, now, now if announce else -1e18, times)
        self.alerts[verdict.key] = alert
        self._transition(alert, AlertState.RAISED, now, reason)
        return [alert.raised_event(now, announce, reason)]

    def _refresh(self, alert: Alert, verdict: Verdict, now: float) -> list[Event]:
        escalated = SEVERITY_RANK[verdict.severity] > SEVERITY_RANK[alert.severity]
        alert.severity, alert.spoken, alert.text = verdict.severity, verdict.spoken, verdict.text
        if not escalated:
            return []
        alert.announced_at = now
        alert.times_raised += 1
        self._transition(alert, AlertState.RAISED, now, "escalated")
        return [alert.raised_event(now, True, "escalated")]

    def acknowledge(self, key: str | None, now: float, origin: str = "") -> list[Event]:
        """Acknowledge one raised alert (``None``: the newest raised one)."""
        if key is None:
            raised = [a for a in self.alerts.values() if a.state is AlertState.RAISED]
            if not raised:
                return []
            key = max(raised, key=lambda a: a.updated_at).key
        alert = self.alerts.get(key)
        if alert is None or alert.state is not AlertState.RAISED:
            return []
        self._transition(alert, AlertState.ACKNOWLEDGED, now, origin or "acknowledged")
        return [AlertAcknowledged(key, now, origin)]

    def tick(self, now: float) -> list[Event]:
        """Time-driven policy: critical reminders, forgetting long-cleared alerts."""
        out: list[Event] = []
        reminder = self.critical_reminder_s
        for alert in list(self.alerts.values()):
            if not alert.active:
                if now - alert.updated_at >= self.reraise_quiet_s:
                    del self.alerts[alert.key]
                continue
            if reminder > 0 and alert.severity == "critical" and \
                    now - alert.announced_at >= reminder:
                alert.announced_at = now
                if alert.state is not AlertState.RAISED:
                    self._transition(alert, AlertState.RAISED, now, "reminder")
                out.append(alert.raised_event(now, True, "reminder"))
        return out

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Adopt alerts that were active before a restart, without announcing them again."""
        for alert in alerts:
            if alert.active:
                self.alerts[alert.key] = alert
                log.info("alert %s restored (%s, %s)", alert.key, alert.severity,
                         alert.state.value)

    def _transition(self, alert: Alert, state: AlertState, now: float, why: str) -> None:
        """The one place alert state changes; logs every transition."""
        if alert.state is not state:
            log.info("alert %s: %s -> %s (%s)", alert.key, alert.state.value, state.value, why)
        alert.state = state
        alert.updated_at = now
