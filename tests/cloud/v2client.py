"""A bare protocol-2 client for backend tests: a real WebSocket session against a real
CloudServer, with every ack and downstream item it received."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from carlink_cloud import CloudServer
from carlink_protocol import wire as p

WAIT_S = 10.0
_ids = itertools.count(1)


class Car:
    """One connected car: ``send`` an item and get its ack; ``down`` waits for items."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.acks: dict[str, dict[str, Any]] = {}
        self.items: list[dict[str, Any]] = []
        self._news = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for frame in self.ws:
                msg = json.loads(frame)
                if msg["type"] == "ack":
                    self.acks[msg["id"]] = msg
                elif msg["type"] == "item":
                    self.items.append(msg)
                    await self.ws.send(p.encode(p.CursorAck(msg["seq"])))
                self._news.set()

    async def _until(self, test: Any) -> Any:
        async def wait() -> Any:
            while True:
                found = test()
                if found is not None:
                    return found
                self._news.clear()
                await self._news.wait()
        return await asyncio.wait_for(wait(), WAIT_S)

    async def send(self, cls: str, kind: str, body: dict[str, Any], item_id: str | None = None,
                   created: float = 1.0) -> dict[str, Any]:
        """Send one upstream item; its ack."""
        item_id = item_id or f"i{next(_ids)}"
        await self.ws.send(p.encode(p.UpItem(item_id, cls, kind, body, created)))
        return dict(await self._until(lambda: self.acks.get(item_id)))

    async def down(self, kind: str, n: int = 1) -> list[dict[str, Any]]:
        """The bodies of the first ``n`` downstream items of a kind (waits for them)."""
        def got() -> list[dict[str, Any]] | None:
            bodies = [m["body"] for m in self.items if m["kind"] == kind]
            return bodies[:n] if len(bodies) >= n else None
        return list(await self._until(got))

    def kinds(self) -> list[str]:
        """Kinds of every downstream item so far."""
        return [m["kind"] for m in self.items]

    async def settle(self) -> None:
        """Round-trip a no-op so that earlier fan-out has been delivered (group_list answers
        after everything queued before it)."""
        before = sum(k == "groups" for k in self.kinds())  # the answer may follow its ack at once
        await self.send("chat", "group_list", {})
        await self.down("groups", before + 1)


@contextlib.asynccontextmanager
async def online(server: CloudServer, token: str) -> AsyncIterator[Car]:
    """A connected car (hello from cursor 0)."""
    async with connect(server.url, additional_headers={"Authorization": f"Bearer {token}"},
                       max_size=None) as ws:
        await ws.send(p.encode(p.Hello(p.PROTOCOL_VERSION, 0, None, 64)))
        json.loads(await ws.recv())  # welcome
        car = Car(ws)
        try:
            yield car
        finally:
            car._task.cancel()
            await asyncio.gather(car._task, return_exceptions=True)


class Clock:
    """The server's clock, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
