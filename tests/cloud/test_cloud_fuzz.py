"""Issue 18 item 6: any wrong-typed or out-of-range field of any upstream kind, through the real
server, is answered with an ack (a `rejected` one with a reason for a bad field) -- never 1011,
never an exception in the backend's log.

The kinds are read from ``carlink_cloud.handlers.HANDLERS`` at run time, so a kind added later
is fuzzed too (from a generic body when it has no template here). Property-based (hypothesis):
a valid body per kind, one to three of its fields (at any depth) replaced by hostile values:
400-digit numbers, 1e17, 10**30, lone surrogates, huge strings, deep nesting, and NaN/Infinity
as they arrive in raw JSON text. A frame that is not JSON at all (NaN is not JSON) or whose
envelope (id, class, created) is malformed breaks the protocol: 4002, which is allowed.
"""

from __future__ import annotations

import asyncio
import json
import os
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from carlink_cloud import CloudServer, CloudStore
from carlink_cloud.handlers import HANDLERS
from carlink_protocol import wire as p
from carlink_protocol.chain import (ENTRY_DOMAIN, ServiceRecord, canonical, key_id, make_entry,
                                    raw_public, sha256_hex)

KEY = Ed25519PrivateKey.generate()
HERE = {"lat": 48.137, "lon": 11.575}
ENTRY = make_entry(None, ServiceRecord("2024-03-01", 45_000, "Garage", ("oil",)), 1_700_000_000,
                   KEY).to_json()
TEMPLATES: dict[str, dict[str, Any]] = {
    "help_request": {**HERE, "note": "flat tyre", "vehicle": {"model": "x", "battery": 80},
                     "expires": 1_800_000_000},
    "help_response": {"request_id": "h1", "to": "other", "text": "on my way"},
    "help_cancel": {"request_id": "h1"},
    "alert": {"name": "low_fuel", "severity": "warning", "value": 5.0},
    "chat": {"group": "g", "text": "hello"},
    "group_join": {"group": "g"}, "group_leave": {"group": "g"}, "group_list": {},
    "group_approve": {"group": "g", "device": "other"},
    "booking": {"service": "oil", "day": "tomorrow", "time": "10:00", "shop": "Nord", **HERE},
    "booking_options": {"service": "oil", "day": "tomorrow", "time": "10:00", **HERE},
    "booking_cancel": {"booking_id": 1},
    "service_record": {"public_key": raw_public(KEY.public_key()).hex(), "entries": [ENTRY]},
    "status": {**HERE, "speed": 50.0, "fuel": 40, "helper": True, "cell": "g5:2762:3831"},
}
GENERIC = {"group": "g", "text": "x", "request_id": "h1", "lat": 48.1, "lon": 11.5,
           "service": "oil", "day": "monday", "time": "10:00", "name": "n", "device": "other"}
# Raw JSON text put in place of a value: the server sees what a hostile peer really sends.
RAW = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" * 400, "-" + "9" * 400,
       "1e17", "100000000000000000000000000000", "[" * 200 + "]" * 200,
       "{\"a\":" * 150 + "1" + "}" * 150, "\"\\ud800\"", "\"\\udfff x\"", "\"\\u0000\"",
       "1" * 5000]


class Raw:
    """A value written into the frame as this JSON text, verbatim."""

    def __init__(self, text: str) -> None:
        self.text = text


hostile = st.one_of(
    st.sampled_from([Raw(t) for t in RAW]),
    st.sampled_from([10**30, -10**30, 2**63, -2**63 - 1, 10**400, 1e17, 1e308, -0.0, 0, -1,
                     True, False, None, "", " ", "\ud800", "x" * 70_000, "\x00" * 10, [], {},
                     [[[]]], {"": {}}, "2024-02-30", "25:99", "g5:x:y", "ä" * 3000]),
    st.integers(), st.floats(allow_nan=False), st.text(max_size=30),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                         max_size=3))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a body where a value can be replaced (dict keys, list index 0)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            yield (*prefix, key)
            yield from paths(sub, (*prefix, key))
    elif isinstance(value, list) and value:
        yield (*prefix, 0)
        yield from paths(value[0], (*prefix, 0))


def replace(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(body) if isinstance(body, dict) else list(body)
    copy[path[0]] = replace(copy[path[0]] if len(path) > 1 else None, path[1:],  # type: ignore[index]
                            value)
    return copy


def frame(item_id: str, cls: str, kind: str, body: Any, created: Any = 1_700_000_000.0) -> str:
    """The item frame, with each Raw value spliced in as its JSON text."""
    raws: list[str] = []

    def encode(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [encode(v) for v in value]
        return value

    text = json.dumps({"type": "item", "id": item_id, "class": cls, "kind": kind,
                       "body": encode(body), "created": encode(created)})
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@raw{i}@@"', raw)
    return text


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, Any, Any]:
    """(class, kind, body, created): a template body of a kind with 1-3 fields replaced."""
    cls, kind = draw(st.sampled_from(sorted(HANDLERS)))
    body: Any = TEMPLATES.get(kind, GENERIC)
    places = list(paths(body)) + [("extra",)]
    for _ in range(draw(st.integers(1, 3))):
        body = replace(body, draw(st.sampled_from(places)), draw(hostile))
        places = [q for q in paths(body)] + [("extra",)] if isinstance(body, dict) else [()]
    created = draw(st.sampled_from([1_700_000_000.0] * 8 + [1e17, Raw("1e400")]))
    return cls, kind, body, created


class ServerThread:
    """The real backend on its own event loop thread, so hypothesis drives a sync client."""

    def __init__(self, db: Path) -> None:
        self.db, self.ready = db, threading.Event()
        self.server: CloudServer | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        async with CloudServer(self.db) as server:
            self.server = server
            self.ready.set()
            await self.stop.wait()

    def __enter__(self) -> CloudServer:
        self.thread.start()
        assert self.ready.wait(30)
        assert self.server is not None
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


class Car:
    """A sync protocol-level client that reconnects after a 4002."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token, self.n = url, token, 0
        self.ws: ClientConnection | None = None

    def connection(self) -> ClientConnection:
        if self.ws is None:
            self.ws = connect(self.url, additional_headers={
                "Authorization": f"Bearer {self.token}"}, max_size=None,
                open_timeout=30).__enter__()
            self.ws.send(p.encode(p.Hello(p.PROTOCOL_VERSION, 0, None, 1_000_000)))
            assert json.loads(self.ws.recv(30))["type"] == "welcome"
        return self.ws

    def answer(self, text: str, item_id: str) -> dict[str, Any]:
        """The ack for this item, or {"close": code, "reason": ...} if the server closed."""
        ws = self.connection()
        try:
            ws.send(text)
            while True:
                msg = json.loads(ws.recv(30))
                if msg["type"] == "ack" and msg["id"] == item_id:
                    return dict(msg)
        except ConnectionClosed as err:
            self.ws = None
            assert err.rcvd is not None, "the server dropped the connection without a close"
            return {"close": err.rcvd.code, "reason": err.rcvd.reason}

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CloudServer, str]]:
    db = tmp_path_factory.mktemp("fuzz") / "c.db"
    store = CloudStore(db)
    token = store.add_device("fuzz", record_key=key_id(KEY.public_key()))
    store.add_device("other")
    store.add_group("g", members=["fuzz", "other"])
    store.add_shop("Nord", 48.14, 11.58, days="daily", services=["oil"])
    store.close()
    with ServerThread(db) as running:
        yield running, token


@pytest.fixture
def backend(server: tuple[CloudServer, str]) -> Iterator[tuple[CloudServer, Car]]:
    """The module's server and a car connected for one test (all its examples)."""
    car = Car(server[0].url, server[1])
    yield server[0], car
    car.close()


def not_json(text: str) -> bool:
    try:
        json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (ValueError, RecursionError):
        return True
    return False


def signed_entry(seq: int) -> dict[str, Any]:
    """A correctly signed entry with any seq: what a hostile car holding its key can send."""
    body = {"v": 1, "seq": seq, "prev": "0" * 64, "recorded_at": 1_700_000_000,
            "record": {"date": "2024-03-01", "odometer_km": 1, "shop": "G", "items": ["oil"],
                       "parts": [], "cost": None, "currency": None, "notes": ""}}
    digest = sha256_hex(canonical(body))
    import base64
    return {"body": body, "hash": digest, "key_id": key_id(KEY.public_key()),
            "signature": base64.b64encode(KEY.sign(ENTRY_DOMAIN + bytes.fromhex(digest)))
            .decode()}


COUNTER = iter(range(10**9))


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "500")), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=mutated())
@example(case=("emergency", "help_request", {"lat": Raw("1" * 400), "lon": 11.5}, 1.0))
@example(case=("booking", "booking", TEMPLATES["booking"], 1e17))
@example(case=("service_record", "service_record",
               {**TEMPLATES["service_record"], "entries": [signed_entry(10**30)]}, 1.0))
@example(case=("service_record", "service_record",
               {**TEMPLATES["service_record"], "entries": [signed_entry(2**63)]}, 1.0))
@example(case=("status", "status", {"lat": Raw("1e400"), "lon": Raw("-1e400")}, 1.0))
@example(case=("service_record", "service_record",  # a reason that would echo \udfff
               replace(TEMPLATES["service_record"], ("entries", 0, "body", "record", "date"),
                       "\udfff"), 1.0))
@example(case=("chat", "group_join", {"group": Raw('"\\ud800"')}, 1.0))
@example(case=("emergency", "help_request", {**HERE, "vehicle": {"v": Raw("1e400")}}, 1.0))
def test_any_hostile_field_of_any_kind_is_an_ack_never_1011(
        backend: tuple[CloudServer, Car], case: tuple[str, str, Any, Any],
        caplog: pytest.LogCaptureFixture) -> None:
    server, car = backend
    cls, kind, body, created = case
    item_id = f"f{next(COUNTER)}"
    text = frame(item_id, cls, kind, body, created)
    caplog.set_level(logging.ERROR, logger="carlink_cloud")
    got = car.answer(text, item_id)
    if "close" in got:  # allowed only for a frame that is no JSON or an envelope out of range
        assert got["close"] == p.CLOSE_PROTOCOL_ERROR, (got, text[:300])
        envelope_bad = not isinstance(created, float) or created > 1e300
        assert not_json(text) or envelope_bad, (got, text[:300])
    else:
        assert got["status"] in ("stored", "rejected")
        if got["status"] == "rejected":
            assert got.get("reason"), got
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], text[:300]
    assert server.counters["protocol_errors"] >= 0


def test_lone_surrogate_ids_and_envelopes_are_protocol_errors_not_1011(
        backend: tuple[CloudServer, Car]) -> None:
    server, car = backend
    for text in ('{"type":"item","id":"\\ud800","class":"alert","kind":"alert",'
                 '"body":{"name":"x"},"created":1}',
                 '{"type":"item","id":"ok1","class":"alert","kind":"\\udfff",'
                 '"body":{"name":"x"},"created":1}'):
        got = car.answer(text, "\ud800")
        assert got.get("close") == p.CLOSE_PROTOCOL_ERROR, got
    got = car.answer(frame("after", "alert", "alert", {"name": "x"}), "after")
    assert got["status"] == "stored"  # and the device is served again at once
