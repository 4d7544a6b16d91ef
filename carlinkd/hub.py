"""The event hub: typed pub/sub on one asyncio loop with bounded per-subscriber queues."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Hashable
from typing import Any, Generic, cast, overload

from typing_extensions import TypeVar

from .errors import HubError
from .events import Event, Overflow
from .logutil import RateLimitedLogger

log = logging.getLogger(__name__)
_warn = RateLimitedLogger(log, interval=10.0)


#: The event types one subscription receives; a bare ``Subscription`` receives any Event.
E = TypeVar("E", bound=Event, default=Event, covariant=True)  # a queue we only read from
E1 = TypeVar("E1", bound=Event)
E2 = TypeVar("E2", bound=Event)
E3 = TypeVar("E3", bound=Event)
E4 = TypeVar("E4", bound=Event)


class Subscription(Generic[E]):
    """One subscriber's bounded, policy-aware queue; iterate it to receive events.

    ``hub.subscribe(AlertRaised)`` is a ``Subscription[AlertRaised]``: ``get()`` and iteration
    give that type, so consumers need no ``isinstance`` assertions."""

    def __init__(self, hub: Hub, types: tuple[type[Event], ...], maxsize: int, name: str) -> None:
        self.hub = hub
        self.types = types
        self.maxsize = maxsize
        self.name = name
        self.dropped: Counter[str] = Counter()
        self.over_bound: Counter[str] = Counter()
        self._pending: OrderedDict[Hashable, Event] = OrderedDict()
        self._seq = itertools.count()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._pending)

    def offer(self, event: Event) -> None:
        """Queue an event according to its type's overflow policy (called by the hub)."""
        policy = event.overflow
        if policy is Overflow.COALESCE:
            key: Hashable = ("c", event.coalesce_key())
            queued = self._pending.get(key)
            if queued is not None:
                self._pending[key] = event.merge(queued)
                return
        else:
            key = ("s", next(self._seq))
        if len(self._pending) >= self.maxsize:
            kind = type(event).__name__
            if policy is not Overflow.NEVER_DROP:
                self.dropped[kind] += 1
                _warn.warning(("drop", self.name), "subscriber %s is full (%d): dropping %s "
                              "events (%d so far)", self.name, self.maxsize, kind, self.dropped[kind])
                return
            self.over_bound[kind] += 1
            _warn.warning(("over", self.name), "subscriber %s is full (%d): queueing %s past its "
                          "bound (never dropped)", self.name, self.maxsize, kind)
        self._pending[key] = event
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def get_nowait(self) -> E | None:
        """Return the oldest queued event, or None when the queue is empty."""
        if not self._pending:
            return None
        return cast(E, self._pending.popitem(last=False)[1])

    async def get(self) -> E:
        """Wait for and return the oldest queued event."""
        while not self._pending:
            if self.closed:
                raise HubError(f"subscription {self.name} is closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        # Only events of the subscribed types are ever offered (Hub.publish routes by type).
        return cast(E, self._pending.popitem(last=False)[1])

    async def __aiter__(self) -> AsyncIterator[E]:
        while True:
            try:
                yield await self.get()
            except HubError:
                return

    def close(self) -> None:
        """Stop receiving; a pending get() ends the iteration."""
        self.closed = True
        self.hub.unsubscribe(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def stats(self) -> dict[str, Any]:
        """Queue depth and drop counters, for status displays."""
        return {"name": self.name, "queued": len(self._pending), "maxsize": self.maxsize,
                "dropped": dict(self.dropped), "over_bound": dict(self.over_bound)}


class Hub:
    """Routes published events to every subscription whose types match (by isinstance)."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._subs: list[Subscription[Any]] = []
        self._routes: dict[type[Event], list[Subscription[Any]]] = {}
        self.published: Counter[str] = Counter()
        self.closed = False

    @overload
    def subscribe(self, t1: type[E1], /, *, maxsize: int | None = None,
                  name: str = "") -> Subscription[E1]: ...
    @overload
    def subscribe(self, t1: type[E1], t2: type[E2], /, *, maxsize: int | None = None,
                  name: str = "") -> Subscription[E1 | E2]: ...
    @overload
    def subscribe(self, t1: type[E1], t2: type[E2], t3: type[E3], /, *,
                  maxsize: int | None = None, name: str = "") -> Subscription[E1 | E2 | E3]: ...
    @overload
    def subscribe(self, t1: type[E1], t2: type[E2], t3: type[E3], t4: type[E4], /, *,
                  maxsize: int | None = None,
                  name: str = "") -> Subscription[E1 | E2 | E3 | E4]: ...
    @overload
    def subscribe(self, *types: type[Event], maxsize: int | None = None,
                  name: str = "") -> Subscription[Event]: ...

    def subscribe(self, *types: type[Event], maxsize: int | None = None,
                  name: str = "") -> Subscription[Any]:
        """Create a subscription receiving events of the given types (and subclasses), typed
        as the union of those types."""
        if self.closed:
            raise HubError("hub is closed")
        if not types:
            raise HubError("subscribe() needs at least one event type")
        sub = Subscription(self, types, maxsize or self.queue_size,
                           name or ",".join(t.__name__ for t in types))
        self._subs.append(sub)
        self._routes.clear()
        return sub

    def unsubscribe(self, sub: Subscription[Any]) -> None:
        """Remove a subscription; unknown ones are ignored."""
        if sub in self._subs:
            self._subs.remove(sub)
            self._routes.clear()

    def publish(self, event: Event) -> None:
        """Deliver an event to its subscribers without blocking (loop thread only)."""
        if self.closed:
            raise HubError(f"hub is closed; cannot publish {type(event).__name__}")
        kind = type(event)
        subs = self._routes.get(kind)
        if subs is None:
            subs = [s for s in self._subs if issubclass(kind, s.types)]
            self._routes[kind] = subs
        self.published[kind.__name__] += 1
        for sub in subs:
            sub.offer(event)

    def close(self) -> None:
        """Close every subscription; later publishes raise HubError."""
        self.closed = True
        for sub in list(self._subs):
            sub.close()

    def stats(self) -> list[dict[str, Any]]:
        """Per-subscriber queue statistics."""
        return [s.stats() for s in self._subs]
