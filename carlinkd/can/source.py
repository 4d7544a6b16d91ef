"""The CAN source: opens a python-can bus from config, reads it in batches, reconnects with backoff.

Reading follows python-can's notifier: ``loop.add_reader(bus.fileno())`` when the bus has a file
descriptor (socketcan), otherwise one reader thread that hands batches to the loop with
``call_soon_threadsafe`` (virtual, socketcand, most USB adapters). Never a thread per frame,
never sleep-polling.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import can

from .settings import CanConfig
from ..errors import BusUnavailable

log = logging.getLogger(__name__)

Frames = list[can.Message]

# A batch is handed to the loop when it holds this many frames or is this old: at 4,000
# frames/s that is at most ~100 loop wake-ups per second, and at most 10 ms of added latency.
BATCH_MAX_FRAMES = 256
BATCH_MAX_AGE_S = 0.010
# How long one blocking recv() waits, bounding how fast the reader thread notices stop().
RECV_TIMEOUT_S = 0.1
# A recv() returning nothing while using more than this share of its wall time as CPU is spinning.
BUSY_CPU_FRACTION = 0.5
# Backoff jitter (fraction of the delay) so several daemons do not retry in lockstep.
BACKOFF_JITTER = 0.1


class SourceState(enum.Enum):
    """Lifecycle of the CAN source."""

    STOPPED = "stopped"
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


def bus_kwargs(cfg: CanConfig) -> dict[str, Any]:
    """The keyword arguments for ``can.Bus``: only what the config sets, so python-can's own
    configuration (CAN_INTERFACE, CAN_CHANNEL, can.conf) fills in the rest."""
    kwargs: dict[str, Any] = {}
    if cfg.interface is not None:
        kwargs["interface"] = cfg.interface
    if cfg.channel is not None:
        kwargs["channel"] = cfg.channel
    if cfg.bitrate is not None:
        kwargs["bitrate"] = cfg.bitrate
    if cfg.fd:
        kwargs["fd"] = True
    if cfg.data_bitrate is not None:
        kwargs["data_bitrate"] = cfg.data_bitrate
    if cfg.filters:
        kwargs["can_filters"] = [{"can_id": f.can_id, "can_mask": f.can_mask,
                                  "extended": f.extended} for f in cfg.filters]
    kwargs.update(cfg.options)
    return kwargs


def check_interface(kwargs: dict[str, Any]) -> None:
    """Raise BusUnavailable at once when neither carlinkd's nor python-can's config names an
    interface (retrying could never help)."""
    try:
        can.util.load_config(config=dict(kwargs))
    except can.CanInterfaceNotImplementedError as err:
        raise BusUnavailable(
            "no usable CAN interface configured: set [can] interface (and channel) in the "
            f"configuration file, or python-can's CAN_INTERFACE/can.conf ({err})") from err


def describe_bus(kwargs: dict[str, Any]) -> str:
    """A short human description of a bus configuration, for logs."""
    where = kwargs.get("interface", "python-can default")
    channel = kwargs.get("channel")
    host = kwargs.get("host")
    text = f"{where}" + (f" {channel}" if channel else "")
    return text + (f"@{host}:{kwargs.get('port')}" if host else "")


def open_bus(kwargs: dict[str, Any]) -> can.BusABC:
    """Open a python-can bus, translating every failure to BusUnavailable (blocking call)."""
    if kwargs.get("interface") == "socketcand":
        _probe_tcp(kwargs.get("host", "127.0.0.1"), int(kwargs.get("port", 29536)))
    try:
        return can.Bus(**kwargs)
    except (can.CanError, OSError, ValueError, TypeError, ImportError) as err:
        raise BusUnavailable(f"cannot open CAN bus {describe_bus(kwargs)}: {err}") from err


def _probe_tcp(host: str, port: int) -> None:
    """Fail fast when no socketcand server listens: python-can's client would spin for 10 s."""
    try:
        socket.create_connection((host, port), timeout=2.0).close()
    except OSError as err:
        raise BusUnavailable(f"socketcand server {host}:{port} unreachable: {err}") from err


class _ReaderThread(threading.Thread):
    """Blocking reads from a bus without a file descriptor, batched to the loop."""

    def __init__(self, bus: can.BusABC, deliver: Callable[[Frames], None],
                 fail: Callable[[BaseException], None], loop: asyncio.AbstractEventLoop,
                 dead_after_s: float) -> None:
        super().__init__(name="carlinkd-can-reader", daemon=True)
        self.bus = bus
        self.deliver = deliver
        self.fail = fail
        self.loop = loop
        self.dead_after_s = dead_after_s
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            self._read_loop()
        except BaseException as err:  # handed to the loop, which decides to reconnect
            if not self.stopping.is_set():
                self.loop.call_soon_threadsafe(self.fail, err)

    def _peer_closed(self) -> bool:
        """For python-can's socketcand client, which has no public way to report end-of-stream:
        peek at its TCP socket; an empty read without blocking means the server hung up."""
        sock = getattr(self.bus, "_SocketCanDaemonBus__socket", None)
        if not isinstance(sock, socket.socket):
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _read_loop(self) -> None:
        recv = self.bus.recv
        busy_for = 0.0
        while not self.stopping.is_set():
            started, cpu_started = time.monotonic(), time.thread_time()
            msg = recv(RECV_TIMEOUT_S)
            if msg is None:
                if self._peer_closed():
                    raise BusUnavailable("the socketcand server closed the connection")
                # Generic fallback: a recv that burns CPU (or returns at once) while yielding
                # nothing, again and again, is a connection the other side has closed.
                wall = time.monotonic() - started
                cpu = time.thread_time() - cpu_started
                busy = wall < RECV_TIMEOUT_S / 10 or cpu > BUSY_CPU_FRACTION * wall
                busy_for = busy_for + wall if busy else 0.0
                if busy_for >= self.dead_after_s:
                    raise BusUnavailable("bus connection closed by the other side")
                continue
            busy_for = 0.0
            batch = [msg]
            deadline = time.monotonic() + BATCH_MAX_AGE_S
            urgent = _is_diagnostic_response(msg)
            while len(batch) < BATCH_MAX_FRAMES and not urgent:
                left = deadline - time.monotonic()
                msg = recv(left if left > 0 else 0.0)
                if msg is None:
                    if left <= 0:
                        break
                    continue
                batch.append(msg)
                urgent = _is_diagnostic_response(msg)
            self.loop.call_soon_threadsafe(self.deliver, batch)


class CanSource:
    """Keeps one CAN bus open and feeds its frames, in batches, to a callback on the loop."""

    def __init__(self, cfg: CanConfig, on_frames: Callable[[Frames], None],
                 on_state: Callable[[SourceState, str], None] | None = None,
                 rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.kwargs = bus_kwargs(cfg)
        self.consumers: list[Callable[[Frames], None]] = [on_frames]
        self.on_state = on_state
        self.state = SourceState.STOPPED
        self.counters = {"frames": 0, "batches": 0, "bus_errors": 0, "reconnects": 0}
        self.bus: can.BusABC | None = None
        self._rng = rng or random.Random()
        self._failed: asyncio.Future[BaseException] | None = None
        self._thread: _ReaderThread | None = None
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None

    def _set_state(self, state: SourceState, detail: str = "") -> None:
        if state is self.state:
            return
        self.state = state
        level = logging.WARNING if state is SourceState.DOWN else logging.INFO
        log.log(level, "CAN bus %s: %s%s", describe_bus(self.kwargs), state.value,
                f" ({detail})" if detail else "")
        if self.on_state is not None:
            self.on_state(state, detail)

    def start(self) -> asyncio.Task[None]:
        """Start reading in a background task (reconnecting until stop())."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="can-source")
        return self._task

    async def run(self) -> None:
        """Open, read, and on failure reopen with capped exponential backoff, until cancelled."""
        delay = self.cfg.reconnect_initial_s
        try:
            while True:
                if self.state is not SourceState.DOWN:  # retries stay "down": one log line
                    self._set_state(SourceState.CONNECTING)
                try:
                    self.bus = await self._open()
                except BusUnavailable as err:
                    if self.state is SourceState.DOWN:
                        log.debug("CAN bus still down: %s", err)
                    self._set_state(SourceState.DOWN, str(err))
                else:
                    delay = self.cfg.reconnect_initial_s
                    err2 = await self._read_until_failure()
                    self.counters["bus_errors"] += 1
                    self._set_state(SourceState.DOWN, _one_line(err2))
                self.counters["reconnects"] += 1
                await asyncio.sleep(delay * (1 + BACKOFF_JITTER * (2 * self._rng.random() - 1)))
                delay = min(delay * 2, self.cfg.reconnect_max_s)
        finally:
            self._close_bus()
            self._set_state(SourceState.STOPPED)

    async def _open(self) -> can.BusABC:
        """Open the bus in a worker thread; a bus opened after cancellation is shut down."""
        future = asyncio.get_running_loop().run_in_executor(None, open_bus, self.kwargs)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_shutdown_late_bus)
            raise

    async def _read_until_failure(self) -> BaseException:
        loop = asyncio.get_running_loop()
        self._failed = loop.create_future()
        assert self.bus is not None
        self._set_state(SourceState.UP, self.bus.channel_info)
        fd = _fileno(self.bus)
        if fd is not None:
            self._fd = fd
            loop.add_reader(fd, self._drain_fd)
        else:
            self._thread = _ReaderThread(self.bus, self._deliver, self._fail, loop,
                                         self.cfg.dead_after_s)
            self._thread.start()
        try:
            return await self._failed
        finally:
            self._close_bus()

    def _drain_fd(self) -> None:
        """Readable callback for file-descriptor buses: take what is queued, without waiting."""
        assert self.bus is not None
        batch: Frames = []
        try:
            while len(batch) < BATCH_MAX_FRAMES:
                msg = self.bus.recv(0.0)
                if msg is None:
                    break
                batch.append(msg)
        except Exception as err:  # python-can raises CanOperationError/OSError on interface loss
            self._fail(err)
        if batch:
            self._deliver(batch)

    def _deliver(self, batch: Frames) -> None:
        self.counters["frames"] += len(batch)
        self.counters["batches"] += 1
        for consumer in self.consumers:
            try:
                consumer(batch)
            except Exception:
                log.exception("frame consumer %r failed on a batch of %d frames", consumer,
                              len(batch))

    def add_consumer(self, consumer: Callable[[Frames], None]) -> None:
        """Also hand every received batch to ``consumer`` (on the loop, after the decoder)."""
        self.consumers.append(consumer)

    def send(self, msg: can.Message) -> None:
        """Transmit one frame. Only the OBD-II poller calls this (requests and ISO-TP flow
        control): nothing from the cloud, D-Bus or voice reaches the vehicle bus."""
        if self.bus is None or self.state is not SourceState.UP:
            raise BusUnavailable("CAN bus is not up; frame not sent")
        try:
            self.bus.send(msg)
        except (can.CanError, OSError) as err:
            raise BusUnavailable(f"CAN send failed: {_one_line(err)}") from err

    def _fail(self, err: BaseException) -> None:
        if self._failed is not None and not self._failed.done():
            self._failed.set_result(err)

    def _close_bus(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = None
        if self._thread is not None:
            self._thread.stopping.set()
            self._thread.join(timeout=2 * RECV_TIMEOUT_S + 1.0)
            self._thread = None
        if self.bus is not None:
            try:
                self.bus.shutdown()
            except Exception as err:
                log.debug("bus shutdown failed: %s", err)
            self.bus = None

    async def stop(self) -> None:
        """Stop reading and close the bus."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


def _is_diagnostic_response(msg: can.Message) -> bool:
    """An OBD-II/ISO-TP answer (ISO 15765-4: 0x7E8-0x7EF, 0x18DAF1xx): hand its batch over at
    once, since the poller's request/response timing should not wait for the batch timer."""
    arb = msg.arbitration_id
    if msg.is_extended_id:
        return arb & 0x1FFFFF00 == 0x18DAF100
    return 0x7E8 <= arb <= 0x7EF


def _shutdown_late_bus(future: asyncio.Future[can.BusABC]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().shutdown()


def _fileno(bus: can.BusABC) -> int | None:
    try:
        fd = bus.fileno()
    except (NotImplementedError, AttributeError, OSError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:200]
