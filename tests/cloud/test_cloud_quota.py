"""Issue 18 item 3 through the real server: one car's flood must not grow the database without
bound, must not grow the backend's memory without bound, and bad tokens are answered 429."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from carlink_cloud import CloudServer
from carlink_cloud.quota import MIB, Limits
from carlink_protocol import wire as p
from cloud_wire import acks, car, enrol, item


BIG_BODY = {"name": "x", "blob": "a" * (MIB - 400)}


def big(i: int) -> tuple[str, str]:
    """A ~1 MiB alert (under the 1 MiB frame limit)."""
    return f"b{i}", item(f"b{i}", "alert", "alert", BIG_BODY)


async def flood(server: CloudServer, token: str,
                frames: list[tuple[str, str]]) -> tuple[dict[str, Any], int]:
    """Send every frame as fast as the socket takes it, reconnecting when shed, until each has
    an ack; returns the acks by id and how many times the server shed the connection."""
    answered: dict[str, Any] = {}
    shed = 0
    while len(answered) < len(frames):
        todo = [f for i, f in frames if i not in answered]
        sender: asyncio.Task[None] | None = None
        try:
            async with car(server, token) as ws:
                async def send_all(todo: list[str] = todo) -> None:
                    for frame in todo:
                        await ws.send(frame)
                sender = asyncio.create_task(send_all())
                answered.update(await acks(ws, len(todo)))
        except ConnectionClosed as err:
            assert err.rcvd is not None and err.rcvd.code == p.CLOSE_TRY_AGAIN_LATER, err
            assert p.retry_after(err.rcvd.reason) is not None
            shed += 1
        finally:
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
    return answered, shed


async def test_a_burst_of_150_mib_stops_at_the_cars_stored_bytes_quota(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    tokens = enrol(db, "evil", "victim", group="g")
    before = db.stat().st_size
    quota = 16 * MIB
    async with CloudServer(db, limits=Limits(stored_bytes_per_device=quota)) as server:
        answered, _ = await asyncio.wait_for(
            flood(server, tokens["evil"], [big(i) for i in range(150)]), 120)
        stored = [a for a in answered.values() if a["status"] == "stored"]
        refused = [a for a in answered.values() if a["status"] == "rejected"]
        fit = quota // len(json.dumps(BIG_BODY))  # 16 x ~1 MiB
        assert len(stored) == fit and len(refused) == 150 - fit
        assert all(a["reason"].startswith("quota: this car keeps") for a in refused)
        assert str(quota) in refused[0]["reason"]
        # the other car is not affected: its chat is stored and fanned out
        async with car(server, tokens["victim"]) as ws:
            await ws.send(item("c1", "chat", "chat", {"group": "g", "text": "hi"}))
            assert (await acks(ws, 1))["c1"]["status"] == "stored"
        assert server.store is not None
        log = server.store.upstream_log("evil", "alert")
        assert sum(r["body"] == {} for r in log) == 150 - fit  # refused bodies are not kept
    growth = db.stat().st_size - before  # the WAL is checkpointed into the file at close
    assert growth <= quota + 2 * MIB, growth


async def test_240_frames_on_4_connections_stay_within_8_mib_unprocessed_each(
        tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    names = [f"evil{i}" for i in range(4)]
    tokens = enrol(db, *names, "victim", group="g")
    limits = Limits(pending_grace_s=0.5)
    async with CloudServer(db, limits=limits) as server, contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(car(server, tokens[n])) for n in names]
        assert server._pool is not None
        stuck = threading.Event()  # then the database stops answering (a stalled disk)
        blocker = server._pool.submit(stuck.wait, 60)
        closes: list[tuple[int, str]] = []

        async def attack(ws: Any) -> None:
            sender = asyncio.create_task(_send_all(ws, [big(i)[1] for i in range(60)]))
            try:
                await ws.recv()
            except ConnectionClosed as err:
                assert err.rcvd is not None
                closes.append((err.rcvd.code, err.rcvd.reason))
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)

        try:
            await asyncio.wait_for(asyncio.gather(*(attack(ws) for ws in conns)), 60)
        finally:
            stuck.set()
        blocker.result()
        assert [c for c, _ in closes] == [p.CLOSE_TRY_AGAIN_LATER] * 4
        assert all(p.retry_after(r) == limits.pending_retry_after_s for _, r in closes)
        assert 0 < server.counters["pending_peak_bytes"] <= limits.pending_bytes_per_connection
        async with car(server, tokens["victim"]) as ws:  # and the backend still serves
            await ws.send(item("c1", "chat", "chat", {"group": "g", "text": "hi"}))
            assert (await acks(ws, 1))["c1"]["status"] == "stored"


async def _send_all(ws: Any, frames: list[str]) -> None:
    for frame in frames:
        await ws.send(frame)


async def _handshake(port: int, token: str) -> tuple[int, dict[str, str]]:
    """One HTTP upgrade request with a bearer token; the status and headers of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n")
                     .encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
    finally:
        writer.close()
    status_line, *lines = head.strip().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers


async def test_5000_bad_tokens_get_429_and_a_few_log_lines(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "c.db"
    tokens = enrol(db, "good")
    caplog.set_level(logging.INFO)
    async with CloudServer(db) as server:
        statuses: list[int] = []
        retry: set[str] = set()
        sem = asyncio.Semaphore(50)

        async def attempt(i: int) -> None:
            async with sem:
                status, headers = await _handshake(server.port, f"bad-{i}")
            statuses.append(status)
            if status == 429:
                retry.add(headers["Retry-After"])

        caplog.clear()
        await asyncio.wait_for(asyncio.gather(*(attempt(i) for i in range(5000))), 120)
        lines = [r for r in caplog.records if r.name.startswith(("carlink_cloud", "websockets"))]
        assert set(statuses) == {401, 429}
        assert statuses.count(401) <= 100 and statuses.count(429) >= 4900
        assert retry and all(int(r) >= 1 for r in retry)
        assert server.counters["auth_failures"] == statuses.count(401)  # the rest: no lookup
        assert len(lines) <= 4, [r.getMessage() for r in lines]
        # a car at another address is not locked out by the attacker's
        async with car(server, tokens["good"], local_addr=("127.0.0.2", 0)) as ws:
            await ws.send(item("a1", "alert", "alert", {"name": "ok"}))
            assert (await acks(ws, 1))["a1"]["status"] == "stored"


async def test_a_reconnect_does_not_refill_the_chat_rate(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    tokens = enrol(db, "a", "b", group="g")
    limits = Limits(paced_kinds={("chat", "chat"): (50.0, 20)})
    async with CloudServer(db, limits=limits) as server:
        for n in range(2):  # 2 x 30 chats on two connections: 60 tokens against 20 + 50/s
            async with car(server, tokens["a"]) as ws:
                for i in range(30):
                    await ws.send(item(f"c{n}-{i}", "chat", "chat", {"group": "g", "text": "x"}))
                got = await acks(ws, 30)
            assert {a["status"] for a in got.values()} == {"stored"}  # paced, none refused
        assert server.counters["paced_s"] >= 1


def test_the_upstream_row_of_a_stored_item_counts_what_the_quota_counted(tmp_path: Path) -> None:
    from carlink_cloud.quota import DeviceQuota

    quota = DeviceQuota(Limits(stored_bytes_per_device=100), lambda dev: 40)
    body = {"name": "é" * 5}
    it = p.UpItem("x", "alert", "alert", body, 1.0)
    assert quota.admit(1, it, 0.0) is None
    assert quota.usage[1] == 40 + len(json.dumps(body))
    assert "quota" in (quota.admit(1, p.UpItem("y", "alert", "alert", {"n": "z" * 60}, 1.0), 0.0)
                       or "")
