"""Alerts reach the cloud through the sync outbox: hub AlertRaised/AlertCleared -> class alert."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from carlinkd.config import build_config
from carlinkd.events import AlertCleared, AlertRaised, SyncRejected
from carlinkd.hub import Hub
from carlinkd.sync.outbox import POLICIES, ClassPolicy
from carlinkd.sync.service import SyncService, alert_item
from carlink_cloud import CloudServer, CloudStore
from support.wait import WAIT_S, eventually

RAISED = AlertRaised("coolant_high", "coolant_high", "warning", "Coolant hot.",
                     "Coolant temperature 114 °C, above 110 °C.", 1_732_480_000.5)
CLEARED = AlertCleared("coolant_high", 1_732_480_090.0, "below 105 °C")
MIL = AlertRaised("mil", "mil", "warning", "Check engine.", "Check engine light is on.",
                  1_732_480_100.0)
MIL_OFF = AlertCleared("mil", 1_732_480_200.0, "lamp off")


@contextlib.asynccontextmanager
async def service(state: Path, **sync: Any) -> AsyncIterator[tuple[SyncService, Hub]]:
    hub = Hub()
    svc = SyncService(build_config([("test", {"sync": sync})]), hub, state)
    await svc.start()
    try:
        yield svc, hub
    finally:
        await svc.stop()
        hub.close()


async def queued(svc: SyncService) -> list[tuple[str, str, str, dict[str, Any]]]:
    assert svc.db is not None
    rows = await svc.db.read("SELECT id, class, kind, body FROM sync_outbox ORDER BY seq")
    return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]


async def depth_is(svc: SyncService, n: int) -> bool:
    assert svc.outbox is not None
    return await svc.outbox.depth() == n


def test_alert_item_body_and_stable_id() -> None:
    item_id, body = alert_item(RAISED)
    assert body == {"name": "coolant_high", "event": "raised", "kind": "coolant_high",
                    "severity": "warning", "text": "Coolant temperature 114 °C, above 110 °C.",
                    "reason": "new", "at": 1_732_480_000.5}
    assert alert_item(dataclasses.replace(RAISED)) == (item_id, body)  # same event, same id
    assert item_id.startswith("alert-") and len(item_id) <= 64
    cleared_id, cleared = alert_item(CLEARED)
    assert cleared == {"name": "coolant_high", "event": "cleared", "reason": "below 105 °C",
                       "at": 1_732_480_090.0}
    reminder_id, _ = alert_item(dataclasses.replace(RAISED, reason="reminder"))
    assert len({item_id, cleared_id, reminder_id}) == 3


def expected(*events: AlertRaised | AlertCleared) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The outbox rows these events must become, in order."""
    return [(alert_item(e)[0], "alert", "alert", alert_item(e)[1]) for e in events]


async def test_hub_alerts_become_alert_items_in_the_sync_db(tmp_path: Path) -> None:
    async with service(tmp_path / "car") as (svc, hub):  # offline: items stay queued
        hub.publish(RAISED)
        hub.publish(CLEARED)
        hub.publish(RAISED)  # the same event again (a retransmission): no second item
        hub.publish(MIL)     # handled after the repeat (one subscriber, in order)
        await eventually(lambda: depth_is(svc, 3))
        assert await queued(svc) == expected(RAISED, CLEARED, MIL)
    async with service(tmp_path / "car") as (svc, hub):  # restart: still queued, not doubled
        hub.publish(RAISED)
        hub.publish(MIL_OFF)
        await eventually(lambda: depth_is(svc, 4))
        assert await queued(svc) == expected(RAISED, CLEARED, MIL, MIL_OFF)


async def test_alerts_published_just_before_stop_are_queued(tmp_path: Path) -> None:
    async with service(tmp_path / "car") as (svc, hub):
        for n in range(20):
            hub.publish(AlertRaised(f"dtc:P030{n}", "dtc", "warning", "s", "t", float(n)))
    async with service(tmp_path / "car") as (svc, hub):
        assert [i[3]["name"] for i in await queued(svc)] == [f"dtc:P030{n}" for n in range(20)]


async def test_full_alert_class_is_reported_not_silent(tmp_path: Path) -> None:
    assert POLICIES["alert"].lossless  # the daemon's alert class refuses rather than evicts
    async with service(tmp_path / "car") as (svc, hub):
        assert svc.outbox is not None
        svc.outbox.policies["alert"] = ClassPolicy("alert", 1, 200, None, lossless=True)
        rejected = hub.subscribe(SyncRejected)
        hub.publish(RAISED)
        hub.publish(CLEARED)
        event = await asyncio.wait_for(rejected.get(), WAIT_S)
        assert isinstance(event, SyncRejected) and event.what == "alert/coolant_high"
        assert "alert is full" in event.reason
        assert [i[3]["event"] for i in await queued(svc)] == ["raised"]


async def test_alert_reaches_the_reference_backend_once(tmp_path: Path) -> None:
    store = CloudStore(tmp_path / "cloud.db")
    token = store.add_device("a", "golf", "berlin")
    store.close()
    async with CloudServer(tmp_path / "cloud.db") as server:
        assert server.store is not None

        async def cloud_log() -> list[tuple[str, str, str, dict[str, Any]]]:
            assert server.store is not None
            rows = await server._db(server.store.upstream_log, "a", "alert")
            assert {r["status"] for r in rows} <= {"stored"}, rows
            return [(r["id"], r["class"], r["kind"], r["body"]) for r in rows]

        async def logged(n: int) -> bool:
            return len(await cloud_log()) >= n

        async with service(tmp_path / "car", url=server.url, token=token,
                           backoff_initial_s=0.05, backoff_max_s=0.5) as (svc, hub):
            hub.publish(RAISED)
            hub.publish(CLEARED)
            await eventually(lambda: logged(2))
            assert await cloud_log() == expected(RAISED, CLEARED)
            await eventually(lambda: depth_is(svc, 0))  # acknowledged, so gone from the car
            hub.publish(RAISED)  # queued again after its ack: answered again, no second effect
            hub.publish(MIL)
            await eventually(lambda: logged(3))
            await eventually(lambda: depth_is(svc, 0))
            assert await cloud_log() == expected(RAISED, CLEARED, MIL)
