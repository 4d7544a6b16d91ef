"""The durable outbox: upstream items by class, with priority, byte caps, expiry and coalescing.

An item is durable (committed with synchronous=FULL) before :meth:`Outbox.put` returns, and leaves
only when the cloud acknowledged it, or loudly: it expired, or a lossy class evicted it (logged,
counted, returned to the caller). A lossless class that is full refuses with :class:`OutboxFull`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import OutboxFull, SyncError
from carlink_protocol import wire as p
from .db import SyncDb

log = logging.getLogger(__name__)

KIB = 1024
MIB = 1024 * KIB
HOUR = 3600.0
DAY = 24 * HOUR
# One item may not exceed this: it must fit a WebSocket message (default max_size 1 MiB)
# together with its envelope.
MAX_ITEM_BYTES = 256 * KIB


@dataclass(frozen=True)
class ClassPolicy:
    """How one outbox class is ordered, bounded and aged."""

    name: str
    priority: int                 # lower is sent first
    max_bytes: int
    expiry_s: float | None        # None: never expires
    lossless: bool                # full -> OutboxFull; else the oldest items are evicted
    coalesce: bool = False        # a new item replaces queued items with the same key


# Emergency first, then alerts, chat, bookings, service records; status last and coalesced.
POLICIES: dict[str, ClassPolicy] = {pol.name: pol for pol in (
    ClassPolicy("emergency", 0, 256 * KIB, 6 * HOUR, lossless=True),
    ClassPolicy("alert", 1, 1 * MIB, 7 * DAY, lossless=True),
    ClassPolicy("chat", 2, 1 * MIB, 7 * DAY, lossless=True),
    ClassPolicy("booking", 3, 256 * KIB, 30 * DAY, lossless=True),
    ClassPolicy("service_record", 4, 4 * MIB, None, lossless=True),
    ClassPolicy("status", 5, 64 * KIB, 1 * HOUR, lossless=False, coalesce=True),
)}
assert tuple(POLICIES) == p.UPSTREAM_CLASSES


@dataclass(frozen=True, slots=True)
class Dropped:
    """An item that left the outbox without reaching the cloud (expired or evicted)."""

    id: str
    cls: str
    kind: str
    why: str


class Outbox:
    """The upstream queue on a :class:`SyncDb`."""

    def __init__(self, db: SyncDb, policies: Mapping[str, ClassPolicy] | None = None) -> None:
        self.db = db
        self.policies = dict(policies or POLICIES)
        self._bytes: dict[str, int] = {name: 0 for name in self.policies}
        self.dropped: dict[str, int] = {name: 0 for name in self.policies}
        self.refused: dict[str, int] = {name: 0 for name in self.policies}

    async def load(self) -> None:
        """Read the per-class byte totals (once after opening, and after a rolled-back put)."""
        self._bytes = dict.fromkeys(self.policies, 0)
        for row in await self.db.read("SELECT class, SUM(size) FROM sync_outbox GROUP BY class"):
            self._bytes[row[0]] = int(row[1] or 0)

    async def put(self, cls: str, kind: str, body: Mapping[str, Any], now: float, *,
                  key: str | None = None, item_id: str | None = None) -> tuple[str, list[Dropped]]:
        """Queue one item durably; returns its id and anything evicted to make room."""
        ids, dropped = await self.put_many([(cls, kind, body, key, item_id)], now)
        return ids[0], dropped

    async def put_many(self, items: Iterable[tuple[str, str, Mapping[str, Any], str | None,
                                                   str | None]],
                       now: float) -> tuple[list[str], list[Dropped]]:
        """Queue several items in one transaction: all are accepted or none (OutboxFull)."""
        prepared = [self._prepare(*item, now=now) for item in items]
        try:
            return await self._insert(prepared, now)
        except BaseException:
            await self.load()
            raise

    async def _insert(self, prepared: list[tuple[dict[str, Any], ClassPolicy]],
                      now: float) -> tuple[list[str], list[Dropped]]:
        dropped: list[Dropped] = []
        ids: list[str] = []
        async with self.db.transaction() as conn:
            added = dict.fromkeys(self.policies, 0)
            for row, pol in prepared:
                if pol.coalesce and row["key"] is not None:
                    dropped += await self._remove(conn, "coalesce_key = ? AND class = ?",
                                                  (row["key"], pol.name), "coalesced", count=False)
                need = self._bytes[pol.name] + added[pol.name] + row["size"] - pol.max_bytes
                if need > 0:
                    if pol.lossless:
                        self.refused[pol.name] += 1
                        raise OutboxFull(f"outbox class {pol.name} is full ({pol.max_bytes} "
                                         f"bytes); {row['kind']} not queued")
                    dropped += await self._evict(conn, pol.name, need)
                cur = await conn.execute(
                    "INSERT OR IGNORE INTO sync_outbox (id, class, priority, kind, coalesce_key,"
                    " body, size, created, expires) VALUES (?,?,?,?,?,?,?,?,?)",
                    (row["id"], pol.name, pol.priority, row["kind"], row["key"], row["body"],
                     row["size"], now, None if pol.expiry_s is None else now + pol.expiry_s))
                if cur.rowcount:
                    added[pol.name] += row["size"]
                ids.append(row["id"])
        for name, size in added.items():
            self._bytes[name] += size
        for item in dropped:
            if item.why != "coalesced":
                self.dropped[item.cls] += 1
        return ids, dropped

    def _prepare(self, cls: str, kind: str, body: Mapping[str, Any], key: str | None,
                 item_id: str | None, *, now: float) -> tuple[dict[str, Any], ClassPolicy]:
        pol = self.policies.get(cls)
        if pol is None:
            raise SyncError(f"unknown outbox class {cls!r}; expected one of "
                            f"{', '.join(self.policies)}")
        if not kind or len(kind) > p.KIND_MAX_LEN:
            raise SyncError(f"item kind must be 1..{p.KIND_MAX_LEN} characters")
        try:
            text = json.dumps(dict(body), separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
        except (TypeError, ValueError) as err:
            raise SyncError(f"{cls}/{kind} body is not JSON-serializable: {err}") from err
        size = len(text.encode())
        if size > MAX_ITEM_BYTES:
            self.refused[cls] += 1
            raise OutboxFull(f"{cls}/{kind} item of {size} bytes exceeds {MAX_ITEM_BYTES}")
        item_id = item_id or uuid.uuid4().hex
        if len(item_id) > p.ID_MAX_LEN:
            raise SyncError(f"item id longer than {p.ID_MAX_LEN} characters")
        return {"id": item_id, "kind": kind, "key": key, "body": text, "size": size}, pol

    async def _evict(self, conn: Any, cls: str, need: int) -> list[Dropped]:
        rows = await (await conn.execute(
            "SELECT seq, size FROM sync_outbox WHERE class = ? ORDER BY seq", (cls,))).fetchall()
        upto, freed = None, 0
        for seq, size in rows:
            if freed >= need:
                break
            upto, freed = seq, freed + size
        if upto is None:
            return []
        return await self._remove(conn, "class = ? AND seq <= ?", (cls, upto), "evicted")

    async def _remove(self, conn: Any, where: str, params: tuple[Any, ...], why: str,
                      count: bool = True) -> list[Dropped]:
        rows = await (await conn.execute(
            f"SELECT id, class, kind, size FROM sync_outbox WHERE {where}", params)).fetchall()
        if not rows:
            return []
        await conn.execute(f"DELETE FROM sync_outbox WHERE {where}", params)
        out = []
        for item_id, cls, kind, size in rows:
            self._bytes[cls] -= size
            out.append(Dropped(item_id, cls, kind, why))
            if count:
                log.warning("outbox: %s item %s/%s %s before reaching the cloud", cls, cls,
                            kind, why)
        return out

    async def peek(self, limit: int, exclude: Iterable[str] = ()) -> list[p.UpItem]:
        """The next items to send, in priority then arrival order, skipping ``exclude``."""
        skip = set(exclude)
        rows = await self.db.read(
            "SELECT id, class, kind, body, created FROM sync_outbox ORDER BY priority, seq "
            "LIMIT ?", (limit + len(skip),))
        out = []
        for item_id, cls, kind, body, created in rows:
            if item_id not in skip:
                out.append(p.UpItem(item_id, cls, kind, json.loads(body), created))
        return out[:limit]

    async def ack(self, ids: Iterable[str]) -> int:
        """Remove acknowledged items; returns how many were still queued."""
        id_list = list(ids)
        if not id_list:
            return 0
        removed = 0
        async with self.db.transaction() as conn:
            for i in range(0, len(id_list), 500):
                chunk = id_list[i:i + 500]
                marks = ",".join("?" * len(chunk))
                rows = await (await conn.execute(
                    f"SELECT class, SUM(size), COUNT(*) FROM sync_outbox WHERE id IN ({marks}) "
                    "GROUP BY class", chunk)).fetchall()
                await conn.execute(f"DELETE FROM sync_outbox WHERE id IN ({marks})", chunk)
                for cls, size, count in rows:
                    self._bytes[cls] -= int(size)
                    removed += int(count)
        return removed

    async def expire(self, now: float) -> list[Dropped]:
        """Remove items past their class expiry, loudly."""
        async with self.db.transaction() as conn:
            dropped = await self._remove(conn, "expires IS NOT NULL AND expires <= ?", (now,),
                                         "expired")
        for item in dropped:
            self.dropped[item.cls] += 1
        return dropped

    async def depth(self) -> int:
        """Items queued, all classes."""
        rows = await self.db.read("SELECT COUNT(*) FROM sync_outbox")
        return int(rows[0][0])

    async def stats(self, now: float) -> dict[str, dict[str, float]]:
        """Per class: items, bytes, cap, oldest age in seconds, evicted/expired and refused."""
        rows = await self.db.read(
            "SELECT class, COUNT(*), SUM(size), MIN(created) FROM sync_outbox GROUP BY class")
        seen = {r[0]: r for r in rows}
        out: dict[str, dict[str, float]] = {}
        for name, pol in self.policies.items():
            row = seen.get(name)
            out[name] = {
                "items": float(row[1]) if row else 0.0,
                "bytes": float(row[2] or 0) if row else 0.0,
                "max_bytes": float(pol.max_bytes),
                "oldest_age_s": max(0.0, now - row[3]) if row else 0.0,
                "dropped": float(self.dropped[name]),
                "refused": float(self.refused[name]),
            }
        return out
