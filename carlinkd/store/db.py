"""The store: one SQLite file (aiosqlite, WAL), migrations, integrity check, batched writes.

Durability, stated per kind of data. The database runs in WAL mode; every commit survives a
crash of the *process* (SIGKILL) either way, the difference is a power cut:

- ``synchronous=FULL`` (the WAL is fsynced at every commit) for what a producer was told is
  stored and what cannot be re-derived: service records, DTC history, meta. (The cloud outbox
  is not here: it is carlinkd/sync/outbox.py in its own ``sync.db``, always FULL.)
- ``synchronous=NORMAL`` (fsync only at checkpoints) for alert history, alert state and
  odometer/trip samples: a power cut may lose the last second or so of them, which the
  next samples and the next rule evaluation make good; it saves an fsync per batch.

The level is switched per transaction on the single connection (``PRAGMA synchronous`` may
change between transactions). Writes are serialised by one lock, so a transaction never
interleaves with another coroutine's statements.

Hot-path writes (``log_alert``, ``log_dtc``, ``add_sample``, ``put_alert_state``) only append
to a buffer; a background task commits it every ``flush_interval_s`` or when ``batch_max``
rows are waiting. ``flush()`` commits now.

At open, ``PRAGMA quick_check`` (or ``integrity_check``) runs; a file SQLite reports corrupt
is renamed aside (``carlinkd.db.corrupt-<UTC time>``, with its -wal/-shm), logged, and a fresh
database created; service records that can still be read from the old file are copied over.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ..errors import StoreError
from ..sqlitefile import CORRUPT_CODES as CORRUPT_CODES
from ..sqlitefile import corrupt_error, is_corruption, set_aside
from ..logutil import RateLimitedLogger
from .schema import LATEST_VERSION, MIGRATIONS
from .settings import StoreConfig

log = logging.getLogger(__name__)
_warn = RateLimitedLogger(log, 30.0)
T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000  # another process (``carlinkd records add``) may hold the write lock
# Rows kept in memory while the disk refuses writes; beyond this the oldest samples go first.
MAX_BUFFERED_ROWS = 50_000

_SQL_ALERT_LOG = ("INSERT INTO alert_log (at, key, event, severity, text, detail) "
                  "VALUES (?, ?, ?, ?, ?, ?)")
_SQL_ALERT_STATE = ("INSERT INTO alert_state (key, kind, severity, spoken, text, state, raised_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "kind=excluded.kind, severity=excluded.severity, spoken=excluded.spoken, "
                    "text=excluded.text, state=excluded.state, raised_at=excluded.raised_at, "
                    "updated_at=excluded.updated_at")
_SQL_DTC = "INSERT INTO dtc_log (at, ecu, code, event, description) VALUES (?, ?, ?, ?, ?)"
_SQL_SAMPLE = "INSERT INTO samples (name, at, value) VALUES (?, ?, ?)"


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """One stored service-history entry, exactly as kept (verification parses ``body``)."""

    pos: int
    body: str
    hash: str
    signature: str
    key_id: str


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One row of the alert state table."""

    key: str
    kind: str
    severity: str
    spoken: str
    text: str
    state: str
    raised_at: float
    updated_at: float


class Store:
    """The open database; create with :meth:`open`, end with :meth:`close`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, cfg: StoreConfig,
                 clock: Callable[[], float], aside: Path | None) -> None:
        self.conn = conn
        self.path = path
        self.cfg = cfg
        self.clock = clock
        self.aside = aside
        self.counters = {"flushes": 0, "rows_written": 0, "flush_errors": 0, "rows_dropped": 0}
        self._lock = asyncio.Lock()
        self._sync_full: bool | None = None
        self._buffer: dict[str, list[tuple[Any, ...]]] = {}
        self._buffered = 0
        self._durable_pending = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # ---- opening and closing ---------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, cfg: StoreConfig | None = None, *,
                   clock: Callable[[], float] = time.time, background: bool = True) -> Store:
        """Open (creating, migrating, checking) the database; ``background`` starts the flusher."""
        cfg = cfg or StoreConfig()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        aside = None
        try:
            if _is_empty_file(path):
                # SQLite would take a 0-byte file as a new database: the history that was in
                # it would vanish without a word (a failed copy, a full disk, a truncation).
                raise StoreError(f"{path}: empty") from corrupt_error("the file is empty (0 bytes)")
            conn = await _connect_checked(path, cfg.integrity_check)
        except StoreError as err:
            if not is_corruption(err.__cause__ or err):
                raise
            aside = set_aside(path, clock())
            log.error("database %s is corrupt (%s); moved it aside to %s and started a fresh one",
                      path, err.__cause__ or err, aside.name)
            conn = await _connect_checked(path, cfg.integrity_check)
        try:
            await _migrate(conn, path)
        except BaseException:
            await conn.close()
            raise
        store = cls(conn, path, cfg, clock, aside)
        if aside is not None and not _is_empty_file(aside):
            await store._salvage_service_records(aside)
        if background:
            store._task = asyncio.create_task(store._flush_loop(), name="store-flush")
        return store

    async def close(self) -> None:
        """Stop the flusher, commit what is buffered, close the connection."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.flush()
        finally:
            await self.conn.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- transactions ----------------------------------------------------------------

    async def write(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]], *,
                    durable: bool) -> T:
        """Run ``fn(conn)`` in one IMMEDIATE transaction, FULL or NORMAL sync (see module doc)."""
        async with self._lock:
            conn = self.conn
            try:
                if self._sync_full is not durable:
                    await conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                    self._sync_full = durable
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    result = await fn(conn)
                    await conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as err:
                raise StoreError(f"{self.path}: write failed: {err}") from err
            return result

    async def read(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """Run one query and return all rows (sqlite3 errors become StoreError)."""
        try:
            async with self.conn.execute(sql, tuple(params)) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: read failed: {err}") from err

    # ---- buffered, hot-path writes ---------------------------------------------------

    def _buffer_row(self, sql: str, row: tuple[Any, ...], durable: bool = False) -> None:
        self._buffer.setdefault(sql, []).append(row)
        self._buffered += 1
        self._durable_pending |= durable
        if self._buffered >= self.cfg.batch_max:
            self._wake.set()
        if self._buffered > MAX_BUFFERED_ROWS:
            self._shed()

    def _shed(self) -> None:
        samples = self._buffer.get(_SQL_SAMPLE, [])
        drop = min(len(samples), self._buffered - MAX_BUFFERED_ROWS)
        if drop:
            del samples[:drop]
            self._buffered -= drop
            self.counters["rows_dropped"] += drop
            _warn.warning("shed", "store write buffer full: dropped %d oldest samples", drop)

    def log_alert(self, at: float, key: str, event: str, severity: str | None = None,
                  text: str | None = None, detail: str = "") -> None:
        """Append to the alert history (buffered, NORMAL durability)."""
        self._buffer_row(_SQL_ALERT_LOG, (at, key, event, severity, text, detail))

    def put_alert_state(self, row: AlertRow) -> None:
        """Upsert an alert's current state (buffered, NORMAL durability)."""
        self._buffer_row(_SQL_ALERT_STATE, (row.key, row.kind, row.severity, row.spoken, row.text,
                                            row.state, row.raised_at, row.updated_at))

    def log_dtc(self, at: float, ecu: int, code: str, event: str, description: str = "") -> None:
        """Append to the DTC history (buffered; its batch commits with FULL durability)."""
        self._buffer_row(_SQL_DTC, (at, ecu, code, event, description), durable=True)

    def add_sample(self, name: str, at: float, value: float) -> None:
        """Append an odometer/trip sample (buffered, NORMAL durability)."""
        self._buffer_row(_SQL_SAMPLE, (name, at, float(value)))

    @property
    def buffered(self) -> int:
        """Rows waiting for the next flush."""
        return self._buffered

    async def flush(self) -> int:
        """Commit every buffered row in one transaction now; return how many."""
        if not self._buffered:
            return 0
        batch, durable, count = self._buffer, self._durable_pending, self._buffered
        self._buffer, self._durable_pending, self._buffered = {}, False, 0

        async def write_batch(conn: aiosqlite.Connection) -> None:
            for sql, rows in batch.items():
                await conn.executemany(sql, rows)

        try:
            await self.write(write_batch, durable=durable)
        except StoreError:
            for sql, rows in batch.items():  # keep them, older first, for the next attempt
                self._buffer[sql] = rows + self._buffer.get(sql, [])
            self._buffered += count
            self._durable_pending |= durable
            self.counters["flush_errors"] += 1
            raise
        self.counters["flushes"] += 1
        self.counters["rows_written"] += count
        return count

    async def _flush_loop(self) -> None:
        next_retention = self.clock() + self.cfg.retention_interval_s
        while True:
            try:
                async with asyncio.timeout(self.cfg.flush_interval_s):  # wait_for can lose a cancel
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
                if self.clock() >= next_retention:
                    next_retention = self.clock() + self.cfg.retention_interval_s
                    await self.apply_retention(self.clock())
            except StoreError as err:
                _warn.warning("flush", "store flush failed (will retry): %s", err)

    # ---- queries ---------------------------------------------------------------------

    async def active_alerts(self) -> list[AlertRow]:
        """Alerts whose stored state is not cleared (for restoring after a restart)."""
        rows = await self.read("SELECT key, kind, severity, spoken, text, state, raised_at, "
                               "updated_at FROM alert_state WHERE state != 'cleared'")
        return [AlertRow(*r) for r in rows]

    async def alert_history(self, limit: int = 100) -> list[tuple[Any, ...]]:
        """Newest alert-log rows: (at, key, event, severity, text, detail)."""
        rows = await self.read("SELECT at, key, event, severity, text, detail FROM alert_log "
                               "ORDER BY id DESC LIMIT ?", (limit,))
        return [tuple(r) for r in rows]

    async def dtc_history(self, limit: int = 100) -> list[tuple[Any, ...]]:
        """Newest DTC-log rows: (at, ecu, code, event, description)."""
        rows = await self.read("SELECT at, ecu, code, event, description FROM dtc_log "
                               "ORDER BY id DESC LIMIT ?", (limit,))
        return [tuple(r) for r in rows]

    async def samples(self, name: str, since: float = 0.0) -> list[tuple[float, float]]:
        """(at, value) samples of one signal since a time, oldest first."""
        rows = await self.read("SELECT at, value FROM samples WHERE name = ? AND at >= ? "
                               "ORDER BY at", (name, since))
        return [(r[0], r[1]) for r in rows]

    async def get_meta(self, key: str) -> str | None:
        """A value from the meta table (e.g. ``vin``)."""
        rows = await self.read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        """Store a meta value durably."""
        async def put(conn: aiosqlite.Connection) -> None:
            await conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) "
                               "DO UPDATE SET value = excluded.value", (key, value))
        await self.write(put, durable=True)

    # ---- service history (append-only) -------------------------------------------------

    async def service_rows(self) -> list[ServiceRow]:
        """Every stored service entry in storage order."""
        rows = await self.read("SELECT pos, body, hash, signature, key_id FROM service_records "
                               "ORDER BY pos")
        return [ServiceRow(*r) for r in rows]

    async def service_count(self) -> int:
        """How many service entries are stored."""
        rows = await self.read("SELECT COUNT(*) FROM service_records")
        return int(rows[0][0])

    async def append_service(
            self, make: Callable[[ServiceRow | None], tuple[ServiceRow, str]]) -> ServiceRow:
        """Append ``make(last_row)`` and its signed head atomically (safe across processes)."""
        async def append(conn: aiosqlite.Connection) -> ServiceRow:
            async with conn.execute("SELECT pos, body, hash, signature, key_id FROM "
                                    "service_records ORDER BY pos DESC LIMIT 1") as cur:
                last = await cur.fetchone()
            row, head = make(ServiceRow(*last) if last else None)
            await conn.execute("INSERT INTO service_records (pos, body, hash, signature, key_id, "
                               "stored_at) VALUES (?, ?, ?, ?, ?, ?)",
                               (row.pos, row.body, row.hash, row.signature, row.key_id,
                                self.clock()))
            await conn.execute("INSERT INTO meta (key, value) VALUES ('service_head', ?) "
                               "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (head,))
            return row
        return await self.write(append, durable=True)

    async def _salvage_service_records(self, aside: Path) -> None:
        """Copy whatever service entries and head can still be read from a set-aside file."""
        try:
            old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
            try:
                rows = old.execute("SELECT pos, body, hash, signature, key_id, stored_at "
                                   "FROM service_records ORDER BY pos").fetchall()
                head = old.execute("SELECT value FROM meta WHERE key='service_head'").fetchall()
            finally:
                old.close()
        except sqlite3.Error as err:
            log.error("no service records could be read from %s (%s); they remain in that file",
                      aside.name, err)
            return

        async def copy(conn: aiosqlite.Connection) -> None:
            await conn.executemany("INSERT INTO service_records (pos, body, hash, signature, "
                                   "key_id, stored_at) VALUES (?, ?, ?, ?, ?, ?)", rows)
            if head:
                await conn.execute("INSERT INTO meta (key, value) VALUES ('service_head', ?)",
                                   (head[0][0],))
        await self.write(copy, durable=True)
        log.warning("copied %d service records from %s into the fresh database", len(rows),
                    aside.name)

    # ---- retention ---------------------------------------------------------------------

    async def apply_retention(self, now: float) -> dict[str, int]:
        """Thin old samples, trim the alert/DTC logs; service records are never touched."""
        cfg = self.cfg
        full_cutoff = now - cfg.samples_full_days * 86400.0
        keep_cutoff = now - cfg.samples_keep_days * 86400.0
        log_cutoff = now - cfg.log_keep_days * 86400.0

        async def trim(conn: aiosqlite.Connection) -> dict[str, int]:
            done = {}
            cur = await conn.execute("DELETE FROM samples WHERE at < ?", (keep_cutoff,))
            done["samples_expired"] = cur.rowcount
            cur = await conn.execute(
                "DELETE FROM samples WHERE at < ? AND id NOT IN (SELECT MIN(id) FROM samples "
                "WHERE at < ? GROUP BY name, CAST(at / 3600 AS INTEGER))",
                (full_cutoff, full_cutoff))
            done["samples_thinned"] = cur.rowcount
            for table in ("alert_log", "dtc_log"):
                cur = await conn.execute(f"DELETE FROM {table} WHERE at < ? OR id <= "
                                         f"(SELECT MAX(id) FROM {table}) - ?",
                                         (log_cutoff, cfg.log_max_rows))
                done[table] = cur.rowcount
            cur = await conn.execute("DELETE FROM alert_state WHERE state = 'cleared' AND "
                                     "updated_at < ?", (log_cutoff,))
            done["alert_state"] = cur.rowcount
            return done

        done = await self.write(trim, durable=False)
        if any(done.values()):
            log.info("retention: %s", ", ".join(f"{k} {v}" for k, v in done.items() if v))
        return done


async def _connect_checked(path: Path, check: str) -> aiosqlite.Connection:
    """Connect, set pragmas, run the integrity check; corruption raises StoreError from it."""
    try:
        conn = await aiosqlite.connect(str(path), isolation_level=None)
    except sqlite3.Error as err:
        raise StoreError(f"{path}: cannot open database: {err}") from err
    try:
        await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        async with conn.execute("PRAGMA journal_mode=WAL") as cur:
            mode = await cur.fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            log.warning("database %s: WAL journal not available (%s)", path, mode)
        await conn.execute("PRAGMA synchronous=NORMAL")
        pragma = "quick_check" if check == "quick" else "integrity_check"
        async with conn.execute(f"PRAGMA {pragma}") as cur:
            result = [str(r[0]) for r in await cur.fetchall()]
        if result != ["ok"]:
            raise corrupt_error(f"{pragma}: {'; '.join(result[:3])}")
    except sqlite3.Error as err:
        await conn.close()
        raise StoreError(f"{path}: {err}") from err
    except BaseException:
        await conn.close()  # aiosqlite's thread is not a daemon: an open connection blocks exit
        raise
    return conn


async def _migrate(conn: aiosqlite.Connection, path: Path) -> None:
    """Bring the schema to LATEST_VERSION, one transaction per migration."""
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > LATEST_VERSION:
        raise StoreError(f"{path}: schema version {version} is newer than this carlinkd "
                         f"understands ({LATEST_VERSION}); refusing to touch it")
    for number in range(version + 1, LATEST_VERSION + 1):
        script = MIGRATIONS[number - 1]
        try:
            await conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = "
                                     f"{number};\nCOMMIT;")
        except sqlite3.Error as err:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise StoreError(f"{path}: migration to schema {number} failed: {err}") from err
        log.info("database %s migrated to schema version %d", path, number)


def _is_empty_file(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False
