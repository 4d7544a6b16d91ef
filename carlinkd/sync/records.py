"""Service history to the cloud: the car's signed chain entries, exactly as stored, as
``service_record`` items (docs/protocol.md §6).

The chain lives in the daemon's store (``carlinkd.db``, :mod:`carlinkd.records`), and
``carlinkd records add`` appends to it from another process, so :class:`RecordsFeed` reads it
read-only and queues whatever it has not queued yet. Where it got to is kept in ``sync.db``
(``sync_counters``) *after* the items are durable in the outbox: a power cut between the two
queues the same entries again under the same id (the id is a digest of the body), which the
outbox ignores while queued and the cloud answers without a second effect (§4.2).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..logutil import RateLimitedLogger
from carlink_protocol.chain import Entry, canonical, raw_public
from ..records.history import HEAD_META_KEY, entry_from_row
from ..store.db import ServiceRow
from .db import SyncDb

log = logging.getLogger(__name__)
_warn = RateLimitedLogger(log, interval=300.0)

CLASS = KIND = "service_record"
COUNTER = "records_queued"
# Entries per item: ~600 bytes each keeps an item far below the outbox's 256 KiB limit.
MAX_ENTRIES_PER_ITEM = 100


@dataclass(frozen=True, slots=True)
class Chain:
    """The stored chain: entries in storage order and the signed head (None if absent)."""

    entries: tuple[Entry, ...]
    head: Mapping[str, Any] | None


def upload_items(chain: Chain, public_key: bytes, after: int,
                 per_item: int = MAX_ENTRIES_PER_ITEM) -> list[tuple[str, dict[str, Any]]]:
    """(id, body) of the items that carry the entries after position ``after`` (pure).

    Each body holds a run of entries and the raw public key; the last one also holds the
    signed head, which states how long the chain is."""
    todo = chain.entries[after:]
    items = []
    for start in range(0, len(todo), per_item):
        part = todo[start:start + per_item]
        body: dict[str, Any] = {"public_key": public_key.hex(),
                                "entries": [e.to_json() for e in part]}
        if start + per_item >= len(todo) and chain.head is not None:
            body["head"] = dict(chain.head)
        digest = hashlib.sha256(canonical(body)).hexdigest()[:40]
        items.append((f"records-{digest}", body))
    return items


def _read_chain(path: Path) -> Chain:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with conn:  # one read transaction: the head matches the rows
            rows = conn.execute("SELECT pos, body, hash, signature, key_id FROM service_records "
                                "ORDER BY pos").fetchall()
            head_row = conn.execute("SELECT value FROM meta WHERE key = ?",
                                    (HEAD_META_KEY,)).fetchone()
    finally:
        conn.close()
    head = None
    if head_row is not None:
        try:
            parsed = json.loads(head_row[0])
        except ValueError:
            parsed = None
        head = parsed if isinstance(parsed, dict) else None
    return Chain(tuple(entry_from_row(ServiceRow(*r)) for r in rows), head)


def _count(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM service_records").fetchone()[0])
    finally:
        conn.close()


class RecordsFeed:
    """Queues new service-history entries of the store at ``store_path`` for the cloud."""

    def __init__(self, db: SyncDb, store_path: Path, key_path: Path) -> None:
        self.db = db
        self.store_path = store_path
        self.key_path = key_path
        self.queued = 0

    async def load(self) -> None:
        """Read how many entries were queued before."""
        rows = await self.db.read("SELECT value FROM sync_counters WHERE name = ?", (COUNTER,))
        self.queued = int(rows[0][0]) if rows else 0

    async def pending(self) -> list[tuple[str, dict[str, Any]]]:
        """Items for the entries not queued yet (empty when there are none or no store)."""
        if not self.store_path.exists():
            return []
        try:
            count = await asyncio.to_thread(_count, self.store_path)
            if count == self.queued:
                return []
            chain = await asyncio.to_thread(_read_chain, self.store_path)
        except sqlite3.Error as err:
            _warn.warning("read", "cannot read the service history in %s: %s",
                          self.store_path, err)
            return []
        if len(chain.entries) < self.queued:
            log.warning("the service history has %d entries, %d were queued before (store "
                        "replaced?): uploading it again from the start", len(chain.entries),
                        self.queued)
            self.queued = 0
        return upload_items(chain, self._public_key(), self.queued) if chain.entries else []

    def _public_key(self) -> bytes:
        from ..records.keys import load_device_key

        return raw_public(load_device_key(self.key_path).public_key())

    async def mark(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Record that these items are durable in the outbox."""
        self.queued += sum(len(body["entries"]) for _, body in items)
        async with self.db.transaction() as conn:
            await conn.execute("INSERT INTO sync_counters (name, value) VALUES (?, ?) ON "
                               "CONFLICT(name) DO UPDATE SET value = excluded.value",
                               (COUNTER, self.queued))
