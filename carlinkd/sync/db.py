"""The sync database: one SQLite file (aiosqlite, WAL, synchronous=FULL) for outbox and inbound log.

``synchronous=FULL`` because an upstream item is reported accepted to its producer, and a
downstream cursor is acknowledged to the cloud, only after the commit: both promises must
survive a power cut, not just a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite

from ..errors import SyncError
from ..sqlitefile import corrupt_error, is_corruption, set_aside

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    class TEXT NOT NULL,
    priority INTEGER NOT NULL,
    kind TEXT NOT NULL,
    coalesce_key TEXT,
    body TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL
);
CREATE INDEX IF NOT EXISTS sync_outbox_order ON sync_outbox (priority, seq);
CREATE INDEX IF NOT EXISTS sync_outbox_key ON sync_outbox (class, coalesce_key);
CREATE TABLE IF NOT EXISTS sync_inbound (
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL,
    received REAL NOT NULL,
    verdict TEXT NOT NULL,
    PRIMARY KEY (epoch, seq)
);
CREATE TABLE IF NOT EXISTS sync_cursor (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    epoch TEXT,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class SyncDb:
    """One aiosqlite connection; ``transaction()`` serializes writers from different tasks."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SyncDb:
        """Open (creating) the database file and its tables.

        A file SQLite reports corrupt, or an empty (0-byte) one where a database used to be, is
        renamed aside (``sync.db.corrupt-<UTC time>``, with -wal/-shm) with one error line and a
        fresh database is started: the daemon still starts; what was queued in the old file
        stays there for inspection instead of being silently overwritten."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SyncError(f"cannot open sync database {path}: {err}") from err
        reason = "is empty (0 bytes)" if _is_empty_file(path) else None
        if reason is None:
            try:
                return cls(await _connect(path), path)
            except SyncError as err:
                if not is_corruption(err.__cause__ or err):
                    raise
                reason = f"is corrupt ({err.__cause__ or err})"
        aside = set_aside(path, time.time())
        log.error("sync database %s %s; moved it aside to %s and started a fresh one "
                  "(items queued in it were not sent)", path, reason, aside.name)
        return cls(await _connect(path), path)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), one task at a time."""
        async with self._lock:
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self.conn
                except BaseException:
                    await self.conn.execute("ROLLBACK")
                    raise
                await self.conn.execute("COMMIT")
            except sqlite3.Error as err:
                raise SyncError(f"sync database {self.path}: {err}") from err

    async def read(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Run one query outside any write transaction and return all rows."""
        try:
            async with self._lock:
                async with self.conn.execute(sql, params) as cur:
                    return list(await cur.fetchall())
        except sqlite3.Error as err:
            raise SyncError(f"sync database {self.path}: {err}") from err

    async def get_state(self, name: str) -> Any:
        """A JSON value kept under ``name`` (None when absent or unreadable)."""
        rows = await self.read("SELECT value FROM sync_state WHERE name = ?", (name,))
        if not rows:
            return None
        try:
            return json.loads(rows[0][0])
        except ValueError:
            log.error("sync database %s: state %r is not JSON; ignored", self.path, name)
            return None

    async def set_state(self, name: str, value: Any) -> None:
        """Keep a JSON value under ``name``."""
        async with self.transaction() as conn:
            await conn.execute("INSERT INTO sync_state (name, value) VALUES (?, ?) ON CONFLICT "
                               "(name) DO UPDATE SET value = excluded.value",
                               (name, json.dumps(value)))

    async def close(self) -> None:
        """Close the connection (and its thread)."""
        await self.conn.close()


def _is_empty_file(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


async def _connect(path: Path) -> aiosqlite.Connection:
    """Connect, check (quick_check), create the tables; corruption raises SyncError from it."""
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as err:
        raise SyncError(f"cannot open sync database {path}: {err}") from err
    try:
        await conn.execute("PRAGMA busy_timeout=5000")
        async with conn.execute("PRAGMA quick_check") as cur:
            result = [str(r[0]) for r in await cur.fetchall()]
        if result != ["ok"]:
            raise corrupt_error(f"quick_check: {'; '.join(result[:3])}")
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.executescript(SCHEMA)
        await conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except sqlite3.Error as err:
        await conn.close()
        raise SyncError(f"cannot initialise sync database {path}: {err}") from err
    except BaseException:
        await conn.close()
        raise
    return conn
