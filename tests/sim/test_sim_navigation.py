"""The simulated car's position: dead reckoning from its own speed and yaw, on the bus as GNSS
messages, decoded to Vehicle.CurrentLocation.* exactly as cantools decodes them."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import can
import pytest

from carlinkd.can.catalog import Catalog
from carlinkd.can.decode import Decoder, compile_database, frame_key, select_all
from carlink_protocol.geo import great_circle_km
from carlink_sim import Simulator, load_demo_dbc
from carlink_sim.cli import main as sim_main
from carlink_sim.navigation import DEFAULT_START, Navigation, offset_position, parse_position

BERLIN = (52.520008, 13.404954)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (the backend and the voice measure it the same way)."""
    return 1000.0 * great_circle_km(lat1, lon1, lat2, lon2)


def _positions(frames: list[can.Message]) -> list[tuple[float, float, float]]:
    """(timestamp, lat, lon) of every NavPosition frame, decoded with cantools."""
    msg = load_demo_dbc().get_message_by_name("NavPosition")
    out = []
    for frame in frames:
        if frame.arbitration_id == msg.frame_id:
            values = msg.decode(frame.data)
            out.append((frame.timestamp, values["Latitude"], values["Longitude"]))
    return out


def test_the_car_starts_where_it_is_told_and_drives_as_far_as_its_odometer() -> None:
    sim = Simulator("city-drive", seed=4, time_scale=20.0, start=BERLIN)
    assert (sim.model.nav.latitude, sim.model.nav.longitude) == BERLIN
    odometer0 = sim.model.odometer_km
    points = _positions(sim.frames(30.0))  # ten minutes of town driving
    assert len(points) == 30  # once a second
    assert distance_m(*BERLIN, *points[0][1:]) < 300.0  # the first fix: it has barely moved
    path = sum(distance_m(a[1], a[2], b[1], b[2]) for a, b in itertools.pairwise(points))
    driven = (sim.model.odometer_km - odometer0) * 1000.0
    assert driven > 2000.0
    # The path between fixes once a second is the odometer's distance, less what the last
    # second added, give or take the chords cut off at turns.
    assert path == pytest.approx(driven, rel=0.05)
    straight = distance_m(*points[0][1:], *points[-1][1:])
    assert 0.0 < straight <= path + 1.0


def test_the_seed_picks_the_route() -> None:
    def route(seed: int) -> list[tuple[float, float, float]]:
        return _positions(Simulator("highway", seed=seed, time_scale=30.0).frames(10.0))

    assert route(7) == route(7)
    assert route(7)[-1][1:] != route(8)[-1][1:]
    assert distance_m(*DEFAULT_START, *route(7)[0][1:]) < 1000.0  # the first fix, 16 s in


def test_a_parked_car_stays_put_and_a_turn_turns_the_heading() -> None:
    nav = Navigation(*BERLIN, heading=90.0)
    nav.step(10.0, 0.0, 0.0)
    assert (nav.latitude, nav.longitude) == BERLIN
    nav.step(100.0, 10.0, 0.0)  # 1 km due east
    assert distance_m(*BERLIN, nav.latitude, nav.longitude) == pytest.approx(1000.0, rel=1e-3)
    assert nav.latitude == pytest.approx(BERLIN[0], abs=1e-6)
    nav.step(1.0, 10.0, math.radians(90.0))  # yaw to the left (counter-clockwise)
    assert nav.heading == pytest.approx(0.0, abs=1e-9) or nav.heading == pytest.approx(360.0)


def test_offsets_and_distances_agree() -> None:
    there = offset_position(*BERLIN, 60_000.0, 200.0)
    assert distance_m(*BERLIN, *there) == pytest.approx(60_000.0, rel=1e-6)
    assert parse_position(" 52.5, 13.4") == (52.5, 13.4)
    for bad in ("52.5", "x,1", "91,0", "0,181", "1,2,3"):
        with pytest.raises(ValueError):
            parse_position(bad)


def test_position_decodes_to_vss_names_exactly_as_cantools() -> None:
    db = load_demo_dbc()
    sim = Simulator("highway", seed=2, time_scale=10.0, start=(-33.8688, 151.2093))
    frames = sim.frames(5.0)
    decoder = Decoder(db, Catalog())
    values = decoder.ingest(frames)
    lat = values["Vehicle.CurrentLocation.Latitude"]
    lon = values["Vehicle.CurrentLocation.Longitude"]
    last = _positions(frames)[-1]
    assert (lat.value, lon.value) == (last[1], last[2])  # identical floats, not just close
    assert lat.unit == "deg" and -34.0 < lat.value < -33.7 and 151.0 < lon.value < 151.4
    heading = values["Vehicle.CurrentLocation.Heading"]
    assert 0.0 <= heading.value < 360.0 and heading.unit == "deg"
    assert values["Vehicle.CurrentLocation.GNSSReceiver.FixType"].value == "THREE_D"
    assert 0.0 < values["Vehicle.CurrentLocation.HorizontalAccuracy"].value < 5.0


def test_the_navigation_unit_sleeps_with_the_ignition_off() -> None:
    sim = Simulator("low-battery", seed=1, time_scale=10.0)
    assert _positions(sim.frames(3.0)) == []


def test_sim_cli_start_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_main(["--start", "95,10", "--duration", "1", "--output", "x.log"]) == 2
    assert "--start: '95,10' is outside" in capsys.readouterr().err
    log = tmp_path / "nav.log"
    assert sim_main(["--start", "40.4168,-3.7038", "--duration", "2", "--output", str(log)]) == 0
    frames = list(can.LogReader(str(log)))
    assert _positions(frames)[0][1:] == pytest.approx((40.4168, -3.7038), abs=1e-6)


def test_gnss_messages_decode_like_cantools_on_any_payload() -> None:
    db = load_demo_dbc()
    plans = compile_database(db, select_all)
    rng = random.Random(6)
    for name in ("NavPosition", "NavStatus"):
        message = db.get_message_by_name(name)
        plan = plans[frame_key(message.frame_id, message.is_extended_frame)]
        assert plan is not None
        for _ in range(500):
            data = rng.randbytes(8)
            ref = {k: v if isinstance(v, int | float) else str(v)
                   for k, v in message.decode(data, decode_choices=True).items()}
            ours = {f.name: v for f, v in plan.extract(data).values}
            assert ours == ref and {k: type(v) for k, v in ours.items()} == \
                {k: type(v) for k, v in ref.items()}
