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

from carlink_protocol.geo import check_lat_lon

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
    region TEXT NOT NULL DEFAULT '', policy TEXT NOT NULL DEFAULT 'invite', owner_id INTEGER);
CREATE TABLE IF NOT EXISTS members (
    group_id INTEGER NOT NULL, device_id INTEGER NOT NULL, PRIMARY KEY (group_id, device_id));
CREATE TABLE IF NOT EXISTS invitations (
    group_id INTEGER NOT NULL, device_id INTEGER NOT NULL, PRIMARY KEY (group_id, device_id));
CREATE TABLE IF NOT EXISTS pending (
    group_id INTEGER NOT NULL, device_id INTEGER NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (group_id, device_id));
CREATE TABLE IF NOT EXISTS join_notices (
    group_id INTEGER NOT NULL, device_id INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (group_id, device_id));
CREATE TABLE IF NOT EXISTS shops (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, lat REAL NOT NULL, lon REAL NOT NULL,
    days TEXT NOT NULL, opens INTEGER NOT NULL, closes INTEGER NOT NULL,
    slot_minutes INTEGER NOT NULL, capacity INTEGER NOT NULL, services TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS bookings (
    id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL, item_id TEXT NOT NULL,
    shop_id INTEGER NOT NULL, service TEXT NOT NULL, day TEXT NOT NULL, slot INTEGER NOT NULL,
    starts REAL NOT NULL, reminded INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS records (
    device_id INTEGER NOT NULL, idx INTEGER NOT NULL, hash TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (device_id, idx));
CREATE TABLE IF NOT EXISTS record_keys (
    device_id INTEGER PRIMARY KEY, key_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS status (
    device_id INTEGER PRIMARY KEY, body TEXT NOT NULL, created REAL NOT NULL, lat REAL, lon REAL,
    helper INTEGER NOT NULL DEFAULT 0, cell TEXT, received REAL NOT NULL DEFAULT 0);
"""
# Created after the migration (older databases gain the columns these index first).
INDEXES = """
CREATE TABLE IF NOT EXISTS help_requests (
    id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL, item_id TEXT NOT NULL, lat REAL,
    lon REAL, note TEXT NOT NULL DEFAULT '', vehicle TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL, expires REAL NOT NULL, open INTEGER NOT NULL DEFAULT 1,
    UNIQUE (device_id, item_id));
CREATE INDEX IF NOT EXISTS help_by_device ON help_requests (device_id, created);
CREATE TABLE IF NOT EXISTS help_asked (
    request INTEGER NOT NULL, device_id INTEGER NOT NULL, asked_seq INTEGER NOT NULL,
    responded INTEGER NOT NULL DEFAULT 0, detail_seq INTEGER, PRIMARY KEY (request, device_id));
CREATE INDEX IF NOT EXISTS bookings_slot ON bookings (shop_id, day, slot);
CREATE INDEX IF NOT EXISTS status_helper_cell ON status (cell, received) WHERE helper = 1;
CREATE INDEX IF NOT EXISTS upstream_received ON upstream (received);
"""
SCHEMA_VERSION = "2"
# Columns added since the first schema: (table, column, definition).
_ADDED = (("groups", "policy", "TEXT NOT NULL DEFAULT 'invite'"),
          ("groups", "owner_id", "INTEGER"),
          ("shops", "address", "TEXT NOT NULL DEFAULT ''"),
          ("status", "helper", "INTEGER NOT NULL DEFAULT 0"),
          ("status", "cell", "TEXT"),
          ("status", "received", "REAL NOT NULL DEFAULT 0"))
# Body fields never kept in the upstream log (positions live only where their purpose needs
# them, docs/protocol.md §10).
POSITION_FIELDS = ("lat", "lon", "speed")


def _migrate(c: sqlite3.Connection) -> None:
    """Bring a database written by an older backend up to :data:`SCHEMA_VERSION`."""
    row = c.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is not None and row[0] == SCHEMA_VERSION:
        return
    for table, column, definition in _ADDED:
        have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    old = {r[1] for r in c.execute("PRAGMA table_info(help_requests)")}
    if old and "item_id" not in old:  # protocol 1: keyed by id alone, positions kept forever
        c.execute("DROP TABLE help_requests")
    # Protocol 1 kept every status body and help position in the upstream log.
    c.execute("UPDATE upstream SET body = '{}' WHERE class = 'status'")
    c.execute("UPDATE upstream SET body = json_remove(body, '$.lat', '$.lon', '$.speed') "
              "WHERE class IN ('emergency', 'booking') AND json_valid(body)")
    c.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))


def kept_body(cls: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the upstream log keeps of an item's body: nothing of a status, no position."""
    if cls == "status":
        return {}
    return {k: v for k, v in body.items() if k not in POSITION_FIELDS}


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
            # Deleted rows and erased positions are overwritten, not left in free pages.
            self.conn.execute("PRAGMA secure_delete=ON")
            self.conn.executescript(SCHEMA)
            with self.tx() as c:
                if self.meta("epoch") is None:
                    c.execute("INSERT INTO meta VALUES ('epoch', ?)", (uuid.uuid4().hex,))
                _migrate(c)
            self.conn.executescript(INDEXES)
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
                  members: Sequence[str] = (), policy: str = "invite",
                  owner: str | None = None) -> None:
        """Create (or update) a group for a car model and region ('' = any) and add members.

        ``policy`` is the group's own choice: ``invite`` (joining needs an invitation or the
        owner's approval) or ``open`` (any car of that model and region may join)."""
        if policy not in ("invite", "open"):
            raise CloudError(f"group policy must be 'invite' or 'open', not {policy!r}")
        owner_id = None if owner is None else self.device_by_name(owner).id
        with self.tx() as c:
            c.execute("INSERT INTO groups (name, model, region, policy, owner_id) "
                      "VALUES (?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET model = excluded."
                      "model, region = excluded.region, policy = excluded.policy, owner_id = "
                      "COALESCE(excluded.owner_id, groups.owner_id)",
                      (name, model, region, policy, owner_id))
            gid = c.execute("SELECT id FROM groups WHERE name = ?", (name,)).fetchone()[0]
            for member in [*members, *([owner] if owner else [])]:
                dev = self.device_by_name(member)
                c.execute("INSERT OR IGNORE INTO members VALUES (?,?)", (gid, dev.id))

    def invite(self, group: str, device: str, now: float) -> str:
        """Invite a car into a group: it joins at once if it asked already (then ``joined``),
        else when it asks (``invited``)."""
        dev = self.device_by_name(device)
        with self.tx() as c:
            row = c.execute("SELECT id FROM groups WHERE name = ?", (group,)).fetchone()
            if row is None:
                raise CloudError(f"no group {group!r}")
            if c.execute("DELETE FROM pending WHERE group_id = ? AND device_id = ?",
                         (row[0], dev.id)).rowcount:
                c.execute("INSERT OR IGNORE INTO members VALUES (?,?)", (row[0], dev.id))
                from .groups import groups_item  # the downstream `groups` item, one definition
                self.append_down(c, dev.id, "groups", groups_item(c, dev), now)
                return "joined"
            c.execute("INSERT OR IGNORE INTO invitations VALUES (?,?)", (row[0], dev.id))
        return "invited"

    def add_shop(self, name: str, lat: float, lon: float, days: str = "mon-fri",
                 opens: str = "08:00", closes: str = "18:00", slot_minutes: int = 60,
                 capacity: int = 2, services: Sequence[str] = (), address: str = "") -> None:
        """Register a service shop with its position, address, opening hours and per-slot
        capacity."""
        try:
            row = (name, lat, lon, ",".join(map(str, parse_days(days))), parse_clock(opens),
                   parse_clock(closes), slot_minutes, capacity,
                   ",".join(s.lower() for s in services), address.strip())
            check_lat_lon(lat, lon)
        except ValueError as err:
            raise CloudError(str(err)) from err
        if capacity < 1 or slot_minutes < 5 or row[5] - row[4] < slot_minutes:
            raise CloudError("capacity must be >= 1 and the shop open for at least one slot")
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO shops (name, lat, lon, days, opens, closes, "
                      "slot_minutes, capacity, services, address) VALUES (?,?,?,?,?,?,?,?,?,?)",
                      row)

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
                                 " capacity, services, address FROM shops ORDER BY id").fetchall()
        return [Shop(r[0], r[1], r[2], r[3], tuple(int(d) for d in r[4].split(",") if d),
                     r[5], r[6], r[7], r[8], tuple(s for s in r[9].split(",") if s), r[10])
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
                    body: dict[str, Any], now: float, text: str | None = None) -> int:
        """Append one item to a device's downstream log (inside a transaction); raises
        ProtocolError (a ValueError) for a body that could not be delivered. ``text``: the
        body as p.encode_down_body gave it, when the caller has it already."""
        if text is None:
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
