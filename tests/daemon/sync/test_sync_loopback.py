"""Daemon-side sync service against the real reference backend on loopback.

(Service records: tests/test_cloud_records.py; TLS: test_sync_tls.py; close codes:
test_sync_close.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from carlinkd.config import build_config
from carlinkd.events import (BookingUpdated, CloudState, Command, Event, GroupsListed,
                             HelpRequest, HelpResponse, MessageReceived, SignalsUpdated,
                             SignalValue, SyncRejected)
from carlinkd.hub import Hub
from carlinkd.sync.service import SyncService
from carlink_cloud import CloudServer, CloudStore
from carlink_cloud.netem import CutProxy
from support.wait import eventually

WAIT_S = 20.0  # generous upper bound for "eventually"; never asserted as a timing


class Car:
    """A hub with a sync service and a log of every event it published."""

    def __init__(self, name: str, service: SyncService, hub: Hub) -> None:
        self.name, self.service, self.hub = name, service, hub
        self.events: list[Event] = []
        self._sub = hub.subscribe(CloudState, MessageReceived, BookingUpdated, HelpRequest,
                                  HelpResponse, GroupsListed, SyncRejected, name="test")
        self._task = asyncio.create_task(self._collect(), name=f"collect-{name}")

    async def _collect(self) -> None:
        async for event in self._sub:
            self.events.append(event)

    def command(self, name: str, **args: str) -> None:
        self.hub.publish(Command(name, args, "test"))

    async def wait_for(self, pred: Callable[[Event], bool], count: int = 1) -> list[Event]:
        async def poll() -> list[Event]:
            while len(hits := [e for e in self.events if pred(e)]) < count:
                await asyncio.sleep(0.02)
            return hits
        return await asyncio.wait_for(poll(), WAIT_S)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def close(self) -> None:
        await self.service.stop()
        self._sub.close()
        await self._task
        self.hub.close()


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    store = CloudStore(tmp_path / "cloud.db")
    tokens = {n: store.add_device(n, "golf", "berlin") for n in ("a", "b", "c")}
    tokens["far"] = store.add_device("far", "golf", "berlin")
    store.add_group("club", "golf", "berlin", members=["a", "b", "c", "far"])
    store.add_group("vans", "transporter", "")
    store.add_shop("Garage Nord", 52.55, 13.40, days="daily", opens="08:00", closes="12:00",
                   capacity=1, services=["inspection", "oil change"])
    store.close()
    server = CloudServer(tmp_path / "cloud.db")
    await server.start()
    yield {"server": server, "tokens": tokens, "dir": tmp_path}
    await server.stop()


@contextlib.asynccontextmanager
async def car(cloud: dict[str, Any], name: str, url: str | None = None,
              token: str | None = None, **sync: Any) -> AsyncIterator[Car]:
    cfg = build_config([("test", {"sync": {
        "url": url or cloud["server"].url, "token": token or cloud["tokens"][name],
        "backoff_initial_s": 0.05, "backoff_max_s": 0.5, **sync}})])
    hub = Hub()
    svc = SyncService(cfg, hub, cloud["dir"] / f"car-{name}")
    c = Car(name, svc, hub)
    await svc.start()
    try:
        yield c
    finally:
        await c.close()


def located(c: Car, lat: float, lon: float) -> None:
    c.hub.publish(SignalsUpdated({
        "Vehicle.CurrentLocation.Latitude": SignalValue("Vehicle.CurrentLocation.Latitude",
                                                        lat, "deg", 0.0),
        "Vehicle.CurrentLocation.Longitude": SignalValue("Vehicle.CurrentLocation.Longitude",
                                                         lon, "deg", 0.0)}))


async def test_chat_fans_out_to_group_members_in_order(cloud: dict[str, Any]) -> None:
    async with car(cloud, "a") as a, car(cloud, "b") as b, car(cloud, "c") as c:
        for i in range(20):
            a.command("send_message", group="club", text=f"hello {i}")
        for member in (b, c):
            msgs = await member.wait_for(lambda e: isinstance(e, MessageReceived), 20)
            assert [m.text for m in msgs] == [f"hello {i}" for i in range(20)]
            assert {m.sender for m in msgs} == {"a"}
        assert not a.of(MessageReceived)  # no echo to the sender


async def test_groups_join_leave_list_respect_model_and_region(cloud: dict[str, Any]) -> None:
    async with car(cloud, "a") as a:
        a.command("list_groups")
        (listed,) = await a.wait_for(lambda e: isinstance(e, GroupsListed))
        assert listed.joined == ("club",) and listed.available == ()
        a.command("join_group", group="vans")
        (refused,) = await a.wait_for(lambda e: isinstance(e, SyncRejected))
        assert "transporter" in refused.reason
        a.command("leave_group", group="club")
        await a.wait_for(lambda e: isinstance(e, GroupsListed) and e.joined == ())
        a.command("send_message", group="club", text="am I still in?")
        await a.wait_for(lambda e: isinstance(e, SyncRejected) and "member" in e.reason)


async def test_booking_confirmed_then_declined_with_reason(cloud: dict[str, Any]) -> None:
    day = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)).isoformat()
    async with car(cloud, "a") as a, car(cloud, "b") as b:
        a.command("book_service", service="inspection", day=day, time="9am")
        (ok,) = await a.wait_for(lambda e: isinstance(e, BookingUpdated))
        assert (ok.status, ok.shop, ok.day, ok.time) == ("confirmed", "Garage Nord", day, "09:00")
        b.command("book_service", service="inspection", day=day, time="09:30")
        (full,) = await b.wait_for(lambda e: isinstance(e, BookingUpdated))
        assert full.status == "declined" and "fully booked" in full.reason
        assert "10:00" in full.reason  # suggests a free slot
        b.command("book_service", service="inspection", day=day, time="17:00")
        late = (await b.wait_for(lambda e: isinstance(e, BookingUpdated), 2))[1]
        assert late.status == "declined" and "from 08:00 to 11:00" in late.reason


async def test_booking_reminder(cloud: dict[str, Any]) -> None:
    from carlink_cloud.handlers import remind_due
    day = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    async with car(cloud, "a") as a:
        a.command("book_service", service="oil change", day=day, time="08:00")
        await a.wait_for(lambda e: isinstance(e, BookingUpdated))
        server = cloud["server"]
        starts = dt.datetime.fromisoformat(day + "T08:00+00:00").timestamp()
        server.wake(await server._db(remind_due, server.store, starts - 3600))
        (rem,) = await a.wait_for(lambda e: isinstance(e, BookingUpdated)
                                  and e.status == "reminder")
        assert rem.time == "08:00"


async def test_help_reaches_helpers_within_radius_and_responses_return(
        cloud: dict[str, Any]) -> None:
    # protocol 2: only cars that opted in as helpers are asked (more: tests/daemon/sync/)
    async with car(cloud, "a", status_interval_s=0.1) as a, \
            car(cloud, "b", status_interval_s=0.1) as b, \
            car(cloud, "far", status_interval_s=0.1) as far:
        for c in (b, far):
            c.command("set_helper", state="on")
        located(a, 52.52, 13.40)
        located(b, 52.60, 13.45)      # ~9.5 km away
        located(far, 48.14, 11.58)    # Munich
        server = cloud["server"]

        async def helpers() -> None:
            while True:
                n = await server._db(lambda: server.store.conn.execute(
                    "SELECT COUNT(*) FROM status WHERE helper = 1").fetchone()[0])
                if n == 2:
                    return
                await asyncio.sleep(0.05)
        await asyncio.wait_for(helpers(), WAIT_S)
        a.command("emergency_help", note="flat tyre")
        (req,) = await b.wait_for(lambda e: isinstance(e, HelpRequest))
        assert req.sender == "a" and req.note == "flat tyre" and 5 <= req.distance_km <= 15
        b.command("help_respond", request_id=req.request_id, to="a", text="on my way")
        (resp,) = await a.wait_for(lambda e: isinstance(e, HelpResponse))
        assert (resp.responder, resp.text) == ("b", "on my way")
        assert not far.of(HelpRequest)


async def test_wrong_token_is_a_clear_error_with_backoff(cloud: dict[str, Any],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with car(cloud, "a", token="not-a-token", auth_retry_s=600.0) as a:
        (state,) = await a.wait_for(lambda e: isinstance(e, CloudState)
                                    and e.state == "unauthorized")
        assert "HTTP 401" in state.detail and "invalid device token" in state.detail
        assert a.service.client is not None and a.service.client.last_delay >= 600.0
        await asyncio.sleep(0.3)
        assert a.service.client.connections == 0
        assert cloud["server"].counters["auth_failures"] == 1  # no hammering
    assert any("unauthorized" in r.getMessage() for r in caplog.records)


async def test_overloaded_server_answers_503_and_client_backs_off(tmp_path: Path) -> None:
    store = CloudStore(tmp_path / "c.db")
    ta, tb = store.add_device("a"), store.add_device("b")
    store.close()
    async with CloudServer(tmp_path / "c.db", max_connections=1) as server:
        cloud = {"server": server, "tokens": {"a": ta, "b": tb}, "dir": tmp_path}
        async with car(cloud, "a") as a:
            await a.wait_for(lambda e: isinstance(e, CloudState) and e.state == "online")
            async with car(cloud, "b") as b:
                (st,) = await b.wait_for(lambda e: isinstance(e, CloudState)
                                         and e.state == "overloaded")
                assert "503" in st.detail and b.service.client is not None
                assert b.service.client.last_delay >= 5.0  # honours Retry-After


async def test_unacknowledged_items_survive_restart_and_are_sent_once(
        cloud: dict[str, Any]) -> None:
    # Offline first: items are durable in the outbox.
    async with car(cloud, "a", url="ws://127.0.0.1:9/") as a:
        for i in range(30):
            a.command("send_message", group="club", text=f"queued {i}")
        assert a.service.outbox is not None
        outbox = a.service.outbox
        await eventually(lambda: _equals(outbox.depth(), 30), "30 items in the outbox")
    async with car(cloud, "b") as b, car(cloud, "a") as a:
        msgs = await b.wait_for(lambda e: isinstance(e, MessageReceived), 30)
        assert [m.text for m in msgs] == [f"queued {i}" for i in range(30)]
        assert a.service.outbox is not None
        await asyncio.wait_for(_until(lambda: a.service.outbox.depth(), 0), WAIT_S)


async def _equals(got: Awaitable[Any], value: Any) -> bool:
    return bool(await got == value)


async def _until(fn: Callable[[], Any], value: Any) -> None:
    while await fn() != value:
        await asyncio.sleep(0.02)


async def test_connection_cuts_lose_and_duplicate_nothing(cloud: dict[str, Any]) -> None:
    server = cloud["server"]
    proxy = CutProxy("127.0.0.1", server.port)
    await proxy.start()
    try:
        async with car(cloud, "a", url=proxy.url) as a, car(cloud, "b", url=proxy.url) as b:
            for i in range(300):
                a.command("send_message", group="club", text=f"m{i}")
                if i % 40 == 39:
                    await asyncio.sleep(0.05)
                    proxy.cut()
            msgs = await b.wait_for(lambda e: isinstance(e, MessageReceived), 300)
            assert [m.text for m in msgs] == [f"m{i}" for i in range(300)]
            assert proxy.cuts > 0
            log = server.store.upstream_log("a", "chat")
            assert len(log) == 300 == len({r["id"] for r in log})
    finally:
        await proxy.stop()


async def test_shutdown_flushes_queued_items(cloud: dict[str, Any]) -> None:
    async with car(cloud, "a") as a:
        await a.wait_for(lambda e: isinstance(e, CloudState) and e.state == "online")
        for i in range(50):
            await a.service.submit("alert", "alert", {"name": f"alert{i}"})
    # leaving the block stopped the service: everything was acknowledged before closing
    assert len(cloud["server"].store.upstream_log("a", "alert")) == 50
    async with car(cloud, "a", url="ws://127.0.0.1:9/") as again:
        assert again.service.outbox is not None and await again.service.outbox.depth() == 0


async def test_pruned_downstream_is_reported_as_gap(cloud: dict[str, Any]) -> None:
    async with car(cloud, "a") as a, car(cloud, "b") as b:
        for i in range(5):
            a.command("send_message", group="club", text=f"old {i}")
        await b.wait_for(lambda e: isinstance(e, MessageReceived), 5)
    store: CloudStore = cloud["server"].store
    assert await cloud["server"]._db(store.prune_down, None, 1e12) >= 5
    # b lost its state (new car unit): cursor 0, the first 5 items are gone
    import shutil
    shutil.rmtree(cloud["dir"] / "car-b")
    async with car(cloud, "a") as a, car(cloud, "b") as b:
        a.command("send_message", group="club", text="new")
        (msg,) = await b.wait_for(lambda e: isinstance(e, MessageReceived))
        assert msg.text == "new"
        assert b.service.inbound is not None and b.service.inbound.cursor >= 6
