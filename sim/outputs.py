"""Where simulated frames go: a socketcand server, a python-can bus, or a log file.

Output specs (the CLI's ``--output``):

* ``socketcand`` or ``socketcand:HOST:PORT`` (or ``socketcand:PORT``): a socketcand server,
  default 127.0.0.1:29536, channel vcan0;
* ``virtual:CHANNEL`` or ``socketcan:CHANNEL``: any python-can bus of that interface;
* anything else is a log file whose suffix picks the python-can writer (.log candump, .asc,
  .blf, .trc, .csv, .txt, .db, .mf4; optionally followed by .gz where python-can supports it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import can

from carlink_sim.simulator import Simulator, Sink
from carlink_sim.socketcand import DEFAULT_CHANNEL, DEFAULT_PORT, SocketcandServer

logger = logging.getLogger(__name__)

LOG_SUFFIXES = (".asc", ".blf", ".csv", ".db", ".log", ".mf4", ".trc", ".txt")
BUS_INTERFACES = ("virtual", "socketcan")
LOG_CHUNK_S = 1.0  # bus seconds generated per batch when writing a log file


@dataclass(frozen=True)
class OutputSpec:
    """A parsed ``--output`` value."""

    kind: str  # "socketcand", "bus" or "file"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    interface: str = ""
    channel: str = DEFAULT_CHANNEL
    path: Path | None = None


def _parse_socketcand(rest: str) -> OutputSpec:
    host, port_text = "127.0.0.1", ""
    if rest:
        host, _, port_text = rest.rpartition(":")
        host = host or "127.0.0.1"
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad socketcand port {port_text!r}: expected socketcand[:HOST:PORT]") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"socketcand port {port} is out of range 0-65535")
    return OutputSpec("socketcand", host=host, port=port)


def parse_output(spec: str) -> OutputSpec:
    """Parse an output spec; ``ValueError`` with a one-line explanation when it is not valid."""
    head, _, rest = spec.partition(":")
    if head == "socketcand":
        return _parse_socketcand(rest)
    if head in BUS_INTERFACES:
        if not rest:
            raise ValueError(f"{head} output needs a channel, e.g. {head}:vcan0")
        return OutputSpec("bus", interface=head, channel=rest)
    path = Path(spec)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if not suffixes or suffixes[-1] not in LOG_SUFFIXES:
        raise ValueError(f"unknown output {spec!r}: use socketcand[:HOST:PORT], virtual:CHANNEL, "
                         f"socketcan:CHANNEL or a log file ending in {', '.join(LOG_SUFFIXES)}")
    return OutputSpec("file", path=path)


def write_log(sim: Simulator, path: Path, duration: float) -> int:
    """Write ``duration`` bus seconds of frames to a python-can log file, as fast as possible."""
    written = 0
    with can.Logger(str(path)) as writer:
        remaining = duration
        while remaining > 1e-9:
            chunk = min(LOG_CHUNK_S, remaining)
            for message in sim.frames(chunk):
                writer.on_message_received(message)
                written += 1
            remaining -= chunk
    logger.info("wrote %d frames to %s", written, path)
    return written


class BusSink:
    """A :meth:`Simulator.run` sink that sends every frame on a python-can bus."""

    def __init__(self, bus: can.BusABC) -> None:
        self.bus = bus
        self.sent = 0
        self.failed = 0

    def __call__(self, messages: list[can.Message]) -> None:
        """Send a batch; a full transmit queue costs frames, not the run."""
        for message in messages:
            try:
                self.bus.send(message)
                self.sent += 1
            except can.CanError as err:
                self.failed += 1
                if self.failed in (1, 10, 100) or self.failed % 1000 == 0:
                    logger.warning("sending on %s failed (%d so far): %s", self.bus.channel_info,
                                   self.failed, err)


async def run_until(sim: Simulator, sink: Sink, duration: float | None, stop: asyncio.Event) -> None:
    """Run the simulator into ``sink`` until ``duration`` has passed or ``stop`` is set."""
    runner = asyncio.create_task(sim.run(sink, duration), name="sim-run")
    stopper = asyncio.create_task(stop.wait(), name="sim-stop")
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (runner, stopper):
            task.cancel()
        results = await asyncio.gather(runner, stopper, return_exceptions=True)
    error = results[0]
    if isinstance(error, Exception):
        raise error


async def serve_socketcand(sim: Simulator, spec: OutputSpec, duration: float | None, stop: asyncio.Event,
                           announce: Callable[[str], None]) -> None:
    """Serve the simulation over socketcand; ``announce`` gets the 'listening' line once bound."""
    async with SocketcandServer(spec.host, spec.port, spec.channel) as server:
        announce(f"socketcand listening on {server.host}:{server.port} channel {server.channel}")
        ecus = None
        if sim.obd is not None:
            from carlink_sim.obd_bus import attach_socketcand

            ecus = attach_socketcand(sim, server)
        try:
            await run_until(sim, server.broadcast, duration, stop)
        finally:
            if ecus is not None:
                ecus.close()


async def serve_bus(sim: Simulator, spec: OutputSpec, duration: float | None, stop: asyncio.Event,
                    announce: Callable[[str], None]) -> None:
    """Send the simulation on a python-can bus (``virtual`` or ``socketcan``)."""
    try:
        bus = can.Bus(interface=spec.interface, channel=spec.channel)
    except (OSError, can.CanError) as err:
        raise OSError(f"cannot open {spec.interface} channel {spec.channel}: {err}") from err
    ecus = None
    try:
        sink = BusSink(bus)
        announce(f"sending on {spec.interface} channel {spec.channel}")
        if sim.obd is not None:
            from carlink_sim.obd_bus import attach_bus

            ecus = attach_bus(sim, bus)
        await run_until(sim, sink, duration, stop)
    finally:
        if ecus is not None:
            ecus.stop()
        bus.shutdown()


Server = Callable[[Simulator, OutputSpec, "float | None", asyncio.Event, Callable[[str], None]], Awaitable[None]]
SERVERS: dict[str, Server] = {"socketcand": serve_socketcand, "bus": serve_bus}
