"""Help requests in protocol 2 through the real backend (WebSocket server, SQLite file):
keyed per device, asked only of fresh helpers nearby, exact position only to a helper who
answered, cancel and expiry, no location oracle (issues 13 and 18 item 2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from carlink_cloud import CloudServer, CloudStore
from carlink_protocol import wire as p
from carlink_cloud.help import helpers_query
from carlink_protocol.geo import cell_center, cell_of, cells_within, great_circle_km
from v2client import Car, Clock, online

T0 = 1_800_000_000.0
HERE = (52.520000, 13.405000)          # the car that needs help (Berlin)
NEAR = (52.560000, 13.450000)          # a helper about 5 km away
MUNICH = (48.137000, 11.575000)


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[CloudServer, dict[str, str], Clock]]:
    store = CloudStore(tmp_path / "c.db")
    tokens = {n: store.add_device(n) for n in ("car", "helper", "far", "idle", "evil")}
    store.close()
    clock = Clock(T0)
    async with CloudServer(tmp_path / "c.db", clock=clock) as server:
        yield server, tokens, clock


async def helper_at(car: Car, where: tuple[float, float], now: float) -> None:
    ack = await car.send("status", "status", {"helper": True, "cell": cell_of(*where)},
                         created=now)
    assert ack["status"] == "stored"


def ask(where: tuple[float, float], **extra: Any) -> dict[str, Any]:
    return {"lat": where[0], "lon": where[1], "note": "flat tyre", **extra}


async def test_only_fresh_helpers_nearby_are_asked_with_a_distance_and_no_position(
        cloud: tuple[CloudServer, dict[str, str], Clock]) -> None:
    server, tokens, clock = cloud
    async with online(server, tokens["car"]) as car, online(server, tokens["helper"]) as helper, \
            online(server, tokens["far"]) as far, online(server, tokens["idle"]) as idle:
        await helper_at(far, MUNICH, T0)
        await helper_at(helper, NEAR, T0)
        # a non-helper with a position right beside the car: never asked
        await idle.send("status", "status", {"lat": HERE[0], "lon": HERE[1]}, created=T0)
        ack = await car.send("emergency", "help_request",
                             ask(HERE, vehicle={"Vehicle.Speed": 0, "model": "golf"}), "h1")
        assert ack["status"] == "stored"
        assert ack["result"] == {"request_id": "h1", "expires": T0 + 3600}  # no count
        (req,) = await helper.down("help_request")
        km = great_circle_km(*HERE, *cell_center(cell_of(*NEAR)))  # from the cell's centre
        assert 4 < km < 8
        assert req == {"request_id": "h1", "from": "car", "distance_km": round(km),
                       "note": "flat tyre", "created": T0, "expires": T0 + 3600}
        for other in (far, idle):
            await other.settle()
            assert "help_request" not in other.kinds()
        # 16 minutes later the helper's cell is stale: a new request asks nobody
        clock.now = T0 + 16 * 60
        assert (await car.send("emergency", "help_request", ask(HERE), "h2"))["status"] == "stored"
        await helper.settle()
        assert len([k for k in helper.kinds() if k == "help_request"]) == 1


async def test_exact_position_only_to_the_helper_who_answers(
        cloud: tuple[CloudServer, dict[str, str], Clock]) -> None:
    server, tokens, _ = cloud
    async with online(server, tokens["car"]) as car, online(server, tokens["helper"]) as helper, \
            online(server, tokens["evil"]) as evil:
        await helper_at(helper, NEAR, T0)
        await helper_at(evil, NEAR, T0)  # a second helper in the same cell, who stays silent
        await car.send("emergency", "help_request", ask(HERE, vehicle={"fuel": 3}), "h1")
        await evil.down("help_request")
        ack = await helper.send("emergency", "help_response",
                                {"request_id": "h1", "to": "car", "text": "on my way"})
        assert ack["status"] == "stored"
        (detail,) = await helper.down("help_detail")
        assert detail == {"request_id": "h1", "from": "car", "lat": HERE[0], "lon": HERE[1],
                          "note": "flat tyre", "vehicle": {"fuel": 3}}
        (resp,) = await car.down("help_response")
        assert resp == {"request_id": "h1", "from": "helper", "text": "on my way"}
        await evil.settle()
        assert "help_detail" not in evil.kinds()


async def test_a_reply_from_a_car_that_was_not_asked_is_rejected(
        cloud: tuple[CloudServer, dict[str, str], Clock]) -> None:
    server, tokens, _ = cloud
    async with online(server, tokens["car"]) as car, online(server, tokens["helper"]) as helper, \
            online(server, tokens["evil"]) as evil:
        await helper_at(helper, NEAR, T0)
        # evil fakes a status right beside the car but is no helper; or a helper far away
        await evil.send("status", "status", {"lat": HERE[0], "lon": HERE[1]}, created=T0)
        await car.send("emergency", "help_request", ask(HERE), "h1")
        ack = await evil.send("emergency", "help_response", {"request_id": "h1", "to": "car"})
        assert ack["status"] == "rejected" and "not asked" in ack["reason"]
        unknown = await evil.send("emergency", "help_response", {"request_id": "nope",
                                                                 "to": "car"})
        assert unknown["reason"].replace("nope", "h1") == ack["reason"]  # no oracle
        await evil.settle()
        assert not {"help_request", "help_detail"} & set(evil.kinds())
        await car.settle()
        assert "help_response" not in car.kinds()


async def test_another_car_cannot_hijack_a_request_id(
        cloud: tuple[CloudServer, dict[str, str], Clock]) -> None:
    server, tokens, _ = cloud
    async with online(server, tokens["car"]) as car, online(server, tokens["helper"]) as helper, \
            online(server, tokens["evil"]) as evil:
        await helper_at(helper, NEAR, T0)
        # evil claims the id first, near the same helper
        assert (await evil.send("emergency", "help_request", ask(NEAR), "h1"))["status"] \
            == "stored"
        assert (await car.send("emergency", "help_request", ask(HERE), "h1"))["status"] \
            == "stored"
        assert [r["from"] for r in await helper.down("help_request", 2)] == ["evil", "car"]
        await helper.send("emergency", "help_response", {"request_id": "h1", "to": "car"})
        (resp,) = await car.down("help_response")
        assert resp["from"] == "helper"
        (detail,) = await helper.down("help_detail")
        assert (detail["from"], detail["lat"], detail["lon"]) == ("car", *HERE)
        await evil.settle()
        assert "help_response" not in evil.kinds()


async def test_a_probe_grid_finds_nothing_and_is_rate_limited(
        cloud: tuple[CloudServer, dict[str, str], Clock]) -> None:
    server, tokens, _ = cloud
    async with online(server, tokens["evil"]) as evil, online(server, tokens["helper"]) as helper:
        await helper_at(helper, NEAR, T0)
        grid = [(NEAR[0] + d, NEAR[1]) for d in (0.0, 0.5, 1.0, 1.5)]  # 0, ~55, ~110 km ...
        acks = [await evil.send("emergency", "help_request", ask(where), f"probe{n}")
                for n, where in enumerate(grid)]
        results = [a.get("result") for a in acks[:3]]
        assert all(a["status"] == "stored" for a in acks[:3])
        assert results == [{"request_id": f"probe{n}", "expires": T0 + 3600} for n in range(3)]
        assert acks[3]["status"] == "rejected"
        assert acks[3]["reason"] == "rate limited: 3 help requests per hour"
        await evil.settle()
        assert evil.kinds() == ["groups"]  # nothing came back that depends on who is near


async def test_position_is_range_checked_and_near_the_senders_own(
        cloud: tuple[CloudServer, dict[str, str], Clock]) -> None:
    server, tokens, _ = cloud
    async with online(server, tokens["car"]) as car:
        for body, why in (({"note": "x"}, "position required"),
                          ({"lat": 91, "lon": 0}, "'lat' must be a number from -90 to 90"),
                          ({"lat": 1, "lon": "east"}, "'lon' must be a number"),
                          ({**ask(HERE), "note": "n" * 501}, "'note'"),
                          ({**ask(HERE), "vehicle": {f"k{i}": i for i in range(21)}},
                           "at most 20 entries"),
                          ({**ask(HERE), "vehicle": {"v": [1]}}, "'vehicle.v'")):
            ack = await car.send("emergency", "help_request", body)
            assert ack["status"] == "rejected" and why in ack["reason"], (body, ack)
        await car.send("status", "status", {"lat": HERE[0], "lon": HERE[1]}, created=T0)
        ack = await car.send("emergency", "help_request", ask(MUNICH))
        assert ack["status"] == "rejected" and "more than 50 km" in ack["reason"]
        assert (await car.send("emergency", "help_request", ask(NEAR)))["status"] == "stored"


async def test_cancel_tells_every_asked_helper_and_closes_the_request(
        cloud: tuple[CloudServer, dict[str, str], Clock]) -> None:
    server, tokens, _ = cloud
    async with online(server, tokens["car"]) as car, online(server, tokens["helper"]) as helper, \
            online(server, tokens["evil"]) as evil:
        await helper_at(helper, NEAR, T0)
        await car.send("emergency", "help_request", ask(HERE), "h1")
        await helper.down("help_request")
        other = await evil.send("emergency", "help_cancel", {"request_id": "h1"})
        assert other["status"] == "rejected"  # not evil's request
        ack = await car.send("emergency", "help_cancel", {"request_id": "h1"})
        assert ack["status"] == "stored" and ack.get("result", {}) == {}
        (cancel,) = await helper.down("help_cancel")
        assert cancel == {"request_id": "h1", "from": "car"}
        late = await helper.send("emergency", "help_response", {"request_id": "h1", "to": "car"})
        assert late["status"] == "rejected" and "cancelled or expired" in late["reason"]
        row = await server._db(lambda: server.store.conn.execute(  # type: ignore[union-attr]
            "SELECT lat, lon, note, open FROM help_requests").fetchone())
        assert tuple(row) == (None, None, "", 0)


async def test_an_expired_request_takes_no_answer(
        cloud: tuple[CloudServer, dict[str, str], Clock]) -> None:
    server, tokens, clock = cloud
    async with online(server, tokens["car"]) as car, online(server, tokens["helper"]) as helper:
        await helper_at(helper, NEAR, T0)
        ack = await car.send("emergency", "help_request", ask(HERE, expires=T0 + 10 * 3600))
        assert ack["result"]["expires"] == T0 + 4 * 3600  # capped
        (req,) = await helper.down("help_request")
        clock.now = T0 + 4 * 3600 + 1
        late = await helper.send("emergency", "help_response",
                                 {"request_id": req["request_id"], "to": "car"})
        assert late["status"] == "rejected" and "expired" in late["reason"]


async def test_a_protocol_1_hello_is_refused_with_4001(
        cloud: tuple[CloudServer, dict[str, str], Clock]) -> None:
    server, tokens, _ = cloud
    async with connect(server.url,
                       additional_headers={"Authorization": f"Bearer {tokens['car']}"}) as ws:
        await ws.send(p.encode(p.Hello(1, 0, None, 8)))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == p.CLOSE_UNSUPPORTED_VERSION == 4001
    assert closed.value.rcvd.reason == ("protocol 1 is not supported (help requests and "
                                        "location changed in 2); update")


def test_the_helper_lookup_is_an_indexed_cell_query(tmp_path: Path) -> None:
    store = CloudStore(tmp_path / "c.db")
    try:
        with store.tx() as c:  # enough rows that the planner has a choice to make
            for n in range(2000):
                c.execute("INSERT INTO devices (name, token_hash, created) VALUES (?,?,0)",
                          (f"car{n}", f"t{n}"))
                c.execute("INSERT INTO status (device_id, body, created, helper, cell, received)"
                          " VALUES (?,?,?,?,?,?)", (n + 1, "{}", T0, n % 2,
                                                    cell_of(48 + n / 100, 11.0), T0))
        store.conn.execute("ANALYZE")
        cells = cells_within(*HERE, 25.0)
        assert 50 < len(cells) < 400
        plan = " ".join(r[3] for r in store.conn.execute(
            "EXPLAIN QUERY PLAN " + helpers_query(len(cells)), (*cells, T0, T0, 0)))
        assert "USING INDEX status_helper_cell" in plan, plan
    finally:
        store.close()
