"""Frames from the simulator: determinism, bus load, DBC validity, schedule details, time scale."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from pathlib import Path

import can
import cantools
import pytest

from carlink_sim import Simulator, load_demo_dbc
from carlink_sim.traffic import checksum, physical_range

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sim"


def _key(frames: list[can.Message]) -> list[tuple[float, int, bool, bytes]]:
    return [(m.timestamp, m.arbitration_id, m.is_extended_id, bytes(m.data)) for m in frames]


@pytest.fixture(scope="module")
def city_10s() -> list[can.Message]:
    """Ten bus seconds of city-drive at real time scale."""
    return Simulator("city-drive", seed=1).frames(10.0)


@pytest.fixture(scope="module")
def db() -> cantools.database.can.Database:
    """The demo DBC."""
    return load_demo_dbc()


def test_same_seed_same_frames_and_chunking_does_not_matter() -> None:
    whole = Simulator("city-drive", seed=7, time_scale=20).frames(3.0)
    chunked_sim = Simulator("city-drive", seed=7, time_scale=20)
    chunked = chunked_sim.frames(0.7) + chunked_sim.frames(1.3) + chunked_sim.frames(1.0)
    assert len(whole) > 5000
    assert _key(whole) == _key(chunked)


def test_different_seed_different_frames() -> None:
    a = Simulator("city-drive", seed=1, time_scale=20).frames(3.0)
    b = Simulator("city-drive", seed=2, time_scale=20).frames(3.0)
    assert _key(a) != _key(b)


def test_timestamps_start_at_zero_and_increase(city_10s: list[can.Message]) -> None:
    stamps = [m.timestamp for m in city_10s]
    assert 0.0 <= stamps[0] < 0.01 and stamps[-1] < 10.0
    assert all(a <= b for a, b in itertools.pairwise(stamps))


@pytest.mark.parametrize("scenario", ["city-drive", "highway"])
def test_bus_load_while_driving(scenario: str) -> None:
    frames = Simulator(scenario, seed=1).frames(10.0)
    assert 1500 <= len(frames) / 10.0 <= 2500


def test_every_frame_decodes_strictly_within_range(city_10s: list[can.Message],
                                                    db: cantools.database.can.Database) -> None:
    sim = Simulator("highway", seed=3, time_scale=60)
    for frame in city_10s + sim.frames(3.0):
        message = db.get_message_by_frame_id(frame.arbitration_id)
        assert frame.is_extended_id == message.is_extended_frame
        assert frame.dlc == message.length
        decoded = message.decode(frame.data, decode_choices=False, allow_truncated=False)
        for name, value in decoded.items():
            lo, hi = physical_range(message.get_signal_by_name(name))
            assert lo - 1e-6 <= value <= hi + 1e-6, (message.name, name, value)


def test_counters_and_checksums(city_10s: list[can.Message], db: cantools.database.can.Database) -> None:
    engine = [db.decode_message(0x0C9, m.data, decode_choices=False)
              for m in city_10s if m.arbitration_id == 0x0C9]
    counters = [d["EngineData_Counter"] for d in engine]
    assert counters[:18] == [i % 16 for i in range(18)]
    assert all((b - a) % 16 == 1 for a, b in itertools.pairwise(counters))
    for frame in city_10s:
        if frame.arbitration_id == 0x0C9:
            assert frame.data[7] == checksum(frame.data, 7, 0x0C9)


def test_cycle_times_and_tpms_rotation(city_10s: list[can.Message], db: cantools.database.can.Database) -> None:
    counts = Counter(m.arbitration_id for m in city_10s)
    assert 990 <= counts[0x0C9] <= 1000 and 495 <= counts[0x1F5] <= 500
    assert 49 <= counts[0x18FF10A0] <= 50 and 9 <= counts[0x4C1] <= 10
    positions = [str(db.decode_message(0x385, m.data)["TirePosition"]) for m in city_10s
                 if m.arbitration_id == 0x385]
    assert 158 <= len(positions) <= 160  # one tire every 62.5 ms
    assert positions[:8] == ["FL", "FR", "RL", "RR"] * 2
    tpms_times = [m.timestamp for m in city_10s if m.arbitration_id == 0x385]
    gaps = [b - a for a, b in itertools.pairwise(tpms_times)]
    assert all(0.0623 <= g <= 0.0627 for g in gaps)


def test_time_scale_speeds_up_the_model_not_the_bus(db: cantools.database.can.Database) -> None:
    sim = Simulator("city-drive", seed=1, time_scale=60)
    frames = sim.frames(10.0)
    assert 1500 <= len(frames) / 10.0 <= 2500
    assert sim.model_time == pytest.approx(600.0)
    assert sim.scenario_length == pytest.approx(30.0)
    odometer = [db.decode_message(0x4C1, m.data)["TripDistance"] for m in frames if m.arbitration_id == 0x4C1]
    assert odometer[-1] > 2.0  # ten minutes of town driving, in ten bus seconds


def test_ignition_off_leaves_only_body_and_tpms(db: cantools.database.can.Database) -> None:
    frames = Simulator("low-battery", seed=1).frames(5.0)
    senders = {db.get_message_by_frame_id(m.arbitration_id).senders[0] for m in frames}
    assert senders == {"BCM", "TPMS"}
    assert 40 <= len(frames) / 5.0 <= 60


def test_press_button_shows_on_the_bus(db: cantools.database.can.Database) -> None:
    sim = Simulator("city-drive", seed=1, time_scale=10)
    sim.frames(1.0)
    sim.press_button("PushToTalk", hold=0.5)
    assert sim.model.button_pressed("PushToTalk")
    frames = sim.frames(1.0)
    pressed = [m.timestamp for m in frames if m.arbitration_id == 0x2B0
               and str(db.decode_message(0x2B0, m.data)["PushToTalk"]) == "Pressed"]
    assert 9 <= len(pressed) <= 11  # 0.5 s of a 50 ms message
    assert 1.0 <= pressed[0] < 1.06 and pressed[-1] < 1.51
    with pytest.raises(ValueError):
        sim.press_button("Horn")


def test_flood_rate_is_exact_and_frames_are_real(db: cantools.database.can.Database) -> None:
    sim = Simulator("highway", seed=1, flood=4000)
    frames = sim.frames(0.5) + sim.frames(0.5)
    assert len(frames) == 4000
    assert frames[1].timestamp - frames[0].timestamp == pytest.approx(1 / 4000)
    assert len({m.arbitration_id for m in frames}) >= 30
    for frame in frames[:2000]:
        db.decode_message(frame.arbitration_id, frame.data)


def test_custom_dbc_with_unknown_signals_and_mux() -> None:
    path = FIXTURES / "custom_body.dbc"
    custom = cantools.database.load_file(str(path))
    frames = Simulator("highway", seed=1, dbc=path).frames(2.0)
    assert Counter(m.arbitration_id for m in frames) == {0x123: 20, 0x124: 20}  # EventOnly has no cycle
    status = [custom.decode_message(0x123, m.data) for m in frames if m.arbitration_id == 0x123]
    assert status[-1]["MysteryLevel"] == 42.0  # its GenSigStartValue
    assert 40.0 < status[-1]["VehicleSpeed"] < 70.0  # a known name still follows the model
    assert [d["Custom_Counter"] for d in status[:3]] == [0, 1, 2]
    pages = [custom.decode_message(0x124, m.data)["Page"] for m in frames if m.arbitration_id == 0x124]
    assert pages[:4] == [0, 1, 2, 0]


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        Simulator("moon-landing")
    with pytest.raises(ValueError):
        Simulator(time_scale=0)
    with pytest.raises(ValueError):
        Simulator(flood=-5)


async def test_run_paces_in_real_time_with_wall_clock_stamps() -> None:
    sim = Simulator("city-drive", seed=1)
    batches: list[list[can.Message]] = []

    async def sink(frames: list[can.Message]) -> None:
        batches.append(frames)

    started = time.time()
    sent = await sim.run(sink, duration=0.5)
    elapsed = time.time() - started
    frames = [m for batch in batches for m in batch]
    assert sent == len(frames) and 0.45 <= elapsed < 2.0
    assert 0.5 * 1720 * 0.9 <= sent <= 0.5 * 1720 * 1.1
    assert len(batches) >= 10  # about every 10 ms, fewer on a loaded machine
    assert started - 0.05 <= frames[0].timestamp and frames[-1].timestamp <= started + 0.55
    assert sim.time == pytest.approx(0.5)


async def test_run_can_be_cancelled() -> None:
    sim = Simulator("highway", seed=1, time_scale=60)
    received: list[can.Message] = []
    task = asyncio.create_task(sim.run(received.extend))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(received) > 100 and sim.model_time > 5.0
