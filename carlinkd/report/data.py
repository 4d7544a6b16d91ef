"""What a condition report shows, gathered from the store and the signed chain (no rendering)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, UTC
from typing import TYPE_CHECKING

from carlink_protocol.audit import Reading, audit
from carlink_protocol.chain import Entry, Report, fingerprint
from carlink_protocol.shopsig import OWNER_ENTERED, ShopCheck

from ..records.evidence import BATTERY, TYRES

if TYPE_CHECKING:
    from ..records.history import ServiceHistory

TYRE_LABELS = ("front left", "front right", "rear left", "rear right")


@dataclass(frozen=True)
class ServiceLine:
    """One service entry as the report lists it."""

    seq: int
    date: str
    km: int
    shop: str
    work: str
    parts: str
    check: ShopCheck


@dataclass(frozen=True)
class FaultLine:
    """One trouble code: when it was set and (if) cleared, from the chain."""

    code: str
    description: str
    set_on: str
    cleared_on: str


@dataclass
class ReportData:
    """Everything the HTML shows, already filtered by ``since``."""

    vin: str
    generated: str
    since: str
    report: Report
    device_key: str
    registry_key: str
    head_hash: str
    services: list[ServiceLine] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    faults: list[FaultLine] = field(default_factory=list)
    battery: list[tuple[float, float]] = field(default_factory=list)
    tyres: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    open_alerts: list[tuple[str, str, str]] = field(default_factory=list)  # severity, text, date
    alert_log: list[tuple[str, str, str, str]] = field(default_factory=list)  # date, event, ...
    bundle_name: str = ""


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def services(entries: list[Entry], labels: Mapping[int, ShopCheck],
             since: str) -> list[ServiceLine]:
    """Service entries on or after ``since`` with who vouches for each."""
    out = []
    for e in entries:
        rec = e.body.get("record")
        if e.kind != "service" or not isinstance(rec, Mapping) or str(rec.get("date")) < since:
            continue
        out.append(ServiceLine(e.seq, str(rec.get("date")), int(rec.get("odometer_km", 0)),
                               str(rec.get("shop", "")), ", ".join(map(str, rec.get("items", []))),
                               ", ".join(map(str, rec.get("parts", []))),
                               labels.get(e.seq, ShopCheck(OWNER_ENTERED))))
    return out


def faults(entries: list[Entry], since: str) -> list[FaultLine]:
    """Trouble codes from the chain's dtc entries, set date paired with the next clear."""
    out: list[FaultLine] = []
    open_: dict[str, int] = {}
    for e in entries:
        d = e.body.get("dtc")
        if not isinstance(d, Mapping):
            continue
        key, day = f"{d.get('ecu')}:{d.get('code')}", str(d.get("date", ""))
        if d.get("event") == "set":
            open_[key] = len(out)
            out.append(FaultLine(str(d.get("code")), str(d.get("description", "")), day, ""))
        elif key in open_:
            i = open_.pop(key)
            out[i] = FaultLine(out[i].code, out[i].description, out[i].set_on, day)
        else:
            out.append(FaultLine(str(d.get("code")), "", "", day))
    return [f for f in out if max(f.set_on, f.cleared_on) >= since]


async def gather(history: ServiceHistory, since: date | None, now: float) -> ReportData:
    """Read the chain, its verification and audit, the trends and alerts for one report."""
    store = history.store
    entries = await history.entries()
    registry = await history.registry_key()
    report = await history.verify()
    checked = audit(entries, registry) if report.ok else audit([], None)
    since_s = since.isoformat() if since else ""
    since_ts = datetime.combine(since, datetime.min.time(), UTC).timestamp() \
        if since else 0.0
    data = ReportData(
        vin=await store.get_meta("vin") or "", generated=_day(now), since=since_s,
        report=report, device_key=history.fingerprint,
        registry_key=fingerprint(registry) if registry else "",
        head_hash=entries[-1].hash if entries else "")
    data.services = services(entries, checked.labels, since_s)
    data.readings = [r for r in checked.readings if r.date >= since_s]
    data.faults = faults(entries, since_s)
    data.battery = await store.samples(BATTERY, since_ts)
    for name, label in zip(TYRES, TYRE_LABELS):
        data.tyres[label] = await store.samples(name, since_ts)
    data.open_alerts = [(a.severity, a.text, _day(a.raised_at))
                        for a in await store.active_alerts()]
    data.alert_log = [(_day(at), str(event), str(sev or ""), str(text or key))
                      for at, key, event, sev, text, _ in await store.alert_history(200)
                      if at >= since_ts][:60]
    return data

