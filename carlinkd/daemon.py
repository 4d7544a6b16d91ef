"""The daemon: wires the CAN source, the decoder and the hub together on one event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .clock import Clock
from .aio import cancel_all
from .alerts.service import AlertService
from .can.catalog import DEMO_CATALOG, Catalog
from .can.obd.service import ObdService
from .can.database import load_database
from .can.decode import Decoder
from .can.source import CanSource, Frames, SourceState, check_interface
from .config import Config
from .events import BusState, BusStats, SignalsUpdated, SignalValue
from .hmi import HmiService
from .hub import Hub, Subscription
from .records.evidence import EvidenceService
from .records.history import ServiceHistory
from .records.offers import OfferService
from .report.service import ReportService
from .records.keys import load_or_create_device_key
from .store.db import Store
from .sync.service import SyncService
from .voice.service import VoiceService

log = logging.getLogger(__name__)

# How often counters are published as a BusStats event.
STATS_INTERVAL_S = 1.0


class Daemon:
    """One carlinkd instance: bus in, typed events out on its hub."""

    def __init__(self, cfg: Config, hub: Hub | None = None,
                 clock: Clock | Callable[[], float] | None = None) -> None:
        self.cfg = cfg
        # One clock pair for every part: monotonic for holds and rates, wall for stamps.
        self.clock = Clock.of(clock)
        self.hub = hub or Hub(cfg.hub.queue_size)
        self.db = load_database(cfg.decode.dbc, cfg.decode.strict)
        # Built-in entries, overridden by [decode.catalog], plus raw [decode] subscribe names.
        catalog = Catalog({**DEMO_CATALOG, **cfg.decode.catalog}, subscribe=cfg.decode.subscribe)
        self.decoder = Decoder(self.db, catalog, cfg.decode.warn_interval_s)
        self.source = CanSource(cfg.can, self._on_frames, self._on_bus_state)
        self.signals: dict[str, SignalValue] = {}
        self.store: Store | None = None
        self.alerts: AlertService | None = None
        self.sync: SyncService | None = None
        self.voice: VoiceService | None = None
        self.hmi: HmiService | None = None
        self.obd: ObdService | None = None
        self.evidence: EvidenceService | None = None
        self.offers: OfferService | None = None
        self.reports: ReportService | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    def _on_frames(self, batch: Frames) -> None:
        changed = self.decoder.ingest(batch)
        if changed:
            self.signals.update(changed)
            self.hub.publish(SignalsUpdated(changed))

    def _on_bus_state(self, state: SourceState, detail: str) -> None:
        if not self.hub.closed:
            self.hub.publish(BusState(state.value, detail))

    def counters(self) -> dict[str, int]:
        """Source and decoder counters in one mapping."""
        return {**{f"bus_{k}": v for k, v in self.source.counters.items()},
                **self.decoder.counters}

    async def start(self) -> None:
        """Open the store, start the consumers (sync, voice), then the producers (alerts, bus).

        Consumers subscribe before producers start, so nothing raised at start-up is missed."""
        check_interface(self.source.kwargs)
        state = self.cfg.daemon.state_dir
        if self.cfg.alerts.enabled:
            key = load_or_create_device_key(self.cfg.store.key_path(state))
            self.store = await Store.open(self.cfg.store.db_path(state), self.cfg.store)
        self.sync = SyncService(self.cfg, self.hub, state)
        await self.sync.start()
        if self.cfg.voice.enabled:
            self.voice = VoiceService(self.cfg, self.hub)
            await self.voice.start()
        if self.store is not None:
            self.alerts = AlertService(self.cfg, self.hub, self.store, clock=self.clock)
            await self.alerts.start()
            self.evidence = EvidenceService(self.hub, self.store, ServiceHistory(self.store, key),
                                            self.clock.wall)
            await self.evidence.start()
            self.offers = OfferService(self.hub, self.evidence.history, self.clock.wall)
            await self.offers.start()
            self.reports = ReportService(self.hub, self.evidence.history, state / "reports",
                                         self.clock.wall, self.cfg.voice.language)
            await self.reports.start()
        if self.cfg.hmi.enabled:
            self.hmi = HmiService(self.cfg.hmi, self)
            await self.hmi.start()  # never raises: retries in the background without a bus
        if self.cfg.obd.enabled:
            self.obd = ObdService(self.cfg, self.hub, self.source, clock=self.clock.wall,
                                  monotonic=self.clock.monotonic)
            await self.obd.start()
        self._tasks.append(asyncio.create_task(
            self._follow_signals(self.hub.subscribe(SignalsUpdated, name="latest-values")),
            name="latest-values"))
        self._tasks.append(self.source.start())
        self._tasks.append(asyncio.create_task(self._publish_stats(), name="stats"))

    async def _follow_signals(self, sub: Subscription[SignalsUpdated]) -> None:
        """Keep ``signals``, the one latest-values table, for every source on the hub: the DBC
        decoder fills it at once in ``_on_frames``; OBD-II answers and anything else that
        publishes signals arrive here (before, OBD-only values never reached GetSignals)."""
        try:
            async for event in sub:
                self.signals.update(event.values)
        finally:
            sub.close()

    async def _publish_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            self.hub.publish(BusStats(self.counters(), self.clock.wall()))

    async def stop(self) -> None:
        """Stop every task, close the bus, flush and close the store, close the hub (also after
        a start that failed half-way)."""
        for name in ("obd", "hmi"):
            await self._stop_part(name)
        await self.source.stop()
        await cancel_all(self._tasks)
        self._tasks.clear()
        # alerts before sync: sync queues late alerts, then flushes what the cloud has not acked
        for name in ("reports", "offers", "evidence", "alerts", "voice", "sync"):
            await self._stop_part(name)
        if self.store is not None:
            await self.store.close()
        if not self.hub.closed:
            self.hub.close()

    async def _stop_part(self, name: str) -> None:
        """Stop one subsystem; its failure is logged and does not keep the others running."""
        part = getattr(self, name)
        if part is None:
            return
        try:
            await part.stop()
        except Exception:
            log.exception("stopping %s failed", name)

    async def __aenter__(self) -> Daemon:
        try:
            await self.start()
        except BaseException:
            # A half-started daemon must still close what it opened: an open aiosqlite
            # connection's thread would keep the process from exiting with its error.
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
