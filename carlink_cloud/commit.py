"""Group commit across connections: one durable transaction (one fsync) for the batches every
connection queued while the previous one was being written.

The database thread is the backend's bottleneck: with a transaction per connection batch, 1,000
cars sending one chat a second meant 1,000 fsyncs a second on one thread, and latency grew
without bound once they took more than a second (bench_cloud: 200 cars p99 5 s on a loaded
machine). Each connection's batch runs in its own savepoint, so one that fails is rolled back
alone (its connection is closed with 1011, the others are answered). Acks are still sent only
after the commit: an acknowledged item is on disk (synchronous=FULL), as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from carlink_protocol import wire as p

from .handlers import Admit, handle_in
from .store import CloudStore, Device

Job = tuple[Device, Sequence[p.UpItem], int]  # device, items, cursor to record (0: none)
# acks, devices to wake, duplicates, and the downstream items created (device id, item)
Result = tuple[list[p.ItemAck], set[int], int, list[tuple[int, p.DownItem, str]]]


def handle_batches(store: CloudStore, jobs: Sequence[Job], now: float,
                   admit: Admit | None) -> list[Result | Exception]:
    """Handle several connections' batches in one transaction, each in a savepoint; a batch
    that raises is rolled back alone and its exception returned in its place."""
    results: list[Result | Exception] = []
    with store.tx() as c:
        for device, items, cursor in jobs:
            c.execute("SAVEPOINT batch")
            try:
                if cursor:
                    c.execute("UPDATE devices SET acked_seq = MAX(acked_seq, ?) WHERE id = ?",
                              (cursor, device.id))
                fresh: list[tuple[int, p.DownItem, str]] = []
                acks, notify, dups = handle_in(store, c, device, items, now, admit, fresh)
                results.append((acks, notify, dups, fresh))
            except Exception as err:  # noqa: BLE001 -- answered per connection (1011)
                c.execute("ROLLBACK TO batch")
                results.append(err)
            c.execute("RELEASE batch")
    return results


class GroupCommit:
    """Collects batches from every connection; a single task writes them together."""

    def __init__(self, run: Callable[..., Awaitable[Any]], store: CloudStore,
                 admit: Admit | None, clock: Callable[[], float]) -> None:
        self.run, self.store, self.admit, self.clock = run, store, admit, clock
        self._jobs: list[tuple[Job, asyncio.Future[Result]]] = []
        self._work = asyncio.Event()
        self.commits = self.batches = 0

    async def submit(self, device: Device, items: Sequence[p.UpItem],
                     cursor: int = 0) -> Result:
        """Handle one connection's batch in the next group transaction."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._jobs.append(((device, items, cursor), future))
        self._work.set()
        return await future

    async def serve(self) -> None:
        """Write whatever is queued, one transaction at a time, until cancelled."""
        while True:
            await self._work.wait()
            self._work.clear()
            jobs, self._jobs = self._jobs, []
            if not jobs:
                continue
            try:
                results = await self.run(handle_batches, self.store, [j for j, _ in jobs],
                                         self.clock(), self.admit)
            except Exception as err:  # the transaction itself failed: every batch is unanswered
                results = [err] * len(jobs)
            self.commits += 1
            self.batches += len(jobs)
            for (_, future), result in zip(jobs, results):
                if future.done():
                    continue  # its connection went away meanwhile
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
