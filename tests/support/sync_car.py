"""Test harness shared by the sync tests: a real SyncService on its own hub, recording its
CloudState and SyncRejected events, started and stopped by :func:`running_car` (or
:func:`started_car` for a whole Config); :func:`eventually` waits for a condition."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from carlinkd.config import Config, build_config
from carlinkd.events import CloudState, SyncRejected
from carlinkd.hub import Hub
from carlinkd.sync.service import SyncService

from .wait import WAIT_S, eventually  # noqa: F401  (re-exported for the sync tests)


class Car:
    """A SyncService on its own hub, recording CloudState and SyncRejected events."""

    def __init__(self, svc: SyncService, hub: Hub) -> None:
        self.svc, self.hub = svc, hub
        self.states: list[CloudState] = []
        self.rejected: list[SyncRejected] = []
        self._sub = hub.subscribe(CloudState, SyncRejected, name="test")
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for event in self._sub:
            if isinstance(event, SyncRejected):
                self.rejected.append(event)
            else:
                assert isinstance(event, CloudState)
                self.states.append(event)

    async def wait_state(self, state: str, count: int = 1) -> CloudState:
        """The count-th CloudState with this state, waiting up to WAIT_S for it."""
        async def poll() -> CloudState:
            while len(hits := [s for s in self.states if s.state == state]) < count:
                await asyncio.sleep(0.01)
            return hits[count - 1]
        return await asyncio.wait_for(poll(), WAIT_S)

    async def close(self) -> None:
        """Stop the service, then the recorder and the hub."""
        await self.svc.stop()
        self._sub.close()
        await self._task
        self.hub.close()


@contextlib.asynccontextmanager
async def running_car(state: Path, url: str, token: str, defaults: Mapping[str, Any],
                      **sync: Any) -> AsyncIterator[Car]:
    """A started car whose [sync] section is url, token, defaults and then sync."""
    cfg = build_config([("test", {"sync": {"url": url, "token": token, **defaults, **sync}})])
    async with started_car(cfg, state) as c:
        yield c


@contextlib.asynccontextmanager
async def started_car(cfg: Config, state: Path) -> AsyncIterator[Car]:
    """A started car with this configuration and state directory."""
    hub = Hub()
    c = Car(SyncService(cfg, hub, state), hub)
    await c.svc.start()
    try:
        yield c
    finally:
        await c.close()
