"""The OBD-II poller's asyncio adapter: the pure core's plans become ISO-TP requests on the bus.

Wiring (``carlinkd.daemon``)::

    obd = ObdService(cfg, hub, daemon.source)   # after the CanSource exists
    await obd.start()                            # registers the frame consumer, starts the task
    ...
    await obd.stop()                             # before the hub is closed

It listens on the hub for the ignition (``Vehicle.LowVoltageSystemState``, when the DBC has it)
and for bus state changes, asks :class:`PollerCore` what to send, sends it with
:class:`ObdTransport` through ``CanSource.send``, and publishes the core's events. It only ever
sends what the core plans (modes 01, 03, 09); nothing else reaches this path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

from ...aio import cancel_all
from ...events import BusState, SignalsUpdated
from ...logutil import RateLimitedLogger
from .errors import ObdTransportError
from .poller import PlannedRequest, PollerCore, PollerState, ignition_on
from .transport import Exchange, ObdTransport

if TYPE_CHECKING:
    from ...config import Config
    from ...hub import Hub, Subscription
    from ..source import CanSource, Frames

log = logging.getLogger(__name__)
_warn = RateLimitedLogger(log, interval=60.0)

IGNITION = "Vehicle.LowVoltageSystemState"
RETRY_AFTER_BUG_S = 5.0


class ObdService:
    """Runs the OBD-II poller on the daemon's CAN source and hub."""

    def __init__(self, cfg: Config, hub: Hub, source: CanSource, *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """``clock`` stamps events; ``monotonic`` paces requests."""
        self.cfg = cfg.obd
        self.hub = hub
        self.source = source
        self.clock = clock
        self.monotonic = monotonic
        self.transport = ObdTransport(
            source.send, extended=self.cfg.addressing == "29bit",
            response_timeout=self.cfg.response_timeout_s,
            pending_timeout=self.cfg.pending_timeout_s, frame_timeout=self.cfg.frame_timeout_s)
        self.core = PollerCore(self.cfg, monotonic())
        self.exchanges = 0
        self.on_exchange: Callable[[PlannedRequest, Exchange], None] | None = None
        self._wake = asyncio.Event()
        self._bus_up = False
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def state(self) -> PollerState:
        """The poller's life-cycle state."""
        return self.core.state

    def _feed(self, batch: Frames) -> None:
        self.transport.feed(batch)

    async def start(self) -> None:
        """Start polling (a no-op when ``[obd] enabled = false``)."""
        if not self.cfg.enabled:
            log.info("OBD-II poller disabled by configuration")
            return
        self.source.add_consumer(self._feed)
        self._sub = self.hub.subscribe(SignalsUpdated, BusState, name="obd-poller")
        self._tasks = [asyncio.create_task(self._watch(self._sub), name="obd-watch"),
                       asyncio.create_task(self._poll(), name="obd-poll")]

    async def stop(self) -> None:
        """Stop polling and detach from the source and the hub."""
        await cancel_all(self._tasks)
        self._tasks.clear()
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        if self._feed in self.source.consumers:
            self.source.consumers.remove(self._feed)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _watch(self, sub: Subscription) -> None:
        """Ignition and bus state from the hub, handed to the core."""
        async for event in sub:
            if isinstance(event, SignalsUpdated):
                value = event.values.get(IGNITION)
                if value is not None and value.source != "obd":
                    self.core.set_ignition(ignition_on(value.value), self.monotonic())
                    self._wake.set()
            elif isinstance(event, BusState):
                self._wake.set()  # _poll_once sees the state itself

    async def _poll(self) -> None:
        """Run :meth:`_poll_once` until cancelled; a bug in one round must not end polling."""
        while not self.hub.closed:
            try:
                await self._poll_once()
            except Exception:
                log.exception("OBD-II poller round failed; retrying in %g s", RETRY_AFTER_BUG_S)
                await asyncio.sleep(RETRY_AFTER_BUG_S)

    async def _poll_once(self) -> None:
        """Send what the core plans, when it plans it; publish what the answers mean."""
        while True:
            now = self.monotonic()
            up = self.source.state.value == "up"
            if up != self._bus_up:
                self._bus_up = up
                if up:
                    self.core.bus_up(now)
                else:
                    self.core.connection_lost(now)
            request = self.core.next_request(now) if up else None
            if request is None:
                await self._sleep_until(self.core.wakeup_at(now) if up else None)
                continue
            answers: dict[int, bytes] = {}
            try:
                exchange = await self.transport.request(request.payload, target=request.target,
                                                        expect=request.expect)
            except ObdTransportError as err:
                _warn.warning("send", "OBD-II request not sent: %s", err)
            else:
                answers = dict(exchange.answers)
                self.exchanges += 1
                if self.on_exchange is not None:
                    self.on_exchange(request, exchange)
            for event in self.core.handle(request, answers, self.monotonic(), self.clock()):
                if self.hub.closed:
                    return
                self.hub.publish(event)

    async def _sleep_until(self, when: float | None) -> None:
        """Wait for ``when`` (monotonic) or for an input that may change the plan."""
        self._wake.clear()
        timeout = None if when is None else max(0.0, when - self.monotonic())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # not wait_for: it can lose a cancellation (3.11)
                await self._wake.wait()
