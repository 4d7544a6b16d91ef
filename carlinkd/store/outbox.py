"""The durable sync outbox: entries by class, each class with a byte cap and a loss policy.

Producers ``await put(cls, payload)``; when it returns, the entry is committed with
``synchronous=FULL`` and survives a crash or power cut. The sync client drains it with
``peek`` / ``ack`` (delete) / ``attempted`` (count a failed send). Ids come from AUTOINCREMENT,
so an acknowledged id is never reused.

When a class is over its cap:

- **lossless** classes refuse the entry with :class:`OutboxFull` (a loud error naming the
  class and its usage): the producer learns it was *not* stored and can decide what to do;
- **lossy** classes delete their oldest entries, in the same transaction, until it fits.

Expired entries (``ttl_s``) are not handed out and are deleted by ``expire``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import OutboxFull, StoreError
from ..logutil import RateLimitedLogger
from .settings import OutboxClass, OutboxConfig

if TYPE_CHECKING:
    import aiosqlite

    from .db import Store

log = logging.getLogger(__name__)
_warn = RateLimitedLogger(log, 30.0)
# Rows per multi-row INSERT (5 parameters each, well under SQLite's 32,766 limit).
INSERT_CHUNK = 500


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One queued entry as the sync client sees it."""

    id: int
    cls: str
    payload: bytes
    created: float
    expires: float | None
    attempts: int


class Outbox:
    """Outbox operations on a :class:`Store`'s connection (use ``store.outbox``)."""

    def __init__(self, store: Store, cfg: OutboxConfig) -> None:
        self.store = store
        self.classes: dict[str, OutboxClass] = cfg.classes()
        self.usage: dict[str, int] = dict.fromkeys(self.classes, 0)
        self.evicted: dict[str, int] = dict.fromkeys(self.classes, 0)

    async def load_usage(self) -> None:
        """Read the bytes queued per class (once, at open; kept up to date afterwards)."""
        rows = await self.store.read("SELECT class, SUM(size) FROM outbox GROUP BY class")
        for cls, total in rows:
            self.usage[str(cls)] = int(total or 0)

    def _policy(self, cls: str) -> OutboxClass:
        try:
            return self.classes[cls]
        except KeyError:
            raise StoreError(f"unknown outbox class {cls!r}; known: "
                             f"{', '.join(sorted(self.classes))}") from None

    async def put(self, cls: str, payload: bytes, *, now: float | None = None) -> int:
        """Queue one entry durably; return its id (OutboxFull for a full lossless class)."""
        return (await self.put_many(cls, [payload], now=now))[0]

    async def put_many(self, cls: str, payloads: Sequence[bytes], *,
                       now: float | None = None) -> list[int]:
        """Queue several entries of one class in one durable transaction; all or none."""
        policy = self._policy(cls)
        now = self.store.clock() if now is None else now
        expires = None if policy.ttl_s is None else now + policy.ttl_s
        size = sum(len(p) for p in payloads)
        if size > policy.max_bytes:
            raise OutboxFull(f"outbox class {cls!r}: {size} bytes cannot fit its cap of "
                             f"{policy.max_bytes} bytes")

        async def insert(conn: aiosqlite.Connection) -> tuple[list[int], int, int]:
            freed = evicted = 0
            over = self.usage[cls] + size - policy.max_bytes
            if over > 0:
                if policy.lossless:
                    raise OutboxFull(
                        f"outbox class {cls!r} is full ({self.usage[cls]} of {policy.max_bytes}"
                        f" bytes queued): {size} more bytes refused, nothing stored")
                freed, evicted = await _evict_oldest(conn, cls, over)
            ids: list[int] = []
            for start in range(0, len(payloads), INSERT_CHUNK):
                chunk = payloads[start:start + INSERT_CHUNK]
                params = [v for p in chunk for v in (cls, p, len(p), now, expires)]
                marks = ",".join(["(?, ?, ?, ?, ?)"] * len(chunk))
                async with conn.execute("INSERT INTO outbox (class, payload, size, created, "
                                        f"expires) VALUES {marks} RETURNING id", params) as cur:
                    # RETURNING order is unspecified; ids grow in insertion order under our lock
                    ids += sorted(int(r[0]) for r in await cur.fetchall())
            return ids, freed, evicted

        try:
            ids, freed, evicted = await self.store.write(insert, durable=True)
        except OutboxFull as err:
            log.error("%s", err)
            raise
        self.usage[cls] += size - freed
        if evicted:
            self.evicted[cls] += evicted
            _warn.warning(("evict", cls), "outbox class %r over its cap: dropped %d oldest "
                          "entries (%d so far)", cls, evicted, self.evicted[cls])
        return ids

    async def peek(self, limit: int = 100, *, cls: str | None = None,
                   now: float | None = None) -> list[OutboxEntry]:
        """The oldest unexpired entries (optionally of one class), without removing them."""
        now = self.store.clock() if now is None else now
        where = "(expires IS NULL OR expires > ?)"
        params: list[object] = [now]
        if cls is not None:
            where += " AND class = ?"
            params.append(cls)
        rows = await self.store.read(
            f"SELECT id, class, payload, created, expires, attempts FROM outbox WHERE {where} "
            "ORDER BY id LIMIT ?", (*params, limit))
        return [OutboxEntry(int(r[0]), str(r[1]), bytes(r[2]), r[3], r[4], int(r[5]))
                for r in rows]

    async def ack(self, ids: Iterable[int]) -> int:
        """Delete delivered entries; return how many existed."""
        return await self._delete(list(ids))

    async def attempted(self, ids: Iterable[int]) -> None:
        """Count a failed delivery attempt for each entry."""
        id_list = [(i,) for i in ids]

        async def bump(conn: aiosqlite.Connection) -> None:
            await conn.executemany("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?",
                                   id_list)
        await self.store.write(bump, durable=False)

    async def expire(self, now: float) -> int:
        """Delete entries past their expiry; return how many."""
        rows = await self.store.read("SELECT id FROM outbox WHERE expires IS NOT NULL AND "
                                     "expires <= ?", (now,))
        return await self._delete([int(r[0]) for r in rows])

    async def count(self) -> int:
        """Entries queued (expired or not)."""
        rows = await self.store.read("SELECT COUNT(*) FROM outbox")
        return int(rows[0][0])

    async def _delete(self, ids: list[int]) -> int:
        if not ids:
            return 0

        async def delete(conn: aiosqlite.Connection) -> list[tuple[str, int]]:
            gone: list[tuple[str, int]] = []
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                async with conn.execute(f"DELETE FROM outbox WHERE id IN ({marks}) "
                                        "RETURNING class, size", chunk) as cur:
                    gone += [(str(r[0]), int(r[1])) for r in await cur.fetchall()]
            return gone

        gone = await self.store.write(delete, durable=True)
        for cls, size in gone:
            self.usage[cls] = self.usage.get(cls, 0) - size
        return len(gone)


async def _evict_oldest(conn: aiosqlite.Connection, cls: str, need: int) -> tuple[int, int]:
    """Delete the oldest entries of a class until ``need`` bytes are free; (bytes, entries)."""
    freed = count = 0
    async with conn.execute("SELECT id, size FROM outbox WHERE class = ? ORDER BY id",
                            (cls,)) as cur:
        victims = []
        async for row in cur:
            victims.append(int(row[0]))
            freed += int(row[1])
            count += 1
            if freed >= need:
                break
    for start in range(0, len(victims), 500):
        chunk = victims[start:start + 500]
        await conn.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})",
                           chunk)
    return freed, count
