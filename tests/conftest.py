"""Shared fixtures: leak checks for buses, threads and tasks; paths to fixture data."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import can
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "realworld"


@pytest.fixture
def fixtures() -> Path:
    """The tests/fixtures directory."""
    return FIXTURES


@pytest.fixture
def realworld() -> Path:
    """Third-party CAN data beside the checkout; tests using it skip when it is absent."""
    if not REALWORLD.is_dir():
        pytest.skip("../shared/data/realworld is not present (fresh clone)")
    return REALWORLD


@pytest.fixture(autouse=True)
def _no_leaked_buses_or_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test that leaves a python-can bus open or a thread of its own running."""
    created: list[weakref.ref[can.BusABC]] = []
    original = can.BusABC.__init__

    def tracking_init(self: can.BusABC, *args: object, **kwargs: object) -> None:
        created.append(weakref.ref(self))
        original(self, *args, **kwargs)

    monkeypatch.setattr(can.BusABC, "__init__", tracking_init)
    threads_before = set(threading.enumerate())
    yield
    open_buses = [b for ref in created if (b := ref()) is not None and not b._is_shutdown]
    for bus in open_buses:
        bus.shutdown()
    deadline = time.monotonic() + 3.0
    while True:
        extra = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()
                 and not t.name.startswith(("asyncio_", "ThreadPoolExecutor"))]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not open_buses, f"test leaked open CAN buses: {open_buses}"
    assert not extra, f"test leaked threads: {[t.name for t in extra]}"


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running on its loop."""
    yield
    me = asyncio.current_task()
    for _ in range(3):
        pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not pending:
            return
        await asyncio.sleep(0.05)
    for task in pending:
        task.cancel()
    pytest.fail(f"test leaked asyncio tasks: {[t.get_name() for t in pending]}")
