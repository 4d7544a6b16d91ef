"""``carlinkd run``: the daemon as a system service, with readiness, status and watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from . import __version__
from .config import Config
from .daemon import Daemon
from .events import BusState
from .sdnotify import Notifier

log = logging.getLogger(__name__)


async def serve(cfg: Config, stop: asyncio.Event, notifier: Notifier | None = None) -> None:
    """Run until ``stop`` is set: READY=1 once the CAN bus is up, STATUS= on every bus state
    change, WATCHDOG=1 from the loop, STOPPING=1 before a graceful shutdown."""
    notifier = notifier or Notifier()
    daemon = Daemon(cfg)
    states = daemon.hub.subscribe(BusState, name="service-status")
    watchdog = asyncio.create_task(notifier.feed_watchdog(), name="watchdog")
    ready = False
    try:
        async with daemon:
            log.info("carlinkd %s running", __version__)
            stopping = asyncio.create_task(stop.wait())
            while not stop.is_set():
                getter = asyncio.create_task(states.get())
                await asyncio.wait({getter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                    break
                event = getter.result()
                assert isinstance(event, BusState)
                text = f"CAN bus {event.state}" + (f": {event.detail}" if event.detail else "")
                if event.state == "up" and not ready:
                    ready = True
                    notifier.ready(f"running; {text}")
                else:
                    notifier.status(text)
            log.info("stopping")
            notifier.stopping()
            await stopping
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        notifier.close()
