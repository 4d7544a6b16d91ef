"""Protocol 2 from the car's side against the real reference backend on loopback: the help life
cycle (who gets a position, and which), cancel and expiry never spoken, the booking choice and
its cancel. Each car is a real SyncService on its own hub; where speech matters, the real voice
service shares that hub (as in the daemon)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from carlink_cloud import CloudServer, CloudStore
from carlinkd.config import build_config
from carlinkd.events import (BookingOptions, BookingUpdated, CloudState, Command, Event,
                             HelpDetail, HelpRequest, HelpResponse, HelpStatus, SignalsUpdated,
                             SignalValue, Spoken, SyncRejected)
from carlinkd.hub import Hub
from carlinkd.sync.service import SyncService
from carlinkd.voice.pipeline import VoicePipeline
from carlinkd.voice.service import VoiceService
from carlinkd.voice.tts import WavDirSink

WAIT_S = 20.0
LAT, LON = "Vehicle.CurrentLocation.Latitude", "Vehicle.CurrentLocation.Longitude"
BERLIN = (52.520008, 13.404954)


class Car:
    """A sync service (and optionally voice) on one hub, with every event it published."""

    def __init__(self, name: str, hub: Hub, sync: SyncService,
                 voice: VoiceService | None) -> None:
        self.name, self.hub, self.sync, self.voice = name, hub, sync, voice
        self.events: list[Event] = []
        self._sub = hub.subscribe(Event, name=f"test-{name}")
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for event in self._sub:
            if not isinstance(event, SignalsUpdated):
                self.events.append(event)

    def command(self, name: str, **args: str) -> None:
        self.hub.publish(Command(name, args, "test"))

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def spoken(self) -> list[str]:
        return [e.text for e in self.of(Spoken)]

    async def wait_for(self, pred: Callable[[Event], bool], count: int = 1) -> list[Event]:
        async def poll() -> list[Event]:
            while len(hits := [e for e in self.events if pred(e)]) < count:
                await asyncio.sleep(0.02)
            return hits
        return await asyncio.wait_for(poll(), WAIT_S)

    def at(self, lat: float, lon: float) -> None:
        self.hub.publish(SignalsUpdated({LAT: SignalValue(LAT, lat, "deg", 0.0),
                                         LON: SignalValue(LON, lon, "deg", 0.0)}))


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    store = CloudStore(tmp_path / "cloud.db")
    tokens = {n: store.add_device(n, "golf", "berlin") for n in ("a", "h1", "h2", "n", "late")}
    store.add_shop("Garage Nord", 52.60, 13.40, days="daily", opens="08:00", closes="12:00",
                   capacity=1, services=["oil_change"], address="Nordweg 1")
    store.add_shop("Demo Garage", 52.53, 13.41, days="daily", opens="08:00", closes="12:00",
                   capacity=1, services=["oil_change"], address="Hauptstr. 2")
    store.close()
    server = CloudServer(tmp_path / "cloud.db")
    await server.start()
    yield {"server": server, "tokens": tokens, "dir": tmp_path}
    await server.stop()


@pytest.fixture(scope="module")
def pipeline() -> VoicePipeline:
    return VoicePipeline(build_config([]).voice)


@contextlib.asynccontextmanager
async def car(cloud: dict[str, Any], name: str, *, helper: bool = False,
              pipeline: VoicePipeline | None = None, **sync: Any) -> AsyncIterator[Car]:
    cfg = build_config([("test", {
        "sync": {"url": cloud["server"].url, "token": cloud["tokens"][name],
                 "backoff_initial_s": 0.05, "backoff_max_s": 0.5, "status_interval_s": 0.1,
                 **sync},
        "social": {"helper": helper}})])
    hub = Hub()
    svc = SyncService(cfg, hub, cloud["dir"] / f"car-{name}")
    voice = None if pipeline is None else VoiceService(
        cfg, hub, pipeline=pipeline, sink=WavDirSink(cloud["dir"] / f"said-{name}"),
        use_microphone=False)
    c = Car(name, hub, svc, voice)
    await svc.start()
    if voice is not None:
        await voice.start()
    try:
        yield c
    finally:
        if voice is not None:
            await voice.stop()
        await svc.stop()
        c._sub.close()
        await c._task
        hub.close()


async def eventually(depth: Callable[[], Any], want: int) -> None:
    async def poll() -> None:
        while await depth() != want:
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), WAIT_S)


async def helpers_known(cloud: dict[str, Any], count: int) -> None:
    server = cloud["server"]

    async def poll() -> None:
        while await server._db(lambda: server.store.conn.execute(
                "SELECT COUNT(*) FROM status WHERE helper = 1 AND cell IS NOT NULL"
        ).fetchone()[0]) < count:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), WAIT_S)


def downstream_of(cloud: dict[str, Any], name: str) -> bytes:
    server = cloud["server"]
    rows = server.store.conn.execute(
        "SELECT s.kind, s.body FROM downstream s JOIN devices d ON d.id = s.device_id "
        "WHERE d.name = ?", (name,)).fetchall()
    return json.dumps(rows).encode()


async def test_position_reaches_only_helpers_and_exact_only_the_one_who_said_yes(
        cloud: dict[str, Any]) -> None:
    lat, lon = BERLIN
    async with car(cloud, "a") as a, car(cloud, "h1", helper=True) as h1, \
            car(cloud, "h2", helper=True) as h2, car(cloud, "n") as n:
        a.at(lat, lon)
        h1.at(52.55, 13.42)
        h2.at(52.48, 13.35)
        n.at(52.52, 13.41)  # right there, but did not opt in
        await helpers_known(cloud, 2)
        a.command("emergency_help", note="flat tyre")
        (req1,) = await h1.wait_for(lambda e: isinstance(e, HelpRequest))
        (req2,) = await h2.wait_for(lambda e: isinstance(e, HelpRequest))
        for req in (req1, req2):
            assert req.sender == "a" and req.note == "flat tyre"
            assert req.latitude != req.latitude  # NaN: helpers hear a distance, no position
            assert req.distance_km == int(req.distance_km) and 0 <= req.distance_km <= 10
            assert req.expires > time.time() + 3000
        h1.command("help_respond", request_id=req1.request_id, to="a", text="on my way")
        (detail,) = await h1.wait_for(lambda e: isinstance(e, HelpDetail))
        assert (detail.latitude, detail.longitude, detail.note) == (lat, lon, "flat tyre")
        (resp,) = await a.wait_for(lambda e: isinstance(e, HelpResponse))
        assert (resp.responder, resp.text) == ("h1", "on my way")
        await asyncio.sleep(0.3)
        assert not n.of(HelpRequest) and not h2.of(HelpDetail)
        # a car that was not asked cannot answer to get the position
        n.command("help_respond", request_id=req1.request_id, to="a", text="on my way")
        (refused,) = await n.wait_for(lambda e: isinstance(e, SyncRejected))
        assert "not asked" in refused.reason and not n.of(HelpDetail)
    exact = (repr(lat).encode(), repr(lon).encode())
    assert all(x in downstream_of(cloud, "h1") for x in exact)
    for other in ("h2", "n"):
        assert not any(x in downstream_of(cloud, other) for x in exact), other


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
async def test_cancelled_and_expired_requests_are_never_spoken(
        cloud: dict[str, Any], pipeline: VoicePipeline) -> None:
    lat, lon = BERLIN
    async with car(cloud, "a") as a:
        assert a.sync.outbox is not None
        a.at(lat, lon)
        # h1 reports its cell, then is away while a asks and cancels
        async with car(cloud, "h1", helper=True) as h1:
            h1.at(52.55, 13.42)
            await helpers_known(cloud, 1)
        a.command("emergency_help", note="flat tyre")
        (sent,) = await a.wait_for(lambda e: isinstance(e, HelpStatus) and e.state == "sent")
        await eventually(lambda: a.sync.outbox.depth(), 0)  # acknowledged by the backend
        a.command("help_cancel")  # "I'm OK now"
        await a.wait_for(lambda e: isinstance(e, HelpStatus) and e.state == "cancelled")
        await asyncio.sleep(0.5)
        async with car(cloud, "h1", helper=True, pipeline=pipeline) as h1:
            assert h1.voice is not None
            await h1.wait_for(lambda e: isinstance(e, CloudState) and e.state == "online")
            await asyncio.sleep(0.5)  # the replay (request, then its cancel) is in
            await h1.voice.wait_quiet()
            assert not h1.of(HelpRequest) and not any("help" in t for t in h1.spoken())
        # a stale request: it expired while the helper was away
        async with car(cloud, "h2", helper=True) as h2:
            h2.at(52.48, 13.35)
            await helpers_known(cloud, 2)
        await a.sync.submit("emergency", "help_request", {
            "lat": lat, "lon": lon, "note": "stale", "expires": time.time() + 1.0})
        await asyncio.sleep(1.5)
        async with car(cloud, "h2", helper=True, pipeline=pipeline) as h2:
            assert h2.voice is not None
            (stale,) = await h2.wait_for(lambda e: isinstance(e, HelpRequest))
            assert stale.expires < time.time()
            await asyncio.sleep(0.3)
            await h2.voice.wait_quiet()
            assert not any("help" in t for t in h2.spoken()), h2.spoken()
    assert sent.request_id


async def test_nearer_shop_offered_first_and_cancel_restores_the_slot(
        cloud: dict[str, Any]) -> None:
    day = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)).isoformat()
    async with car(cloud, "a", location="always") as a, car(cloud, "n") as n:
        a.at(*BERLIN)
        await asyncio.sleep(0.3)
        a.command("booking_options", service="oil_change", day=day, time="09:00")
        (opts,) = await a.wait_for(lambda e: isinstance(e, BookingOptions))
        assert [o.shop for o in opts.options] == ["Demo Garage", "Garage Nord"]
        assert opts.options[0].distance_km is not None
        assert opts.options[0].distance_km < opts.options[1].distance_km  # type: ignore[operator]
        a.command("book_service", service="oil_change", day=day, time="09:00",
                  shop="Demo Garage")
        (ok,) = await a.wait_for(lambda e: isinstance(e, BookingUpdated))
        assert (ok.status, ok.shop, ok.address) == ("confirmed", "Demo Garage", "Hauptstr. 2")
        assert ok.booking_id > 0
        # the slot is full now (capacity 1) ...
        n.command("book_service", service="oil_change", day=day, time="09:00",
                  shop="Demo Garage")
        (full,) = await n.wait_for(lambda e: isinstance(e, BookingUpdated))
        assert full.status == "declined"
        # ... and free again once a cancels
        a.command("booking_cancel", booking_id=str(ok.booking_id))
        await a.wait_for(lambda e: isinstance(e, BookingUpdated) and e.status == "cancelled")
        n.command("book_service", service="oil_change", day=day, time="09:00",
                  shop="Demo Garage")
        (again,) = await n.wait_for(lambda e: isinstance(e, BookingUpdated)
                                    and e.status == "confirmed")
        assert again.shop == "Demo Garage"
