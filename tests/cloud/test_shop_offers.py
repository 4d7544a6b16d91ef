"""A shop completes a booking: the backend signs the record, the car asks; yes adds it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carlink_cloud.cli import build_parser, run
from carlink_cloud.errors import CloudError
from carlink_cloud.handlers import handle_batch
from carlink_cloud.store import CloudStore
from carlink_protocol import shopsig, wire as p
from carlink_protocol.audit import audit
from carlinkd.voice.settings import VoiceConfig
from carlinkd.events import Command
from carlinkd.hub import Hub
from carlinkd.records.history import ServiceHistory, verify_bundle
from carlinkd.records.offers import ACCEPT, DECLINE, OfferService, ServiceRecordOffered
from carlinkd.store.db import Store
from carlinkd.sync.inbound import interpret
from carlinkd.voice.dialog import Dialog, EmitCommand, Say
from carlinkd.voice.intents import ParsedIntent
from carlinkd.voice.social import Social

NOW = 1_764_000_000.0  # a Monday, 2025-11-24


def book(db: Path, n: int) -> int:
    """car1 books an oil change at Demo Garage through the real handler; the booking id."""
    store = CloudStore(db)
    try:
        device = store.device_by_name("car1")
        item = p.UpItem(f"b{n}", "booking", "booking", {"service": "oil change",
                        "day": "2025-11-2" + str(4 + n), "time": "10:00"}, NOW)
        acks, _, _ = handle_batch(store, device, [item], NOW)
        assert acks[0].status == "stored", acks[0].reason
        return int(store.conn.execute("SELECT MAX(id) FROM bookings").fetchone()[0])
    finally:
        store.close()


async def cloud_main(argv: list[str]) -> int:
    """`carlink-cloud ...` as its main runs it (inside this test's event loop)."""
    return await run(build_parser().parse_args(argv))


def offers_for_car(db: Path) -> list[p.DownItem]:
    store = CloudStore(db)
    try:
        items = store.fetch_down(store.device_by_name("car1").id, 0, 100)
    finally:
        store.close()
    return [i for i in items if i.kind == "service_record_offer"]


@pytest.fixture
def cloud(tmp_path: Path) -> Path:
    db = tmp_path / "cloud.db"
    store = CloudStore(db)
    store.add_device("car1")
    store.add_shop("Demo Garage", 48.1, 11.5, days="daily")
    store.close()
    return db


@pytest.fixture
async def car(tmp_path: Path) -> Any:
    store = await Store.open(tmp_path / "carlinkd.db", background=False)
    hub = Hub(64)
    history = ServiceHistory(store, Ed25519PrivateKey.generate())
    yield OfferService(hub, history, lambda: NOW + 3600), history
    hub.close()
    await store.close()


async def test_yes_appends_the_shop_signed_record(cloud: Path, car: Any, capsys: Any) -> None:
    booking = book(cloud, 0)
    assert await cloud_main(["complete-booking", str(booking), "--db", str(cloud), "--work",
                       "oil change", "--odometer", "48210", "--parts", "oil filter"]) == 0
    assert "offer queued" in capsys.readouterr().out
    with pytest.raises(CloudError, match="already completed"):
        await cloud_main(["complete-booking", str(booking), "--db", str(cloud), "--work", "x",
                          "--odometer", "1"])
    [item] = offers_for_car(cloud)
    event, verdict = interpret(item)
    assert verdict == "ok" and isinstance(event, ServiceRecordOffered)
    # the voice asks, and yes emits the command the offer service acts on
    social = Social(VoiceConfig(), Dialog(), {})
    asked = social.handle(event, NOW)
    assert Say("Demo Garage finished your oil change. Add it to your service history?",
               "alert") in asked
    done = social.dialog.heard(ParsedIntent("yes", "confirm"), NOW + 2)
    [command] = [a for a in done if isinstance(a, EmitCommand)]
    offers, history = car
    assert await offers.handle(event) == "pending"
    assert await offers.handle(Command(command.name, command.args, "voice")) == "added"
    [entry] = await history.entries()
    assert entry.body["record"]["odometer_km"] == 48210 and "shop_sig" in entry.body
    assert await cloud_main(["registry-key", "--db", str(cloud)]) == 0
    trusted = capsys.readouterr().out.splitlines()[0].removeprefix("registry key ")
    bundle = await history.export("VIN1", now=NOW)
    report = verify_bundle(json.loads(json.dumps(bundle)), registry_key=trusted)
    assert report.clean, report.line()
    assert audit(await history.entries(), None).labels[1].status == shopsig.SHOP_SIGNED


async def test_declining_or_not_answering_adds_nothing(cloud: Path, car: Any) -> None:
    for n in range(2):
        booking = book(cloud, n)
        assert await cloud_main(["complete-booking", str(booking), "--db", str(cloud), "--work",
                           "oil change", "--odometer", str(40_000 + n)]) == 0
    first, second = (interpret(i)[0] for i in offers_for_car(cloud))
    offers, history = car
    assert isinstance(first, ServiceRecordOffered) and isinstance(second, ServiceRecordOffered)
    await offers.handle(first)
    await offers.handle(second)
    args = {"booking_id": str(first.booking_id)}
    assert await offers.handle(Command(DECLINE, args, "voice")) == "declined"
    assert await offers.handle(Command(ACCEPT, args, "voice")) == "ignored"  # gone
    social = Social(VoiceConfig(), Dialog(), {})
    social.handle(second, NOW)
    after = social.dialog.heard(ParsedIntent("cancel", "cancel"), NOW + 1)
    assert not [a for a in after if isinstance(a, EmitCommand)]
    assert await history.entries() == []


async def test_a_tampered_offer_is_rejected_by_the_car(cloud: Path) -> None:
    book(cloud, 0)
    assert await cloud_main(["complete-booking", "1", "--db", str(cloud), "--work", "oil change",
                       "--odometer", "48210"]) == 0
    [item] = offers_for_car(cloud)
    body = json.loads(json.dumps(item.body))
    body["record"]["odometer_km"] = 18_210
    event, verdict = interpret(p.DownItem(item.seq, item.kind, body, item.created))
    assert event is None and "shop-signature" not in verdict and "does not match" in verdict
