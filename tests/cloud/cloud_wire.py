"""A protocol-level car for backend tests: a real WebSocket client speaking docs/protocol.md
frames as a hostile car would (no outbox, no window discipline unless the test keeps one)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from carlink_cloud import CloudServer, CloudStore
from carlink_protocol import wire as p


def enrol(db: Path, *names: str, group: str | None = None) -> dict[str, str]:
    """Enrol cars (tokens by name), optionally all in one group."""
    store = CloudStore(db)
    try:
        tokens = {name: store.add_device(name) for name in names}
        if group is not None:
            store.add_group(group, members=list(names))
    finally:
        store.close()
    return tokens


def item(item_id: str, cls: str, kind: str, body: Mapping[str, Any],
         created: float = 1.0) -> str:
    """One upstream item frame."""
    return p.encode(p.UpItem(item_id, cls, kind, body, created))


@contextlib.asynccontextmanager
async def car(server: CloudServer, token: str, window: int = 64,
              **kwargs: Any) -> AsyncIterator[ClientConnection]:
    """A connected car past its hello (the welcome is read)."""
    async with connect(server.url, additional_headers={"Authorization": f"Bearer {token}"},
                       max_size=None, **kwargs) as ws:
        await ws.send(p.encode(p.Hello(p.PROTOCOL_VERSION, 0, None, window)))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        yield ws


async def acks(ws: ClientConnection, n: int) -> dict[str, dict[str, Any]]:
    """Read until ``n`` item acks arrived (downstream items are skipped); by id."""
    got: dict[str, dict[str, Any]] = {}
    while len(got) < n:
        msg = json.loads(await ws.recv())
        if msg["type"] == "ack":
            got[msg["id"]] = msg
    return got
