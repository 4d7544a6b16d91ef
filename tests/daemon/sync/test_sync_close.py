"""How the real sync client reacts to each close code and handshake refusal (docs/protocol.md §8).

Two kinds of server: the reference backend where it produces the case itself (revocation ->
4003, a backend speaking only a newer protocol -> 4001, load shedding -> 1013 with retry-after), and a
scripted websockets server that answers every attempt with one given status or close code, for
the rest of the table. Connection attempts are timed at the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from carlink_protocol import wire as p
from carlink_cloud import CloudServer, CloudStore
from support.sync_car import WAIT_S, Car, running_car

AUTH_RETRY_S = 0.6
VERSION_RETRY_S = 0.9
RETRY_AFTER_S = 0.5
SPREAD = 1.25  # Backoff.minimum_spread: a minimum is stretched by at most 25 %
FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.4, "auth_retry_s": AUTH_RETRY_S,
        "version_retry_s": VERSION_RETRY_S}


@contextlib.asynccontextmanager
async def car(state: Path, url: str, token: str = "t", **sync: Any) -> AsyncIterator[Car]:
    async with running_car(state, url, token, FAST, **sync) as c:
        yield c


async def until(pred: Any) -> None:
    async def poll() -> None:
        while not pred():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), WAIT_S)


# -- a server that answers every attempt the same way ------------------------------------------

class Scripted:
    """Answers each attempt with an HTTP status, or accepts, then closes with a code (before
    the welcome for 4001, as a server that does not speak the hello's protocol does)."""

    def __init__(self, status: int | None = None, code: int | None = None, reason: str = "",
                 headers: dict[str, str] | None = None) -> None:
        self.status, self.code, self.reason = status, code, reason
        self.headers = headers or {}
        self.attempts: list[float] = []
        self.port = 0

    async def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.attempts.append(time.monotonic())
        if self.status is None:
            return None
        resp = conn.respond(self.status, f"{self.reason}\n")
        for name, value in self.headers.items():
            resp.headers[name] = value
        return resp

    async def handler(self, ws: ServerConnection) -> None:
        hello = json.loads(await ws.recv())
        if self.code != p.CLOSE_UNSUPPORTED_VERSION:
            await ws.send(p.encode(p.Welcome(p.PROTOCOL_VERSION, "car", "E", hello["cursor"], 0)))
        await ws.close(self.code or 1000, self.reason)
        with contextlib.suppress(ConnectionClosed):
            await ws.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.attempts, self.attempts[1:])]


@contextlib.asynccontextmanager
async def scripted(**kw: Any) -> AsyncIterator[Scripted]:
    script = Scripted(**kw)
    async with serve(script.handler, "127.0.0.1", 0,
                     process_request=script.process_request) as server:
        script.port = server.sockets[0].getsockname()[1]
        yield script


# (server answer, client state, least gap between attempts, detail contains)
TABLE = [
    ({"status": 401, "reason": "invalid device token"}, "unauthorized", AUTH_RETRY_S,
     "HTTP 401 invalid device token"),
    ({"status": 403, "reason": "device disabled"}, "unauthorized", AUTH_RETRY_S,
     "HTTP 403 device disabled"),
    ({"code": 4003, "reason": "device revoked"}, "unauthorized", AUTH_RETRY_S,
     "connection closed (4003 device revoked)"),
    ({"status": 426, "reason": "upgrade carlinkd"}, "incompatible", VERSION_RETRY_S,
     "HTTP 426 upgrade carlinkd"),
    ({"code": 4001, "reason": "protocol 1 unsupported; server speaks 2"}, "incompatible",
     VERSION_RETRY_S, "connection closed (4001 protocol 1 unsupported; server speaks 2)"),
    ({"status": 503, "reason": "busy", "headers": {"Retry-After": str(RETRY_AFTER_S)}},
     "overloaded", RETRY_AFTER_S, "HTTP 503 busy"),
    ({"code": 1013, "reason": f"overloaded; retry-after={RETRY_AFTER_S}"}, "overloaded",
     RETRY_AFTER_S, "connection closed (1013 overloaded; retry-after=0.5)"),
    ({"code": 4002, "reason": "unknown message type"}, "waiting", 0.0,
     "connection closed (4002 unknown message type)"),
    ({"code": 4009, "reason": "replaced"}, "waiting", 0.0, "connection closed (4009 replaced)"),
]


@pytest.mark.parametrize("answer, state, least, detail", TABLE,
                         ids=[f"{a.get('status') or a.get('code')}" for a, *_ in TABLE])
async def test_client_reaction_per_close_code(tmp_path: Path, answer: dict[str, Any],
                                              state: str, least: float, detail: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="carlinkd.sync")
    async with scripted(**answer) as server, car(tmp_path, server.url) as c:
        st = await c.wait_state(state)
        await until(lambda: len(server.attempts) >= 3)
        status = c.svc.status()
    assert st.detail.startswith(detail), st.detail
    # (a close after the welcome passes through "online" on every attempt)
    assert status["state"] in (state, "connecting", "online")
    assert status["last_close"].startswith(detail) and status["attempts"] >= 3
    gaps = server.gaps()[:2]
    if least:
        # Never earlier than the minimum, spread above it, and not the same every time.
        assert all(least <= g <= least * SPREAD + 0.3 for g in gaps), gaps
        assert c.svc.client is not None and c.svc.client.last_delay >= least
    else:
        assert all(g < 1.0 for g in gaps), gaps  # plain backoff from 0.05 s
    alarms = [r for r in caplog.records if f"-> {state}" in r.getMessage()]
    expected = logging.ERROR if state in ("unauthorized", "incompatible") else logging.INFO
    assert alarms[0].levelno == expected and all(r.levelno == logging.INFO for r in alarms[1:])


async def test_overload_without_hint_backs_off_exponentially_with_jitter(tmp_path: Path) -> None:
    async with scripted(code=1013, reason="overloaded") as server, \
            car(tmp_path, server.url, backoff_initial_s=0.04, backoff_max_s=10.0) as c:
        await until(lambda: len(server.attempts) >= 6)
        await c.wait_state("overloaded")
    gaps = server.gaps()[:5]
    for i, gap in enumerate(gaps):
        nominal = 0.04 * 2 ** i
        assert nominal * 0.5 <= gap <= nominal + 0.15, (i, gaps)  # [50 %, 100 %] + overhead
    assert gaps[-1] > 2 * gaps[0]


# -- the reference backend produces the case itself --------------------------------------------

@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[tuple[Path, dict[str, str]]]:
    store = CloudStore(tmp_path / "cloud.db")
    tokens = {n: store.add_device(n) for n in ("a", "b")}
    store.close()
    yield tmp_path / "cloud.db", tokens


async def test_revoked_while_connected_4003_then_401_retried_only_after_auth_retry(
        tmp_path: Path, backend: tuple[Path, dict[str, str]]) -> None:
    db, tokens = backend
    async with CloudServer(db) as server, car(tmp_path / "a", server.url, tokens["a"]) as a:
        await a.wait_state("online")
        assert await server.revoke_device("a")
        st = await a.wait_state("unauthorized")
        assert st.detail.startswith("connection closed (4003 device revoked)"), st.detail
        seen = server.counters["handshakes"]
        await asyncio.sleep(AUTH_RETRY_S * 0.75)
        assert server.counters["handshakes"] == seen  # no attempt before auth_retry_s
        second = await a.wait_state("unauthorized", 2)
        assert second.detail.startswith("HTTP 401 invalid device token"), second.detail
        assert server.counters["handshakes"] == seen + 1
        assert a.svc.status()["state"] == "unauthorized"


async def test_backend_without_a_common_protocol_version_is_incompatible(
        tmp_path: Path, backend: tuple[Path, dict[str, str]]) -> None:
    db, tokens = backend
    newer = p.PROTOCOL_VERSION + 1
    async with CloudServer(db, protocols=frozenset({newer})) as server, \
            car(tmp_path / "a", server.url, tokens["a"]) as a:
        st = await a.wait_state("incompatible")
        assert (f"4001 protocol {p.PROTOCOL_VERSION} unsupported; server speaks {newer}"
                in st.detail)
        seen = server.counters["handshakes"]
        await asyncio.sleep(VERSION_RETRY_S * 0.75)
        assert server.counters["handshakes"] == seen
        await a.wait_state("incompatible", 2)
        assert server.counters["connections"] == 0


async def test_load_shedding_1013_spreads_the_fleet_over_the_retry_after(
        tmp_path: Path, backend: tuple[Path, dict[str, str]]) -> None:
    db, tokens = backend
    async with CloudServer(db) as server, \
            car(tmp_path / "a", server.url, tokens["a"]) as a, \
            car(tmp_path / "b", server.url, tokens["b"]) as b:
        for c in (a, b):
            await c.wait_state("online")
        shed_at = time.monotonic()
        assert await server.shed(RETRY_AFTER_S) == 2
        for c in (a, b):
            st = await c.wait_state("overloaded")
            assert st.detail.startswith("connection closed (1013 overloaded; retry-after=0.5)")
        assert server.connected_devices() == []
        await asyncio.sleep(RETRY_AFTER_S * 0.7)
        assert server.connected_devices() == []  # nobody came back early
        for c in (a, b):
            await c.wait_state("online", 2)
        back = time.monotonic() - shed_at
    delays = [c.svc.client.last_delay for c in (a, b) if c.svc.client is not None]
    assert all(RETRY_AFTER_S <= d <= RETRY_AFTER_S * SPREAD for d in delays), delays
    assert delays[0] != delays[1]  # jitter: the two cars do not return together
    assert back < RETRY_AFTER_S * SPREAD + 1.0
