"""The one polling helper of the test suite: wait for a condition with a deadline.

The deadline is a generous upper bound for "eventually", never a timing assertion: the machines
running the suite are shared and noisy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

WAIT_S = 20.0


async def eventually(check: Callable[[], Awaitable[object] | object], what: str = "the condition",
                     timeout: float = WAIT_S, interval: float = 0.02) -> None:
    """Poll ``check()`` (plain or awaitable) until it is truthy; fail naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if isinstance(got, Awaitable):
            got = await got
        if got:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
