"""Closed groups and booking choice in protocol 2 through the real backend (issue 13 items 3-4,
issue 18 item 5)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from carlink_cloud import CloudServer, CloudStore
from carlink_cloud.bookings import remind_due
from carlink_cloud.cli import main as cloud_main
from carlink_protocol.geo import great_circle_km
from v2client import online

CAR = (52.520, 13.405)


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[CloudServer, dict[str, str], Path]]:
    db = tmp_path / "c.db"
    store = CloudStore(db)
    tokens = {n: store.add_device(n, "golf", "berlin") for n in ("owner", "car", "other")}
    tokens["van"] = store.add_device("van", "transporter", "berlin")
    store.add_group("family", owner="owner")                       # invite-only (default)
    store.add_group("golfers", "golf", "", policy="open")          # an open circle
    store.add_group("vans", "transporter", "", policy="open")
    store.add_group("secret", members=["other"])                   # closed, no owner
    # Two shops: the nearer one was enrolled second and sorts second by name.
    store.add_shop("Zentrum Garage", 52.530, 13.410, days="daily", capacity=1,
                   address="Torstrasse 1, Berlin")
    store.add_shop("Autohaus Nord", 52.700, 13.400, days="daily", capacity=1,
                   address="Nordweg 9, Berlin")
    store.add_shop("Closed Sundays", 52.521, 13.406, days="mon-sat", capacity=1)
    store.add_shop("Tyres Only", 52.522, 13.407, days="daily", services=["tyres"])
    store.close()
    async with CloudServer(db) as server:
        yield server, tokens, db


async def test_joining_needs_an_invitation_or_the_owners_approval(
        cloud: tuple[CloudServer, dict[str, str], Path]) -> None:
    server, tokens, db = cloud
    async with online(server, tokens["owner"]) as owner, online(server, tokens["car"]) as car:
        ack = await car.send("chat", "group_join", {"group": "family"})
        assert ack["result"] == {"group": "family", "state": "pending"}
        (asked,) = await owner.down("group_join_request")
        assert asked == {"group": "family", "from": "car"}
        for _ in range(3):  # asking again and again does not flood the owner
            await car.send("chat", "group_leave", {"group": "family"})
            await car.send("chat", "group_join", {"group": "family"})
        await owner.settle()
        assert owner.kinds().count("group_join_request") == 1
        refused = await car.send("chat", "chat", {"group": "family", "text": "let me read"})
        assert refused["status"] == "rejected" and "not a member" in refused["reason"]
        self_ok = await car.send("chat", "group_approve", {"group": "family", "device": "car"})
        assert self_ok["status"] == "rejected" and "only the owner" in self_ok["reason"]
        ok = await owner.send("chat", "group_approve", {"group": "family", "device": "car"})
        assert ok["status"] == "stored"
        joined = (await car.down("groups", 8))[7]
        assert "family" in joined["joined"] and joined["pending"] == []
        delivered = await owner.send("chat", "chat", {"group": "family", "text": "welcome"})
        assert delivered["result"] == {"delivered_to": 1}
        # an invitation by the administrator lets a car in when it asks
        code = await asyncio.to_thread(cloud_main, ["invite", "--db", str(db), "secret", "car"])
        assert code == 0
        invited = await car.send("chat", "group_join", {"group": "secret"})
        assert invited["result"] == {"group": "secret", "state": "joined"}


async def test_group_list_shows_only_what_the_car_may_join(
        cloud: tuple[CloudServer, dict[str, str], Path]) -> None:
    server, tokens, _ = cloud
    async with online(server, tokens["car"]) as car, online(server, tokens["van"]) as van:
        await car.send("chat", "group_list", {})
        (listed,) = await car.down("groups")
        assert listed == {"joined": [], "available": ["golfers"], "invited": [], "pending": []}
        assert (await car.send("chat", "group_join", {"group": "golfers"}))["result"] == \
            {"group": "golfers", "state": "joined"}
        wrong = await car.send("chat", "group_join", {"group": "vans"})
        assert wrong["status"] == "rejected" and "transporter" in wrong["reason"]
        await car.send("chat", "group_join", {"group": "family"})
        await car.send("chat", "group_list", {})
        last = (await car.down("groups", 4))[3]
        assert last == {"joined": ["golfers"], "available": [], "invited": [],
                        "pending": ["family"]}
        await van.send("chat", "group_list", {})
        assert (await van.down("groups"))[0]["available"] == ["vans"]


async def test_options_offer_the_nearer_shop_first_at_most_three_open_ones(
        cloud: tuple[CloudServer, dict[str, str], Path]) -> None:
    server, tokens, _ = cloud
    sunday = dt.date(2030, 1, 6)  # a Sunday: "Closed Sundays" is not offered
    async with online(server, tokens["car"]) as car:
        body = {"service": "inspection", "day": sunday.isoformat(), "time": "9am"}
        await car.send("booking", "booking_options", {**body, "lat": CAR[0], "lon": CAR[1]},
                       "opt1")
        (near,) = await car.down("booking_options")
        assert near["request_id"] == "opt1" and near["time"] == "09:00"
        assert [o["shop"] for o in near["options"]] == ["Zentrum Garage", "Autohaus Nord"]
        km = [round(great_circle_km(*CAR, 52.530, 13.410)),
              round(great_circle_km(*CAR, 52.700, 13.400))]
        assert [o["distance_km"] for o in near["options"]] == km and km[0] < km[1]
        assert near["options"][0]["address"] == "Torstrasse 1, Berlin"
        await car.send("booking", "booking_options", body)  # no position: by name
        (by_name,) = (await car.down("booking_options", 2))[1:]
        assert [o["shop"] for o in by_name["options"]] == ["Autohaus Nord", "Zentrum Garage"]
        assert {o["distance_km"] for o in by_name["options"]} == {None}
        monday = {**body, "day": "2030-01-07", "service": "tyres"}
        await car.send("booking", "booking_options", monday)
        (tyres,) = (await car.down("booking_options", 3))[2:]
        assert len(tyres["options"]) == 3  # four shops do tyres on a Monday: at most three


async def test_booking_cancel_frees_the_slot_and_the_reminder_says_where_and_when(
        cloud: tuple[CloudServer, dict[str, str], Path]) -> None:
    server, tokens, _ = cloud
    day = "2030-01-06"  # a Sunday: the nearest shop, Closed Sundays, is closed
    want = {"service": "inspection", "day": day, "time": "10:00", "lat": CAR[0], "lon": CAR[1]}
    async with online(server, tokens["car"]) as car, online(server, tokens["other"]) as other:
        ack = await car.send("booking", "booking", want)
        (ok,) = await car.down("booking")
        assert (ok["status"], ok["shop"], ok["address"]) == \
            ("confirmed", "Zentrum Garage", "Torstrasse 1, Berlin")
        assert ack["result"]["booking_id"] == ok["booking_id"]
        taken = await other.send("booking", "booking", {**want, "shop": "Zentrum Garage"})
        assert taken["result"]["status"] == "declined"
        stolen = await other.send("booking", "booking_cancel", {"booking_id": ok["booking_id"]})
        assert stolen["status"] == "rejected" and "no booking" in stolen["reason"]
        bad = await car.send("booking", "booking_cancel", {"booking_id": "one"})
        assert bad["status"] == "rejected" and "'booking_id'" in bad["reason"]
        assert (await car.send("booking", "booking_cancel",
                               {"booking_id": ok["booking_id"]}))["status"] == "stored"
        cancelled = (await car.down("booking", 2))[1]
        assert (cancelled["status"], cancelled["booking_id"]) == ("cancelled", ok["booking_id"])
        again = await other.send("booking", "booking", {**want, "shop": "Zentrum Garage"})
        assert again["result"]["status"] == "confirmed"  # the slot is free again
        starts = dt.datetime.fromisoformat(day + "T10:00+00:00").timestamp()
        assert server.store is not None
        server.wake(await server._db(remind_due, server.store, starts - 3600))
        (reminder,) = [b for b in await other.down("booking", 3) if b["status"] == "reminder"]
        assert (reminder["shop"], reminder["address"], reminder["day"], reminder["time"]) == \
            ("Zentrum Garage", "Torstrasse 1, Berlin", day, "10:00")


async def test_one_car_cannot_take_every_slot(
        cloud: tuple[CloudServer, dict[str, str], Path]) -> None:
    server, tokens, _ = cloud
    async with online(server, tokens["car"]) as car, online(server, tokens["other"]) as other:
        times = ["08:00", "09:00", "10:00", "11:00", "12:00", "13:00"]
        acks = [await car.send("booking", "booking", {"service": "inspection",
                                                      "day": "2030-01-06", "time": t})
                for t in times]
        assert [a["result"]["status"] for a in acks] == ["confirmed"] * 5 + ["declined"]
        assert "5 upcoming bookings" in acks[5]["result"]["reason"]
        ok = await other.send("booking", "booking", {"service": "inspection",
                                                     "day": "2030-01-06", "time": "13:00"})
        assert ok["result"]["status"] == "confirmed"
