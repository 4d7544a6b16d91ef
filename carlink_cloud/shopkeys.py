"""Shop signing keys and completed bookings: the backend's side of shop-issued service records.

The backend holds one *registry key* (Ed25519) that certifies each shop's own Ed25519 key
(:mod:`carlink_protocol.shopsig`); both are created on first use and kept in the backend
database (``meta`` and the ``shop_keys`` table; a reference backend, so unencrypted: a real one
keeps them in an HSM or at the shop). Completing a booking
(``carlink-cloud complete-booking ID --work ... --odometer N``) signs the service record with
the shop's key and queues a ``service_record_offer`` for the car that booked it; the car asks
its driver and, on yes, appends the record with the shop's signature beside its own.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding, NoEncryption, PrivateFormat, load_pem_private_key)

from carlink_protocol import shopsig
from carlink_protocol.chain import ServiceRecord, fingerprint
from carlink_protocol.errors import RecordsError

from .errors import CloudError
from .store import CloudStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS shop_keys (
    shop_id INTEGER PRIMARY KEY, private_pem TEXT NOT NULL, cert TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS completed_bookings (
    booking_id INTEGER PRIMARY KEY, completed REAL NOT NULL, offer TEXT NOT NULL);
"""
REGISTRY_META = "shop_registry_key"
OFFER_KIND = "service_record_offer"


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def _load(pem: str) -> Ed25519PrivateKey:
    key = load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise CloudError("a stored shop or registry key is not Ed25519")
    return key


def registry_key(c: sqlite3.Connection) -> Ed25519PrivateKey:
    """The registry key (created inside the caller's transaction on first use)."""
    row = c.execute("SELECT value FROM meta WHERE key = ?", (REGISTRY_META,)).fetchone()
    if row is not None:
        return _load(row[0])
    key = Ed25519PrivateKey.generate()
    c.execute("INSERT INTO meta VALUES (?, ?)", (REGISTRY_META, _pem(key)))
    return key


def shop_key(c: sqlite3.Connection, shop_id: int, shop: str,
             today: dt.date) -> tuple[Ed25519PrivateKey, dict[str, Any]]:
    """A shop's key and its certificate (created and certified on first use)."""
    row = c.execute("SELECT private_pem, cert FROM shop_keys WHERE shop_id = ?",
                    (shop_id,)).fetchone()
    if row is not None:
        return _load(row[0]), json.loads(row[1])
    key = Ed25519PrivateKey.generate()
    cert = shopsig.make_cert(registry_key(c), shop, shop_id, key.public_key(), today.isoformat())
    c.execute("INSERT INTO shop_keys VALUES (?,?,?)", (shop_id, _pem(key), json.dumps(cert)))
    return key, cert


def ensure_schema(store: CloudStore) -> None:
    """Create this module's tables (idempotent)."""
    store.conn.executescript(SCHEMA)


def registry_fingerprint(store: CloudStore) -> tuple[str, str]:
    """(fingerprint, hex) of the registry key, created if needed: what a buyer compares."""
    ensure_schema(store)
    with store.tx() as c:
        public = registry_key(c).public_key()
    return fingerprint(public), shopsig._hex(public)


def items_of(work: str) -> tuple[str, ...]:
    """'oil change, brake fluid' -> ('oil_change', 'brake_fluid')."""
    items = tuple(re.sub(r"[^a-z0-9]+", "_", w.strip().lower()).strip("_")[:40]
                  for w in work.split(","))
    if not all(items):
        raise CloudError(f"--work {work!r}: name the work done, e.g. 'oil change'")
    return items


def complete_booking(store: CloudStore, booking_id: int, work: str, odometer: int,
                     parts: Sequence[str] = (), cost: str | None = None,
                     currency: str | None = None, now: float | None = None) -> dict[str, Any]:
    """Sign the record of a completed booking and queue the offer for its car; the offer."""
    now = time.time() if now is None else now
    ensure_schema(store)
    with store.tx() as c:
        row = c.execute("SELECT b.device_id, d.name, s.id, s.name, b.service FROM bookings b "
                        "JOIN devices d ON d.id = b.device_id JOIN shops s ON s.id = b.shop_id "
                        "WHERE b.id = ?", (booking_id,)).fetchone()
        if row is None:
            raise CloudError(f"no booking {booking_id}")
        if c.execute("SELECT 1 FROM completed_bookings WHERE booking_id = ?",
                     (booking_id,)).fetchone():
            raise CloudError(f"booking {booking_id} is already completed")
        device_id, device, shop_id, shop, service = row
        today = dt.datetime.fromtimestamp(now, dt.UTC).date()
        try:
            record = ServiceRecord(today.isoformat(), odometer, shop, items_of(work),
                                   tuple(parts), cost, currency, work)
        except RecordsError as err:
            raise CloudError(str(err)) from err
        key, cert = shop_key(c, shop_id, shop, today)
        sig = shopsig.sign_record(key, cert, registry_key(c).public_key(), record.to_json(),
                                  booking_id, device)
        offer = {"booking_id": booking_id, "shop": shop, "service": service, "work": work,
                 "record": record.to_json(), "shop_sig": sig}
        store.append_down(c, device_id, OFFER_KIND, offer, now)
        c.execute("INSERT INTO completed_bookings VALUES (?,?,?)",
                  (booking_id, now, json.dumps(offer)))
    return offer
