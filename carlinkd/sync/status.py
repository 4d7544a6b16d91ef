"""``carlinkd status``: the car's sync settings, outbox depth per class and inbound cursor,
read from the sync database without the daemon."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from ..errors import SyncError

if TYPE_CHECKING:
    from ..config import Config


def sync_status(cfg: Config) -> dict[str, Any]:
    """Outbox depth and oldest age per class and the inbound cursor, read from the sync
    database without the daemon (for ``carlinkd status``)."""
    path = cfg.sync.db_path(cfg.daemon.state_dir)
    out: dict[str, Any] = {"url": cfg.sync.url or "(offline: sync.url not set)", "db": str(path)}
    if not path.exists():
        out["outbox"] = {}
        return out
    now = time.time()
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT class, COUNT(*), SUM(size), MIN(created) FROM "
                                "sync_outbox GROUP BY class").fetchall()
            cursor = conn.execute("SELECT epoch, seq FROM sync_cursor").fetchone()
            consent = _consent(conn)
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise SyncError(f"cannot read sync database {path}: {err}") from err
    out["outbox"] = {r[0]: {"items": r[1], "bytes": r[2], "oldest_age_s": round(now - r[3], 1)}
                     for r in rows}
    out["inbound_cursor"] = cursor[1] if cursor else 0
    out["helper"] = bool(consent.get("helper", cfg.social.helper))
    out["open_help_requests"] = len(consent.get("open_requests") or {})
    return out


def _consent(conn: sqlite3.Connection) -> dict[str, Any]:
    """The run-time consent state the daemon keeps (helper choice, open help requests)."""
    try:
        row = conn.execute("SELECT value FROM sync_state WHERE name = 'consent'").fetchone()
    except sqlite3.OperationalError:  # a database from before sync_state existed
        return {}
    try:
        value = json.loads(row[0]) if row else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def status_lines(cfg: Config) -> list[str]:
    """Human-readable lines for ``carlinkd status``."""
    st = sync_status(cfg)
    lines = [f"cloud: {st['url']}", f"location: {cfg.sync.location}; helper: "
             f"{'on' if st.get('helper', cfg.social.helper) else 'off'}"]
    if not st["outbox"]:
        lines.append("outbox: empty")
    for cls, row in sorted(st["outbox"].items()):
        lines.append(f"outbox {cls}: {row['items']} items, {row['bytes']} bytes, "
                     f"oldest {row['oldest_age_s']} s")
    if "inbound_cursor" in st:
        lines.append(f"inbound cursor: {st['inbound_cursor']}")
    if st.get("open_help_requests"):
        lines.append(f"open help requests: {st['open_help_requests']}")
    return lines
