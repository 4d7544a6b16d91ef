"""What an intact chain says about the car (pure): who vouches for each record, odometer rollbacks.

:func:`carlink_protocol.chain.verify` proves the entries are the device's, unaltered and
complete; :func:`audit` then reads them: each service record's shop signature
(:mod:`carlink_protocol.shopsig`) and the odometer over time, from the car's own readings and
from the records' odometer figures. Each problem is a finding ``(kind, text)``:

- ``shop-signature``: a shop signature that does not match its record;
- ``forged-shop-key``: a shop key that the (trusted) registry did not certify;
- ``odometer-rollback``: a reading lower than an earlier one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import shopsig
from .chain import Entry

ROLLBACK = "odometer-rollback"
# Readings may differ by rounding (DBC 0.1 km vs OBD 1 km, a shop's whole km): a drop is a
# rollback only when larger than this.
ROLLBACK_TOLERANCE_KM = 2


@dataclass(frozen=True)
class Reading:
    """One odometer reading in the chain: entry seq, date, km, where it came from."""

    seq: int
    date: str
    km: int
    source: str  # dbc, obd, shop, owner


@dataclass
class Audit:
    """Labels per entry seq, odometer readings in chain order, and the findings."""

    labels: dict[int, shopsig.ShopCheck]
    readings: list[Reading]
    findings: list[tuple[str, str]]


def odometer_readings(entries: Sequence[Entry],
                      labels: Mapping[int, shopsig.ShopCheck] | None = None) -> list[Reading]:
    """Every odometer figure in the chain, in chain order (malformed ones skipped)."""
    out = []
    for entry in entries:
        body = entry.body
        odo, rec = body.get("odometer"), body.get("record")
        if isinstance(odo, Mapping) and _whole(odo.get("km")):
            out.append(Reading(entry.seq, str(odo.get("date", "")), int(odo["km"]),
                               str(odo.get("source", "car"))))
        elif isinstance(rec, Mapping) and _whole(rec.get("odometer_km")):
            check = (labels or {}).get(entry.seq)
            source = "shop" if check is not None and check.status == shopsig.SHOP_SIGNED \
                else "owner"
            out.append(Reading(entry.seq, str(rec.get("date", "")), int(rec["odometer_km"]),
                               source))
    return out


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def rollbacks(readings: Sequence[Reading],
              tolerance: int = ROLLBACK_TOLERANCE_KM) -> list[tuple[Reading, Reading]]:
    """(reading, the lower one right after it) for each drop beyond ``tolerance``: a rollback is
    reported where it happened, not again for every later reading below the old figure."""
    return [(a, b) for a, b in zip(readings, readings[1:]) if b.km < a.km - tolerance]


def audit(entries: Sequence[Entry], registry: Ed25519PublicKey | None) -> Audit:
    """Shop checks per service entry, the odometer readings, and every finding."""
    labels: dict[int, shopsig.ShopCheck] = {}
    findings: list[tuple[str, str]] = []
    for entry in entries:
        if entry.kind != "service":
            continue
        check = shopsig.check(entry.body, registry)
        labels[entry.seq] = check
        if not check.ok:
            findings.append((check.status, f"record #{entry.seq}: {check.detail}"))
    readings = odometer_readings(entries, labels)
    for top, low in rollbacks(readings):
        findings.append((ROLLBACK, f"record #{low.seq} ({low.date}, {low.source}) reads "
                         f"{low.km} km after record #{top.seq} ({top.date}, {top.source}) "
                         f"read {top.km} km"))
    return Audit(labels, readings, findings)
