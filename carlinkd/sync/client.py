"""The sync client: moves frames between a websockets connection and the pure session core.

One task runs the connect/backoff loop. Per connection, a reader feeds frames to the session, a
sender fills the window from the outbox, and a writer commits acknowledgements and downstream
items to SQLite in batches (whatever accumulated while the previous commit ran), then acknowledges.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (ConnectionClosed, InvalidHandshake, InvalidMessage,
                                   InvalidStatus, InvalidURI)

from ..aio import cancel_all
from .. import __version__
from .settings import SyncConfig
from ..errors import SyncError
from ..events import Event, SyncRejected
from ..logutil import RateLimitedLogger
from carlink_protocol import wire as p
from . import tls
from .inbound import InboundLog, drop_cancelled, interpret
from .outbox import Outbox
from .session import (Acked, Action, Backoff, ClientSession, Close, CloseKind, Problem, Ready,
                      Send, SessionState, SkipGap, Store, classify_close, retry_minimum)

log = logging.getLogger(__name__)
_warn = RateLimitedLogger(log, interval=10.0)

# How often the session core is asked whether a hello or an ack is overdue.
TICK_S = 1.0
# The same refusal on every retry is logged as an error (or warning) once per this period and
# at info level in between, so a car with an expired certificate does not fill the journal.
REPEAT_ALARM_S = 3600.0


class ClientState(enum.Enum):
    """What the sync client is doing, as shown to the driver and in `carlinkd status`."""

    OFFLINE = "offline"
    CONNECTING = "connecting"
    ONLINE = "online"
    WAITING = "waiting"            # backing off after a network failure
    UNAUTHORIZED = "unauthorized"  # token or certificate refused; retried rarely
    INCOMPATIBLE = "incompatible"  # no common protocol version; retried rarely
    OVERLOADED = "overloaded"      # server asked us to come back later
    UNTRUSTED = "untrusted"        # the server's TLS certificate did not verify; backing off
    STOPPED = "stopped"


# States that need a person (a new token, a certificate, a software update): logged as errors.
NEEDS_ATTENTION = frozenset({ClientState.UNAUTHORIZED, ClientState.INCOMPATIBLE,
                             ClientState.UNTRUSTED})
AFTER_CLOSE = {CloseKind.UNAUTHORIZED: ClientState.UNAUTHORIZED,
               CloseKind.INCOMPATIBLE: ClientState.INCOMPATIBLE,
               CloseKind.OVERLOADED: ClientState.OVERLOADED,
               CloseKind.UNTRUSTED: ClientState.UNTRUSTED}


@dataclass(frozen=True, slots=True)
class Ended:
    """How one connection attempt ended: what kind of close, in one line, the server's
    retry-after hint, and whether the line deserves a warning (a TLS problem)."""

    kind: CloseKind
    detail: str
    hint: float | None = None
    warn: bool = False


class SyncClient:
    """Keeps one device's outbox and inbound log in sync with the cloud until stopped."""

    def __init__(self, cfg: SyncConfig, outbox: Outbox, inbound: InboundLog, token: str, *,
                 on_event: Callable[[Event], None],
                 on_state: Callable[[str, str], None] | None = None,
                 rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time,
                 tls_context: ssl.SSLContext | None = None) -> None:
        if cfg.url is None:
            raise SyncError("sync.url is not set")
        self.cfg = cfg
        self.outbox = outbox
        self.inbound = inbound
        self.token = token
        self.on_event = on_event
        self.on_state = on_state
        self.clock = clock
        self.session = ClientSession(inbound.cursor, inbound.epoch, cfg.window,
                                     f"carlinkd/{__version__}")
        self.backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_factor, cfg.backoff_max_s,
                               cfg.healthy_after_s, rng=rng or random.Random())
        # Checked at start-up (ConfigError naming the file), not at the first connection.
        self.ssl = tls_context if tls_context is not None else tls.client_context(cfg)
        self.state = ClientState.OFFLINE
        self.detail = ""
        self.connections = 0
        self.attempts = 0
        self.last_delay = 0.0
        self.last_close = ""
        self._ws: ClientConnection | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()       # outbox may have something to send
        self._work = asyncio.Event()       # writer has acks or items to commit
        self._progress = asyncio.Event()   # something was acknowledged (for flushing)
        self._acks: list[p.ItemAck] = []
        self._stores: list[Store | SkipGap | Ready] = []
        self._acking: set[str] = set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._alarm: tuple[ClientState, str, float] | None = None

    def _set_state(self, state: ClientState, detail: str = "", warn: bool = False,
                   reason: str = "") -> None:
        """Change state (logged; ``reason`` is the detail without the varying retry delay)."""
        if state is self.state and detail == self.detail:
            return
        level = logging.ERROR if state in NEEDS_ATTENTION else \
            logging.WARNING if warn else logging.INFO
        if level > logging.INFO:
            now = time.monotonic()
            last = self._alarm
            if last is not None and last[:2] == (state, reason) and now - last[2] < REPEAT_ALARM_S:
                level = logging.INFO
            else:
                self._alarm = (state, reason, now)
        log.log(level, "cloud sync %s -> %s%s", self.state.value, state.value,
                f": {detail}" if detail else "")
        self.state, self.detail = state, detail
        if self.on_state is not None:
            self.on_state(state.value, detail)

    def start(self) -> asyncio.Task[None]:
        """Start the connect loop as a task."""
        self._task = asyncio.create_task(self._run(), name="sync-client")
        return self._task

    def nudge(self) -> None:
        """New items are in the outbox."""
        self._wake.set()

    async def stop(self) -> None:
        """Flush what is queued (bounded by flush_timeout_s), close normally, end the loop."""
        self._stop.set()
        ws = self._ws
        if ws is not None and self.session.state is SessionState.READY:
            try:
                await asyncio.wait_for(self._drained(), self.cfg.flush_timeout_s)
            except TimeoutError:
                log.warning("cloud sync: shutdown with items still unacknowledged")
            await ws.close(p.CLOSE_NORMAL, "client shutting down")
        if self._task is not None:
            await self._task
        self._set_state(ClientState.STOPPED)

    async def _drained(self) -> None:
        while self.session.state is SessionState.READY:
            if not self.session.inflight and not self._acking and not self._stores:
                if not await self.outbox.peek(1):
                    return
            self._progress.clear()
            self._wake.set()
            await self._progress.wait()

    async def _run(self) -> None:
        while not self._stop.is_set():
            ended = await self._attempt()
            if self._stop.is_set():
                break
            # docs/protocol.md §8: refused token/certificate -> auth_retry_s, no common version
            # -> version_retry_s, overload -> at least retry-after; all spread by the backoff.
            minimum = retry_minimum(ended.kind, ended.hint, self.cfg.auth_retry_s,
                                    self.cfg.version_retry_s)
            delay = self.backoff.next_delay(self.clock(), minimum)
            self.last_delay, self.last_close = delay, ended.detail
            self._set_state(AFTER_CLOSE.get(ended.kind, ClientState.WAITING),
                            f"{ended.detail}; retry in {delay:.1f} s", ended.warn, ended.detail)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: it can lose a cancel (3.11)
                    await self._stop.wait()

    async def _attempt(self) -> Ended:
        """One connection attempt and, if it opens, the whole connection."""
        assert self.cfg.url is not None
        self._set_state(ClientState.CONNECTING, self.cfg.url)
        self.attempts += 1
        try:
            ws = await connect(
                self.cfg.url, additional_headers={"Authorization": f"Bearer {self.token}"},
                ssl=self.ssl, proxy=None, compression=None,
                user_agent_header=f"carlinkd/{__version__}",
                open_timeout=self.cfg.open_timeout_s, ping_interval=self.cfg.ping_interval_s,
                ping_timeout=self.cfg.ping_timeout_s, close_timeout=5.0,
                max_size=self.cfg.max_size, max_queue=self.cfg.max_queue,
                write_limit=self.cfg.write_limit)
        except InvalidStatus as err:
            status = err.response.status_code
            body = err.response.body.decode(errors="replace") if err.response.body else ""
            hint = err.response.headers.get("Retry-After")
            return Ended(classify_close(None, status),
                         " ".join(f"HTTP {status} {body[:200]}".split()),
                         p.retry_after(f"retry-after={hint}") if hint else None)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as err:
            return self._connect_failed(err)
        self.connections += 1
        self._ws = ws
        try:
            return await self._connection(ws)
        finally:
            self._ws = None

    def _connect_failed(self, err: Exception) -> Ended:
        """Classify a failed opening handshake; TLS failures get a line that says what to fix."""
        if isinstance(err, ssl.SSLCertVerificationError):
            return Ended(CloseKind.UNTRUSTED, tls.verification_failure(err, self.cfg))
        if isinstance(err, ssl.SSLError):
            refused, line = tls.handshake_failure(err, self.cfg)
            return Ended(CloseKind.UNAUTHORIZED if refused else CloseKind.NETWORK, line,
                         warn=True)
        if (self.ssl is not None and isinstance(err, InvalidMessage)
                and isinstance(err.__cause__, EOFError)):
            return Ended(CloseKind.NETWORK, tls.closed_in_handshake(self.cfg), warn=True)
        return Ended(CloseKind.NETWORK, " ".join(f"connect failed: {err}".split()))

    async def _connection(self, ws: ClientConnection) -> Ended:
        tasks = [asyncio.create_task(self._sender(ws), name="sync-sender"),
                 asyncio.create_task(self._ticker(ws), name="sync-ticker")]
        writer = asyncio.create_task(self._writer(ws), name="sync-writer")
        try:
            await self._execute(ws, self.session.connected(self.clock()))
            async for frame in ws:
                await self._execute(ws, self.session.receive(frame, self.clock()))
        except ConnectionClosed:
            pass
        finally:
            await cancel_all(tasks)
            # Commit what was already received; the connection is gone, so no acks go out.
            self.session.disconnected(self.clock())
            self._closing = True
            self._work.set()
            await asyncio.gather(writer, return_exceptions=True)
            self._closing = False
            self._acking.clear()
            self._progress.set()
        code = ws.close_code
        reason = ws.close_reason or ""
        hint = p.retry_after(reason) if code == p.CLOSE_TRY_AGAIN_LATER else None
        text = f"{code} {' '.join(reason.split())}".strip()  # a reason is one line in the log
        return Ended(classify_close(code), f"connection closed ({text})", hint)

    async def _execute(self, ws: ClientConnection, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                await ws.send(action.text)
            elif isinstance(action, Acked):
                self._acks.append(action.ack)
                self._acking.add(action.ack.id)
                self._work.set()
            elif isinstance(action, Store | SkipGap | Ready):
                if isinstance(action, Ready):
                    self.backoff.connected(self.clock())
                    self._set_state(ClientState.ONLINE, action.welcome.device)
                    self._wake.set()
                self._stores.append(action)
                self._work.set()
            elif isinstance(action, Problem):
                _warn.warning(("problem", action.reason[:40]),
                              "cloud sync: rejected server message: %s", action.reason)
            elif isinstance(action, Close):
                await ws.close(action.code, action.reason)

    async def _sender(self, ws: ClientConnection) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            room = self.session.room()
            if room <= 0:
                continue
            items = await self.outbox.peek(room, set(self.session.inflight) | self._acking)
            await self._execute(ws, self.session.offer(items, self.clock()))

    async def _ticker(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            await self._execute(ws, self.session.tick(self.clock()))

    async def _writer(self, ws: ClientConnection) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            await self._commit(ws)
            if self._closing and not self._acks and not self._stores:
                return

    async def _commit(self, ws: ClientConnection | None) -> None:
        """Apply queued acks (outbox deletes) and stores (inbound log), then acknowledge."""
        acks, self._acks = self._acks, []
        if acks:
            await self.outbox.ack(a.id for a in acks)
            for ack in acks:
                self._acking.discard(ack.id)
                if ack.status == "rejected":
                    log.warning("cloud refused item %s: %s", ack.id, ack.reason)
                    self.on_event(SyncRejected(ack.id, ack.reason, "cloud"))
            self._wake.set()
            self._progress.set()
        work, self._stores = self._stores, []
        events: list[Event] = []
        for action in _coalesce_stores(work):
            if isinstance(action, Ready):
                if action.welcome.epoch != self.inbound.epoch:
                    if action.reset:
                        log.warning("cloud epoch changed: inbound cursor restarts at %d",
                                    action.welcome.cursor)
                    await self.inbound.set_cursor(action.welcome.epoch, action.welcome.cursor)
                continue
            if isinstance(action, SkipGap):
                log.warning("cloud cannot replay downstream items %d..%d (pruned); skipping",
                            action.first, action.last)
                await self.inbound.set_cursor(action.epoch, action.last)
                cursor = action.last
            else:
                verdicts = []
                for item in action.items:
                    event, verdict = interpret(item)
                    verdicts.append(verdict)
                    if event is None:
                        _warn.warning(("down", item.kind[:20]), "cloud sync: ignored downstream"
                                      " item %d: %s", item.seq, verdict)
                    else:
                        events.append(event)
                cursor = await self.inbound.store(action.epoch, action.items, verdicts,
                                                  self.clock())
            acts = self.session.stored(action.epoch, cursor)
            if ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._execute(ws, acts)
        for event in drop_cancelled(events):
            self.on_event(event)
        if work:
            self._progress.set()


def _coalesce_stores(work: list[Store | SkipGap | Ready]) -> list[Store | SkipGap | Ready]:
    """Merge consecutive Store actions of one epoch into one transaction."""
    out: list[Store | SkipGap | Ready] = []
    for action in work:
        prev = out[-1] if out else None
        if isinstance(action, Store) and isinstance(prev, Store) and prev.epoch == action.epoch:
            out[-1] = Store(prev.epoch, prev.items + action.items)
        else:
            out.append(action)
    return out


def describe(client: SyncClient | None) -> dict[str, Any]:
    """State, counters and backoff of a client, for status displays."""
    if client is None:
        return {"state": ClientState.OFFLINE.value, "detail": "sync.url not set"}
    return {"state": client.state.value, "detail": client.detail,
            "last_close": client.last_close, "retry_delay_s": round(client.last_delay, 1),
            "attempts": client.attempts,
            "connections": client.connections, "cursor": client.session.cursor,
            "inflight": len(client.session.inflight), **client.session.counters}
