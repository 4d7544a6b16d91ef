"""The daemon's one clock pair: monotonic time for holds, timeouts and rates; wall time for stamps.

A Raspberry Pi without a real-time clock boots in 1970 or at its last shutdown and jumps when NTP
answers; a hold measured on wall time would be satisfied at once by such a jump. Every part gets
the same :class:`Clock` from the daemon and measures durations on ``monotonic`` only, stamping what
it stores or sends with ``wall``. A simulator running faster than real time passes its model clock
as both (:meth:`Clock.single`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """Two time sources in seconds: ``monotonic`` (never jumps) and ``wall`` (since the epoch)."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

    @classmethod
    def single(cls, now: Callable[[], float]) -> Clock:
        """One model clock used as both (a simulator, a test): it never jumps by itself."""
        return cls(now, now)

    @classmethod
    def of(cls, clock: Clock | Callable[[], float] | None) -> Clock:
        """A Clock from a Clock, a single time function, or None (the system's clocks)."""
        if clock is None:
            return SYSTEM
        return clock if isinstance(clock, Clock) else cls.single(clock)

    def offset(self) -> float:
        """wall - monotonic now: adds to a monotonic instant to stamp it in wall time."""
        return self.wall() - self.monotonic()


SYSTEM = Clock()
