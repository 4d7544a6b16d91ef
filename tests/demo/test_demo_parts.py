"""The demo's parts without a whole run: step options, start positions, the event journal, the
view's lines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from carlink_demo.cli import build_parser
from carlink_demo.run import FAR_KM, start_positions
from carlink_demo.args import DemoUsageError, Step, check
from carlink_demo.script import Journal
from carlink_demo.view import DemoView
from carlinkd.events import CloudState, HelpRequest, MessageReceived, SignalsUpdated, SignalValue
from carlink_protocol.geo import great_circle_km


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    return great_circle_km(*a, *b)


def _steps(*argv: str) -> list[Step]:
    return check(build_parser().parse_args(list(argv)))


def test_say_and_ptt_keep_their_order_and_their_car(tmp_path: Path) -> None:
    wav = tmp_path / "yes.wav"
    wav.write_bytes(_wav())
    steps = _steps("--cars", "2", "--say", "send a message to car club: running late",
                   "--ptt", f"car2:{wav}", "--say", "CAR2: yes")
    assert steps == [Step("car1", "say", "send a message to car club: running late"),
                     Step("car2", "ptt", wav=wav), Step("car2", "say", "yes")]


@pytest.mark.parametrize(("argv", "message"), [
    (["--cars", "3", "--say", "car9:hello"],
     "--say car9:hello: there is no car9 (--cars 3 runs car1, car2, car3)"),
    (["--say", "car2: hi"], "--say car2: hi: there is no car2 (--cars 1 runs car1)"),
    (["--cars", "6", "--ptt", "car7:x.wav"],
     "--ptt car7:x.wav: there is no car7 (--cars 6 runs car1..car6)"),
    (["--say", "car1:  "], "--say car1:  : nothing to say"),
    (["--ptt", "/no/such.wav"], "--ptt /no/such.wav: no such file /no/such.wav"),
    (["--duration", "-1"], "--duration -1: must be greater than 0"),
])
def test_steps_that_cannot_run_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(DemoUsageError) as info:
        _steps(*argv)
    assert str(info.value) == message


def test_a_file_that_is_not_wav_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    with pytest.raises(DemoUsageError, match=r"^--ptt .*notes\.wav: not a PCM WAV file"):
        _steps("--ptt", str(bad))


def test_near_cars_within_a_few_km_and_the_last_of_three_far_away() -> None:
    start = (48.0, 11.0)
    three = start_positions(start, 3, seed=5)
    assert three == start_positions(start, 3, seed=5) and three[0] == start
    assert 0.5 < distance_km(start, three[1]) < 3.1
    assert distance_km(start, three[2]) == pytest.approx(FAR_KM, rel=1e-3)
    two = start_positions(start, 2, seed=5)
    assert distance_km(start, two[1]) < 3.1  # with two cars both are near
    five = start_positions(start, 5, seed=9)
    assert all(distance_km(start, p) < 3.1 for p in five[1:4]) and FAR_KM - 1 < \
        distance_km(start, five[4])


async def test_journal_waits_for_an_event_and_for_quiet() -> None:
    loop = asyncio.get_running_loop()
    journal = Journal()
    since = journal.mark()

    def arrived() -> bool:
        return journal.find("car2", lambda e: isinstance(e, MessageReceived), since) is not None
    loop.call_later(0.05, journal.add, "car2", SignalsUpdated({}))
    loop.call_later(0.1, journal.add, "car3", MessageReceived("car club", "car1", "hi", 1))
    loop.call_later(0.15, journal.add, "car2", MessageReceived("car club", "car1", "hi", 1))
    assert await journal.until(arrived, 2.0)
    assert not await journal.until(lambda: journal.find("car3", lambda e: isinstance(
        e, HelpRequest)) is not None, 0.1)
    assert [who for who, _ in journal.entries] == ["car3", "car2"]  # telemetry is not kept
    assert await journal.quiet(0.05)
    loop.call_later(0.01, journal.add, "car1", CloudState("online"))
    assert not await journal.quiet(0.05)


def test_plain_lines_start_with_the_car() -> None:
    import io

    out = io.StringIO()
    view = DemoView(out, False, 100.0, ["car1", "car2"], lambda: 101.5)
    view.feed("car2", HelpRequest("r1", "car1", 48.1, 11.6, 1.25, "flat tyre"))
    view.feed("car1", SignalsUpdated({"Vehicle.CurrentLocation.Latitude": SignalValue(
        "Vehicle.CurrentLocation.Latitude", 48.1, "deg", 0.0)}))
    view.feed("car1", CloudState("online", "car1"))
    view.render()
    lines = out.getvalue().splitlines()
    assert lines[0] == 'car2 [   1.5s] help request from car1, 1.2 km away "flat tyre"'
    assert lines[1] == "car1 [   1.5s] cloud online (car1)"
    assert lines[2].startswith("car1 [   1.5s] speed=-") and "cloud=online" in lines[2]
    assert lines[3].startswith("car2 [   1.5s] speed=-")


def _wav() -> bytes:
    from carlinkd.voice.audio import encode_wav
    from carlinkd.voice.tts import silence

    return encode_wav(silence(0.5))
