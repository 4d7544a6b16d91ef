"""A flaky network for tests and demos: a loopback TCP proxy that can cut every connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class CutProxy:
    """Forwards 127.0.0.1:port to a target; :meth:`cut` aborts every open connection (RST)."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host, self.port = host, port
        self.cuts = 0
        self.accepted = 0
        self.refusing = False
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """ws:// URL through the proxy."""
        return f"ws://{self.host}:{self.port}/"

    def cut(self) -> int:
        """Abort every proxied connection now; returns how many."""
        pairs = list(self._pairs)
        for a, b in pairs:
            for w in (a, b):
                w.transport.abort()
        self._pairs.clear()
        self.cuts += len(pairs)
        return len(pairs)

    async def stop(self) -> None:
        """Cut everything and stop listening."""
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.refusing:
                writer.transport.abort()
                return
            try:
                up_r, up_w = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            self.accepted += 1
            pair = (writer, up_w)
            self._pairs.add(pair)
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer),
                                 return_exceptions=True)
            self._pairs.discard(pair)
            for w in pair:
                w.transport.abort()
        finally:
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()
