"""The simulator drives the daemon: in-process over `virtual`, across processes over socketcand,
and the daemon survives the socketcand server going away and coming back."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import can

from carlinkd.can.settings import CanConfig
from carlinkd.config import Config
from carlinkd.settings import DaemonConfig
from carlinkd.daemon import Daemon
from carlinkd.events import BusState, SignalsUpdated
from carlink_sim import Simulator, SocketcandServer
from support.wait import eventually

ROOT = Path(__file__).resolve().parents[2]
SPEED = "Vehicle.Speed"
TIRE_RL = "Vehicle.Chassis.Axle.Row2.Wheel.Left.Tire.Pressure"


def socketcand_config(port: int, state_dir: Path) -> Config:
    return Config(daemon=DaemonConfig(state_dir=state_dir), can=CanConfig(interface="socketcand", channel="vcan0",
                                options={"host": "127.0.0.1", "port": port},
                                reconnect_initial_s=0.1, reconnect_max_s=0.5))


async def test_simulator_drives_daemon_over_virtual_bus(tmp_path: Path) -> None:
    channel = f"e2e-{os.getpid()}-{time.monotonic_ns()}"
    cfg = Config(daemon=DaemonConfig(state_dir=tmp_path),
                 can=CanConfig(interface="virtual", channel=channel))
    speeds: list[float] = []
    async with Daemon(cfg) as daemon:
        sub = daemon.hub.subscribe(SignalsUpdated)
        await eventually(lambda: daemon.source.state.value == "up", "bus up", timeout=5)
        tx = can.Bus(interface="virtual", channel=channel)
        try:
            sim = Simulator(scenario="highway", seed=3, time_scale=20.0)
            task = asyncio.create_task(sim.run(lambda frames: [tx.send(f) for f in frames], 3.0))
            while not task.done():
                try:
                    event = await asyncio.wait_for(sub.get(), 0.5)
                except TimeoutError:
                    continue
                assert isinstance(event, SignalsUpdated)
                if SPEED in event.values:
                    speeds.append(float(event.values[SPEED].value))
            sent = await task
        finally:
            tx.shutdown()
        await eventually(lambda: daemon.decoder.counters["frames"] >= sent, "all frames", timeout=5)
        counters = daemon.counters()
    assert sent > 3000  # ~2,000 frames/s of demo-car traffic
    assert counters["frames"] == sent and counters["unknown_id"] == 0
    assert counters["decode_errors"] == 0 and counters["short"] == 0
    assert counters["unchanged"] > 0 and counters["decoded"] > 0
    assert len(set(speeds)) > 10 and max(speeds) > 50  # the car accelerates onto the highway
    assert daemon.signals[TIRE_RL].unit == "kPa" and 150 < float(daemon.signals[TIRE_RL].value) < 350


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_simulator_in_second_process_over_socketcand(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "--scenario", "highway", "--time-scale", "30",
         "--duration", "900", "--output", "socketcand:127.0.0.1:0"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert "socketcand listening on 127.0.0.1:" in line, line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        async with Daemon(socketcand_config(port, tmp_path)) as daemon:
            await eventually(lambda: float(daemon.signals.get(SPEED, _zero).value) > 60, "highway speed from the other process", timeout=30)
            assert daemon.counters()["unknown_id"] == 0
            assert daemon.counters()["decode_errors"] == 0
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


class _Zero:
    value = 0.0


_zero = _Zero()


async def test_daemon_reconnects_after_socketcand_server_restart(tmp_path: Path) -> None:
    port = free_port()
    sim = Simulator(scenario="city-drive", seed=1)
    states: list[str] = []
    server = SocketcandServer(host="127.0.0.1", port=port, channel="vcan0")
    await server.start()
    async with Daemon(socketcand_config(port, tmp_path)) as daemon:
        sub = daemon.hub.subscribe(BusState)
        # The car keeps talking to whichever server is current.
        feeder = asyncio.create_task(sim.run(lambda frames: server.broadcast(frames), None))
        try:
            await eventually(lambda: daemon.counters()["bus_frames"] > 200, "frames before restart", timeout=20)
            await server.stop()
            await eventually(lambda: daemon.source.state.value == "down", "bus down", timeout=10)
            before = daemon.counters()["bus_frames"]
            server = SocketcandServer(host="127.0.0.1", port=port, channel="vcan0")
            await server.start()
            await eventually(lambda: daemon.counters()["bus_frames"] > before + 200, "frames after restart", timeout=20)
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            await server.stop()
        while (event := sub.get_nowait()) is not None:
            assert isinstance(event, BusState)
            states.append(event.state)
    # connecting, up, then down when the server went away, then up again after its restart
    assert states[:4] == ["connecting", "up", "down", "up"], states
    assert daemon.counters()["bus_reconnects"] >= 1


async def test_failed_start_closes_what_it_opened(tmp_path: Path) -> None:
    """A start that fails half-way (here: vosk asked for, no model) leaves no store thread
    behind, so `carlinkd run` exits with its one-line error instead of hanging."""
    import threading

    import pytest

    from carlinkd.hmi.settings import HmiConfig
    from carlinkd.voice.settings import VoiceConfig
    from carlinkd.errors import CarlinkError

    cfg = Config(daemon=DaemonConfig(state_dir=tmp_path), hmi=HmiConfig(enabled=False),
                 voice=VoiceConfig(backend="vosk", vosk_models={"en": tmp_path / "no-model"}),
                 can=CanConfig(interface="virtual", channel=f"fail-{time.monotonic_ns()}"))
    before = set(threading.enumerate())
    with pytest.raises(CarlinkError):
        async with Daemon(cfg):
            pass
    await asyncio.sleep(0.1)
    left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()
            and not t.name.startswith(("asyncio_", "ThreadPoolExecutor"))]
    assert left == []
    assert (tmp_path / "carlinkd.db").exists()  # the store had been opened, then closed
