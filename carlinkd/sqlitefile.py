"""What the daemon's SQLite files share: telling corruption from other errors, and setting a
broken file aside (with its -wal/-shm) so a fresh one can start without losing the old bytes."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

#: SQLite's "malformed" and "not a database" result codes.
CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def is_corruption(err: BaseException) -> bool:
    """True for SQLite's 'malformed' / 'not a database' errors (not for locks or permissions)."""
    return isinstance(err, sqlite3.DatabaseError) and \
        getattr(err, "sqlite_errorcode", None) in CORRUPT_CODES


def corrupt_error(message: str) -> sqlite3.DatabaseError:
    """A DatabaseError that :func:`is_corruption` recognises (for a failed integrity check)."""
    failed = sqlite3.DatabaseError(message)
    failed.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
    return failed


def set_aside(path: Path, now: float) -> Path:
    """Rename a database (and its -wal/-shm) to ``<name>.corrupt-<UTC time>``; return the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(Path(f"{aside}{suffix}"))
    return aside
