"""D-Bus API figures: method-call round trips against a running daemon, each beside a baseline.

A private ``dbus-daemon --session`` and a real Daemon (virtual CAN bus, fed by the simulator for
a moment so signals have values) serving ``org.carlinkd.Daemon1`` run in this process. Clients
run in other processes, as a head unit's would:

- busctl, one process per call (what a shell script pays); baseline: ``Peer.Ping`` to the same
  name, which dbus-fast answers without reaching carlinkd's code.
- a dbus-fast client process making sequential calls on one connection; baselines: ``Peer.Ping``
  to the daemon (bus + dbus-fast dispatch) and ``org.freedesktop.DBus.GetId`` (the bus alone).

Also printed: HmiService.start() time (connect, export, own the name). Figures are medians and
95th percentiles in microseconds; this machine is shared, so compare rows of one run.

Run: ``python benchmarks/bench_hmi.py [--calls N] [--busctl-calls M]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import can  # noqa: E402
from dbus_fast import Message, MessageType  # noqa: E402
from dbus_fast.aio import MessageBus  # noqa: E402

from carlinkd.can.settings import CanConfig
from carlinkd.config import Config
from carlinkd.settings import DaemonConfig
from carlinkd.hmi.settings import HmiConfig
from carlinkd.voice.settings import VoiceConfig  # noqa: E402
from carlinkd.daemon import Daemon  # noqa: E402
from carlinkd.hmi import BUS_NAME, INTERFACE, OBJECT_PATH, HmiService  # noqa: E402
from carlink_sim import Simulator  # noqa: E402

# (label, interface, member, signature, body)
CALLS: list[tuple[str, str, str, str, list[object]]] = [
    ("baseline: bus GetId (no service)", "org.freedesktop.DBus", "GetId", "", []),
    ("baseline: Peer.Ping (dbus-fast only)", "org.freedesktop.DBus.Peer", "Ping", "", []),
    ("Properties.Get Version", "org.freedesktop.DBus.Properties", "Get", "ss",
     [INTERFACE, "Version"]),
    ("GetSignals([Vehicle.Speed])", INTERFACE, "GetSignals", "as", [["Vehicle.Speed"]]),
    ("GetSignals([]) (all)", INTERFACE, "GetSignals", "as", [[]]),
    ("Say('hi') (publishes a Command)", INTERFACE, "Say", "s", ["hi"]),
]


def stats_us(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return statistics.median(ordered) * 1e6, p95 * 1e6


async def client_main(address: str, n: int) -> None:
    """Child process: sequential calls on one connection; prints JSON {label: [median, p95]}."""
    bus = await MessageBus(bus_address=address).connect()
    out = {}
    for label, iface, member, sig, body in CALLS:
        dest = "org.freedesktop.DBus" if member == "GetId" else BUS_NAME
        path = "/org/freedesktop/DBus" if member == "GetId" else OBJECT_PATH
        samples = []
        for i in range(n + n // 10):
            msg = Message(destination=dest, path=path, interface=iface, member=member,
                          signature=sig, body=body)
            t0 = time.perf_counter()
            reply = await bus.call(msg)
            dt = time.perf_counter() - t0
            assert reply is not None and reply.message_type is MessageType.METHOD_RETURN, reply
            if i >= n // 10:  # the first tenth warms up
                samples.append(dt)
        out[label] = stats_us(samples)
    bus.disconnect()
    print(json.dumps(out))


async def busctl_round_trips(address: str, m: int) -> dict[str, tuple[float, float]]:
    runs = {
        "baseline: busctl Peer.Ping": ["org.freedesktop.DBus.Peer", "Ping"],
        "busctl GetSignals([Vehicle.Speed])": [INTERFACE, "GetSignals", "as", "1",
                                               "Vehicle.Speed"],
        "busctl Say('hi')": [INTERFACE, "Say", "s", "hi"],
    }
    out = {}
    for label, args in runs.items():
        samples = []
        for _ in range(m):
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                "busctl", f"--address={address}", "call", BUS_NAME, OBJECT_PATH, *args,
                stdout=subprocess.DEVNULL)
            assert await proc.wait() == 0
            samples.append(time.perf_counter() - t0)
        out[label] = stats_us(samples)
    return out


async def main(calls: int, busctl_calls: int) -> None:
    bus_proc = subprocess.Popen(["dbus-daemon", "--session", "--print-address", "--nofork"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert bus_proc.stdout is not None
    address = bus_proc.stdout.readline().strip()
    channel = f"bench-hmi-{os.getpid()}"
    try:
        with tempfile.TemporaryDirectory() as state:
            cfg = Config(daemon=DaemonConfig(state_dir=Path(state)),
                         can=CanConfig(interface="virtual", channel=channel),
                         hmi=HmiConfig(bus=address),
                         # Say() is measured to the hub; thousands of TTS runs are not the point
                         voice=VoiceConfig(enabled=False))
            async with Daemon(cfg) as daemon:
                hmi = HmiService(cfg.hmi, daemon)
                t0 = time.perf_counter()
                await hmi.start()
                start_ms = (time.perf_counter() - t0) * 1e3
                assert hmi.ready
                tx = can.Bus(interface="virtual", channel=channel)
                try:
                    sim = Simulator(scenario="highway", seed=1, time_scale=10.0)
                    await sim.run(lambda frames: [tx.send(f) for f in frames], 0.5)
                finally:
                    tx.shutdown()
                child = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--client", address, "--calls", str(calls),
                    stdout=subprocess.PIPE)
                raw, _ = await child.communicate()
                client = json.loads(raw)
                shell = await busctl_round_trips(address, busctl_calls)
                signals = len(daemon.signals)
                await hmi.stop()
    finally:
        bus_proc.terminate()
        bus_proc.wait()
        bus_proc.stdout.close()
    print(f"HmiService.start() (connect, export, own the name): {start_ms:.1f} ms")
    print(f"dbus-fast client, one connection, {calls} sequential calls each "
          f"({signals} signals known):")
    for label, (med, p95) in client.items():
        print(f"  {label:42s} median {med:8.0f} us   p95 {p95:8.0f} us")
    print(f"busctl, one process per call, {busctl_calls} calls each:")
    for label, (med, p95) in shell.items():
        print(f"  {label:42s} median {med:8.0f} us   p95 {p95:8.0f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--busctl-calls", type=int, default=50)
    parser.add_argument("--client", metavar="ADDRESS", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.client:
        asyncio.run(client_main(ns.client, ns.calls))
    else:
        asyncio.run(main(ns.calls, ns.busctl_calls))
