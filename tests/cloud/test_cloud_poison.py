"""One hostile car must not stall the others: every downstream item is strict JSON of bounded
size before it is stored, and a stored item that still cannot be sent becomes a gap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from carlink_cloud import CloudServer, CloudStore
from carlink_protocol import wire as p

HERE = {"lat": 48.137, "lon": 11.575}


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[CloudServer, dict[str, str]]]:
    store = CloudStore(tmp_path / "c.db")
    tokens = {name: store.add_device(name) for name in ("evil", "victim")}
    store.add_group("g", members=["evil", "victim"])
    store.close()
    async with CloudServer(tmp_path / "c.db") as server:
        yield server, tokens


async def session(server: CloudServer, token: str, frames: list[str],
                  until: int) -> list[dict[str, Any]]:
    """Connect, say hello from cursor 0, send frames, collect ``until`` messages after welcome
    (a stalled stream fails the test after 10 s instead of hanging it)."""
    return await asyncio.wait_for(_session(server, token, frames, until), 10.0)


async def _session(server: CloudServer, token: str, frames: list[str],
                   until: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with connect(server.url, additional_headers={"Authorization": f"Bearer {token}"},
                       max_size=None) as ws:
        await ws.send(p.encode(p.Hello(p.PROTOCOL_VERSION, 0, None, 64)))
        json.loads(await ws.recv())  # welcome
        for frame in frames:
            await ws.send(frame)
        while len(got) < until:
            got.append(json.loads(await ws.recv()))
    return got


def raw_help(item_id: str, body_json: str) -> str:
    """A help request whose body is given as JSON text (to carry 1e400 as sent on the wire)."""
    return ('{"type":"item","id":"%s","class":"emergency","kind":"help_request",'
            '"created":1.0,"body":%s}' % (item_id, body_json))


async def test_poisoned_help_requests_are_rejected_and_the_next_chat_arrives(
        cloud: tuple[CloudServer, dict[str, str]]) -> None:
    server, tokens = cloud
    await session(server, tokens["victim"], [p.encode(p.UpItem("s1", "status", "status", HERE,
                                                                1.0))], until=1)
    where = f'"lat":{HERE["lat"]},"lon":{HERE["lon"] + 0.01}'
    # Infinity, and a note under the 1 MiB frame limit but over the 64 KiB item limit
    poison = [raw_help("h1", '{%s,"vehicle":{"v":1e400}}' % where),
              raw_help("h2", '{%s,"note":"%s"}' % (where, "x" * (100 * 1024))),
              p.encode(p.UpItem("c1", "chat", "chat", {"group": "g", "text": "after"}, 2.0))]
    acks = await session(server, tokens["evil"], poison, until=3)
    assert [a["status"] for a in acks] == ["rejected", "rejected", "stored"]
    # protocol 2 checks help request fields before anything is encoded
    assert "'vehicle.v' must be a finite number" in acks[0]["reason"]
    assert "'note' must be a string of at most 500 chars" in acks[1]["reason"]
    got = await session(server, tokens["victim"], [], until=1)
    assert got[0]["type"] == "item" and got[0]["kind"] == "chat"
    assert got[0]["body"]["text"] == "after"


async def test_a_stored_item_that_cannot_be_sent_becomes_a_gap(tmp_path: Path) -> None:
    store = CloudStore(tmp_path / "c.db")
    tokens = {name: store.add_device(name) for name in ("evil", "victim")}
    store.add_group("g", members=["evil", "victim"])
    victim = store.device_by_name("victim")
    with store.tx() as c:  # a row written before items were checked (before the server runs)
        seq = c.execute("UPDATE devices SET next_seq = next_seq + 1 WHERE id = ? "
                        "RETURNING next_seq - 1", (victim.id,)).fetchone()[0]
        c.execute("INSERT INTO downstream VALUES (?,?,?,?,?)",
                  (victim.id, seq, "help_request", '{"vehicle":{"v":Infinity}}', 1.0))
    store.close()
    async with CloudServer(tmp_path / "c.db") as server:
        await session(server, tokens["evil"], [p.encode(p.UpItem(
            "c1", "chat", "chat", {"group": "g", "text": "still here"}, 2.0))], until=1)
        got = await session(server, tokens["victim"], [], until=2)
        assert got[0] == {"type": "gap", "from": seq, "to": seq}
        assert got[1]["type"] == "item" and got[1]["body"]["text"] == "still here"
        assert server.counters["down_skipped"] == 1
