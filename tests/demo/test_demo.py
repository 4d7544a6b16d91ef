"""`carlinkd demo`: simulators, daemons, backend and view together; scripted voice exchanges."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carlinkd", "--log-level", "warning", "demo",
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_plain_view_shows_signals_changing() -> None:
    proc = run_demo("--scenario", "city-drive", "--time-scale", "20", "--duration", "7")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "speed=" in line]
    speeds = [int(m.group(1)) for line in lines if (m := re.search(r"speed=(\d+) km/h", line))]
    assert len(speeds) >= 2 and len(set(speeds)) >= 2, proc.stdout
    assert "CAN bus up" in proc.stdout
    assert "tyres=" in lines[-1] and "ignition=Run" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_tire_leak_alert_appears_over_socketcand_offline() -> None:
    proc = run_demo("--scenario", "tire-leak", "--time-scale", "60", "--duration", "12",
                    "--bus", "socketcand", "--no-cloud")
    assert proc.returncode == 0, proc.stderr
    assert "ALERT warning: Possible slow leak in the rear left tire" in proc.stdout, proc.stdout
    assert "car1 [" in proc.stdout and "cloud offline" in proc.stdout
    assert "backend listening" not in proc.stdout


def test_unknown_scenario_is_a_usage_error() -> None:
    proc = run_demo("--scenario", "moon-landing", "--duration", "1")
    assert proc.returncode == 2
    assert "invalid choice: 'moon-landing'" in proc.stderr and "Traceback" not in proc.stderr


def _lines(out: str, who: str, text: str) -> list[str]:
    """Output lines of one speaker (car1, cloud, demo) containing a text."""
    return [line for line in out.splitlines() if line.startswith(f"{who} [") and text in line]


def _assert_speech_wav(path: Path) -> None:
    from carlinkd.voice.audio import has_speech, read_wav

    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2), path
        seconds = wav.getnframes() / wav.getframerate()
    assert 0.5 < seconds < 15.0, (path, seconds)
    assert has_speech(read_wav(path)), path


def test_three_cars_message_help_request_and_answer(tmp_path: Path) -> None:
    speech = tmp_path / "speech"
    proc = run_demo("--cars", "3", "--time-scale", "20", "--speech-dir", str(speech))
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr + out
    assert "Traceback" not in proc.stderr
    # The backend runs in the demo and every car connects to it.
    assert re.search(r"^cloud \[.*\] backend listening on ws://127\.0\.0\.1:\d+/", out, re.M), out
    for car in ("car1", "car2", "car3"):
        assert _lines(out, car, "cloud online"), out
    # Consent: the demo says what leaves the cars and that car2, car3 opted in as helpers.
    assert _lines(out, "demo", "location = help: no car sends its position"), out
    assert _lines(out, "demo", "car2, car3 opted in as helpers"), out
    # car1's message to the car club is announced in both other cars, near and far, and read
    # out in car2 when its driver asks.
    assert _lines(out, "car1", "command send_message (group=car club, text=Running late)"), out
    for car in ("car2", "car3"):
        assert _lines(out, car, 'says: "New message from car1 in car club.'), out
    assert _lines(out, "car2", 'says: "car1 in car club: Running late"'), out
    # The help request reaches the nearby car2 but not car3, 60 km away.
    request = _lines(out, "car2", "help request from car1")
    assert request, out
    distance = re.search(r"(\d+\.\d) km away", request[0])
    assert distance and float(distance.group(1)) < 25.0, request
    assert _lines(out, "car2", "says:") and _lines(out, "car2", "voice confirming (help_respond)")
    assert not _lines(out, "car3", "help"), out
    # car2 says yes; car1 gets the answer and hears it; car2 alone gets car1's position.
    assert _lines(out, "car2", "command help_respond"), out
    assert _lines(out, "car1", 'help response from car2: "On my way"'), out
    assert [line for line in _lines(out, "car1", "says:") if "On my way" in line], out
    assert _lines(out, "car2", "help detail from the cloud: car1 is at"), out
    assert not _lines(out, "car3", "help detail"), out
    # car1 cancels ("cancel the help request"); car2 hears it is over.
    assert _lines(out, "car2", 'says: "car1 no longer needs help."'), out
    # The built-in script spoke its turns through the recognizer where espeak-ng is installed.
    if shutil.which("espeak-ng"):
        assert "as espeak-ng speech through the recognizer" in out
        assert _lines(out, "car1", 'heard: "send a message to car club running late"'), out
    # Every car's spoken replies were written as WAV files with speech in them.
    for car in ("car1", "car2", "car3"):
        files = sorted((speech / car).glob("*.wav"))
        assert files, f"no speech from {car}"
        for path in files:
            _assert_speech_wav(path)
    assert len(list((speech / "car1").glob("*.wav"))) >= 4  # 2 prompts, 2 answers, the reply
    assert "voice steps done (7/7, all as expected)" in out, out


def test_one_car_books_an_oil_change_by_typed_voice() -> None:
    proc = run_demo("--time-scale", "20", "--say", "book an oil change tomorrow at 9:30",
                    "--say", "yes", "--say", "yes")
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr + out
    heard = _lines(out, "car1", 'heard: "book an oil change tomorrow at 9:30" -> book_service')
    assert heard and "service=oil_change, day=tomorrow, time=09:30" in heard[0], out
    lines = out.splitlines()
    question = [i for i, line in enumerate(lines)
                if line.startswith("car1 [") and "says:" in line and "Book an oil change" in line]
    command = [i for i, line in enumerate(lines) if "command booking_options" in line]
    assert question and command and question[0] < command[0], out  # asked before it went out
    # the backend offers its shops; the one shop is offered by name, and yes books it there
    offered = [i for i, line in enumerate(lines) if "says:" in line and "has a free slot" in line]
    booked_at = [i for i, line in enumerate(lines)
                 if "command book_service" in line and "shop=Demo Garage" in line]
    assert offered and booked_at and command[0] < offered[0] < booked_at[0], out
    # The backend's shop answers: a confirmed slot tomorrow (the backend's UTC date) at 09:30.
    today = dt.datetime.now(dt.UTC).date()
    days = {(today + dt.timedelta(days=n)).isoformat() for n in (0, 1, 2)}
    booked = _lines(out, "car1", "booking confirmed: oil_change at Demo Garage")
    assert booked and booked[0].endswith("09:30"), out
    assert any(day in booked[0] for day in days), booked
    assert "voice steps done (3/3)" in out


def test_steps_for_a_car_that_is_not_there_are_usage_errors(tmp_path: Path) -> None:
    proc = run_demo("--cars", "3", "--say", "car9:hello")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("carlinkd demo: error: --say car9:hello: there is no car9 "
                                   "(--cars 3 runs car1, car2, car3)")
    proc = run_demo("--ptt", f"car1:{tmp_path / 'missing.wav'}")
    assert proc.returncode == 2 and "no such file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
