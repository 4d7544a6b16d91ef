"""What leaves the car, checked where it lands: a real daemon (simulated car on a virtual CAN
bus) syncing to the real reference backend; the backend's database file is searched."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import can

from carlink_cloud import CloudServer, CloudStore
from carlink_sim import Simulator
from carlinkd.config import build_config
from carlinkd.daemon import Daemon
from carlinkd.events import SignalsUpdated

LAT, LON = "Vehicle.CurrentLocation.Latitude", "Vehicle.CurrentLocation.Longitude"
WAIT_S = 20.0


async def until(predicate: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await predicate() if asyncio.iscoroutinefunction(predicate) else not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def database_bytes(path: Path) -> bytes:
    """The database and its WAL, as stored on disk."""
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


async def test_default_configuration_sends_no_coordinate_or_speed(tmp_path: Path) -> None:
    db = tmp_path / "cloud.db"
    store = CloudStore(db)
    token = store.add_device("car1", "golf", "berlin")
    store.close()
    server = CloudServer(db)
    await server.start()
    channel = f"privacy-{os.getpid()}-{time.monotonic_ns()}"
    cfg = build_config([("test", {
        "daemon": {"state_dir": str(tmp_path / "car")},
        "can": {"interface": "virtual", "channel": channel},
        "sync": {"url": server.url, "token": token, "status_interval_s": 0.2},
        "voice": {"enabled": False}, "hmi": {"enabled": False}})])
    seen: list[float] = []
    try:
        async with Daemon(cfg) as daemon:
            sub = daemon.hub.subscribe(SignalsUpdated, name="test-positions")
            tx = can.Bus(interface="virtual", channel=channel)
            try:
                sim = Simulator(scenario="city-drive", seed=5, time_scale=20.0)
                drive = asyncio.create_task(sim.run(lambda f: [tx.send(x) for x in f], 3.0))
                while not drive.done():
                    try:
                        event = await asyncio.wait_for(sub.get(), 0.5)
                    except TimeoutError:
                        continue
                    assert isinstance(event, SignalsUpdated)
                    seen += [float(event.values[n].value) for n in (LAT, LON)
                             if n in event.values]
                await drive
            finally:
                tx.shutdown()
            statuses = lambda: server.store.conn.execute(  # noqa: E731
                "SELECT COUNT(*) FROM status").fetchone()[0]
            await until(lambda: statuses() > 0, "a status item at the backend")
            await daemon.sync.submit("chat", "group_list", {})  # one more round trip
            await asyncio.sleep(0.5)
    finally:
        await server.stop()
    assert len(set(seen)) >= 4  # the car moved and knew where it was
    rows = CloudStore(db)
    try:
        assert rows.conn.execute("SELECT lat, lon FROM status").fetchall() == [(None, None)]
    finally:
        rows.close()
    stored = database_bytes(db)
    leaked = [v for v in set(seen) if repr(v).encode() in stored]
    assert leaked == [], f"positions in the backend's database: {leaked[:5]}"
    assert b"Vehicle.Speed" not in stored and b'"speed"' not in stored
    assert b"CurrentLocation" not in stored
