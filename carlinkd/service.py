"""``carlinkd run``: the daemon as a system service, with readiness, status and watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .aio import cancel_all
from . import __version__
from .config import Config
from .daemon import Daemon
from .events import BusState
from .hub import Subscription
from .sdnotify import Notifier

log = logging.getLogger(__name__)

# While waiting for the D-Bus name, STATUS= says so this often.
READY_STATUS_INTERVAL_S = 5.0
HMI_NAME = "org.carlinkd.Daemon1"


async def serve(cfg: Config, stop: asyncio.Event, notifier: Notifier | None = None) -> None:
    """Run until ``stop`` is set: READY=1 once the store is open, the CAN bus is up and the
    D-Bus name is owned (when the D-Bus API is enabled); STATUS= on every bus state change;
    WATCHDOG=1 from the loop; STOPPING=1 before a graceful shutdown."""
    notifier = notifier or Notifier()
    daemon = Daemon(cfg)
    states = daemon.hub.subscribe(BusState, name="service-status")
    watchdog = asyncio.create_task(notifier.feed_watchdog(), name="watchdog")
    bus_up = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        async with daemon:  # the store is open once this has entered
            log.info("carlinkd %s running", __version__)
            tasks = [asyncio.create_task(_follow_bus(states, bus_up, notifier), name="bus-status"),
                     asyncio.create_task(_announce_ready(daemon, bus_up, notifier), name="ready")]
            await stop.wait()
            log.info("stopping")
            notifier.stopping()
            await cancel_all(tasks)
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        notifier.close()


async def _follow_bus(states: Subscription[BusState], bus_up: asyncio.Event,
                      notifier: Notifier) -> None:
    """STATUS= for every CAN bus state change (after READY; before it, _announce_ready speaks)."""
    async for event in states:
        text = f"CAN bus {event.state}" + (f": {event.detail}" if event.detail else "")
        if event.state == "up" and not bus_up.is_set():
            bus_up.set()
            continue
        notifier.status(text)


async def _announce_ready(daemon: Daemon, bus_up: asyncio.Event, notifier: Notifier) -> None:
    """READY=1 once the bus is up and, with the D-Bus API enabled, its name is owned."""
    await bus_up.wait()
    parts = ["running; CAN bus up"]
    if daemon.hmi is not None:
        while not await daemon.hmi.wait_ready(READY_STATUS_INTERVAL_S):
            notifier.status(f"CAN bus up; waiting for the D-Bus name {HMI_NAME}")
        parts.append(f"D-Bus name {HMI_NAME} owned")
    notifier.ready("; ".join(parts))
