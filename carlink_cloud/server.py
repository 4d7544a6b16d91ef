"""The reference cloud backend: a websockets server speaking docs/protocol.md on SQLite.

Per connection: a reader validates frames and queues them, a processor handles whatever queued
up in one durable transaction on the database thread and then acknowledges (group commit), and
a sender streams the device's downstream log within its window.

TLS (``tls_cert``/``tls_key``) makes it a wss:// server. With ``client_ca`` a device must also
present a certificate issued by that CA whose subject common name is the device's name: the
token and the certificate must name the same car (docs/protocol.md §2). The certificate is
requested but its absence is answered at the HTTP level (403 with a reason) rather than with a
bare TLS alert, so a misconfigured car logs why; a certificate from another CA still fails the
TLS handshake itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from carlink_protocol.errors import ProtocolError
from .errors import CloudError
from carlink_protocol.ratelog import RateLimitedLogger
from carlink_protocol import wire as p

from .commit import GroupCommit
from .retention import housekeep
from .tls import common_name, tls_context
from .quota import AuthLimiter, DeviceQuota, Limits, Pacer
from .store import CloudStore, Device

log = logging.getLogger(__name__)
_warn = RateLimitedLogger(log, interval=10.0)
T = TypeVar("T")

HELLO_TIMEOUT_S = 10.0
# Frames queued but not yet processed, per connection, beyond which the client is ignoring
# its window: the connection is shed with 1013 (try again later).
MAX_PENDING_PER_CONNECTION = 1024
# Periodic housekeeping: help expiry, booking reminders, retention (carlink_cloud/retention.py).
HOUSEKEEPING_S = 60.0
# `carlink-cloud revoke-device` (another process) closes the car's connection within this.
REVOKE_POLL_S = 1.0
RETENTION_S = 7 * 86400.0
OVERLOAD_RETRY_AFTER_S = 5
# A peer shed for not reading is not waited for long to answer the close.
CLOSE_TIMEOUT_S = 2.0


def _address(conn: ServerConnection) -> str:
    return str(conn.remote_address[0]) if conn.remote_address else ""


def _frame_bytes(frame: str | bytes) -> int:
    if isinstance(frame, bytes) or frame.isascii():
        return len(frame)
    return len(frame.encode("utf-8", "surrogatepass"))


class _OncePerInterval(logging.Filter):
    """Lets each message template of the websockets library through once per interval."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval, self.last = interval, dict[str, float]()

    def filter(self, record: logging.LogRecord) -> bool:
        now, key = time.monotonic(), str(record.msg)
        if now - self.last.get(key, -self.interval) < self.interval:
            return False
        self.last[key] = now
        return True


def _ws_logger() -> logging.Logger:
    """The websockets library's per-connection lines (open, rejected, closed) are INFO: one per
    attempt would flood the journal under attack, so only warnings and errors, each message once
    per interval; the server logs refusals itself, once per interval."""
    logger = logging.getLogger("carlink_cloud.ws")
    logger.setLevel(logging.WARNING)
    if not logger.filters:
        logger.addFilter(_OncePerInterval())
    return logger


@dataclass
class Live:
    """One authenticated connection."""

    ws: ServerConnection
    device: Device
    window: int
    sent: int = 0
    acked: int = 0
    queue: list[p.UpItem | p.CursorAck] = field(default_factory=list)
    # Bytes of frames read and not yet handled (queued or in the batch being handled).
    pending: int = 0
    queued_bytes: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    # The cursor the car acknowledged is kept here and written with its next batch, on close
    # or at housekeeping (it only decides what may be pruned): a cursor ack costs no commit.
    ack_dirty: bool = False
    # Downstream items committed since the sender last looked, to send without reading back.
    fresh: list[tuple[p.DownItem, str]] = field(default_factory=list)
    work: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class CloudServer:
    """Runs until stopped; ``port`` is the bound port (pass 0 to pick a free one)."""

    def __init__(self, db_path: Path, host: str = "127.0.0.1", port: int = 0, *,
                 window: int = 256, max_connections: int = 1000, max_size: int = 1024 * 1024,
                 ping_interval: float = 20.0, ssl_context: ssl.SSLContext | None = None,
                 tls_cert: Path | None = None, tls_key: Path | None = None,
                 client_ca: Path | None = None,
                 protocols: frozenset[int] = p.SUPPORTED_VERSIONS,
                 clock: Callable[[], float] = time.time, limits: Limits | None = None,
                 retention_s: float = RETENTION_S) -> None:
        if tls_cert is not None and ssl_context is not None:
            raise CloudError("pass either ssl_context or tls_cert/tls_key/client_ca, not both")
        if tls_cert is None and tls_key is not None:
            raise CloudError("--tls-key needs --tls-cert")
        if tls_cert is None and client_ca is not None:
            raise CloudError("--client-ca needs --tls-cert (client certificates require TLS)")
        if tls_cert is not None:
            ssl_context = tls_context(tls_cert, tls_key, client_ca)
        self.db_path, self.host, self.port = db_path, host, port
        self.window, self.max_connections, self.max_size = window, max_connections, max_size
        self.ping_interval, self.ssl, self.clock = ping_interval, ssl_context, clock
        self.client_certs = ssl_context is not None and ssl_context.verify_mode != ssl.CERT_NONE
        self.protocols = protocols
        self.limits = limits or Limits()
        self._auth = AuthLimiter(self.limits)
        self.quota = DeviceQuota(self.limits, self._kept_bytes)
        self._pacer = Pacer(self.limits)
        self._data_version = 0
        self.retention_s = retention_s
        self.store: CloudStore | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._server: Server | None = None
        self._live: dict[int, Live] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._committer: asyncio.Task[None] | None = None
        self._commit: GroupCommit | None = None
        # handshakes: every HTTP upgrade request that reached process_request (attempts);
        # auth_limited: handshakes answered 429 without looking at the token.
        self.counters = {"handshakes": 0, "connections": 0, "items": 0, "duplicates": 0,
                         "rejected": 0, "protocol_errors": 0, "auth_failures": 0, "overload": 0,
                         "down_sent": 0, "down_skipped": 0, "auth_limited": 0,
                         "pending_peak_bytes": 0, "paced_s": 0}

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        """Open the database and start listening."""
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cloud-db")
        self.store = await self._db(CloudStore, self.db_path)
        self._server = await serve(
            self._handler, self.host, self.port, process_request=self._process_request,
            ssl=self.ssl, max_size=self.max_size, max_queue=4, write_limit=256 * 1024,
            ping_interval=self.ping_interval, ping_timeout=20, close_timeout=CLOSE_TIMEOUT_S,
            compression=None,
            server_header="carlinkd-cloud", logger=_ws_logger())
        self.port = self._server.sockets[0].getsockname()[1]
        self._data_version = await self._db(self._version)
        self._commit = GroupCommit(self._db, self.store, self.quota.admit, self.clock)
        self._committer = asyncio.create_task(self._commit.serve(), name="cloud-commit")
        self._tasks = [asyncio.create_task(self._housekeep(), name="cloud-housekeeping"),
                       asyncio.create_task(self._watch_revocations(), name="cloud-revocations")]
        log.info("cloud backend listening on %s (db %s)", self.url, self.db_path)

    @property
    def url(self) -> str:
        """The ws:// or wss:// URL clients use."""
        return f"{'wss' if self.ssl else 'ws'}://{self.host}:{self.port}/"

    async def stop(self) -> None:
        """Close every connection (1001 going away), stop listening, close the database."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()  # connections write their cursors on the way out
        if self._committer is not None:
            self._committer.cancel()
            await asyncio.gather(self._committer, return_exceptions=True)
        if self.store is not None:
            await self._db(self.store.close)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def __aenter__(self) -> CloudServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def wake(self, device_ids: set[int]) -> None:
        """New downstream items exist for these devices."""
        for dev in device_ids:
            live = self._live.get(dev)
            if live is not None:
                live.wake.set()

    async def _housekeep(self) -> None:
        assert self.store is not None
        while True:
            try:
                self.wake(await self._db(housekeep, self.store, self.clock(), self.retention_s))
                await asyncio.gather(*(self._flush_cursor(v) for v in list(self._live.values())))
                await self._db(self.quota.forget)  # stored bytes reloaded after pruning
            except Exception:  # keep serving; housekeeping retries next round
                log.exception("cloud housekeeping failed")
            await asyncio.sleep(HOUSEKEEPING_S)

    def _version(self) -> int:
        """SQLite's data_version: changes when another connection (the CLI) commits."""
        assert self.store is not None
        return int(self.store.conn.execute("PRAGMA data_version").fetchone()[0])

    def _kept_bytes(self, device_id: int) -> int:
        assert self.store is not None
        return int(self.store.conn.execute(
            "SELECT COALESCE(SUM(LENGTH(CAST(body AS BLOB))), 0) FROM upstream "
            "WHERE device_id = ?", (device_id,)).fetchone()[0])

    async def _watch_revocations(self) -> None:
        """`carlink-cloud revoke-device` runs in another process and commits to the same
        database: within REVOKE_POLL_S, close what it revoked. The poll reads one pragma (no
        query) unless another connection has written since the last look."""
        while True:
            await asyncio.sleep(REVOKE_POLL_S)
            try:
                version = await self._db(self._version)
                if version == self._data_version or not self._live:
                    self._data_version = version
                    continue
                assert self.store is not None
                revoked = await self._db(self.store.revoked, set(self._live))
                self._data_version = version
                for live in [self._live[d] for d in revoked if d in self._live]:
                    log.info("device %s revoked; closing its connection", live.device.name)
                    await live.ws.close(p.CLOSE_AUTH_FAILED, "device revoked")
            except Exception:  # keep serving; look again next round
                log.exception("cloud revocation check failed")

    async def revoke_device(self, name: str) -> bool:
        """Refuse the device's token from now on and close its connection with 4003; returns
        whether it was connected."""
        assert self.store is not None
        await self._db(self.store.revoke_device, name)
        live = next((v for v in self._live.values() if v.device.name == name), None)
        if live is None:
            return False
        await live.ws.close(p.CLOSE_AUTH_FAILED, "device revoked")
        return True

    async def shed(self, retry_after_s: float, names: set[str] | None = None) -> int:
        """Close connections (all, or these devices') with 1013 and a retry-after hint, as an
        overloaded backend sheds load; returns how many were closed."""
        victims = [v for v in self._live.values() if names is None or v.device.name in names]
        self.counters["overload"] += len(victims)
        await asyncio.gather(*(v.ws.close(p.CLOSE_TRY_AGAIN_LATER,
                                          f"overloaded; retry-after={retry_after_s:g}")
                               for v in victims))
        return len(victims)

    def _refuse(self, conn: ServerConnection, status: int, why: str) -> Response:
        self.counters["auth_failures"] += 1
        address = _address(conn)
        self._auth.failed(address, time.monotonic())
        _warn.warning(("auth", address), "refused connection from %s: %s", address, why)
        resp = conn.respond(status, f"{why}\n")
        if status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="carlinkd"'
        return resp

    def _auth_limited(self, conn: ServerConnection) -> Response | None:
        """429 with Retry-After for an address over its failed-authentication budget (its
        token is not even looked at); one log line per address and interval."""
        address = _address(conn)
        wait = self._auth.retry_after(address, time.monotonic())
        if wait <= 0:
            return None
        self.counters["auth_limited"] += 1
        _warn.warning(("auth-limit", address), "refusing handshakes from %s for %d s: too many "
                      "failed authentications", address, wait)
        resp = conn.respond(429, "too many failed authentications; retry later\n")
        resp.headers["Retry-After"] = str(wait)
        return resp

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        assert self.store is not None
        self.counters["handshakes"] += 1
        limited = self._auth_limited(conn)
        if limited is not None:
            return limited
        if len(self._live) >= self.max_connections:
            self.counters["overload"] += 1
            _warn.warning("full", "refusing connections: %d connected (--max-connections)",
                          len(self._live))
            resp = conn.respond(503, "server overloaded; retry later\n")
            resp.headers["Retry-After"] = str(OVERLOAD_RETRY_AFTER_S)
            return resp
        cert_name = None
        if self.client_certs:
            cert_name = common_name(conn.transport.get_extra_info("peercert"))
            if cert_name is None:
                return self._refuse(conn, 403, "client certificate required")
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        device = await self._db(self.store.authenticate, token.strip()) \
            if scheme.lower() == "bearer" and token else None
        if device is None:
            return self._refuse(conn, 401, "invalid device token")
        if self.client_certs and cert_name != device.name:
            return self._refuse(conn, 403, f"client certificate is for {cert_name!r}, the "
                                           f"token for {device.name!r}")
        conn.device = device  # type: ignore[attr-defined]
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        device: Device = ws.device  # type: ignore[attr-defined]
        try:
            hello = await self._hello(ws, device)
        except ConnectionClosed:
            return
        if hello is None:
            return
        old = self._live.get(device.id)
        if old is not None:
            await old.ws.close(p.CLOSE_REPLACED, "replaced by a newer connection")
            await old.done.wait()
        live = Live(ws, device, min(hello.window, self.window))
        self._live[device.id] = live
        self.counters["connections"] += 1
        tasks: list[asyncio.Task[None]] = []
        try:
            assert self.store is not None
            welcome, gap = await self._db(self.store.open_session, device.id, hello.cursor,
                                          hello.epoch)
            await ws.send(p.encode(welcome))
            live.sent = live.acked = welcome.cursor
            if gap is not None:
                log.info("device %s: downstream %d..%d pruned; sent gap", device.name,
                         gap.first, gap.last)
                await ws.send(p.encode(gap))
                live.sent = live.acked = gap.last
            tasks = [asyncio.create_task(self._processor(live), name=f"cloud-proc-{device.id}"),
                     asyncio.create_task(self._sender(live), name=f"cloud-send-{device.id}")]
            live.wake.set()
            await self._reader(live)
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._live.get(device.id) is live:
                del self._live[device.id]
            try:
                await self._flush_cursor(live)
            except Exception:  # only pruning is later for it
                log.exception("device %s: writing the acknowledged cursor failed", device.name)
            live.done.set()

    async def _hello(self, ws: ServerConnection, device: Device) -> p.Hello | None:
        try:
            frame = await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT_S)
        except TimeoutError:
            await self._violation(ws, device, "no hello within the timeout")
            return None
        try:
            hello = p.parse_client(frame)
        except ProtocolError as err:
            if isinstance(frame, str) and '"hello"' in frame and '"protocol"' in frame:
                await ws.close(p.CLOSE_UNSUPPORTED_VERSION, f"bad hello: {err}"[:120])
                return None
            await self._violation(ws, device, str(err))
            return None
        if not isinstance(hello, p.Hello):
            await self._violation(ws, device, "first message must be hello")
            return None
        if hello.protocol not in self.protocols:
            log.info("device %s speaks protocol %d; closing", device.name, hello.protocol)
            await ws.close(p.CLOSE_UNSUPPORTED_VERSION,
                           p.version_refusal(hello.protocol, self.protocols))
            return None
        return hello

    async def _violation(self, ws: ServerConnection, device: Device, reason: str) -> None:
        self.counters["protocol_errors"] += 1
        _warn.warning(("violation", device.id), "device %s broke the protocol: %s", device.name,
                      reason)
        await ws.close(p.CLOSE_PROTOCOL_ERROR, reason[:120])

    async def _reader(self, live: Live) -> None:
        async for frame in live.ws:
            try:
                msg = p.parse_client(frame)
            except ProtocolError as err:
                await self._violation(live.ws, live.device, str(err))
                return
            if isinstance(msg, p.Hello):
                await self._violation(live.ws, live.device, "second hello")
                return
            if isinstance(msg, p.CursorAck):
                if not live.acked <= msg.cursor <= live.sent:
                    if msg.cursor < live.acked:
                        continue  # stale: an earlier ack overtook nothing; ignore
                    await self._violation(live.ws, live.device,
                                          f"ack {msg.cursor} beyond last sent {live.sent}")
                    return
                live.acked = msg.cursor
                live.wake.set()
            if not await self._room_for(live, _frame_bytes(frame)):
                return
            live.queue.append(msg)
            live.work.set()

    async def _room_for(self, live: Live, size: int) -> bool:
        """Account a frame as unprocessed. Over the per-connection byte (or message) limit,
        reading pauses until the batch being handled is done; if that takes longer than the
        grace, the connection is closed with 1013 and a retry-after hint (returns False)."""
        limit = self.limits.pending_bytes_per_connection
        deadline = time.monotonic() + self.limits.pending_grace_s
        while live.pending + size > limit or len(live.queue) >= MAX_PENDING_PER_CONNECTION:
            left = deadline - time.monotonic()
            live.drained.clear()
            try:
                await asyncio.wait_for(live.drained.wait(), left) if left > 0 else None
            except TimeoutError:
                left = 0
            if left <= 0:
                self.counters["overload"] += 1
                _warn.warning(("shed", live.device.id), "device %s: %d bytes unprocessed "
                              "(limit %d); closing with 1013", live.device.name,
                              live.pending + size, limit)
                retry = self.limits.pending_retry_after_s
                await live.ws.close(p.CLOSE_TRY_AGAIN_LATER,
                                    f"too much unprocessed data; retry-after={retry:g}")
                return False
        live.pending += size
        live.queued_bytes += size
        self.counters["pending_peak_bytes"] = max(self.counters["pending_peak_bytes"],
                                                  live.pending)
        return True

    async def _processor(self, live: Live) -> None:
        assert self.store is not None
        while True:
            await live.work.wait()
            live.work.clear()
            batch, live.queue = live.queue, []
            size, live.queued_bytes = live.queued_bytes, 0
            items = [m for m in batch if isinstance(m, p.UpItem)]
            live.ack_dirty |= len(items) < len(batch)
            if not items:  # cursor acks only: nothing to commit now
                live.pending -= size
                live.drained.set()
                continue
            try:
                await self._pace(live, items)
                assert self._commit is not None
                cursor, live.ack_dirty = (live.acked if live.ack_dirty else 0), False
                acks, notify, dups, fresh = await self._commit.submit(live.device, items, cursor)
            except Exception:
                # Nothing was acknowledged; the client retransmits on its next connection.
                log.exception("device %s: batch failed; closing", live.device.name)
                await live.ws.close(p.CLOSE_INTERNAL_ERROR, "server error; retry later")
                return
            finally:
                live.pending -= size
                live.drained.set()
            self.counters["items"] += len(acks) - dups
            self.counters["duplicates"] += dups
            self.counters["rejected"] += sum(a.status == "rejected" for a in acks)
            for ack in acks:  # an item's ack goes out before what it caused downstream
                await live.ws.send(p.encode(ack))
            self.deliver(fresh)
            self.wake(notify)

    def deliver(self, fresh: list[tuple[int, p.DownItem, str]]) -> None:
        """Hand committed downstream items to their devices' senders (sent from memory)."""
        for device_id, item, text in fresh:
            live = self._live.get(device_id)
            if live is not None and len(live.fresh) < live.window:
                live.fresh.append((item, text))

    async def _flush_cursor(self, live: Live) -> None:
        """Write the cursor a car acknowledged, if not yet written."""
        if live.ack_dirty and self._commit is not None:
            live.ack_dirty = False
            await self._commit.submit(live.device, [], live.acked)

    async def _pace(self, live: Live, items: list[p.UpItem]) -> None:
        """Hold a batch back while the device is over an items-per-second rate."""
        delay = self._pacer.delay(live.device.id, items, time.monotonic())
        if delay > 0:
            self.counters["paced_s"] += math.ceil(delay)
            _warn.warning(("paced", live.device.id), "device %s: over its item rate; batch of "
                          "%d held %.1f s", live.device.name, len(items), delay)
            await asyncio.sleep(delay)

    async def _sender(self, live: Live) -> None:
        assert self.store is not None
        while True:
            await live.wake.wait()
            live.wake.clear()
            room = live.window - (live.sent - live.acked)
            if room <= 0:
                continue
            frames = self._from_memory(live, room)
            if not frames:
                items = await self._db(self.store.fetch_down, live.device.id, live.sent, room)
                frames = [(item.seq, self._deliverable(live, item)) for item in items]
            for seq, frame in frames:
                await live.ws.send(frame)
                live.sent = seq
                self.counters["down_sent"] += 1
            if len(frames) == room:
                continue  # window full; the next cursor ack wakes us

    @staticmethod
    def _from_memory(live: Live, room: int) -> list[tuple[int, str]]:
        """Frames of committed items that continue exactly where the car is (else [] and they
        are read back); their bodies were checked and encoded when they were stored."""
        fresh = [(item, text) for item, text in live.fresh if item.seq > live.sent]
        live.fresh = []
        seqs = [item.seq for item, _ in fresh]
        if not seqs or seqs != list(range(live.sent + 1, live.sent + 1 + len(seqs))) \
                or len(seqs) > room:
            return []
        return [(item.seq, '{"type":"item","seq":%d,"kind":%s,"body":%s,"created":%s}' % (
            item.seq, json.dumps(item.kind), text, json.dumps(item.created)))
            for item, text in fresh]

    def _deliverable(self, live: Live, item: p.DownItem) -> str:
        """The frame for a stored item, or a one-item gap when it cannot be sent (a row stored
        before items were checked): logged once per interval, never stalls the stream."""
        try:
            p.encode_down_body(item.kind, item.body)
            return p.encode(item)
        except ValueError as err:
            self.counters["down_skipped"] += 1
            _warn.warning(("skip", live.device.id), "device %s: downstream #%d skipped with a "
                                   "gap: %s", live.device.name, item.seq, err)
            return p.encode(p.Gap(item.seq, item.seq))

    def connected_devices(self) -> list[str]:
        """Names of the devices connected now."""
        return sorted(live.device.name for live in self._live.values())

