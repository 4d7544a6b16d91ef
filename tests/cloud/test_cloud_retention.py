"""What the backend keeps, and for how long (docs/protocol.md §10): a help request's position is
erased when it expires, everything else with a position is pruned after the retention, and then
no coordinate of the car is left in the database files; an older database is migrated."""

from __future__ import annotations

import json
import sqlite3
import struct
from pathlib import Path

from carlink_cloud import CloudServer, CloudStore
from carlink_cloud.cli import build_parser
from carlink_cloud.retention import housekeep
from carlink_protocol.geo import cell_of
from v2client import Clock, online

T0 = 1_800_000_000.0
DAY = 86400.0
STATUS_AT = (52.513579, 13.402468)     # where the car said it was (location = always)
HELP_AT = (52.514682, 13.403791)       # where it asked for help


def traces(files: list[Path], where: tuple[float, float]) -> list[str]:
    """Which encodings of the coordinates occur in the files' bytes (text as in JSON, and the
    8-byte IEEE doubles SQLite stores REAL values as, either byte order)."""
    data = b"".join(f.read_bytes() for f in files if f.exists())
    found = []
    for value in where:
        for name, needle in (("text", json.dumps(value).encode()),
                             ("double-be", struct.pack(">d", value)),
                             ("double-le", struct.pack("<d", value))):
            if needle in data:
                found.append(f"{value} as {name}")
    return found


def db_files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


async def test_no_coordinate_of_the_car_remains_after_expiry_and_pruning(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    store = CloudStore(db)
    tokens = {n: store.add_device(n) for n in ("car", "helper")}
    store.add_shop("Garage", 52.53, 13.41, days="daily")
    store.close()
    clock = Clock(T0)
    async with CloudServer(db, clock=clock) as server:
        assert server.store is not None
        async with online(server, tokens["car"]) as car, \
                online(server, tokens["helper"]) as helper:
            await helper.send("status", "status", {"helper": True,
                                                   "cell": cell_of(*HELP_AT)}, created=T0)
            await car.send("status", "status", {"lat": STATUS_AT[0], "lon": STATUS_AT[1],
                                                 "speed": 0.0}, created=T0)
            await car.send("emergency", "help_request", {
                "lat": HELP_AT[0], "lon": HELP_AT[1], "note": "flat", "vehicle": {"x": 1}},
                "h1", created=T0)
            await helper.down("help_request")
            await helper.send("emergency", "help_response", {"request_id": "h1", "to": "car"})
            await helper.down("help_detail")
            await car.send("booking", "booking_options", {
                "service": "oil", "day": "2030-01-07", "time": "9am", "lat": STATUS_AT[0],
                "lon": STATUS_AT[1]})
            await car.down("booking_options")
            await car.settle()
            await helper.settle()
            assert traces(db_files(db), HELP_AT)    # the search does find them while kept
            clock.now = T0 + 3601                   # the request expired
            await server._db(housekeep, server.store, clock.now, 7 * DAY)
            assert traces(db_files(db), HELP_AT) == []
            assert traces(db_files(db), STATUS_AT)  # the latest status, kept for 7 days
            upstream = await server._db(server.store.upstream_log, "car")
            assert {u["kind"]: u["body"] for u in upstream}["status"] == {}
            clock.now = T0 + 8 * DAY
            await server._db(housekeep, server.store, clock.now, 7 * DAY)
            assert traces(db_files(db), STATUS_AT) == []
    assert traces(db_files(db), STATUS_AT) + traces(db_files(db), HELP_AT) == []
    with sqlite3.connect(db) as conn:
        counts = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("upstream", "status", "help_requests", "help_asked")]
    conn.close()
    assert counts == [0, 0, 0, 0]


def test_a_protocol_1_database_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the tables protocol 1 wrote differently
        conn.executescript("""
            CREATE TABLE groups (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                model TEXT NOT NULL DEFAULT '', region TEXT NOT NULL DEFAULT '');
            CREATE TABLE shops (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                lat REAL NOT NULL, lon REAL NOT NULL, days TEXT NOT NULL, opens INTEGER NOT NULL,
                closes INTEGER NOT NULL, slot_minutes INTEGER NOT NULL,
                capacity INTEGER NOT NULL, services TEXT NOT NULL);
            CREATE TABLE status (device_id INTEGER PRIMARY KEY, body TEXT NOT NULL,
                created REAL NOT NULL, lat REAL, lon REAL);
            CREATE TABLE help_requests (id TEXT PRIMARY KEY, device_id INTEGER NOT NULL,
                lat REAL, lon REAL, created REAL NOT NULL);
            CREATE TABLE upstream (device_id INTEGER NOT NULL, item_id TEXT NOT NULL,
                class TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,
                created REAL NOT NULL, received REAL NOT NULL, status TEXT NOT NULL,
                reason TEXT NOT NULL, result TEXT NOT NULL, PRIMARY KEY (device_id, item_id));
            INSERT INTO groups (name) VALUES ('family');
            INSERT INTO help_requests VALUES ('h1', 1, 52.5, 13.4, 1.0);
            INSERT INTO upstream VALUES (1, 's1', 'status', 'status',
                '{"lat": 52.5, "lon": 13.4}', 1, 1, 'stored', '', '{}');
            INSERT INTO upstream VALUES (1, 'h1', 'emergency', 'help_request',
                '{"lat": 52.5, "lon": 13.4, "note": "x"}', 1, 1, 'stored', '', '{}');
        """)
    conn.close()
    store = CloudStore(db)
    try:
        c = store.conn
        assert c.execute("SELECT policy, owner_id FROM groups").fetchone() == ("invite", None)
        assert c.execute("SELECT COUNT(*) FROM help_requests").fetchone()[0] == 0
        bodies = [json.loads(r[0]) for r in c.execute("SELECT body FROM upstream ORDER BY 1")]
        assert sorted(bodies, key=len) == [{}, {"note": "x"}]
        store.add_shop("Garage", 52.5, 13.4, address="Main St 1")
        assert store.shops()[0].address == "Main St 1"
    finally:
        store.close()
    CloudStore(db).close()  # a second open finds nothing left to migrate


def test_serve_takes_a_retention_in_days() -> None:
    args = build_parser().parse_args(["serve", "--retention-days", "2.5"])
    assert args.retention_days == 2.5
    assert build_parser().parse_args(["serve"]).retention_days == 7.0


async def test_the_housekeeping_round_uses_the_servers_retention(tmp_path: Path) -> None:
    store = CloudStore(tmp_path / "c.db")
    token = store.add_device("car")
    store.close()
    clock = Clock(T0)
    async with CloudServer(tmp_path / "c.db", clock=clock, retention_s=DAY) as server:
        async with online(server, token) as car:
            await car.send("alert", "alert", {"name": "x"}, created=T0)
        assert server.store is not None
        clock.now = T0 + DAY - 60
        await server._db(housekeep, server.store, clock.now, server.retention_s)
        assert len(await server._db(server.store.upstream_log, "car")) == 1
        clock.now = T0 + DAY + 60
        await server._db(housekeep, server.store, clock.now, server.retention_s)
        assert await server._db(server.store.upstream_log, "car") == []
