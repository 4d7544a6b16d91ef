"""What leaves the car by consent (carlinkd/sync/consent.py): status items, helper cell, the help
share window, help request bodies, booking positions."""

from __future__ import annotations

import json
import math
from pathlib import Path

from carlink_protocol.geo import cell_of
from carlinkd.events import SignalValue
from carlinkd.sync.consent import LATITUDE, LONGITUDE, SPEED, Consent

ODO = "Vehicle.TraveledDistance"


def signals(lat: float = 52.52, lon: float = 13.405) -> dict[str, SignalValue]:
    return {LATITUDE: SignalValue(LATITUDE, lat, "deg", 0.0),
            LONGITUDE: SignalValue(LONGITUDE, lon, "deg", 0.0),
            SPEED: SignalValue(SPEED, 87.5, "km/h", 0.0),
            ODO: SignalValue(ODO, 12345.6, "km", 0.0)}


def no_position(body: dict[str, object]) -> bool:
    text = json.dumps(body)
    return all(v not in text for v in ("52.52", "13.405", "87.5")) and "speed" not in body


def test_default_help_sends_no_position_or_speed() -> None:
    c = Consent()
    body = c.status_body(signals(), 100.0)
    assert no_position(body) and "cell" not in body and "helper" not in body
    assert body["vehicle"] == {ODO: 12345.6}


def test_helper_shares_the_coarse_cell_only() -> None:
    c = Consent(helper=True)
    body = c.status_body(signals(), 100.0)
    assert no_position(body)
    assert body["helper"] is True and body["cell"] == cell_of(52.52, 13.405)
    assert Consent(location="off", helper=True).status_body(signals(), 0.0).get("cell") is None


def test_always_sends_position_and_speed() -> None:
    body = Consent(location="always").status_body(signals(), 0.0)
    assert (body["lat"], body["lon"], body["speed"]) == (52.52, 13.405, 87.5)


def test_a_confirmed_help_request_opens_the_share_window_then_it_closes() -> None:
    c = Consent(help_share_s=1800.0)
    body, located = c.help_body(signals(), "flat tyre", 1000.0)
    assert located and (body["lat"], body["lon"]) == (52.52, 13.405)
    assert body["expires"] == 1000 + 3600 and body["note"] == "flat tyre"
    assert LATITUDE not in body["vehicle"] and len(body["vehicle"]) <= 20
    c.help_sent("req-1", body, 1000.0)
    assert c.status_body(signals(), 1500.0)["lat"] == 52.52
    assert c.position_for_booking(signals(), 1500.0) == {"lat": 52.52, "lon": 13.405}
    assert no_position(c.status_body(signals(), 2800.0))  # the window is over
    assert c.position_for_booking(signals(), 2800.0) == {}
    assert c.open_ids(2800.0) == ["req-1"] and c.open_ids(4600.0) == []


def test_cancel_closes_the_window() -> None:
    c = Consent()
    body, _ = c.help_body(signals(), "", 0.0)
    c.help_sent("r", body, 0.0)
    c.help_closed("r")
    assert no_position(c.status_body(signals(), 10.0)) and c.open_ids(10.0) == []


def test_location_off_sends_help_without_position() -> None:
    c = Consent(location="off")
    body, located = c.help_body(signals(), "", 0.0)
    assert not located and "lat" not in body
    c.help_sent("r", body, 0.0)
    assert no_position(c.status_body(signals(), 1.0))


def test_bad_positions_are_not_sent() -> None:
    c = Consent(location="always", helper=True)
    body = c.status_body(signals(math.nan, 13.4), 0.0)
    assert "lat" not in body and "cell" not in body
    assert "lat" not in c.status_body(signals(91.0, 13.4), 0.0)


def test_state_round_trips() -> None:
    c = Consent(helper=True, share_until=5.0, open_requests={"r": 9.0})
    d = Consent()
    d.restore(json.loads(json.dumps(c.to_json())))
    assert (d.helper, d.share_until, d.open_requests) == (True, 5.0, {"r": 9.0})
    d.restore({"helper": "yes", "open_requests": {"x": "soon"}})  # wrong types: ignored
    assert d.helper is True and d.open_requests == {}


async def test_the_helper_choice_persists_and_carlinkd_status_shows_it(tmp_path: Path) -> None:
    from carlinkd.config import build_config
    from carlinkd.hub import Hub
    from carlinkd.sync.service import SyncService
    from carlinkd.sync.status import status_lines

    cfg = build_config([("test", {"daemon": {"state_dir": str(tmp_path)}})])
    hub = Hub()
    svc = SyncService(cfg, hub, tmp_path)
    await svc.start()
    assert svc.consent.helper is False
    await svc.set_helper("on")
    await svc.stop()
    again = SyncService(cfg, hub, tmp_path)  # the run-time choice outlives a restart
    await again.start()
    assert again.consent.helper is True
    await again.stop()
    hub.close()
    assert "location: help; helper: on" in status_lines(cfg)
