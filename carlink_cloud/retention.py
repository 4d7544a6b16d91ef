"""How long the reference backend keeps what cars send (docs/protocol.md §10).

Run every housekeeping round: help requests whose time is up lose their position, and upstream
rows, acknowledged downstream rows, status rows and help requests older than the retention
(default 7 days, ``carlink-cloud serve --retention-days``) are deleted. The database overwrites
what it deletes (``secure_delete``) and its write-ahead log is truncated afterwards, so a pruned
position is gone from the files too.
"""

from __future__ import annotations

import logging

from .bookings import remind_due
from .help import expire_help
from .store import CloudStore

log = logging.getLogger(__name__)
DEFAULT_RETENTION_DAYS = 7.0


def prune(store: CloudStore, now: float, retention_s: float) -> dict[str, int]:
    """Delete what is older than the retention; returns the rows deleted per table."""
    cutoff = now - retention_s
    with store.tx() as c:
        counts = {
            "upstream": c.execute("DELETE FROM upstream WHERE received < ?",
                                  (cutoff,)).rowcount,
            "status": c.execute("DELETE FROM status WHERE received < ?", (cutoff,)).rowcount,
            "help_asked": c.execute("DELETE FROM help_asked WHERE request IN (SELECT id FROM "
                                    "help_requests WHERE created < ?)", (cutoff,)).rowcount,
            "help_requests": c.execute("DELETE FROM help_requests WHERE created < ? AND "
                                       "open = 0", (cutoff,)).rowcount,
            "join_notices": c.execute("DELETE FROM join_notices WHERE at < ?",
                                      (cutoff,)).rowcount,
        }
    counts["downstream"] = store.prune_down(None, cutoff)
    return counts


def housekeep(store: CloudStore, now: float, retention_s: float) -> set[int]:
    """One housekeeping round: expiry, booking reminders, retention; returns devices to wake."""
    expired = expire_help(store, now)
    wake = remind_due(store, now)
    counts = prune(store, now, retention_s)
    if expired or any(counts.values()):
        # Erased and deleted pages are overwritten in the WAL first: fold it into the database
        # and truncate it, so no old copy stays in the -wal file.
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        log.info("housekeeping: %d help requests expired; pruned %s", expired,
                 ", ".join(f"{n} {table}" for table, n in counts.items() if n) or "nothing")
    return wake
