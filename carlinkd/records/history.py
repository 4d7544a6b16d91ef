"""Service history on the store: append, list, verify, export and verify offline bundles."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import date, datetime, UTC
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..alerts.maintenance import ServiceDone
from ..errors import BundleError, RecordsError
from ..store.db import ServiceRow, Store
from carlink_protocol.audit import audit
from carlink_protocol.chain import (
    Entry, Report, ServiceRecord, canonical, fingerprint, key_id, make_entry, raw_public,
    sign_head, verify)
from carlink_protocol.shopsig import FORGED_SHOP_KEY, public_from_hex

BUNDLE_FORMAT = "carlinkd-service-history"
HEAD_META_KEY = "service_head"
REGISTRY_META_KEY = "shop_registry_key"  # hex; from the first accepted shop offer


def entry_from_row(row: ServiceRow) -> Entry:
    """Parse a stored row; an unparseable body still yields an entry (that fails its hash)."""
    try:
        body = json.loads(row.body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"unparseable": row.body}
    return Entry(body, row.hash, row.signature, row.key_id)


class ServiceHistory:
    """The device's signed service history in a :class:`Store`."""

    def __init__(self, store: Store, key: Ed25519PrivateKey) -> None:
        self.store = store
        self.key = key
        self.public: Ed25519PublicKey = key.public_key()

    @property
    def fingerprint(self) -> str:
        """The device key's fingerprint, for buyers to compare."""
        return fingerprint(self.public)

    async def entries(self) -> list[Entry]:
        """Every entry in storage order (unverified)."""
        return [entry_from_row(r) for r in await self.store.service_rows()]

    async def head(self) -> dict[str, Any] | None:
        """The stored signed head, or None."""
        text = await self.store.get_meta(HEAD_META_KEY)
        if text is None:
            return None
        try:
            head = json.loads(text)
        except ValueError:
            return {"unparseable": text}
        return head if isinstance(head, dict) else {"unparseable": text}

    async def verify(self, registry: Ed25519PublicKey | None = None) -> Report:
        """Verify the stored chain and head with the device key, then audit it (shop
        signatures against ``registry`` or the stored registry key, odometer rollbacks)."""
        entries = await self.entries()
        report = verify(entries, self.public, await self.head())
        if report.ok:
            report.findings = audit(entries, registry or await self.registry_key()).findings
        return report

    async def registry_key(self) -> Ed25519PublicKey | None:
        """The backend's shop registry key as the car received it (None before any offer)."""
        text = await self.store.get_meta(REGISTRY_META_KEY)
        try:
            return public_from_hex(text) if text else None
        except ValueError:
            return None

    async def add(self, record: ServiceRecord | None, now: float | None = None,
                  extra: Mapping[str, Any] | None = None) -> Entry:
        """Append a record (with ``extra`` body fields such as ``shop_sig``), or evidence
        (``record`` None, ``extra`` {"odometer": ...} or {"dtc": ...}); refuses when the
        existing history does not verify."""
        report = verify(await self.entries(), self.public, await self.head())
        if not report.ok:
            raise RecordsError(f"service history does not verify, not appending: {report.problem}")
        recorded_at = int(time.time() if now is None else now)
        verified_last = report.head.get("last") if report.count else None
        made: list[Entry] = []

        def make(last: ServiceRow | None) -> tuple[ServiceRow, str]:
            prev = entry_from_row(last) if last is not None else None
            if (prev.hash if prev else None) != verified_last:
                raise RecordsError("service history changed while adding; try again")
            entry = make_entry(prev, record, recorded_at, self.key, extra)
            made.append(entry)
            head = sign_head({"count": entry.seq, "last": entry.hash}, self.key)
            pos = last.pos + 1 if last is not None else 1
            row = ServiceRow(pos, canonical(entry.body).decode("utf-8"), entry.hash,
                             entry.signature, entry.key_id)
            return row, canonical(head).decode("utf-8")

        await self.store.append_service(make)
        return made[0]

    async def export(self, vin: str | None = None, now: float | None = None) -> dict[str, Any]:
        """A self-contained bundle: entries, public key, and a head signed for this export."""
        entries = await self.entries()
        report = verify(entries, self.public, await self.head())
        if not report.ok:
            raise RecordsError(f"service history does not verify, not exporting: {report.problem}")
        vin = vin or await self.store.get_meta("vin")
        exported = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        head_fields = {"count": len(entries), "last": entries[-1].hash if entries else "0" * 64,
                       "vin": vin, "exported_at": exported.strftime("%Y-%m-%dT%H:%M:%SZ")}
        registry = await self.store.get_meta(REGISTRY_META_KEY)
        return {"format": BUNDLE_FORMAT, "version": 1,
                "public_key": raw_public(self.public).hex(), "key_id": key_id(self.public),
                "vin": vin, "head": sign_head(head_fields, self.key),
                **({"registry_key": registry} if registry else {}),
                "entries": [e.to_json() for e in entries]}


def service_done(entries: list[Entry]) -> list[ServiceDone]:
    """Items done per record, for maintenance due dates (unparseable entries are skipped)."""
    done = []
    for entry in entries:
        try:
            rec = entry.record
        except RecordsError:
            continue
        day = datetime.combine(date.fromisoformat(rec.date), datetime.min.time(), UTC)
        done += [ServiceDone(item, day.timestamp(), float(rec.odometer_km)) for item in rec.items]
    return done


def read_bundle(path: Path) -> dict[str, Any]:
    """Load a bundle file (BundleError when it is not a bundle)."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as err:
        raise BundleError(f"{path}: cannot read: {err.strerror}") from err
    except ValueError as err:
        raise BundleError(f"{path}: not JSON: {err}") from err
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a {BUNDLE_FORMAT} bundle")
    return data


def verify_bundle(bundle: Mapping[str, Any], expect_key: str | None = None,
                  registry_key: str | None = None) -> Report:
    """Verify a bundle offline with its own public key (and, if given, the expected key id),
    then audit it; shop keys are checked against ``registry_key`` (a fingerprint or hex key the
    verifier trusts) or, without one, against the registry key the bundle carries."""
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(bundle["public_key"])))
        entries = [Entry(dict(e["body"]), str(e["hash"]), str(e["signature"]), str(e["key_id"]))
                   for e in bundle["entries"]]
        head = bundle.get("head")
    except (KeyError, TypeError, ValueError) as err:
        raise BundleError(f"bundle is malformed: {err!r}") from err
    if expect_key is not None:
        want = expect_key.replace(" ", "").replace(":", "").lower()
        if not want or not key_id(public).startswith(want):
            return Report(False, len(entries), f"bundle is signed by key {fingerprint(public)}, "
                          f"not the expected {expect_key}", None, "wrong-key",
                          fingerprint(public))
    report = verify(entries, public, head if isinstance(head, dict) else None)
    if report.ok and report.head.get("vin") != bundle.get("vin"):
        report.ok, report.kind = False, "edited"
        report.problem = (f"bundle VIN {bundle.get('vin')!r} differs from the signed VIN "
                          f"{report.head.get('vin')!r}")
    if report.ok:
        registry = _bundle_registry(bundle, registry_key, report)
        report.findings += audit(entries, registry).findings
    return report


def _bundle_registry(bundle: Mapping[str, Any], trusted: str | None,
                     report: Report) -> Ed25519PublicKey | None:
    """The registry key to check shop keys with: the bundle's, which must match ``trusted``."""
    try:
        carried = public_from_hex(bundle["registry_key"]) if bundle.get("registry_key") else None
    except ValueError:
        carried = None
    if trusted is None:
        return carried
    want = trusted.replace(" ", "").replace(":", "").lower()
    if carried is not None and want and (key_id(carried).startswith(want)
                                         or raw_public(carried).hex() == want):
        return carried
    report.findings.append((FORGED_SHOP_KEY, f"the bundle's registry key "
                            f"{fingerprint(carried) if carried else '(none)'} is not the "
                            f"trusted {trusted}"))
    return carried
