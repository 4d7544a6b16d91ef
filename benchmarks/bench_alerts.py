"""Alert and store figures: frame-to-alert latency under a 4,000 frames/s flood, outbox throughput.

Run: ``python benchmarks/bench_alerts.py [--seconds 10] [--flood 4000]``.

Latency: the simulator floods the demo bus in real time (wall-clock timestamps) through the
same path the daemon uses (Decoder -> hub SignalsUpdated -> AlertService -> hub AlertRaised).
Every 50 ms a probe frame sets the coolant temperature above / below a zero-hold rule, so each
probe must raise or clear an alert; latency is the probe frame's timestamp to the moment a hub
subscriber receives the alert event. The baseline is the same path with only the probes.

Throughput: outbox entries of 200 bytes through ``Store.outbox`` (FULL durability), one
commit per entry and 100 per commit, against raw ``sqlite3`` doing the same inserts in the
same process and file system (the floor of what the store adds).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sqlite3
import statistics
import sys
import tempfile
import time
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

PROBE_EVERY_S = 0.05
ENGINE_TEMPS_ID = 977
PAYLOAD = b"x" * 200


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
        from sim import Simulator

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


async def outbox_figures(tmp: Path, singles: int, batched: int) -> dict[str, float]:
    """Entries per second for the store and for raw sqlite3."""
    out: dict[str, float] = {}
    store = await Store.open(tmp / "outbox.db", background=False)
    t0 = time.perf_counter()
    for _ in range(singles):
        await store.outbox.put("telemetry", PAYLOAD)
    out["store put, 1 per commit (FULL)"] = singles / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(batched // 100):
        await store.outbox.put_many("telemetry", [PAYLOAD] * 100)
    out["store put_many, 100 per commit (FULL)"] = batched / (time.perf_counter() - t0)
    await store.close()
    conn = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, class TEXT, "
                 "payload BLOB, size INTEGER, created REAL, expires REAL, attempts INTEGER)")
    sql = "INSERT INTO outbox (class, payload, size, created) VALUES ('t', ?, 200, 0)"
    t0 = time.perf_counter()
    for _ in range(singles):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, (PAYLOAD,))
        conn.execute("COMMIT")
    out["baseline raw sqlite3, 1 per commit (FULL)"] = singles / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(batched // 100):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, [(PAYLOAD,)] * 100)
        conn.execute("COMMIT")
    out["baseline raw sqlite3, 100 per commit (FULL)"] = batched / (time.perf_counter() - t0)
    conn.close()
    return out


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
        print("outbox write throughput, 200-byte entries")
        for label, value in (await outbox_figures(tmp, 300, 20_000)).items():
            print(f"  {label:<45} {value:10,.0f} entries/s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
