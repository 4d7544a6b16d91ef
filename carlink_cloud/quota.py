"""Per-device and per-address limits of the reference backend (docs/protocol.md §8).

Pure: every decision takes ``now`` and does no I/O; the server owns the clock and the database.

- :class:`Limits` -- the numbers, one place (``carlink-cloud serve`` uses the defaults).
- :class:`TokenBucket` -- ``rate`` per second, up to ``burst`` at once.
- :class:`AuthLimiter` -- failed authentications per client address; over budget, the address
  is answered 429 with Retry-After during the handshake without looking at its token.
- :class:`Pacer` -- items per second per device (all items, and fan-out kinds such as chat):
  how long a batch waits before it is handled.
- :class:`DeviceQuota` -- stored upstream bytes per device, asked for each new upstream item
  before its handler runs (``handle_batch(admit=...)``); a refusal is a ``rejected`` ack whose
  reason says which limit, and the refused body is not stored.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from carlink_protocol import wire as p

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Limits:
    """What one car (or one address) may cost the backend."""

    # Upstream bodies kept per device (every upstream row within retention), in bytes.
    stored_bytes_per_device: int = 64 * MIB
    # Frames read from one connection but not yet handled; beyond, reading pauses for up to
    # pending_grace_s, then the connection is closed with 1013 and a retry-after hint.
    pending_bytes_per_connection: int = 8 * MIB
    pending_grace_s: float = 2.0
    pending_retry_after_s: float = 5.0
    # Upstream items handled per device and second, and for kinds that fan out to other cars
    # ((class, kind) -> (per s, burst)): paced -- the batch waits and the connection is read
    # more slowly -- nothing is refused, so a car catching up loses nothing.
    items_per_s: float = 200.0
    items_burst: int = 2000
    paced_kinds: Mapping[tuple[str, str], tuple[float, int]] = field(
        default_factory=lambda: {("chat", "chat"): (5.0, 300)})
    # Failed authentications per client address: burst, then one per auth_refill_s.
    auth_failures_burst: int = 20
    auth_refill_s: float = 3.0
    addresses_tracked: int = 10_000


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, float(burst), float(burst), now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are that many; return whether they were taken."""
        self._refill(now)
        if self.tokens < n:
            return False
        self.tokens -= n
        return True

    def borrow(self, now: float, n: float) -> float:
        """Take ``n`` tokens, going into debt; return how long to wait until out of it."""
        self._refill(now)
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def wait(self, now: float, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are available (0 if now)."""
        self._refill(now)
        return 0.0 if self.tokens >= n else (n - self.tokens) / self.rate


class AuthLimiter:
    """Failed authentications per address; a bounded table (least recently seen dropped)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, address: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = TokenBucket(1.0 / self.limits.auth_refill_s, self.limits.auth_failures_burst,
                                 now)
            self._buckets[address] = bucket
            while len(self._buckets) > self.limits.addresses_tracked:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(address)
        return bucket

    def retry_after(self, address: str, now: float) -> int:
        """Whole seconds this address must wait before its next attempt (0: may try now)."""
        bucket = self._buckets.get(address)
        return 0 if bucket is None else math.ceil(bucket.wait(now))

    def failed(self, address: str, now: float) -> None:
        """Count one failed authentication from this address. Attempts checked concurrently
        all count: the budget goes into debt (down to minus one burst), so a wave of parallel
        attempts is not let through each time one token comes back."""
        bucket = self._bucket(address, now)
        bucket.borrow(now, 1.0)
        bucket.tokens = max(bucket.tokens, -bucket.burst)


class Pacer:
    """Per-device item rates across connections (a reconnect does not refill a bucket)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._buckets: dict[tuple[int, str, str], TokenBucket] = {}

    def _bucket(self, key: tuple[int, str, str], rate: tuple[float, int],
                now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            bucket = self._buckets[key] = TokenBucket(rate[0], rate[1], now)
        return bucket

    def delay(self, device_id: int, items: Iterable[p.UpItem], now: float) -> float:
        """Seconds to hold this batch back (the tokens are taken now)."""
        counts: dict[tuple[str, str], int] = {}
        total = 0
        for item in items:
            total += 1
            if (item.cls, item.kind) in self.limits.paced_kinds:
                counts[item.cls, item.kind] = counts.get((item.cls, item.kind), 0) + 1
        if not total:
            return 0.0
        rate = (self.limits.items_per_s, self.limits.items_burst)
        wait = self._bucket((device_id, "", ""), rate, now).borrow(now, total)
        for (cls, kind), n in counts.items():
            bucket = self._bucket((device_id, cls, kind), self.limits.paced_kinds[cls, kind], now)
            wait = max(wait, bucket.borrow(now, n))
        return wait


class DeviceQuota:
    """Stored upstream bytes per device. Used on the database thread only.

    ``usage`` is loaded per device on first use (``load``: device id -> bytes kept) and counted
    up as items are admitted; :meth:`forget` drops it so pruning is seen on the next load."""

    def __init__(self, limits: Limits, load: Callable[[int], int]) -> None:
        self.limits, self.load = limits, load
        self.usage: dict[int, int] = {}

    def forget(self) -> None:
        """Reload stored bytes from the database next time (after pruning)."""
        self.usage.clear()

    def admit(self, device_id: int, item: p.UpItem, now: float) -> str | None:
        """None if the item may be handled (its size is then counted), else the reason."""
        size = len(json.dumps(item.body))  # exactly what the upstream row keeps
        used = self.usage.get(device_id)
        if used is None:
            used = self.usage[device_id] = self.load(device_id)
        limit = self.limits.stored_bytes_per_device
        if used + size > limit:
            return (f"quota: this car keeps {used} bytes on the backend; {size} more would pass "
                    f"its {limit}-byte limit (older items expire with retention)")
        self.usage[device_id] = used + size
        return None
