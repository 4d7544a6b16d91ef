"""Cloud sync figures on loopback, each beside a baseline measured in the same run.

- car -> cloud items/s with durability on (outbox commit, server commit before ack), while a
  producer keeps queueing; baseline: the same JSON frames echoed over a bare websockets
  connection with the same window and no database.
- cloud -> car items/s (server log -> client inbound log, cursor acks); same baseline.
- reconnect-to-drained for 10,000 queued items; baseline: the time to commit them to the outbox.
- backend memory per connection (tracemalloc, after hello); baseline: a bare websockets echo
  server's per-connection memory.
- car -> cloud items/s over wss:// (TLS, development certificates from carlink_cloud/devpki.py);
  baseline: the same over ws://.
- service-history uploads: N chained entries (carlink_protocol.chain), one per item, each
  verified by the backend against the last kept entry; baseline: N chat items. The first and
  last tenth are timed apart, to show the cost per upload does not grow with the history.

Run: ``python benchmarks/bench_sync.py [--items N] [--connections K]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

from carlinkd.config import build_config  # noqa: E402
from carlink_protocol.chain import Entry, ServiceRecord, make_entry, raw_public  # noqa: E402
from carlink_protocol import wire as p  # noqa: E402
from carlinkd.sync.client import SyncClient  # noqa: E402
from carlinkd.sync.db import SyncDb  # noqa: E402
from carlinkd.sync.inbound import InboundLog  # noqa: E402
from carlinkd.sync.outbox import Outbox  # noqa: E402
from carlink_cloud import CloudServer, CloudStore  # noqa: E402
from carlink_cloud.devpki import dev_pki  # noqa: E402

WINDOW = 64


async def _echo(ws: ServerConnection) -> None:
    async for msg in ws:
        await ws.send(msg)


async def baseline_ws(n: int) -> float:
    """Items/s: bare websockets, windowed request/response, no durability."""
    frame = p.encode(p.UpItem("x" * 32, "chat", "chat", {"group": "club", "text": "hello"}, 1.0))
    async with serve(_echo, "127.0.0.1", 0, compression=None) as srv:
        port = srv.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            t0 = time.perf_counter()
            sent = got = 0
            while got < n:
                while sent < n and sent - got < WINDOW:
                    await ws.send(frame)
                    sent += 1
                await ws.recv()
                got += 1
            return n / (time.perf_counter() - t0)


async def _client(base: Path, name: str, token: str, url: str,
                  **sync: Any) -> tuple[SyncClient, SyncDb]:
    db = await SyncDb.open(base / f"{name}.db")
    box, inbound = Outbox(db), InboundLog(db)
    await box.load()
    await inbound.load()
    cfg = build_config([("b", {"sync": {"url": url, "token": token, "window": WINDOW,
                                        **sync}})]).sync
    return SyncClient(cfg, box, inbound, token, on_event=lambda e: None), db


async def _wait(cond: Any) -> None:
    while not await cond():
        await asyncio.sleep(0.005)


async def car_to_cloud(base: Path, server: CloudServer, token: str, n: int,
                       **sync: Any) -> float:
    client, db = await _client(base, f"up-{token[:8]}", token, server.url, **sync)
    client.start()
    t0 = time.perf_counter()
    for start in range(0, n, 100):
        await client.outbox.put_many([("chat", "chat", {"group": "club", "text": f"m{i}"}, None,
                                       None) for i in range(start, min(n, start + 100))],
                                     time.time())
        client.nudge()
    await _wait(lambda: _empty(client))
    rate = n / (time.perf_counter() - t0)
    await client.stop()
    await db.close()
    return rate


async def _empty(client: SyncClient) -> bool:
    return await client.outbox.depth() == 0


async def cloud_to_car(base: Path, db_path: Path, server: CloudServer, token: str,
                       device: str, n: int) -> float:
    store = server.store
    assert store is not None

    def fill() -> None:
        dev = store.device_by_name(device)
        with store.tx() as c:
            for i in range(n):
                store.append_down(c, dev.id, "chat", {"group": "club", "from": "x",
                                                      "text": f"d{i}"}, time.time())
    await server._db(fill)
    client, db = await _client(base, "down", token, server.url)
    t0 = time.perf_counter()
    client.start()

    async def done() -> bool:
        return client.inbound.cursor >= n
    await _wait(done)
    rate = n / (time.perf_counter() - t0)
    await client.stop()
    await db.close()
    return rate


async def drain(base: Path, server: CloudServer, token: str, n: int) -> tuple[float, float]:
    client, db = await _client(base, "drain", token, server.url)
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        await client.outbox.put_many([("alert", "alert", {"name": f"a{i}"}, None, None)
                                      for i in range(start, min(n, start + 1000))], time.time())
    queued = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.start()
    await _wait(lambda: _empty(client))
    drained = time.perf_counter() - t0
    await client.stop()
    await db.close()
    return drained, queued


async def records(base: Path, server: CloudServer, token: str, n: int,
                  key: Ed25519PrivateKey) -> tuple[float, float]:
    """Seconds to upload the first and the last tenth of n chained entries, one per item
    (signed by ``key``, the one enrolled for the device)."""
    chain: list[Entry] = []
    for i in range(n):
        chain.append(make_entry(chain[-1] if chain else None,
                                ServiceRecord("2030-01-07", 1000 * i, "Garage", ("oil",)),
                                1_900_000_000 + i, key))
    public = raw_public(key.public_key()).hex()
    client, db = await _client(base, "records", token, server.url)
    client.start()
    tenth, times = max(1, n // 10), []
    for start in range(0, n, tenth):
        part = chain[start:start + tenth]
        t0 = time.perf_counter()
        await client.outbox.put_many([("service_record", "service_record",
                                       {"public_key": public, "entries": [e.to_json()]}, None,
                                       None) for e in part], time.time())
        client.nudge()
        await _wait(lambda: _empty(client))
        times.append(time.perf_counter() - t0)
    await client.stop()
    await db.close()
    return times[0], times[-1]


async def memory(base: Path, k: int) -> tuple[float, float]:
    store = CloudStore(base / "mem.db")
    tokens = [store.add_device(f"m{i}") for i in range(k)]
    store.close()

    async def per_conn(url: str, handshake: Any) -> float:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        conns = []
        for tok in tokens:
            ws = await connect(url, additional_headers={"Authorization": f"Bearer {tok}"},
                               compression=None)
            await handshake(ws)
            conns.append(ws)
        await asyncio.sleep(0.2)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        for ws in conns:
            await ws.close()
        return (after - before) / k

    async def hello(ws: Any) -> None:
        await ws.send(p.encode(p.Hello(p.PROTOCOL_VERSION, 0, None, WINDOW)))
        await ws.recv()

    async def ping(ws: Any) -> None:
        await ws.send("{}")
        await ws.recv()

    async with CloudServer(base / "mem.db") as server:
        ours = await per_conn(server.url, hello)
    async with serve(_echo, "127.0.0.1", 0, compression=None) as srv:
        bare = await per_conn(f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/", ping)
    return ours, bare


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        store = CloudStore(base / "cloud.db")
        tok = {n: store.add_device(n) for n in ("up", "down", "drain", "tls")}
        record_key = Ed25519PrivateKey.generate()
        tok["records"] = store.add_device(
            "records", record_key=raw_public(record_key.public_key()).hex())
        store.add_group("club", members=["up", "tls"])
        store.close()
        pki = dev_pki(base / "pki")
        base_rate = await baseline_ws(args.items)
        async with CloudServer(base / "cloud.db") as server:
            up = await car_to_cloud(base, server, tok["up"], args.items)
            down = await cloud_to_car(base, base / "cloud.db", server, tok["down"], "down",
                                      args.items)
            drained, queued = await drain(base, server, tok["drain"], 10_000)
            first, last = await records(base, server, tok["records"], args.records,
                                        record_key)
        async with CloudServer(base / "cloud.db", tls_cert=pki["server"],
                               tls_key=pki["server_key"]) as tls_server:
            up_tls = await car_to_cloud(base, tls_server, tok["tls"], args.items,
                                        ca_file=str(pki["ca"]))
        ours, bare = await memory(base, args.connections)
    print(f"car->cloud, durable both ends: {up:9.0f} items/s   "
          f"(baseline bare websockets echo: {base_rate:9.0f} items/s)")
    print(f"cloud->car, durable both ends: {down:9.0f} items/s   "
          f"(baseline bare websockets echo: {base_rate:9.0f} items/s)")
    print(f"reconnect -> 10,000 queued items drained: {drained:6.2f} s   "
          f"(baseline: queueing them durably took {queued:5.2f} s)")
    tenth = max(1, args.records // 10)
    print(f"car->cloud over wss:// (TLS):  {up_tls:9.0f} items/s   "
          f"(baseline ws://, same run: {up:9.0f} items/s)")
    print(f"service records, chained, 1 per item: first {tenth}: {tenth / first:6.0f} items/s, "
          f"last {tenth}: {tenth / last:6.0f} items/s   (baseline chat: {up:6.0f} items/s)")
    print(f"backend memory per connection: {ours / 1024:6.1f} KiB   "
          f"(baseline bare websockets echo server: {bare / 1024:6.1f} KiB), "
          f"{args.connections} connections")
    print(json.dumps({"up_items_s": round(up), "down_items_s": round(down),
                      "baseline_items_s": round(base_rate), "drain_10k_s": round(drained, 2),
                      "queue_10k_s": round(queued, 2), "mem_conn_kib": round(ours / 1024, 1),
                      "mem_conn_baseline_kib": round(bare / 1024, 1),
                      "up_tls_items_s": round(up_tls),
                      "records_first_tenth_items_s": round(tenth / first),
                      "records_last_tenth_items_s": round(tenth / last)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--records", type=int, default=2000,
                        help="chained service-history entries to upload")
    asyncio.run(main(parser.parse_args()))
