"""OBD-II polling figures: per-PID latency (median, p95) and the poller's bus load.

    python benchmarks/bench_obd.py [--seconds 20] [--requests 300]

Everything runs in one process on a python-can `virtual` bus against the simulated ECUs
(sim/obd_bus.py: can-isotp's state machine in one thread). Three measurements:

1. baseline: a bare can-isotp request/response loop (``isotp.CanStack``, its stock threaded stack)
   asking 01 0C and 09 02 back to back: what the ISO-TP library costs here;
2. carlinkd's transport (``ObdTransport`` on the loop) asking the same, fed frame by frame by a
   reader thread, then fed the daemon's way, in ``CanSource`` batches (on a bus without a file
   descriptor, such as ``virtual``, a batch waits up to 10 ms for more frames: BATCH_MAX_AGE_S);
3. the poller (``ObdService``, default [obd] settings) for ``--seconds``: latency per PID from
   request to complete answer, and every OBD-II frame on the bus (requests, flow control,
   answers) as frames/s and as a share of a 500 kbit/s bus.

Bus load counts bits per classic CAN frame without stuffing (11-bit id: 47 + 8*DLC) and the
worst-case stuffed length (Davis et al. 2007: g + 8n + 13 + floor((g + 8n - 1) / 4), g = 34).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Self

import can
import isotp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carlinkd.can.obd.poller import PlannedRequest, RequestKind
from carlinkd.can.obd.service import ObdService
from carlinkd.can.obd.transport import Exchange, ObdTransport
from carlinkd.can.source import CanSource
from carlinkd.can.settings import CanConfig
from carlinkd.config import Config
from carlinkd.can.obd.settings import ObdConfig
from carlinkd.events import BusState
from carlinkd.hub import Hub
from carlink_sim.obd_bus import BusEcus, demo_ecus, model_options
from carlink_sim.vehicle import VehicleModel

BITRATE = 500_000
REQUESTS = {"01 0C (single frame)": bytes.fromhex("010C"), "09 02 (VIN, 3 frames)": bytes.fromhex("0902")}


def frame_bits(dlc: int, stuffed: bool) -> int:
    """Bits on the wire for one classic 11-bit frame, with inter-frame space."""
    g = 34
    return g + 8 * dlc + 13 + ((g + 8 * dlc - 1) // 4 if stuffed else 0)


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    return f"median {statistics.median(ms):6.2f} ms  p95 {p95:6.2f} ms  (n={len(ms)})"


class Rig:
    """Simulated ECUs on a fresh virtual channel; a tap that counts every frame on it."""

    def __init__(self) -> None:
        self.channel = f"bench-obd-{os.getpid()}-{time.monotonic_ns()}"
        self.model = VehicleModel(seed=3)
        self.model.warm_start(80.0)
        self.ecu_bus = can.Bus(interface="virtual", channel=self.channel)
        self.ecus = BusEcus(self.ecu_bus, demo_ecus(self.model), **model_options(self.model))
        self.tap = can.Bus(interface="virtual", channel=self.channel)
        self.tapped: list[can.Message] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_tap, daemon=True)

    def _read_tap(self) -> None:
        while not self._stop.is_set():
            msg = self.tap.recv(0.1)
            if msg is not None:
                self.tapped.append(msg)

    def __enter__(self) -> Self:
        self.ecus.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.ecus.stop()
        self.ecu_bus.shutdown()
        self.tap.shutdown()


def baseline(requests: int) -> dict[str, list[float]]:
    """A bare can-isotp request/response loop with its threaded CanStack."""
    out: dict[str, list[float]] = {}
    with Rig() as rig:
        bus = can.Bus(interface="virtual", channel=rig.channel)
        stack = isotp.CanStack(bus, address=isotp.Address(isotp.AddressingMode.Normal_11bits,
                                                          txid=0x7E0, rxid=0x7E8),
                               params={"tx_padding": 0, "blocksize": 0, "stmin": 0})
        stack.start()
        try:
            for label, payload in REQUESTS.items():
                samples = []
                for _ in range(requests):
                    started = time.perf_counter()
                    stack.send(payload)
                    answer = stack.recv(block=True, timeout=1.0)
                    if answer is not None:
                        samples.append(time.perf_counter() - started)
                out[label] = samples
        finally:
            stack.stop()
            bus.shutdown()
    return out


async def transport(requests: int) -> dict[str, list[float]]:
    """carlinkd's ObdTransport on the loop, through CanSource."""
    out: dict[str, list[float]] = {}
    with Rig() as rig:
        source = CanSource(CanConfig(interface="virtual", channel=rig.channel), lambda _b: None)
        link = ObdTransport(source.send, response_timeout=1.0)
        source.add_consumer(link.feed)
        source.start()
        while source.state.value != "up":
            await asyncio.sleep(0.01)
        try:
            out.update(await sample_requests(link, requests))
        finally:
            await source.stop()
    return out


async def sample_requests(link: ObdTransport, requests: int) -> dict[str, list[float]]:
    """Seconds per answered request to the engine ECU, for each request in REQUESTS."""
    out: dict[str, list[float]] = {}
    for label, payload in REQUESTS.items():
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            exchange = await link.request(payload, target=0x7E8)
            if exchange.answers:
                samples.append(time.perf_counter() - started)
        out[label] = samples
    return out


async def transport_unbatched(requests: int) -> dict[str, list[float]]:
    """ObdTransport fed each frame as it arrives (no CanSource batching): its own cost."""
    out: dict[str, list[float]] = {}
    loop = asyncio.get_running_loop()
    with Rig() as rig:
        bus = can.Bus(interface="virtual", channel=rig.channel)
        link = ObdTransport(bus.send, response_timeout=1.0)
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                msg = bus.recv(0.1)
                if msg is not None:
                    loop.call_soon_threadsafe(link.feed, [msg])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            out.update(await sample_requests(link, requests))
        finally:
            stop.set()
            reader.join()
            bus.shutdown()
    return out


async def poller(seconds: float) -> tuple[dict[int, list[float]], list[can.Message], float, int]:
    """The ObdService with default settings; per-PID latency and every OBD-II frame on the bus."""
    latency: dict[int, list[float]] = defaultdict(list)
    with Rig() as rig:
        cfg = Config(can=CanConfig(interface="virtual", channel=rig.channel), obd=ObdConfig())
        hub = Hub()
        source = CanSource(cfg.can, lambda _b: None, lambda s, d: hub.publish(BusState(s.value, d)))
        service = ObdService(cfg, hub, source)

        def on_exchange(request: PlannedRequest, exchange: Exchange) -> None:
            if request.kind is RequestKind.PIDS and exchange.answers:
                for pid in request.payload[1:]:
                    latency[pid].append(exchange.elapsed)

        service.on_exchange = on_exchange
        source.start()
        await service.start()
        await asyncio.sleep(seconds)
        await service.stop()
        await source.stop()
        hub.close()
        sent = service.transport.counters["frames_sent"]
        frames = [m for m in rig.tapped if 0x7DF <= m.arbitration_id <= 0x7EF]
    return latency, frames, seconds, sent


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="poller run time")
    parser.add_argument("--requests", type=int, default=300, help="requests per baseline series")
    args = parser.parse_args(argv)

    print(f"OBD-II latency, python-can virtual bus, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    for label, samples in baseline(args.requests).items():
        print(f"  baseline can-isotp CanStack   {label:24} {summary(samples)}")
    for label, samples in asyncio.run(transport_unbatched(args.requests)).items():
        print(f"  ObdTransport, frame by frame  {label:24} {summary(samples)}")
    for label, samples in asyncio.run(transport(args.requests)).items():
        print(f"  ObdTransport via CanSource    {label:24} {summary(samples)}")

    latency, frames, seconds, sent = asyncio.run(poller(args.seconds))
    print(f"\nPoller, default [obd] settings, {seconds:g} s against the simulated engine + gearbox:")
    for pid in sorted(latency):
        print(f"  PID 0x{pid:02X}  {summary(latency[pid])}")
    nominal = sum(frame_bits(len(m.data), False) for m in frames) / seconds
    stuffed = sum(frame_bits(len(m.data), True) for m in frames) / seconds
    print(f"  OBD-II frames on the bus: {len(frames) / seconds:.1f}/s "
          f"(daemon sent {sent / seconds:.1f}/s: requests + flow control)")
    print(f"  bus load at 500 kbit/s: {100 * nominal / BITRATE:.3f} % "
          f"(worst-case bit stuffing {100 * stuffed / BITRATE:.3f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
