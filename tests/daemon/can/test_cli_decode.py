"""`carlinkd decode` on logs the simulator produced, on odd input, and on real third-party logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import can
import cantools
import pytest

from carlinkd.can.database import demo_dbc_path
from carlinkd.cli import main
from carlink_sim.cli import main as sim_main

ROOT = Path(__file__).resolve().parents[3]


def decode(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[list[dict], str]:
    assert main(["decode", *args]) == 0
    out, err = capsys.readouterr()
    return [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("name", ["city-drive.log", "highway.asc"])
def test_decodes_committed_simulator_logs_like_cantools(fixtures: Path, name: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = fixtures / "logs" / name
    records, err = decode([str(path)], capsys)
    db = cantools.database.load_file(str(demo_dbc_path()))
    frames = list(can.LogReader(str(path)))
    assert len(records) == len(frames) == 860
    for record, frame in zip(records, frames, strict=True):
        expected = db.decode_message(frame.arbitration_id, frame.data, decode_choices=True)
        assert record["arbitration_id"] == frame.arbitration_id
        assert record["timestamp"] == pytest.approx(frame.timestamp)
        assert record["signals"] == {k: v if isinstance(v, int | float) else str(v)
                                     for k, v in expected.items()}
    assert err.strip() == f"{path}: 860 frames read, 860 decoded, 0 unknown-ID, 0 malformed"


def test_fresh_simulator_logs_in_every_writable_format(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    for suffix in (".log", ".asc", ".blf", ".trc", ".csv"):
        path = tmp_path / f"drive{suffix}"
        assert sim_main(["--scenario", "highway", "--seed", "2", "--duration", "0.3",
                         "--output", str(path)]) == 0
        capsys.readouterr()
        records, err = decode([str(path)], capsys)
        assert len(records) > 400, suffix
        assert {"VehicleSpeed", "EngineData", "TPMS"} <= {r["message"] for r in records}
        assert " 0 unknown-ID, 0 malformed" in err, (suffix, err)


def test_odd_frames_are_counted_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "odd.log"
    path.write_text(
        "(1.0) vcan0 1F5#1027030000000000\n"        # VehicleSpeed: 100.00 km/h, gear D
        "(1.1) vcan0 1F5#1027\n"                    # short: 2 bytes where the DBC says 8
        "(1.2) vcan0 7FF#0011223344556677\n"        # an id the DBC does not know
        "garbage line\n"
        "(1.3) vcan0 1F5#10270300000000000000\n"    # long: 10 bytes
        "(1.4) vcan0 20000080#0000000000000000\n"   # error frame
        "(1.5) vcan0 385#09000000000000\n"          # TPMS with an unknown multiplexer value
    )
    records, err = decode([str(path)], capsys)
    assert [r["timestamp"] for r in records] == [1.0, 1.3]
    assert records[0]["signals"]["VehicleSpeed"] == 100.0 and records[0]["signals"]["Gear"] == "D"
    warning, summary = err.strip().splitlines()
    assert f"{path}:4: skipped unparsable line" in warning
    assert summary == (f"{path}: 6 frames read, 2 decoded, 1 unknown-ID, 2 malformed, "
                       "1 error frames, 1 unparsable lines")


def test_reads_candump_from_stdin() -> None:
    proc = subprocess.run([sys.executable, "-m", "carlinkd", "decode", "-"],
                          input="(2.5) can0 1F5#E803000000000000\n", capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=True)
    record = json.loads(proc.stdout)
    assert record["message"] == "VehicleSpeed" and record["signals"]["VehicleSpeed"] == 10.0
    assert "<stdin>" not in proc.stderr and "1 decoded" in proc.stderr


def test_missing_file_and_bad_dbc_are_one_line_errors(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(tmp_path / "nope.log")]) == 1
    assert capsys.readouterr().err == f"carlinkd: {tmp_path / 'nope.log'}: no such log file\n"
    bad = tmp_path / "bad.dbc"
    bad.write_text("BO_ 1 2x: 8 X\n")
    assert main(["decode", "--dbc", str(bad), str(tmp_path / "x.log")]) == 1
    assert "cannot load" in capsys.readouterr().err


def test_real_toyota_log_with_real_dbc(realworld: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real car's bus: about half the ids are unknown to the DBC; nothing crashes."""
    records, err = decode(["--dbc", str(realworld / "dbc" / "toyota_prius_2010_pt.dbc"),
                           str(realworld / "logs" / "accellog.log")], capsys)
    assert len(records) > 100
    read = int(err.split(" frames read")[0].rsplit(" ", 1)[1])
    assert read == 1268 and "unknown-ID" in err
    assert err.count("\n") == 1  # the summary is one line


@pytest.mark.parametrize("stamp", ["nan", "inf", "-inf"])
def test_non_finite_timestamps_are_counted_as_malformed(tmp_path: Path, stamp: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "odd.log"
    log.write_text(f"(1.0) vcan0 1F5#1027030000000000\n({stamp}) vcan0 1F5#2027030000000000\n"
                   "(1.2) vcan0 1F5#3027030000000000\n")
    records, err = decode([str(log)], capsys)
    assert [r["timestamp"] for r in records] == [1.0, 1.2]
    assert "3 frames read, 2 decoded, 0 unknown-ID, 1 malformed" in err
    assert err.count("\n") == 1
