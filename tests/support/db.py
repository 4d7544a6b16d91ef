"""Database helpers shared by the daemon's and the backend's record tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def tamper(path: Path, *sql: str) -> None:
    """What someone with the file could do: drop the guard triggers and edit rows."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS service_records_no_update")
        conn.execute("DROP TRIGGER IF EXISTS service_records_no_delete")
        for statement in sql:
            conn.execute(statement)
