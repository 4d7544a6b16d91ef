"""The reference backend's SQLite database: devices, per-device logs, admin functions.

Synchronous ``sqlite3`` (WAL, synchronous=FULL): the server runs every call on one database
thread, the admin commands call it directly. Upstream items are deduplicated on (device, id) and
their first answer is kept, so a retransmission gets the same answer and no second effect.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CloudError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from carlink_protocol import wire as p
from carlink_protocol.chain import key_id

from .shops import Shop, parse_clock, parse_days

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL DEFAULT '', region TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1, acked_seq INTEGER NOT NULL DEFAULT 0,
    record_key TEXT, record_index INTEGER NOT NULL DEFAULT 0, record_head TEXT,
    revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS upstream (
    device_id INTEGER NOT NULL, item_id TEXT NOT NULL, class TEXT NOT NULL, kind TEXT NOT NULL,
    body TEXT NOT NULL, created REAL NOT NULL, received REAL NOT NULL, status TEXT NOT NULL,
    reason TEXT NOT NULL, result TEXT NOT NULL, PRIMARY KEY (device_id, item_id));
CREATE TABLE IF NOT EXISTS downstream (
    device_id INTEGER NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,
    created REAL NOT NULL, PRIMARY KEY (device_id, seq));
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, model TEXT NOT NULL DEFAULT '',
    region TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS members (
    group_id INTEGER NOT NULL, device_id INTEGER NOT NULL, PRIMARY KEY (group_id, device_id));
CREATE TABLE IF NOT EXISTS shops (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, lat REAL NOT NULL, lon REAL NOT NULL,
    days TEXT NOT NULL, opens INTEGER NOT NULL, closes INTEGER NOT NULL,
    slot_minutes INTEGER NOT NULL, capacity INTEGER NOT NULL, services TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bookings (
    id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL, item_id TEXT NOT NULL,
    shop_id INTEGER NOT NULL, service TEXT NOT NULL, day TEXT NOT NULL, slot INTEGER NOT NULL,
    starts REAL NOT NULL, reminded INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS bookings_slot ON bookings (shop_id, day, slot);
CREATE TABLE IF NOT EXISTS help_requests (
    id TEXT PRIMARY KEY, device_id INTEGER NOT NULL, lat REAL, lon REAL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    device_id INTEGER NOT NULL, idx INTEGER NOT NULL, hash TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (device_id, idx));
CREATE TABLE IF NOT EXISTS record_keys (
    device_id INTEGER PRIMARY KEY, key_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS status (
    device_id INTEGER PRIMARY KEY, body TEXT NOT NULL, created REAL NOT NULL, lat REAL, lon REAL);
"""


@dataclass(frozen=True)
class Device:
    """An enrolled car."""

    id: int
    name: str
    model: str
    region: str


def record_key_id(text: str) -> str:
    """A service-record key as enrolled: the fingerprint `carlinkd records list` prints
    (32 hex digits, spaces allowed) or the raw Ed25519 public key (64 hex digits); returns the
    key id (carlink_protocol.chain.key_id)."""
    digits = "".join(text.split()).lower()
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raw = b""
    if len(raw) == 32:
        return key_id(Ed25519PublicKey.from_public_bytes(raw))
    if len(raw) == 16:
        return digits
    raise CloudError(f"record key {text[:80]!r}: expected the device key fingerprint "
                     "(32 hex digits, as `carlinkd records list` prints it) or the raw public "
                     "key (64 hex digits)")


def token_hash(token: str) -> str:
    """Tokens are stored hashed (SHA-256); a database leak does not leak credentials."""
    return hashlib.sha256(token.encode()).hexdigest()


class CloudStore:
    """The backend database; not thread-safe, use from one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.conn.executescript(SCHEMA)
            with self.tx():
                if self.meta("epoch") is None:
                    self.conn.execute("INSERT INTO meta VALUES ('epoch', ?)", (uuid.uuid4().hex,))
        except (OSError, sqlite3.Error) as err:
            raise CloudError(f"cannot open cloud database {path}: {err}") from err
        self.epoch = str(self.meta("epoch"))

    def close(self) -> None:
        """Close the database."""
        self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; committed (durably) on success, rolled back on error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        """A value from the meta table."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- admin ---------------------------------------------------------------------------

    def add_device(self, name: str, model: str = "", region: str = "",
                   record_key: str | None = None) -> str:
        """Enroll a car (and the key its service history is signed with); returns its token
        (shown once, stored hashed)."""
        token = secrets.token_urlsafe(32)
        kid = None if record_key is None else record_key_id(record_key)
        try:
            with self.tx() as c:
                dev = c.execute("INSERT INTO devices (name, token_hash, model, region, created) "
                                "VALUES (?,?,?,?,strftime('%s','now')) RETURNING id",
                                (name, token_hash(token), model, region)).fetchone()[0]
                if kid is not None:
                    self._bind_record_key(c, dev, kid)
        except sqlite3.IntegrityError as err:
            raise CloudError(f"device {name!r} already exists") from err
        return token

    def set_record_key(self, name: str, record_key: str) -> None:
        """Register (or replace) the key a car's service history must be signed with."""
        dev = self.device_by_name(name)
        with self.tx() as c:
            self._bind_record_key(c, dev.id, record_key_id(record_key))

    @staticmethod
    def _bind_record_key(c: sqlite3.Connection, device_id: int, kid: str) -> None:
        other = c.execute("SELECT d.name FROM record_keys k JOIN devices d ON d.id = k.device_id"
                          " WHERE k.key_id = ? AND k.device_id != ?", (kid, device_id)).fetchone()
        if other is not None:
            raise CloudError(f"record key {kid} is already enrolled for {other[0]!r}")
        c.execute("INSERT OR REPLACE INTO record_keys VALUES (?,?)", (device_id, kid))

    def record_key(self, c: sqlite3.Connection, device_id: int) -> str | None:
        """The key id a device's service history must be signed with, if one is enrolled."""
        row = c.execute("SELECT key_id FROM record_keys WHERE device_id = ?",
                        (device_id,)).fetchone()
        return None if row is None else str(row[0])

    def revoke_device(self, name: str) -> None:
        """Refuse the device's token from now on."""
        with self.tx() as c:
            if not c.execute("UPDATE devices SET revoked = 1 WHERE name = ?", (name,)).rowcount:
                raise CloudError(f"no device {name!r}")

    def add_group(self, name: str, model: str = "", region: str = "",
                  members: Sequence[str] = ()) -> None:
        """Create a group for a car model and region ('' = any) and add members to it."""
        with self.tx() as c:
            c.execute("INSERT OR IGNORE INTO groups (name, model, region) VALUES (?,?,?)",
                      (name, model, region))
            gid = c.execute("SELECT id FROM groups WHERE name = ?", (name,)).fetchone()[0]
            for member in members:
                dev = self.device_by_name(member)
                c.execute("INSERT OR IGNORE INTO members VALUES (?,?)", (gid, dev.id))

    def add_shop(self, name: str, lat: float, lon: float, days: str = "mon-fri",
                 opens: str = "08:00", closes: str = "18:00", slot_minutes: int = 60,
                 capacity: int = 2, services: Sequence[str] = ()) -> None:
        """Register a service shop with opening hours and per-slot capacity."""
        try:
            row = (name, lat, lon, ",".join(map(str, parse_days(days))), parse_clock(opens),
                   parse_clock(closes), slot_minutes, capacity,
                   ",".join(s.lower() for s in services))
        except ValueError as err:
            raise CloudError(str(err)) from err
        if capacity < 1 or slot_minutes < 5 or row[5] - row[4] < slot_minutes:
            raise CloudError("capacity must be >= 1 and the shop open for at least one slot")
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO shops (name, lat, lon, days, opens, closes, "
                      "slot_minutes, capacity, services) VALUES (?,?,?,?,?,?,?,?,?)", row)

    def revoked(self, device_ids: set[int]) -> set[int]:
        """Which of these devices are revoked."""
        return {r[0] for r in self.conn.execute("SELECT id FROM devices WHERE revoked = 1")
                if r[0] in device_ids}

    def device_by_name(self, name: str) -> Device:
        """A device by name, or CloudError."""
        row = self.conn.execute("SELECT id, name, model, region FROM devices WHERE name = ?",
                                (name,)).fetchone()
        if row is None:
            raise CloudError(f"no device {name!r}")
        return Device(*row)

    def authenticate(self, token: str) -> Device | None:
        """The device a token belongs to, or None."""
        row = self.conn.execute("SELECT id, name, model, region FROM devices WHERE token_hash = ?"
                                " AND revoked = 0", (token_hash(token),)).fetchone()
        return None if row is None else Device(*row)

    def shops(self) -> list[Shop]:
        """Every shop."""
        rows = self.conn.execute("SELECT id, name, lat, lon, days, opens, closes, slot_minutes,"
                                 " capacity, services FROM shops ORDER BY id").fetchall()
        return [Shop(r[0], r[1], r[2], r[3], tuple(int(d) for d in r[4].split(",") if d),
                     r[5], r[6], r[7], r[8], tuple(s for s in r[9].split(",") if s))
                for r in rows]

    def summary(self) -> dict[str, Any]:
        """Counts for `carlinkd cloud status` and tests."""
        q = self.conn.execute
        return {
            "epoch": self.epoch,
            "devices": [dict(zip(("name", "model", "region", "next_seq", "acked_seq"), r))
                        for r in q("SELECT name, model, region, next_seq - 1, acked_seq "
                                   "FROM devices ORDER BY id")],
            "groups": [r[0] for r in q("SELECT name FROM groups ORDER BY name")],
            "shops": [r[0] for r in q("SELECT name FROM shops ORDER BY name")],
            "upstream": {f"{r[0]}/{r[1]}": r[2] for r in
                         q("SELECT class, status, COUNT(*) FROM upstream GROUP BY 1, 2")},
        }

    # -- sessions and the downstream log -------------------------------------------------

    def open_session(self, device_id: int, cursor: int,
                     epoch: str | None) -> tuple[p.Welcome, p.Gap | None]:
        """Answer a hello: the effective cursor (0 after an epoch change) and any gap."""
        name, next_seq = self.conn.execute(
            "SELECT name, next_seq FROM devices WHERE id = ?", (device_id,)).fetchone()
        last = next_seq - 1
        if epoch != self.epoch or cursor > last:
            cursor = 0
        first_kept = self.conn.execute(
            "SELECT MIN(seq) FROM downstream WHERE device_id = ?", (device_id,)).fetchone()[0]
        first_kept = next_seq if first_kept is None else first_kept
        gap = p.Gap(cursor + 1, first_kept - 1) if cursor + 1 < first_kept else None
        return p.Welcome(p.PROTOCOL_VERSION, name, self.epoch, cursor, last), gap

    def append_down(self, c: sqlite3.Connection, device_id: int, kind: str,
                    body: dict[str, Any], now: float) -> int:
        """Append one item to a device's downstream log (inside a transaction); raises
        ProtocolError (a ValueError) for a body that could not be delivered."""
        text = p.encode_down_body(kind, body)  # before a sequence number is taken
        seq = c.execute("UPDATE devices SET next_seq = next_seq + 1 WHERE id = ? "
                        "RETURNING next_seq - 1", (device_id,)).fetchone()[0]
        c.execute("INSERT INTO downstream VALUES (?,?,?,?,?)", (device_id, seq, kind, text, now))
        return int(seq)

    def fetch_down(self, device_id: int, after: int, limit: int) -> list[p.DownItem]:
        """Downstream items after a sequence number, in order."""
        rows = self.conn.execute(
            "SELECT seq, kind, body, created FROM downstream WHERE device_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?", (device_id, after, limit)).fetchall()
        return [p.DownItem(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def prune_down(self, device_id: int | None, before: float) -> int:
        """Delete acknowledged downstream items created before ``before``."""
        with self.tx() as c:
            return c.execute(
                "DELETE FROM downstream WHERE created < ? AND seq <= (SELECT acked_seq FROM "
                "devices WHERE devices.id = downstream.device_id)"
                + ("" if device_id is None else " AND device_id = ?"),
                (before,) if device_id is None else (before, device_id)).rowcount

    def service_history(self, device: str) -> list[dict[str, Any]]:
        """A device's accepted service-history entries (carlink_protocol.chain JSON), in order."""
        dev = self.device_by_name(device)
        return [json.loads(r[0]) for r in self.conn.execute(
            "SELECT body FROM records WHERE device_id = ? ORDER BY idx", (dev.id,))]

    def upstream_log(self, device: str, cls: str | None = None) -> list[dict[str, Any]]:
        """A device's handled upstream items in the order they were stored (tests, status)."""
        dev = self.device_by_name(device)
        rows = self.conn.execute(
            "SELECT item_id, class, kind, body, status, reason FROM upstream WHERE device_id = ?"
            + ("" if cls is None else " AND class = ?") + " ORDER BY rowid",
            (dev.id,) if cls is None else (dev.id, cls)).fetchall()
        return [{"id": r[0], "class": r[1], "kind": r[2], "body": json.loads(r[3]),
                 "status": r[4], "reason": r[5]} for r in rows]
