"""Hostile and broken input: rogue server to the client, rogue clients to the backend."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from carlinkd.config import build_config
from carlinkd.events import Command, MessageReceived
from carlinkd.hub import Hub
from carlink_protocol import wire as p
from carlinkd.sync.service import SyncService
from carlink_cloud import CloudServer, CloudStore

WAIT_S = 20.0


def chat(seq: int, text: str) -> str:
    return p.encode(p.DownItem(seq, "chat", {"group": "g", "from": "evil", "text": text}, 1.0))


HOSTILE_FRAMES = [
    "{not json",
    b"\x00\x01binary",
    json.dumps({"type": "launch_missiles"}),
    json.dumps({"type": "item", "seq": "one", "kind": "chat", "body": {}, "created": 1}),
    json.dumps({"type": "item", "seq": 1, "kind": "chat", "body": "text", "created": 1}),
    json.dumps({"type": "ack", "id": "never-sent", "status": "stored"}),
    json.dumps({"type": "welcome", "protocol": 1, "device": "x", "epoch": "E", "cursor": 0,
                "last_seq": 0}),
    chat(1, "first"),
    chat(1, "first again (replay)"),
    p.encode(p.DownItem(2, "clear_dtc", {"all": True}, 1.0)),
    p.encode(p.DownItem(3, "can_send", {"id": 2015, "data": "0201050000000000"}, 1.0)),
    p.encode(p.DownItem(4, "chat", {"group": 5, "from": [], "text": None}, 1.0)),
    chat(5, "second"),
    chat(9, "out of order: forces a reconnect and replay"),
]


async def test_rogue_server_cannot_crash_or_corrupt_the_client(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    hellos: list[dict[str, Any]] = []

    async def rogue(ws: ServerConnection) -> None:
        hello = json.loads(await ws.recv())
        hellos.append(hello)
        await ws.send(p.encode(p.Welcome(p.PROTOCOL_VERSION, "car", "E", hello["cursor"], 99)))
        if len(hellos) == 1:
            for frame in HOSTILE_FRAMES:
                await ws.send(frame)
        elif len(hellos) == 2:
            await ws.send("x" * 70_000)  # over the client's max_size: 1009, reconnect
        else:
            await ws.send(chat(hello["cursor"] + 1, "after replay"))
        try:
            await ws.wait_closed()
        except ConnectionClosed:
            pass

    async with serve(rogue, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        cfg = build_config([("t", {"sync": {"url": f"ws://127.0.0.1:{port}/", "token": "t",
                                            "backoff_initial_s": 0.05, "max_size": 65536}})])
        hub = Hub()
        sub = hub.subscribe(MessageReceived, Command)
        svc = SyncService(cfg, hub, tmp_path)
        await svc.start()
        try:
            got: list[Any] = []
            while len(got) < 3:
                got.append(await asyncio.wait_for(sub.get(), WAIT_S))
        finally:
            await svc.stop()
            hub.close()
    assert [e.text for e in got] == ["first", "second", "after replay"]
    assert not any(isinstance(e, Command) for e in got)
    assert [h["cursor"] for h in hellos[:3]] == [0, 5, 5]
    assert svc.inbound is not None
    # replayed item 1 ignored; unknown kinds and wrong types stored as rejected, then skipped
    assert svc.inbound.cursor == 6
    messages = " ".join(r.getMessage() for r in caplog.records)
    for why in ("invalid JSON", "binary", "unknown message type", "'seq'", "'body'",
                "not in flight", "second welcome", "out of order"):
        assert why in messages, why


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[tuple[CloudServer, str]]:
    store = CloudStore(tmp_path / "c.db")
    token = store.add_device("car")
    store.add_group("g", members=["car"])
    store.close()
    async with CloudServer(tmp_path / "c.db", max_size=65536) as server:
        yield server, token


async def _exchange(server: CloudServer, token: str, frames: list[str | bytes],
                    hello: bool = True) -> tuple[int | None, list[dict[str, Any]]]:
    got: list[dict[str, Any]] = []
    async with connect(server.url, additional_headers={"Authorization": f"Bearer {token}"},
                       max_size=None) as ws:
        if hello:
            await ws.send(p.encode(p.Hello(p.PROTOCOL_VERSION, 0, None, 8)))
            got.append(json.loads(await ws.recv()))
        for frame in frames:
            await ws.send(frame)
        try:
            async for msg in ws:
                got.append(json.loads(msg))
                if len(got) >= len(frames) + 1:
                    break
        except ConnectionClosed:
            pass
        with_code = ws.close_code if ws.close_code is not None else None
        if with_code is None:
            await ws.close()
    return with_code, got


@pytest.mark.parametrize("frames, code", [
    (["{oops"], p.CLOSE_PROTOCOL_ERROR),
    ([b"\x00binary"], p.CLOSE_PROTOCOL_ERROR),
    ([json.dumps({"type": "gimme"})], p.CLOSE_PROTOCOL_ERROR),
    ([json.dumps({"type": "item", "id": 5, "class": "chat", "kind": "chat", "body": {},
                  "created": 0})], p.CLOSE_PROTOCOL_ERROR),
    ([json.dumps({"type": "item", "id": "x", "class": "can_tx", "kind": "send",
                  "body": {}, "created": 0})], p.CLOSE_PROTOCOL_ERROR),
    ([p.encode(p.CursorAck(1000))], p.CLOSE_PROTOCOL_ERROR),
    ([p.encode(p.Hello(p.PROTOCOL_VERSION, 0, None, 8))], p.CLOSE_PROTOCOL_ERROR),
    (["[" + "1," * 40000 + "1]"], p.CLOSE_TOO_BIG),
])
async def test_rogue_client_is_disconnected_with_a_reason(
        backend: tuple[CloudServer, str], frames: list[str | bytes], code: int) -> None:
    server, token = backend
    closed, _ = await _exchange(server, token, frames)
    assert closed == code
    # the backend still serves a well-behaved client on the same device
    closed, got = await _exchange(server, token, [p.encode(p.UpItem(
        "ok1", "chat", "chat", {"group": "g", "text": "still fine"}, 1.0))])
    assert got[-1] == {"type": "ack", "id": "ok1", "status": "stored",
                       "result": {"delivered_to": 0}}


async def test_unsupported_version_has_its_own_close_code(
        backend: tuple[CloudServer, str]) -> None:
    server, token = backend
    async with connect(server.url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send(json.dumps({"type": "hello", "protocol": 99, "cursor": 0, "epoch": None,
                                  "window": 8}))
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == p.CLOSE_UNSUPPORTED_VERSION
    assert f"server speaks {p.PROTOCOL_VERSION}" in (ws.close_reason or "")


async def test_bad_items_are_answered_not_fatal_and_duplicates_have_no_second_effect(
        backend: tuple[CloudServer, str]) -> None:
    server, token = backend
    items = [
        p.UpItem("u1", "chat", "teleport", {}, 1.0),                  # unknown kind
        p.UpItem("u2", "chat", "chat", {"group": 7, "text": "x"}, 1.0),  # wrong type in body
        p.UpItem("u3", "booking", "booking", {"service": "x"}, 1.0),  # missing fields
        p.UpItem("u4", "alert", "alert", {"name": "tyre"}, 1.0),
        p.UpItem("u4", "alert", "alert", {"name": "tyre (changed!)"}, 2.0),  # retransmission
    ]
    _, got = await _exchange(server, token, [p.encode(i) for i in items])
    acks = [g for g in got if g["type"] == "ack"]
    assert [a["status"] for a in acks] == ["rejected", "rejected", "rejected", "stored", "stored"]
    assert "unknown kind" in acks[0]["reason"] and "group" in acks[1]["reason"]
    assert acks[3] == acks[4]  # same answer
    log = server.store.upstream_log("car")
    assert [r["id"] for r in log] == ["u1", "u2", "u3", "u4"]
    assert log[3]["body"] == {"name": "tyre"}  # first one wins, no second effect


async def test_missing_or_bad_token_is_refused_at_the_handshake(
        backend: tuple[CloudServer, str]) -> None:
    server, _ = backend
    from websockets.exceptions import InvalidStatus
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url, additional_headers=headers):
                pass
        assert info.value.response.status_code == 401
    assert server.counters["auth_failures"] == 3
