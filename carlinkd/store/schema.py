"""Versioned schema migrations, tracked in SQLite's ``PRAGMA user_version``.

Each migration is one script run in one transaction together with the version bump, so a
crash mid-migration leaves the previous version intact. Append new migrations; never edit a
released one.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: alert and DTC history, samples, service history chain. (The cloud outbox lives in
    # its own file: carlinkd/sync/db.py, carlinkd/sync/outbox.py.)
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE alert_log (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        key TEXT NOT NULL,
        event TEXT NOT NULL,              -- raised, acknowledged, cleared
        severity TEXT,
        text TEXT,
        detail TEXT                       -- reason / origin
    );
    CREATE INDEX alert_log_at ON alert_log(at);
    CREATE TABLE alert_state (
        key TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        spoken TEXT NOT NULL,
        text TEXT NOT NULL,
        state TEXT NOT NULL,
        raised_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE dtc_log (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        ecu INTEGER NOT NULL,
        code TEXT NOT NULL,
        event TEXT NOT NULL,              -- set, cleared
        description TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX dtc_log_at ON dtc_log(at);
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        at REAL NOT NULL,
        value REAL NOT NULL
    );
    CREATE INDEX samples_name_at ON samples(name, at);
    CREATE TABLE service_records (
        pos INTEGER PRIMARY KEY,          -- storage order; the chain's seq is inside body
        body TEXT NOT NULL,               -- canonical JSON that was hashed
        hash TEXT NOT NULL,
        signature TEXT NOT NULL,
        key_id TEXT NOT NULL,
        stored_at REAL NOT NULL
    );
    -- Append-only by construction: retention and bugs cannot touch the service history.
    -- (Anyone with the file can drop these triggers; the hash chain is what detects that.)
    CREATE TRIGGER service_records_no_update BEFORE UPDATE ON service_records
        BEGIN SELECT RAISE(ABORT, 'service records are append-only'); END;
    CREATE TRIGGER service_records_no_delete BEFORE DELETE ON service_records
        BEGIN SELECT RAISE(ABORT, 'service records are append-only'); END;
    """,
)

LATEST_VERSION = len(MIGRATIONS)
