"""``carlinkd obd ...``: decode on recorded logs, and the live commands against simulated ECUs
(in-process over `virtual`, and a simulator in a second process over socketcand)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import can
import pytest

from carlinkd.can.obd import cli as obd_cli
from carlinkd.can.obd.errors import ObdTimeout
from carlinkd.can.settings import CanConfig
from carlinkd.config import Config
from carlinkd.can.obd.settings import ObdConfig
from carlinkd.errors import BusUnavailable
from carlink_sim.obd_bus import DEMO_VIN, BusEcus, demo_ecus, model_options
from carlink_sim.vehicle import VehicleModel

ROOT = Path(__file__).resolve().parents[3]
OBD = ROOT / "tests" / "fixtures" / "obd"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="carlinkd")
    obd_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["obd", *argv])


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("name", ["sim_session.log", "sim_session.asc"])
async def test_decode_recorded_simulator_session(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await obd_cli.run(parse("decode", str(OBD / name)), Config()) == 0
    out, err = capsys.readouterr()
    rows = records(out)
    assert err.count("\n") == 1 and "2 could not be decoded (1 cut short, 1 malformed)" in err
    vin = [r for r in rows if r["kind"] == "vin"]
    assert vin == [{"kind": "vin", "timestamp": vin[0]["timestamp"], "ecu": 0x7E8, "vin": DEMO_VIN,
                    "check_digit_valid": True}]
    dtcs = [r for r in rows if r["kind"] == "dtc"]
    assert {(r["ecu"], tuple(r["codes"])) for r in dtcs} == {(0x7E8, ("P0301", "P0420")), (0x7E9, ())}
    assert "misfire" in dtcs[0]["descriptions"][0].lower() if dtcs[0]["codes"] else True
    rpm = [r for r in rows if r["kind"] == "pid" and r["pid"] == 0x0C]
    assert rpm and rpm[0]["name"] == "engine_speed" and rpm[0]["unit"] == "rpm"
    assert all(set(r) >= {"kind", "timestamp", "ecu"} for r in rows)


async def test_decode_29_bit_session(capsys: pytest.CaptureFixture[str]) -> None:
    assert await obd_cli.run(parse("decode", str(OBD / "sim_session_29bit.log")), Config()) == 0
    rows = records(capsys.readouterr().out)
    assert {r["ecu"] for r in rows} == {0x18DAF110, 0x18DAF118}
    assert any(r["kind"] == "vin" and r["vin"] == DEMO_VIN for r in rows)


async def test_decode_hand_written_session_counts_the_cut_answer(capsys: pytest.CaptureFixture[str]) -> None:
    assert await obd_cli.run(parse("decode", str(OBD / "session_11bit.log")), Config()) == 0
    out, err = capsys.readouterr()
    assert [r["kind"] for r in records(out)] == ["vin", "vin", "pid", "dtc", "pid"]
    assert "1 could not be decoded (1 cut short)" in err


async def test_decode_missing_file_is_one_line_error() -> None:
    from carlinkd.errors import LogFileError

    with pytest.raises(LogFileError, match="no such log file"):
        await obd_cli.run(parse("decode", "/nonexistent.log"), Config())


def test_clear_requires_confirm(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("clear")
    assert exit_info.value.code == 2 and "--confirm" in capsys.readouterr().err


def virtual_config(channel: str) -> Config:
    return Config(can=CanConfig(interface="virtual", channel=channel),
                  obd=replace(ObdConfig(), response_timeout_s=0.3))


async def with_ecus(body: Any, *, dtcs: tuple[str, ...] = (), model_dtcs: bool = True) -> Any:
    channel = f"obd-cli-{os.getpid()}-{time.monotonic_ns()}"
    model = VehicleModel(seed=5)
    model.warm_start(88.0)
    bus = can.Bus(interface="virtual", channel=channel)
    units = demo_ecus(model)
    units[0].set_dtcs(stored=dtcs)
    options = model_options(model) if model_dtcs else {}
    ecus = BusEcus(bus, units, **options)
    ecus.start()
    try:
        return await body(virtual_config(channel), units)
    finally:
        ecus.stop()
        bus.shutdown()


async def test_live_query_vin_and_dtcs(capsys: pytest.CaptureFixture[str]) -> None:
    async def body(cfg: Config, _units: Any) -> None:
        assert await obd_cli.run(parse("query", "0C", "vehicle_speed", "0x05"), cfg) == 0
        assert await obd_cli.run(parse("vin"), cfg) == 0
        assert await obd_cli.run(parse("dtc", "--ecu", "7E8"), cfg) == 0

    await with_ecus(body, dtcs=("P0420",), model_dtcs=False)
    rows = records(capsys.readouterr().out)
    pids = {(r["ecu"], r["name"]): r["value"] for r in rows if r["kind"] == "pid"}
    assert abs(pids[(0x7E8, "vehicle_speed")] - 88.0) <= 1 and (0x7E9, "vehicle_speed") in pids
    assert (0x7E8, "engine_speed") in pids and (0x7E8, "coolant_temperature") in pids
    assert [r["vin"] for r in rows if r["kind"] == "vin"] == [DEMO_VIN]
    dtcs = {r["mode"]: r["codes"] for r in rows if r["kind"] == "dtc"}
    assert dtcs == {3: ["P0420"], 7: [], 10: []}


async def test_live_clear_with_confirm(capsys: pytest.CaptureFixture[str]) -> None:
    async def body(cfg: Config, units: Any) -> None:
        assert await obd_cli.run(parse("clear", "--confirm", "--ecu", "0x7E8"), cfg) == 0
        assert units[0].stored_dtcs == []

    await with_ecus(body, dtcs=("P0301",), model_dtcs=False)
    assert records(capsys.readouterr().out)[0]["kind"] == "cleared"


async def test_live_no_answer_is_a_timeout() -> None:
    async def body(cfg: Config, _units: Any) -> None:
        with pytest.raises(ObdTimeout, match="no ECU 0x7EF answered request 09 02"):
            await obd_cli.run(parse("vin", "--ecu", "7EF", "--timeout", "0.1"), cfg)

    await with_ecus(body)


async def test_live_without_a_bus_is_bus_unavailable() -> None:
    cfg = Config(can=CanConfig(interface="socketcand", channel="vcan0",
                               options={"host": "127.0.0.1", "port": free_port()}))
    with pytest.raises(BusUnavailable, match="unreachable"):
        await obd_cli.run(parse("vin"), cfg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_vin_from_simulator_in_second_process_over_socketcand(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "carlink_sim", "--scenario", "highway", "--obd", "29bit",
         "--output", f"socketcand:127.0.0.1:{port}", "--duration", "20"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        cfg = Config(can=CanConfig(interface="socketcand", channel="vcan0",
                                   options={"host": "127.0.0.1", "port": port}),
                     obd=replace(ObdConfig(), addressing="29bit", response_timeout_s=0.5))
        assert await obd_cli.run(parse("vin"), cfg) == 0
        assert await obd_cli.run(parse("query", "0D", "--ecu", "18DAF110"), cfg) == 0
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    rows = records(capsys.readouterr().out)
    assert rows[0] == {"kind": "vin", "timestamp": rows[0]["timestamp"], "ecu": 0x18DAF110,
                       "vin": DEMO_VIN, "check_digit_valid": True}
    assert rows[1]["name"] == "vehicle_speed" and rows[1]["value"] > 30
