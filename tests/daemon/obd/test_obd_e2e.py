"""Simulator (vehicle + OBD-II ECUs) + Daemon + ObdService, demo-like: events end to end, and the
safety rule from issue 3: everything the daemon transmits is an OBD-II request (modes 01/03/07/09/0A)
or ISO-TP flow control on the OBD-II request ids; never mode 04, never anything else."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import can
from can.interfaces.virtual import VirtualBus
import pytest

from carlinkd.can.obd.poller import PollerState
from carlinkd.can.obd.service import ObdService
from carlinkd.can.settings import CanConfig
from carlinkd.config import Config
from carlinkd.settings import DaemonConfig
from carlinkd.can.obd.settings import ObdConfig
from carlinkd.daemon import Daemon
from carlinkd.events import (
    AlertRaised, DtcSet, Event, MilState, SignalsUpdated, VehicleIdentified,
)
from carlink_sim import Simulator, SocketcandServer
from carlink_sim.obd_bus import DEMO_VIN, attach_bus, attach_socketcand
from support.wait import eventually

ALLOWED_SERVICES = {0x01, 0x03, 0x07, 0x09, 0x0A}
FAST = replace(ObdConfig(), normal_period_s=1.0, dtc_period_s=2.0, slow_period_s=3.0,
               response_timeout_s=0.3)


def attached(daemon: Daemon, cfg: Config) -> ObdService:
    """The test's own poller on the daemon's source and hub (the daemon's own one stays off:
    its config says ``[obd] enabled = false``), so the test can watch what it sends."""
    return ObdService(replace(cfg, obd=replace(cfg.obd, enabled=True)), daemon.hub, daemon.source)


def daemon_config(cfg: Config) -> Config:
    return replace(cfg, obd=replace(cfg.obd, enabled=False))


def is_obd_request_id(msg: can.Message) -> bool:
    """0x7DF, 0x7E0-0x7E7 (11-bit); 0x18DB33F1, 0x18DAxxF1 (29-bit)."""
    can_id = msg.arbitration_id
    if msg.is_extended_id:
        return can_id == 0x18DB33F1 or can_id & 0xFFFF00FF == 0x18DA00F1
    return can_id == 0x7DF or 0x7E0 <= can_id <= 0x7E7


def violation(msg: can.Message) -> str | None:
    """Why ``msg`` is not an OBD-II request or ISO-TP flow control, or None when it is."""
    data = bytes(msg.data)
    if msg.is_remote_frame or msg.is_error_frame or msg.is_fd or not data:
        return "not a classic data frame"
    if not is_obd_request_id(msg):
        return f"id 0x{msg.arbitration_id:X} is not an OBD-II request id"
    kind = data[0] >> 4
    if kind == 3:
        return None if data[0] in (0x30, 0x31, 0x32) and len(data) >= 3 else "bad flow control"
    if kind != 0 or not 1 <= data[0] <= 7 or len(data) < 1 + data[0]:
        return "not an ISO-TP single frame (the tester never sends multi-frame requests)"
    if data[1] == 0x04:
        return "MODE 04 (clear DTCs)"
    return None if data[1] in ALLOWED_SERVICES else f"service 0x{data[1]:02X}"


def test_the_safety_check_itself() -> None:
    ok = [("7DF", "0201000000000000"), ("7E0", "3000000000000000"), ("7E1", "0109"),
          ("18DB33F1", "0103000000000000"), ("18DA10F1", "3000000000000000")]
    bad = [("7DF", "0104000000000000"), ("7E8", "0201000000000000"), ("123", "00"),
           ("7E0", "1014490201574341"), ("18DAF110", "0201000000000000"), ("7DF", "0102")]
    def frame(i: str, d: str) -> can.Message:
        return can.Message(arbitration_id=int(i, 16), data=bytes.fromhex(d), is_extended_id=len(i) > 3)

    assert all(violation(frame(i, d)) is None for i, d in ok)
    assert all(violation(frame(i, d)) is not None for i, d in bad)


async def collect(sub: object, until: Callable[[list[Event]], bool], timeout: float) -> list[Event]:
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while not until(events) and time.monotonic() < deadline:
        try:
            events.append(await asyncio.wait_for(sub.get(), 0.2))  # type: ignore[attr-defined]
        except TimeoutError:
            pass
    return events


def done(events: list[Event]) -> bool:
    codes = {e.code for e in events if isinstance(e, DtcSet)}
    return codes >= {"P0301", "P0420"} and any(isinstance(e, VehicleIdentified) for e in events)


async def test_dtc_scenario_end_to_end_and_only_obd_requests_transmitted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    channel = f"obd-e2e-{os.getpid()}-{time.monotonic_ns()}"
    sent_by: list[tuple[int, can.Message]] = []
    original = VirtualBus.send

    def recording_send(self: can.BusABC, msg: can.Message, timeout: float | None = None) -> None:
        sent_by.append((id(self), msg))
        original(self, msg, timeout)

    monkeypatch.setattr(VirtualBus, "send", recording_send)
    cfg = Config(daemon=DaemonConfig(state_dir=tmp_path), obd=FAST,
                 can=CanConfig(interface="virtual", channel=channel))
    sim = Simulator("dtc", seed=1, time_scale=60.0, obd=True)
    tx = can.Bus(interface="virtual", channel=channel)
    ecu_bus = can.Bus(interface="virtual", channel=channel)
    sim_buses = {id(tx), id(ecu_bus)}
    ecus = attach_bus(sim, ecu_bus)
    daemon = Daemon(daemon_config(cfg))
    sub = daemon.hub.subscribe(SignalsUpdated, DtcSet, MilState, VehicleIdentified, AlertRaised)
    obd = attached(daemon, cfg)
    try:
        async with daemon:
            await obd.start()
            await eventually(lambda: daemon.source.state.value == "up", "bus up", timeout=5)
            runner = asyncio.create_task(sim.run(lambda frames: [tx.send(f) for f in frames], 12.0))
            events = await collect(sub, done, 14.0)
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await obd.stop()
    finally:
        ecus.stop()
        tx.shutdown()
        ecu_bus.shutdown()

    transmitted = [msg for bus_id, msg in sent_by if bus_id not in sim_buses]
    assert transmitted, "the poller sent nothing"
    problems = [(hex(m.arbitration_id), bytes(m.data).hex(), why) for m in transmitted
                if (why := violation(m)) is not None]
    assert problems == []
    assert any(m.data[0] >> 4 == 3 for m in transmitted)  # flow control for the VIN

    dtcs = [e for e in events if isinstance(e, DtcSet)]
    assert [(e.ecu, e.code) for e in dtcs] == [(0x7E8, "P0301"), (0x7E8, "P0420")]
    assert "misfire" in dtcs[0].description and "catalyst" in dtcs[1].description
    assert any(isinstance(e, MilState) and e.on and e.ecu == 0x7E8 for e in events)
    assert [e.vin for e in events if isinstance(e, VehicleIdentified)] == [DEMO_VIN]
    obd_values = {name: sv for e in events if isinstance(e, SignalsUpdated)
                  for name, sv in e.values.items() if sv.source == "obd"}
    assert {"Vehicle.Speed", "Vehicle.Powertrain.CombustionEngine.Speed",
            "Vehicle.TraveledDistance", "Vehicle.OBD.EngineLoad"} <= set(obd_values)
    assert any(isinstance(e, AlertRaised) and "P0301" in e.key for e in events)
    # One latest-values table: OBD-only values are in it too (D-Bus GetSignals answers from it).
    assert daemon.signals["Vehicle.OBD.EngineLoad"].source == "obd"


async def test_socketcand_link_records_every_client_frame(tmp_path: Path) -> None:
    """Across a socketcand server, ``on_frame`` sees every frame a client sends: the daemon's."""
    from carlinkd.events import BusState

    sim = Simulator("highway", seed=2, time_scale=20.0, obd="29bit")
    received: list[can.Message] = []
    async with SocketcandServer(port=0) as server:
        ecus = attach_socketcand(sim, server)
        answer = server.on_frame
        assert answer is not None

        def on_frame(msg: can.Message) -> None:
            received.append(msg)
            answer(msg)

        server.on_frame = on_frame
        cfg = Config(daemon=DaemonConfig(state_dir=tmp_path),
                     obd=replace(FAST, addressing="29bit"),
                     can=CanConfig(interface="socketcand", channel="vcan0",
                                   options={"host": "127.0.0.1", "port": server.port}))
        daemon = Daemon(daemon_config(cfg))
        sub = daemon.hub.subscribe(VehicleIdentified, SignalsUpdated, BusState)
        obd = attached(daemon, cfg)
        async with daemon:
            await obd.start()
            await server.wait_for_clients(1)
            runner = asyncio.create_task(sim.run(server.broadcast, 8.0))
            events = await collect(sub, lambda ev: any(
                isinstance(e, VehicleIdentified) for e in ev) and any(
                isinstance(e, SignalsUpdated) and "Vehicle.OBD.EngineLoad" in e.values for e in ev),
                10.0)
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await obd.stop()
        ecus.close()
    assert [e.ecu for e in events if isinstance(e, VehicleIdentified)] == [0x18DAF110]
    assert received and all(violation(m) is None for m in received)
    assert {m.arbitration_id for m in received} >= {0x18DB33F1, 0x18DA10F1}
    assert obd.state is PollerState.POLLING


async def test_parked_car_is_never_woken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ignition off on the DBC: the poller sends nothing at all, not even discovery."""
    channel = f"obd-parked-{os.getpid()}-{time.monotonic_ns()}"
    sent: list[can.Message] = []
    cfg = Config(daemon=DaemonConfig(state_dir=tmp_path), obd=FAST,
                 can=CanConfig(interface="virtual", channel=channel))
    sim = Simulator("low-battery", seed=1, time_scale=10.0, obd=True)
    tx = can.Bus(interface="virtual", channel=channel)
    ecu_bus = can.Bus(interface="virtual", channel=channel)
    ecus = attach_bus(sim, ecu_bus)
    daemon = Daemon(daemon_config(cfg))
    monkeypatch.setattr(daemon.source, "send", sent.append)
    obd = attached(daemon, cfg)
    try:
        async with daemon:
            await obd.start()
            await eventually(lambda: daemon.source.state.value == "up", "bus up", timeout=5)
            try:
                await sim.run(lambda frames: [tx.send(f) for f in frames], 3.0)
                assert obd.state is PollerState.ASLEEP
            finally:
                await obd.stop()
    finally:
        ecus.stop()
        tx.shutdown()
        ecu_bus.shutdown()
    assert sent == []
