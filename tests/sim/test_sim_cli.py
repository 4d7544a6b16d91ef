"""carlinkd-sim's command line and its outputs: log files, a virtual bus, socketcand in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import can
import pytest

from carlink_sim import SCENARIOS, Simulator, load_demo_dbc
from carlink_sim.cli import main
from carlink_sim.outputs import parse_output, write_log

REPO = Path(__file__).resolve().parents[2]
DB = load_demo_dbc()


@pytest.mark.parametrize("suffix", [".log", ".asc"])
def test_write_log_reads_back(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"drive{suffix}"
    expected = Simulator("highway", seed=4).frames(1.0)
    count = write_log(Simulator("highway", seed=4), path, 1.0)
    frames = list(can.LogReader(str(path)))
    assert count == len(expected) == len(frames) > 1500
    for wrote, read in zip(expected, frames):
        assert (read.arbitration_id, read.is_extended_id, bytes(read.data)) == (
            wrote.arbitration_id, wrote.is_extended_id, bytes(wrote.data))
    if suffix == ".log":  # candump keeps absolute simulated times
        assert [round(f.timestamp, 6) for f in frames[:50]] == [round(f.timestamp, 6) for f in expected[:50]]


def test_main_writes_a_log_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "service.log"
    code = main(["--scenario", "service-due", "--time-scale", "120", "--duration", "5",
                 "--seed", "3", "--output", str(path)])
    assert code == 0
    assert str(path) in capsys.readouterr().out
    distances = [DB.decode_message(m.arbitration_id, m.data)["ServiceDistance"]
                 for m in can.LogReader(str(path)) if m.arbitration_id == 0x5A0]
    assert distances[0] > 0 > distances[-1]  # ten model minutes at motorway speed


def test_main_flood_to_blf(tmp_path: Path) -> None:
    path = tmp_path / "flood.blf"
    assert main(["--flood", "4000", "--duration", "0.5", "--output", str(path)]) == 0
    assert len(list(can.LogReader(str(path)))) == 2000


def test_list_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-scenarios"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(SCENARIOS)


@pytest.mark.parametrize("argv", [
    ["--scenario", "moon-landing"],
    ["--duration", "-3"],
    ["--time-scale", "zero"],
    ["--output", "drive.xyz"],
    ["--output", "socketcand:localhost:99999"],
    ["--output", "virtual:"],
    ["--no-such-option"],
])
def test_bad_arguments_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("carlinkd-sim: error:")


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert all(name in help_text.replace("-\n", "-").replace("\n", " ") for name in ("city-drive", "socketcand"))


def test_parse_output() -> None:
    assert parse_output("socketcand").port == 29536
    spec = parse_output("socketcand:0.0.0.0:4000")
    assert (spec.kind, spec.host, spec.port, spec.channel) == ("socketcand", "0.0.0.0", 4000, "vcan0")
    assert parse_output("socketcand:4001").port == 4001
    assert (parse_output("virtual:sim0").interface, parse_output("virtual:sim0").channel) == ("virtual", "sim0")
    assert parse_output("logs/run.trc").kind == "file"
    assert parse_output("logs/run.log.gz").kind == "file"


def test_main_sends_on_a_virtual_bus() -> None:
    listener = can.Bus(interface="virtual", channel="carlinkd-sim-test")
    try:
        assert main(["--output", "virtual:carlinkd-sim-test", "--duration", "0.3"]) == 0
        received = 0
        while listener.recv(0.0) is not None:
            received += 1
    finally:
        listener.shutdown()
    assert 0.3 * 1720 * 0.8 <= received <= 0.3 * 1720 * 1.2


@pytest.mark.slow
def test_socketcand_subprocess_serves_until_sigint() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "--output", "socketcand:127.0.0.1:0", "--time-scale", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("socketcand listening on 127.0.0.1:") and line.endswith(" channel vcan0")
        port = int(line.split()[3].rsplit(":", 1)[1])
        bus = can.Bus(interface="socketcand", host="127.0.0.1", port=port, channel="vcan0")
        try:
            frames: list[can.Message] = []
            deadline = time.monotonic() + 5.0
            while len(frames) < 200 and time.monotonic() < deadline:
                if (message := bus.recv(0.5)) is not None:
                    frames.append(message)
        finally:
            bus.shutdown()
        assert len(frames) == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
