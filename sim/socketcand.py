"""A socketcand-protocol server (raw mode) for python-can's stock ``socketcand`` interface.

It lets a second process (the daemon) read the simulated bus over loopback TCP::

    server: < hi >            client: < open vcan0 >
    server: < ok >            client: < rawmode >
    server: < ok >            then, both ways:
    server: < frame 1A0 1700000000.123456 0102030405060708 >
    client: < send 1A0 8 1 2 3 4 5 6 7 8 >

A frame one client sends reaches every other raw-mode client and the optional ``on_frame``
callback (never the sender, like a SocketCAN raw socket without ``recv_own_msgs``). Each client
has its own bounded buffer and writer task, so a slow reader loses frames (counted in
``dropped_frames``) instead of stalling the others.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Self

import can

logger = logging.getLogger(__name__)

DEFAULT_PORT = 29536
DEFAULT_CHANNEL = "vcan0"
# python-can's client compares a whole recv() to "< ok >", so after the rawmode reply we wait
# this long before streaming, or frames could arrive in the same read and fail its handshake.
STREAM_DELAY_S = 0.1
MAX_BUFFERED_FRAMES = 20_000  # per client: about 10 s of the demo bus
MAX_COMMAND_BYTES = 4096  # an unterminated "<..." longer than this is garbage and dropped
READ_SIZE = 65536
STOP_TIMEOUT_S = 2.0  # connections still busy this long after stop() are cancelled
# python-can's client reads 1024 bytes at a time and logs a warning whenever a read ends inside a
# frame. Left-padding every streamed line to 64 bytes (which divides 1024) keeps its reads on
# frame boundaries; whitespace between tokens is harmless to socketcand parsers.
FRAME_SLOT_BYTES = 64

FrameCallback = Callable[[can.Message], None]


class ClientState(Enum):
    """Where a client is in the socketcand handshake."""

    GREETED = "greeted"
    OPEN = "open"
    RAW = "raw"
    CLOSED = "closed"


def _log_sparsely(count: int) -> bool:
    """True for the 1st, 10th, 100th and every 1000th occurrence: rate-limits repeated warnings."""
    return count in (1, 10, 100) or count % 1000 == 0


def format_frame(message: can.Message) -> str:
    """One frame as socketcand sends it: ``< frame ID SEC.USEC HEXDATA >``."""
    if message.is_extended_id:
        ident = f"{message.arbitration_id & 0x1FFFFFFF:08X}"
    else:
        ident = f"{message.arbitration_id & 0x7FF:03X}"
    seconds = math.floor(message.timestamp)
    micros = round((message.timestamp - seconds) * 1e6)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    return f"< frame {ident} {seconds}.{micros:06d} {bytes(message.data).hex().upper()} >"


def parse_send(fields: list[str]) -> can.Message:
    """The frame in a ``< send ID LEN B0 B1 ... >`` command (fields after ``send``)."""
    if len(fields) < 2:
        raise ValueError("send needs an id and a length")
    try:
        ident = int(fields[0], 16)
        length = int(fields[1], 16)
        data = bytes(int(b, 16) for b in fields[2:])
    except ValueError as err:
        raise ValueError(f"bad number in send: {err}") from None
    extended = len(fields[0]) > 3 or ident > 0x7FF
    if ident > 0x1FFFFFFF or not 0 <= length <= 8 or len(data) != length:
        raise ValueError(f"bad send: id {fields[0]}, length {length}, {len(data)} data bytes")
    return can.Message(arbitration_id=ident, is_extended_id=extended, data=data, dlc=length, is_rx=True)


class _Client:
    """One TCP connection: parses its commands and streams frames to it from a bounded buffer."""

    def __init__(self, server: SocketcandServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader, self.writer = reader, writer
        self.peer = writer.get_extra_info("peername")
        self.state = ClientState.GREETED
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self.dropped = 0
        self._wake = asyncio.Event()
        self._stream_at = math.inf

    def _set_state(self, state: ClientState) -> None:
        logger.debug("socketcand client %s: %s -> %s", self.peer, self.state.value, state.value)
        self.state = state
        self.server._client_state_changed()

    def abort(self) -> None:
        """Drop the connection at once, discarding anything unsent."""
        self.writer.transport.abort()

    def enqueue(self, blob: bytes, count: int) -> None:
        """Queue ``count`` formatted frames, or drop them when the buffer is full."""
        if self.state is not ClientState.RAW:
            return
        if self._buffered + count > self.server.max_buffered_frames:
            self.dropped += count
            self.server.dropped_frames += count
            if _log_sparsely(self.dropped // max(count, 1)):
                logger.warning("socketcand client %s is slow: %d frames dropped", self.peer, self.dropped)
            return
        self._chunks.append(blob)
        self._buffered += count
        self._wake.set()

    async def serve(self) -> None:
        """Greet, then handle commands until the client leaves; stream frames meanwhile."""
        pump = asyncio.create_task(self._pump(), name=f"socketcand-pump-{self.peer}")
        try:
            self.writer.write(b"< hi >")
            await self.writer.drain()
            buffer = b""
            while data := await self.reader.read(READ_SIZE):
                buffer = self._consume(buffer + data)
        except ConnectionError:
            pass
        finally:
            self._set_state(ClientState.CLOSED)
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    def _consume(self, buffer: bytes) -> bytes:
        while True:
            start = buffer.find(b"<")
            if start < 0:
                return b""
            end = buffer.find(b">", start)
            if end < 0:
                return buffer[start:] if len(buffer) - start <= MAX_COMMAND_BYTES else b""
            self._command(buffer[start + 1:end].decode("ascii", "replace").split())
            buffer = buffer[end + 1:]

    def _reply(self, text: str) -> None:
        self.writer.write(text.encode("ascii"))

    def _command(self, fields: list[str]) -> None:
        verb = fields[0] if fields else ""
        if verb == "open" and self.state is ClientState.GREETED:
            if fields[1:] == [self.server.channel]:
                self._reply("< ok >")
                self._set_state(ClientState.OPEN)
            else:
                self._reply("< error could not open bus >")
        elif verb == "rawmode" and self.state is ClientState.OPEN:
            self._reply("< ok >")
            self._stream_at = asyncio.get_running_loop().time() + self.server.stream_delay
            self._set_state(ClientState.RAW)
            self._wake.set()
        elif verb == "send" and self.state is ClientState.RAW:
            try:
                self.server._deliver(parse_send(fields[1:]), origin=self)
            except ValueError as err:
                self.server._bad_command(self.peer, str(err))
        elif verb == "echo":
            self._reply("< echo >".rjust(FRAME_SLOT_BYTES) if self.state is ClientState.RAW else "< echo >")
        else:
            self.server._bad_command(self.peer, f"unexpected {' '.join(fields)!r} in state {self.state.value}")
            if self.state is not ClientState.RAW:
                self._reply("< error unknown command >")

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if (delay := self._stream_at - loop.time()) > 0:
                    await asyncio.sleep(delay)
                while self._chunks:
                    blob = b"".join(self._chunks)
                    self._chunks.clear()
                    self._buffered = 0
                    self.writer.write(blob)
                    await self.writer.drain()
        except ConnectionError:
            pass


class SocketcandServer:
    """Serves one simulated CAN channel to socketcand clients on a TCP port."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, channel: str = DEFAULT_CHANNEL,
                 on_frame: FrameCallback | None = None, max_buffered_frames: int = MAX_BUFFERED_FRAMES,
                 stream_delay: float = STREAM_DELAY_S) -> None:
        self.host = host
        self.channel = channel
        self.on_frame = on_frame
        self.max_buffered_frames = max_buffered_frames
        self.stream_delay = stream_delay
        self.dropped_frames = 0
        self._requested_port = port
        self._port = port
        self._server: asyncio.Server | None = None
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._bad_commands = 0

    @property
    def port(self) -> int:
        """The bound TCP port (the real one after :meth:`start`, even when 0 was requested)."""
        return self._port

    @property
    def clients(self) -> int:
        """Clients in raw mode, i.e. receiving frames."""
        return sum(1 for c in self._clients if c.state is ClientState.RAW)

    @property
    def is_serving(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    async def start(self) -> None:
        """Bind and listen (SO_REUSEADDR, so a restart on the same port works at once)."""
        if self._server is not None:
            raise RuntimeError("socketcand server already started")
        self._server = await asyncio.start_server(self._handle, self.host, self._requested_port,
                                                  reuse_address=True)
        self._port = self._server.sockets[0].getsockname()[1]
        logger.info("socketcand listening on %s:%d channel %s", self.host, self._port, self.channel)

    async def stop(self) -> None:
        """Close the listener and every connection; waits for their tasks to finish."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for client in list(self._clients):
            client.abort()  # the handler then sees end-of-stream and returns normally
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=STOP_TIMEOUT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()
        self._clients.clear()
        logger.info("socketcand on port %d stopped", self._port)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def broadcast(self, messages: Iterable[can.Message]) -> None:
        """Send frames to every raw-mode client; usable directly as a :meth:`Simulator.run` sink."""
        self._send(messages, origin=None)

    __call__ = broadcast

    async def wait_for_clients(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` clients are in raw mode; ``TimeoutError`` otherwise."""
        async with asyncio.timeout(timeout):
            while self.clients < count:
                self._changed.clear()
                await self._changed.wait()

    def _send(self, messages: Iterable[can.Message], origin: _Client | None) -> None:
        lines = [format_frame(m).rjust(FRAME_SLOT_BYTES) for m in messages
                 if not (m.is_error_frame or m.is_remote_frame or m.is_fd or len(m.data) > 8)]
        if not lines or not self._clients:
            return
        blob = "".join(lines).encode("ascii")
        for client in self._clients:
            if client is not origin:
                client.enqueue(blob, len(lines))

    def _deliver(self, message: can.Message, origin: _Client) -> None:
        message.timestamp = time.time()
        message.channel = self.channel
        self._send([message], origin)
        if self.on_frame is not None:
            try:
                self.on_frame(message)
            except Exception:  # a broken hook must not take the connection down
                logger.exception("socketcand on_frame callback failed")

    def _bad_command(self, peer: object, why: str) -> None:
        self._bad_commands += 1
        if _log_sparsely(self._bad_commands):
            logger.warning("socketcand client %s: %s (%d so far)", peer, why, self._bad_commands)

    def _client_state_changed(self) -> None:
        self._changed.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        client = _Client(self, reader, writer)
        self._clients.add(client)
        logger.info("socketcand client %s connected", client.peer)
        try:
            await client.serve()
        finally:
            self._clients.discard(client)
            self._tasks.discard(task)
            logger.info("socketcand client %s left (%d frames dropped)", client.peer, client.dropped)
