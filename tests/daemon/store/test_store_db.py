"""The SQLite store: migrations, durability, batching, retention, corruption, crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from carlinkd.errors import StoreError
from carlinkd.store.db import AlertRow, ServiceRow, Store
from carlinkd.store.schema import LATEST_VERSION
from carlinkd.store.settings import StoreConfig

REPO = Path(__file__).resolve().parents[3]
DAY = 86400.0


async def test_fresh_database_is_wal_migrated_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "state" / "carlinkd.db"
    store = await Store.open(path)
    try:
        assert (await store.read("PRAGMA journal_mode"))[0][0] == "wal"
        assert (await store.read("PRAGMA user_version"))[0][0] == LATEST_VERSION
        tables = {r[0] for r in await store.read("SELECT name FROM sqlite_master WHERE "
                                                 "type = 'table'")}
        assert tables == {"meta", "alert_log", "alert_state", "dtc_log", "samples",
                          "service_records"}  # the cloud outbox is in sync.db, not here
        assert store.aside is None
    finally:
        await store.close()
    again = await Store.open(path, background=False)  # reopening migrates nothing
    await again.close()


async def test_newer_schema_is_refused_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "carlinkd.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this carlinkd"):
        await Store.open(path)
    assert path.exists() and not list(tmp_path.glob("*.corrupt-*"))


async def test_buffered_writes_land_on_flush_and_close(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.db", StoreConfig(flush_interval_s=3600.0))
    store.add_sample("Vehicle.TraveledDistance", 1.0, 42137.5)
    store.log_alert(2.0, "coolant_high", "raised", "warning", "hot")
    store.put_alert_state(AlertRow("coolant_high", "coolant_high", "warning", "s", "t", "raised",
                                   2.0, 2.0))
    store.log_dtc(3.0, 0x7E8, "P0301", "set", "misfire")
    assert await store.samples("Vehicle.TraveledDistance") == []  # not yet committed
    assert await store.flush() == 4
    assert await store.samples("Vehicle.TraveledDistance") == [(1.0, 42137.5)]
    assert [r.key for r in await store.active_alerts()] == ["coolant_high"]
    assert (await store.dtc_history())[0][2] == "P0301"
    store.add_sample("Vehicle.TraveledDistance", 5.0, 42138.0)
    await store.close()
    store = await Store.open(tmp_path / "c.db", background=False)
    assert len(await store.samples("Vehicle.TraveledDistance")) == 2
    await store.close()


async def test_background_flusher_commits_batches(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.db", StoreConfig(flush_interval_s=0.05, batch_max=10))
    try:
        for i in range(25):
            store.add_sample("x", float(i), float(i))
        for _ in range(100):
            if store.buffered == 0:
                break
            await asyncio.sleep(0.02)
        assert len(await store.samples("x")) == 25
        assert store.counters["flushes"] >= 1
    finally:
        await store.close()


async def test_retention_thins_samples_and_never_touches_service_history(tmp_path: Path) -> None:
    cfg = StoreConfig(samples_full_days=7, samples_keep_days=30, log_keep_days=10, log_max_rows=5)
    store = await Store.open(tmp_path / "c.db", cfg, background=False)
    now = 100 * DAY
    for minute in range(0, 24 * 60, 10):  # a day of 10-minute samples, 20 days ago
        store.add_sample("odo", now - 20 * DAY + minute * 60, float(minute))
    store.add_sample("odo", now - 40 * DAY, 1.0)  # beyond keep: deleted
    store.add_sample("odo", now - DAY, 2.0)       # recent: kept as is
    for i in range(8):
        store.log_alert(now - i, f"k{i}", "raised")
    store.log_alert(now - 20 * DAY, "old", "raised")
    await store.flush()
    await store.append_service(lambda last: (ServiceRow(1, "{}", "h", "s", "k"), "{}"))
    done = await store.apply_retention(now)
    samples = await store.samples("odo")
    assert len(samples) == 24 + 1  # one per hour for the old day, plus the recent one
    assert done["samples_expired"] == 1
    assert len(await store.alert_history()) == 5
    assert await store.service_count() == 1
    with pytest.raises(StoreError, match="append-only"):
        await store.write(lambda c: c.execute("DELETE FROM service_records"), durable=True)
    await store.close()


async def test_not_a_database_is_set_aside_and_a_fresh_one_started(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture
                                                                    ) -> None:
    path = tmp_path / "carlinkd.db"
    path.write_bytes(b"this is not sqlite" * 500)
    store = await Store.open(path)
    try:
        assert store.aside is not None and store.aside.read_bytes().startswith(b"this is not")
        await store.set_meta("vin", "WVWZZZ1JZXW000001")  # the fresh database takes writes
        assert await store.get_meta("vin") == "WVWZZZ1JZXW000001"
    finally:
        await store.close()
    assert "corrupt" in caplog.text and store.aside.name in caplog.text


async def test_an_empty_database_file_is_reported_not_silently_replaced(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SQLite takes a 0-byte file as a new database; the history that was in it is gone, and the
    driver must hear about it: set aside, one error line, a fresh store."""
    path = tmp_path / "carlinkd.db"
    path.write_bytes(b"")
    store = await Store.open(path, background=False)
    try:
        assert store.aside is not None and store.aside.exists()
        assert store.aside.stat().st_size == 0 and path.stat().st_size > 0
    finally:
        await store.close()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "empty (0 bytes)" in errors[0].getMessage()


async def test_damaged_pages_are_set_aside_and_service_records_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "carlinkd.db"
    store = await Store.open(path, background=False)
    await store.append_service(lambda last: (ServiceRow(1, '{"seq":1}', "h1", "s1", "k"), "head"))
    for i in range(3000):
        store.add_sample("odo", float(i), float(i))
    await store.close()
    with sqlite3.connect(path) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='samples'").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as fh:  # scribble over the samples table's root page
        fh.seek((root - 1) * page)
        fh.write(b"\xff" * page)
    store = await Store.open(path, background=False)
    try:
        assert store.aside is not None
        rows = await store.service_rows()
        assert [(r.body, r.hash) for r in rows] == [('{"seq":1}', "h1")]
        assert await store.get_meta("service_head") == "head"
    finally:
        await store.close()


CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from carlinkd.store.db import ServiceRow, Store

    async def main():
        store = await Store.open(Path(sys.argv[1]))
        i = 0
        while True:
            i += 1
            row = await store.append_service(lambda last: (ServiceRow(
                (last.pos if last else 0) + 1, "entry-%d" % i, "h", "s", "k"), "head-%d" % i))
            store.add_sample("odo", float(i), float(i))
            if i % 7 == 0:
                await store.flush()
                print("samples", i, flush=True)
            print("service", row.pos, flush=True)

    asyncio.run(main())
""")


@pytest.mark.slow
def test_sigkill_while_writing_loses_nothing_reported_stored(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                             env=env, text=True)
    assert child.stdout is not None
    reported, samples_upto = [], 0
    try:
        for line in child.stdout:
            kind, value = line.split()
            if kind == "service":
                reported.append(int(value))
            else:
                samples_upto = int(value)
            if len(reported) >= 150:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as conn:  # what a fresh process finds
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        bodies = dict(conn.execute("SELECT pos, body FROM service_records").fetchall())
        n_samples = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert set(reported) <= set(bodies)
    assert all(bodies[i] == f"entry-{i}" for i in reported)
    assert n_samples >= samples_upto > 0
