"""The client side of a sync session as a pure state machine (no sockets, no clock).

Fed events (connected, a text frame received, items available, items stored, time passing) with
``now``, it returns the actions to take: frames to send, items to store, acks to apply, a close.
The asyncio adapter in :mod:`carlinkd.sync.client` only moves frames and runs the database.
Modelled on websockets' sans-I/O ``Protocol``.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ProtocolError
from carlink_protocol import wire as p

log = logging.getLogger(__name__)

# The server must answer hello within this time, and acknowledge each item within
# ACK_TIMEOUT_S of sending; otherwise the connection is presumed stuck and closed so that
# the reconnect retransmits (TCP alone does not notice a peer that stopped processing).
HELLO_TIMEOUT_S = 15.0
ACK_TIMEOUT_S = 60.0
# A peer that sends this many invalid messages on one connection is disconnected.
MAX_PROBLEMS_PER_CONNECTION = 50


class SessionState(enum.Enum):
    """Where the session is in its life cycle."""

    DISCONNECTED = "disconnected"
    HELLO_SENT = "hello-sent"
    READY = "ready"
    CLOSING = "closing"


@dataclass(frozen=True, slots=True)
class Send:
    """Send this text frame."""

    text: str


@dataclass(frozen=True, slots=True)
class Store:
    """Store these downstream items durably (in order), then call ``stored(epoch, last seq)``."""

    epoch: str
    items: tuple[p.DownItem, ...]


@dataclass(frozen=True, slots=True)
class SkipGap:
    """The server cannot replay ``first``..``last``: record ``last`` as cursor, then stored()."""

    epoch: str
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Acked:
    """The server durably handled upstream item ``id``: remove it from the outbox."""

    ack: p.ItemAck


@dataclass(frozen=True, slots=True)
class Ready:
    """The hello was accepted; ``reset`` when the server epoch changed and cursor restarted."""

    welcome: p.Welcome
    reset: bool


@dataclass(frozen=True, slots=True)
class Problem:
    """The peer sent something invalid; log it (rate-limited) and count it."""

    reason: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with this code and reason."""

    code: int
    reason: str


Action = Send | Store | SkipGap | Acked | Ready | Problem | Close


@dataclass
class ClientSession:
    """Decides what to send, resend and acknowledge for one device across connections."""

    cursor: int
    epoch: str | None
    window: int = 64
    agent: str = "carlinkd"
    state: SessionState = SessionState.DISCONNECTED
    # Upstream ids sent on this connection and not yet acknowledged, with send time.
    inflight: dict[str, float] = field(default_factory=dict)
    # Highest downstream seq handed out for storing (>= cursor while a Store is pending).
    _expected_after: int = 0
    _since: float = 0.0
    problems: int = 0
    counters: dict[str, int] = field(default_factory=lambda: {
        "sent": 0, "acked": 0, "received": 0, "duplicates": 0, "problems": 0, "gaps": 0})

    def _set_state(self, state: SessionState, now: float) -> None:
        if state is not self.state:
            log.debug("sync session %s -> %s", self.state.value, state.value)
            self.state = state
            self._since = now

    def connected(self, now: float) -> list[Action]:
        """A WebSocket connection opened: say hello with our cursor."""
        self.inflight.clear()
        self.problems = 0
        self._expected_after = self.cursor
        self._set_state(SessionState.HELLO_SENT, now)
        hello = p.Hello(p.PROTOCOL_VERSION, self.cursor, self.epoch, self.window, self.agent)
        return [Send(p.encode(hello))]

    def disconnected(self, now: float) -> None:
        """The connection is gone; everything in flight will be resent on the next one."""
        self.inflight.clear()
        self._set_state(SessionState.DISCONNECTED, now)

    def room(self) -> int:
        """How many more upstream items may be sent now."""
        if self.state is not SessionState.READY:
            return 0
        return max(0, self.window - len(self.inflight))

    def offer(self, items: Sequence[p.UpItem], now: float) -> list[Action]:
        """Send as many of these outbox items (priority order) as the window allows."""
        actions: list[Action] = []
        for item in items:
            if self.room() <= 0:
                break
            if item.id in self.inflight:
                continue
            self.inflight[item.id] = now
            self.counters["sent"] += 1
            actions.append(Send(p.encode(item)))
        return actions

    def receive(self, text: str | bytes, now: float) -> list[Action]:
        """Handle one frame from the server."""
        try:
            msg = p.parse_server(text)
        except ProtocolError as err:
            return self._problem(str(err))
        if self.state is SessionState.HELLO_SENT:
            if not isinstance(msg, p.Welcome):
                return self._problem(f"expected welcome, got {type(msg).__name__}", fatal=True)
            return self._welcome(msg, now)
        if self.state is not SessionState.READY:
            return []
        if isinstance(msg, p.ItemAck):
            if self.inflight.pop(msg.id, None) is None:
                return self._problem(f"ack for item {msg.id!r} that is not in flight")
            self.counters["acked"] += 1
            return [Acked(msg)]
        if isinstance(msg, p.DownItem):
            return self._down(msg)
        if isinstance(msg, p.Gap):
            return self._gap(msg)
        return self._problem("second welcome on one connection")

    def _welcome(self, msg: p.Welcome, now: float) -> list[Action]:
        if msg.protocol != p.PROTOCOL_VERSION:
            return [Close(p.CLOSE_UNSUPPORTED_VERSION, f"server answered protocol {msg.protocol}")]
        reset = self.epoch is not None and msg.epoch != self.epoch
        if msg.cursor > self.cursor and msg.epoch == self.epoch:
            return self._problem(f"welcome cursor {msg.cursor} is ahead of ours", fatal=True)
        if reset or msg.epoch != self.epoch:
            self.epoch = msg.epoch
            self.cursor = msg.cursor
        # Same epoch but an older cursor (server restored from a backup): what it replays up
        # to our cursor is already stored and is only re-acknowledged.
        self._expected_after = max(msg.cursor, self.cursor)
        self._set_state(SessionState.READY, now)
        return [Ready(msg, reset)]

    def _down(self, msg: p.DownItem) -> list[Action]:
        assert self.epoch is not None
        if msg.seq <= self._expected_after:
            # A replay of something we already have: harmless, but say where we are.
            self.counters["duplicates"] += 1
            return [Send(p.encode(p.CursorAck(msg.seq)))] if msg.seq <= self.cursor else []
        if msg.seq != self._expected_after + 1:
            return self._problem(f"downstream seq {msg.seq} out of order (expected "
                                 f"{self._expected_after + 1}); reconnecting to replay",
                                 fatal=True)
        self._expected_after = msg.seq
        self.counters["received"] += 1
        return [Store(self.epoch, (msg,))]

    def _gap(self, msg: p.Gap) -> list[Action]:
        assert self.epoch is not None
        if msg.first != self._expected_after + 1:
            return self._problem(f"gap {msg.first}..{msg.last} does not start at "
                                 f"{self._expected_after + 1}", fatal=True)
        self._expected_after = msg.last
        self.counters["gaps"] += 1
        return [SkipGap(self.epoch, msg.first, msg.last)]

    def stored(self, epoch: str, seq: int) -> list[Action]:
        """Items up to ``seq`` are durable: acknowledge the cursor to the server."""
        if epoch != self.epoch or seq <= self.cursor:
            return []
        self.cursor = seq
        if self.state is not SessionState.READY:
            return []
        return [Send(p.encode(p.CursorAck(seq)))]

    def tick(self, now: float) -> list[Action]:
        """Time passed: close a connection whose hello or oldest item went unanswered."""
        if self.state is SessionState.HELLO_SENT and now - self._since > HELLO_TIMEOUT_S:
            self._set_state(SessionState.CLOSING, now)
            return [Close(p.CLOSE_GOING_AWAY, "no welcome from server")]
        if self.state is SessionState.READY and self.inflight:
            oldest = min(self.inflight.values())
            if now - oldest > ACK_TIMEOUT_S:
                self._set_state(SessionState.CLOSING, now)
                return [Close(p.CLOSE_GOING_AWAY, "server stopped acknowledging")]
        return []

    def close(self, now: float) -> list[Action]:
        """We want to leave (shutdown): a normal close."""
        self._set_state(SessionState.CLOSING, now)
        return [Close(p.CLOSE_NORMAL, "client shutting down")]

    def _problem(self, reason: str, fatal: bool = False) -> list[Action]:
        self.problems += 1
        self.counters["problems"] += 1
        actions: list[Action] = [Problem(reason)]
        if fatal or self.problems >= MAX_PROBLEMS_PER_CONNECTION:
            self.state = SessionState.CLOSING
            actions.append(Close(p.CLOSE_PROTOCOL_ERROR, reason[:120]))
        return actions


class CloseKind(enum.Enum):
    """How a connection ended, as far as reconnecting is concerned."""

    NORMAL = "normal"
    NETWORK = "network"
    UNAUTHORIZED = "unauthorized"
    INCOMPATIBLE = "incompatible"
    OVERLOADED = "overloaded"
    UNTRUSTED = "untrusted"  # we refused the server: its TLS certificate did not verify


def classify_close(code: int | None, http_status: int | None = None) -> CloseKind:
    """Map a close code or handshake HTTP status to the reconnect behaviour it calls for."""
    if http_status in (401, 403) or code == p.CLOSE_AUTH_FAILED:
        return CloseKind.UNAUTHORIZED
    if http_status == 426 or code == p.CLOSE_UNSUPPORTED_VERSION:
        return CloseKind.INCOMPATIBLE
    if http_status in (429, 503) or code == p.CLOSE_TRY_AGAIN_LATER:
        return CloseKind.OVERLOADED
    return CloseKind.NETWORK


@dataclass
class Backoff:
    """Exponential backoff with jitter, capped, reset after a healthy connection (pure)."""

    initial_s: float = 1.0      # first delay after a failure
    factor: float = 2.0         # growth per consecutive failure
    max_s: float = 300.0        # cap: a car parked in a garage retries every 5 minutes
    healthy_after_s: float = 30.0  # connected this long = the network is fine again
    # Each delay is drawn uniformly from [delay * (1 - JITTER), delay]: "equal jitter" keeps a
    # lower bound while spreading a fleet that lost the same cell tower (AWS architecture blog,
    # "Exponential Backoff And Jitter").
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    # A wait the server or the protocol imposes (Retry-After, sync.auth_retry_s, ...) is a
    # minimum, stretched by up to this fraction: a fleet refused at one moment (a backend
    # restart, a token database outage) must not come back at one moment either.
    minimum_spread: float = 0.25
    attempts: int = 0
    _connected_at: float | None = None

    def connected(self, now: float) -> None:
        """A connection (handshake and hello) succeeded."""
        self._connected_at = now

    def next_delay(self, now: float, minimum: float = 0.0) -> float:
        """A connection failed or ended: how long to wait before the next attempt."""
        if self._connected_at is not None and now - self._connected_at >= self.healthy_after_s:
            self.attempts = 0
        self._connected_at = None
        base = min(self.max_s, self.initial_s * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        delay = base * (1.0 - self.jitter * self.rng.random())
        if minimum > 0:
            minimum *= 1.0 + self.minimum_spread * self.rng.random()
        return max(delay, minimum)


def retry_minimum(kind: CloseKind, hint: float | None, auth_retry_s: float,
                  version_retry_s: float) -> float:
    """The least time to wait before reconnecting after a close of this kind (docs/protocol.md
    §8): the auth or version retry period, or the server's retry-after hint."""
    if kind is CloseKind.UNAUTHORIZED:
        return max(auth_retry_s, hint or 0.0)
    if kind is CloseKind.INCOMPATIBLE:
        return max(version_retry_s, hint or 0.0)
    return hint or 0.0
