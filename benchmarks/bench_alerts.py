"""Alert figures: frame-to-alert latency under a 4,000 frames/s flood; sync outbox throughput.

Run: ``python benchmarks/bench_alerts.py [--seconds 10] [--flood 4000]``.

Latency: the simulator floods the demo bus in real time (wall-clock timestamps) through the
same path the daemon uses (Decoder -> hub SignalsUpdated -> AlertService -> hub AlertRaised).
Every 50 ms a probe frame sets the coolant temperature above / below a zero-hold rule, so each
probe must raise or clear an alert; latency is the probe frame's timestamp to the moment a hub
subscriber receives the alert event. The baseline is the same path with only the probes.

Throughput: 200-byte ``alert`` items (the class alerts reach the cloud through) queued in
``carlinkd.sync.outbox`` (``synchronous=FULL``, as the daemon runs it) with ``put`` (one
commit per item) and ``put_many`` (100 per commit), against raw ``sqlite3`` inserting the same
rows into the same table with the same pragmas, in the same process and file system (the floor
of what the outbox adds: aiosqlite's thread hop, JSON, cap accounting). The two alternate in
five rounds because a single commit costs one fsync, whose price on a shared disk drifts; read
the 1-per-commit pair as "fsync-bound, same order", not as a ratio. The alert class's byte cap
is raised for the run so that the 20,500 items fit; nothing is drained. bench_sync.py covers
the other side (delivery to the backend, draining after a reconnect), not commit rates.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import can  # noqa: E402

from carlinkd.alerts.service import AlertService  # noqa: E402
from carlinkd.alerts.settings import AlertsConfig, CoolantHigh  # noqa: E402
from carlinkd.can.catalog import Catalog  # noqa: E402
from carlinkd.can.database import load_database  # noqa: E402
from carlinkd.can.decode import Decoder  # noqa: E402
from carlinkd.config import Config  # noqa: E402
from carlinkd.events import AlertCleared, AlertRaised, SignalsUpdated  # noqa: E402
from carlinkd.hub import Hub  # noqa: E402
from carlinkd.store.db import Store  # noqa: E402
from carlinkd.sync.db import SCHEMA, SyncDb  # noqa: E402
from carlinkd.sync.outbox import POLICIES, Outbox  # noqa: E402

PROBE_EVERY_S = 0.05
ENGINE_TEMPS_ID = 977
# An alert item body of 200 bytes as JSON (the size the outbox accounts).
BODY = {"name": "coolant_high", "event": "raised", "severity": "warning", "at": 1732480000.5,
        "text": "x" * 111}
assert len(json.dumps(BODY, separators=(",", ":")).encode()) == 200


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe_frame(db: Any, coolant: float, ts: float) -> can.Message:
    """An EngineTemps frame carrying the given coolant temperature."""
    data = db.encode_message(ENGINE_TEMPS_ID, {"CoolantTemperature": coolant,
                                               "OilTemperature": 95, "IntakeAirTemperature": 30,
                                               "CoolingFanDuty": 0})
    return can.Message(timestamp=ts, arbitration_id=ENGINE_TEMPS_ID, data=data,
                       is_extended_id=False)


async def latency_run(flood: float | None, seconds: float, tmp: Path) -> tuple[list[float], int]:
    """Alert latencies (ms) and frames delivered for one run."""
    db = load_database([])
    decoder = Decoder(db, Catalog())
    hub = Hub(1000)
    rule = dataclasses.replace(CoolantHigh(), hold_s=0.0, clear_hold_s=0.0)
    cfg = Config(alerts=AlertsConfig(coolant_high=rule, reraise_quiet_s=0.0))
    store = await Store.open(tmp / f"bench-{flood}.db")
    service = AlertService(cfg, hub, store)
    listener = hub.subscribe(AlertRaised, AlertCleared, name="bench")
    await service.start()
    probes: list[float] = []
    latencies: list[float] = []
    state = {"hot": False, "next": 0.0, "frames": 0}

    def sink(batch: list[can.Message]) -> None:
        now = time.time()
        batch = [m for m in batch if m.arbitration_id != ENGINE_TEMPS_ID]
        if now >= state["next"]:
            state["next"] = now + PROBE_EVERY_S
            state["hot"] = not state["hot"]
            stamp = batch[-1].timestamp if batch else now
            batch.append(probe_frame(db, 115.0 if state["hot"] else 90.0, stamp))
            probes.append(stamp)
        state["frames"] += len(batch)
        changed = decoder.ingest(batch)
        if changed:
            hub.publish(SignalsUpdated(changed))

    async def listen() -> None:
        async for _event in listener:
            if len(latencies) < len(probes):
                latencies.append((time.time() - probes[len(latencies)]) * 1000.0)

    listen_task = asyncio.create_task(listen())
    if flood:
        from carlink_sim import Simulator

        sim = Simulator(scenario="overheat", seed=1, flood=flood)
        await sim.run(sink, duration=seconds)
    else:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sink([])
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    listen_task.cancel()
    await service.stop()
    await store.close()
    return latencies[5:], state["frames"]  # the first probes warm caches up


async def _outbox_round(box: Outbox, items: int, per_commit: int) -> float:
    """Seconds to queue ``items`` alert items through the sync outbox, ``per_commit`` a commit."""
    t0 = time.perf_counter()
    for _ in range(items // per_commit):
        if per_commit == 1:
            await box.put("alert", "alert", BODY, time.time())
        else:
            await box.put_many([("alert", "alert", BODY, None, None)] * per_commit, time.time())
    return time.perf_counter() - t0


def _raw_round(conn: sqlite3.Connection, items: int, per_commit: int) -> float:
    """Seconds for raw sqlite3 to insert the same rows into the same table."""
    text = json.dumps(BODY, separators=(",", ":"))
    sql = ("INSERT INTO sync_outbox (id, class, priority, kind, coalesce_key, body, size, "
           "created, expires) VALUES (?, 'alert', 1, 'alert', NULL, ?, 200, ?, NULL)")
    t0 = time.perf_counter()
    for _ in range(items // per_commit):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, [(uuid.uuid4().hex, text, time.time()) for _ in range(per_commit)])
        conn.execute("COMMIT")
    return time.perf_counter() - t0


async def outbox_figures(tmp: Path, singles: int, batched: int,
                         rounds: int = 5) -> dict[str, float]:
    """Items per second for carlinkd.sync.outbox and for raw sqlite3, FULL durability both.

    The two alternate in ``rounds`` rounds (an fsync costs what the shared disk makes it cost
    at that moment), and each figure is total items over total time.
    """
    policies = dict(POLICIES, alert=dataclasses.replace(POLICIES["alert"], max_bytes=1 << 30))
    db = await SyncDb.open(tmp / "sync.db")
    conn = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SCHEMA)
    spent = dict.fromkeys(("box1", "box100", "raw1", "raw100"), 0.0)
    try:
        box = Outbox(db, policies)
        await box.load()
        for _ in range(rounds):
            spent["box1"] += await _outbox_round(box, singles // rounds, 1)
            spent["raw1"] += _raw_round(conn, singles // rounds, 1)
            spent["box100"] += await _outbox_round(box, batched // rounds, 100)
            spent["raw100"] += _raw_round(conn, batched // rounds, 100)
        assert await box.depth() == rounds * (singles // rounds + batched // rounds // 100 * 100)
    finally:
        conn.close()
        await db.close()
    n1, n100 = rounds * (singles // rounds), rounds * (batched // rounds // 100 * 100)
    return {"sync outbox put, 1 per commit (FULL)": n1 / spent["box1"],
            "baseline raw sqlite3, 1 per commit (FULL)": n1 / spent["raw1"],
            "sync outbox put_many, 100 per commit (FULL)": n100 / spent["box100"],
            "baseline raw sqlite3, 100 per commit (FULL)": n100 / spent["raw100"]}


async def main(argv: list[str] | None = None) -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--flood", type=float, default=4000.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        print(f"frame-to-alert latency, {args.seconds:.0f} s per run, probe every "
              f"{PROBE_EVERY_S * 1000:.0f} ms")
        for label, flood in (("baseline (probes only)", None),
                             (f"flood {args.flood:.0f} frames/s", args.flood)):
            lat, frames = await latency_run(flood, args.seconds, tmp)
            rate = frames / args.seconds
            print(f"  {label:<28} n={len(lat):4d}  p50 {statistics.median(lat):6.2f} ms  "
                  f"p99 {pct(lat, 0.99):6.2f} ms  max {max(lat):6.2f} ms  "
                  f"({rate:,.0f} frames/s delivered)")
        print("sync outbox write throughput, 200-byte alert items")
        for label, value in (await outbox_figures(tmp, 500, 20_000)).items():
            print(f"  {label:<45} {value:10,.0f} items/s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
