"""Daemon-side sync adapter: hub commands and alerts -> durable outbox -> cloud; cloud -> hub.

Wiring (daemon): ``svc = SyncService(cfg, hub, state_dir); await svc.start()`` after the hub
exists, ``await svc.stop()`` before the hub closes. Without ``sync.url`` it still queues items
durably (the car is offline) and reports CloudState("offline").

``AlertRaised`` / ``AlertCleared`` become items of the lossless ``alert`` class (kind ``alert``,
body in docs/protocol.md §5). Each item's id is a digest of its body, so the same alert event can
be queued at most once and the cloud, which answers a known id again without a second effect
(§4.2), stores it at most once. Subscribe before the alert producer starts to see every event.

Service-history entries (``carlinkd records add``, another process) are picked up from the store
at start and every housekeeping round by :class:`~carlinkd.sync.records.RecordsFeed` and queued
as ``service_record`` items (§6).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..aio import cancel_all
from ..config import Config
from .settings import SyncConfig
from ..errors import OutboxFull, RecordsError, SyncError
from ..events import (AlertCleared, AlertRaised, CloudState, Command, Event, HelperChanged,
                      HelpStatus, OutboxStats, SignalsUpdated, SignalValue, SyncRejected)
from ..hub import Hub, Subscription
from .client import SyncClient, describe
from .consent import Consent
from .db import SyncDb
from .inbound import InboundLog
from .outbox import Dropped, Outbox
from .records import CLASS as RECORDS_CLASS
from .records import KIND as RECORDS_KIND
from .records import RecordsFeed
from .tls import client_context

log = logging.getLogger(__name__)

# How often expiry runs and OutboxStats is published.
HOUSEKEEPING_S = 10.0
LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
# Signals copied into the status snapshot and help requests when known.
STATUS_SIGNALS = (LATITUDE, LONGITUDE, "Vehicle.Speed", "Vehicle.TraveledDistance",
                  "Vehicle.Powertrain.FuelSystem.RelativeLevel",
                  "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current")

Builder = Callable[[Mapping[str, str]], dict[str, Any]]


def _args(*required: str, optional: tuple[str, ...] = ()) -> Builder:
    def build(args: Mapping[str, str]) -> dict[str, Any]:
        missing = [k for k in required if not str(args.get(k, "")).strip()]
        if missing:
            raise SyncError(f"missing argument(s): {', '.join(missing)}")
        return {k: str(args[k]) for k in (*required, *optional) if k in args}
    return build


# Command name -> (outbox class, item kind, body builder). The only commands sync acts on;
# those in CONSENT_COMMANDS also pass the consent rules (position, helper, help life cycle).
COMMANDS: dict[str, tuple[str, str, Builder]] = {
    "send_message": ("chat", "chat", _args("group", "text")),
    "join_group": ("chat", "group_join", _args("group")),
    "leave_group": ("chat", "group_leave", _args("group")),
    "list_groups": ("chat", "group_list", _args()),
    "approve_group": ("chat", "group_approve", _args("group", "device")),
    "book_service": ("booking", "booking", _args("service", "day", "time", optional=("shop",))),
    "booking_options": ("booking", "booking_options", _args("service", "day", "time")),
    "booking_cancel": ("booking", "booking_cancel", _args("booking_id")),
    "emergency_help": ("emergency", "help_request", _args(optional=("note",))),
    "help_respond": ("emergency", "help_response",
                     _args("request_id", "to", optional=("text",))),
    "help_cancel": ("emergency", "help_cancel", _args(optional=("request_id",))),
    "set_helper": ("status", "status", _args("state")),
}
CONSENT_COMMANDS = ("book_service", "booking_options", "booking_cancel", "emergency_help",
                    "help_cancel", "set_helper")
HELPER_STATES = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


def alert_item(event: AlertRaised | AlertCleared) -> tuple[str, dict[str, Any]]:
    """The outbox id and body of an alert event; the id is stable (a digest of the body)."""
    body: dict[str, Any] = {"name": event.key}
    if isinstance(event, AlertRaised):
        body.update(event="raised", kind=event.kind, severity=event.severity, text=event.text)
    else:
        body["event"] = "cleared"
    body.update(reason=event.reason, at=event.timestamp)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "alert-" + hashlib.sha256(canonical.encode()).hexdigest()[:40], body


def read_token(cfg: SyncConfig) -> str:
    """The device token from the config or its token file."""
    if cfg.token:
        return cfg.token
    if cfg.token_file is None:
        raise SyncError("sync.url is set but neither sync.token nor sync.token_file is")
    try:
        token = cfg.token_file.read_text().strip()
    except OSError as err:
        raise SyncError(f"cannot read sync.token_file {cfg.token_file}: {err.strerror}") from err
    if not token:
        raise SyncError(f"sync.token_file {cfg.token_file} is empty")
    return token


class SyncService:
    """Owns the sync database, the client task and the hub subscriptions."""

    def __init__(self, cfg: Config, hub: Hub, state_dir: Path, *,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.cfg = cfg.sync
        self.hub = hub
        self.path = self.cfg.db_path(state_dir)
        self.store_path = cfg.store.db_path(state_dir)
        self.key_path = cfg.store.key_path(state_dir)
        self.clock = clock
        self.rng = rng
        self.db: SyncDb | None = None
        self.outbox: Outbox | None = None
        self.inbound: InboundLog | None = None
        self.client: SyncClient | None = None
        self.records: RecordsFeed | None = None
        self.signals: dict[str, SignalValue] = {}
        self.consent = Consent(self.cfg.location, self.cfg.help_share_s, cfg.social.helper)
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: tuple[Any, ...] = ()
        self._alerts_sub: Subscription | None = None
        self._alerts_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the database, subscribe to commands, alerts and signals, connect if configured."""
        # Token and TLS files first: a bad one is a one-line error before anything is opened.
        token = read_token(self.cfg) if self.cfg.url else ""
        tls = client_context(self.cfg) if self.cfg.url else None
        self.db = await SyncDb.open(self.path)
        self.outbox, self.inbound = Outbox(self.db), InboundLog(self.db)
        self.records = RecordsFeed(self.db, self.store_path, self.key_path)
        await self.outbox.load()
        await self.inbound.load()
        await self.records.load()
        self.consent.restore(await self.db.get_state("consent") or {})
        log.info("location %s; helper %s", self.consent.location,
                 "on (coarse cell only)" if self.consent.helper else "off")
        commands = self.hub.subscribe(Command, name="sync-commands")
        alerts = self.hub.subscribe(AlertRaised, AlertCleared, name="sync-alerts")
        signals = self.hub.subscribe(SignalsUpdated, name="sync-signals", maxsize=16)
        self._alerts_sub = alerts
        self._alerts_task = asyncio.create_task(self._alerts(alerts), name="sync-alerts")
        self._tasks = [
            asyncio.create_task(self._commands(commands), name="sync-commands"),
            self._alerts_task,
            asyncio.create_task(self._signals(signals), name="sync-signals"),
            asyncio.create_task(self._housekeeping(), name="sync-housekeeping"),
        ]
        self._subs = (commands, alerts, signals)
        if self.cfg.url:
            self.client = SyncClient(self.cfg, self.outbox, self.inbound, token,
                                     on_event=self._publish, on_state=self._on_state,
                                     rng=self.rng, clock=self.clock, tls_context=tls)
            self.client.start()
        else:
            self._publish(CloudState("offline", "sync.url not set; items stay queued"))

    async def stop(self) -> None:
        """Flush and close the connection, stop the tasks, close the database."""
        if self._alerts_sub is not None and self._alerts_task is not None:
            # Alert events already published go into the outbox first, so the flush carries them.
            self._alerts_sub.close()
            await asyncio.gather(self._alerts_task, return_exceptions=True)
            self._alerts_task = None
        if self.client is not None:
            await self.client.stop()
        for sub in self._subs:
            sub.close()
        await cancel_all(self._tasks)
        self._tasks.clear()
        if self.db is not None:
            await self.db.close()
            self.db = None

    def _publish(self, event: Event) -> None:
        if isinstance(event, SyncRejected) and event.origin == "cloud" \
                and event.what in self.consent.open_requests:
            self.consent.help_closed(event.what)  # the cloud refused our help request
            self._publish(HelpStatus("rejected", event.what, event.reason))
        if not self.hub.closed:
            self.hub.publish(event)

    def _on_state(self, state: str, detail: str) -> None:
        self._publish(CloudState(state, detail))

    async def submit(self, cls: str, kind: str, body: Mapping[str, Any], *,
                     key: str | None = None, item_id: str | None = None) -> str:
        """Queue an item durably (raises OutboxFull/SyncError) and wake the client."""
        assert self.outbox is not None, "start() first"
        item, dropped = await self.outbox.put(cls, kind, body, self.clock(), key=key,
                                              item_id=item_id)
        self._report_dropped(dropped)
        if self.client is not None:
            self.client.nudge()
        return item

    async def _commands(self, sub: Any) -> None:
        async for event in sub:
            assert isinstance(event, Command)
            spec = COMMANDS.get(event.name)
            if spec is None:
                continue  # not ours (e.g. voice or HMI commands)
            cls, kind, build = spec
            try:
                body = build(event.args)
                if event.name in CONSENT_COMMANDS:
                    await self._consent_command(event.name, body)
                else:
                    await self.submit(cls, kind, body)
            except SyncError as err:  # OutboxFull is a StoreError: caught below
                self._refuse(event, str(err))
            except OutboxFull as err:
                self._refuse(event, str(err))

    async def _consent_command(self, name: str, body: dict[str, Any]) -> None:
        """The commands whose items depend on the driver's consent (see sync/consent.py)."""
        now = self.clock()
        if name == "emergency_help":
            await self._help_request(body.get("note", ""), now)
        elif name == "help_cancel":
            await self._help_cancel(body.get("request_id"), now)
        elif name == "set_helper":
            await self.set_helper(body["state"])
        elif name == "booking_cancel":
            try:
                booking_id = int(body["booking_id"])
            except ValueError:
                raise SyncError(f"booking_id {body['booking_id']!r} is not a number") from None
            await self.submit("booking", "booking_cancel", {"booking_id": booking_id})
        else:
            body.update(self.consent.position_for_booking(self.signals, now))
            await self.submit("booking", "booking" if name == "book_service" else name, body)

    async def _help_request(self, note: str, now: float) -> None:
        body, located = self.consent.help_body(self.signals, note, now)
        if not located:
            why = "location is off" if self.consent.location == "off" else "no position yet"
            log.warning("help request without a position (%s): the cloud will refuse it", why)
            self._publish(HelpStatus("no_position", "", why))
        item = await self.submit("emergency", "help_request", body)
        self.consent.help_sent(item, body, now)
        await self._save_consent()
        self._publish(HelpStatus("sent", item, "with position" if located else ""))
        if located:  # the share window opens: the next status may carry the position
            await self._queue_status(now)

    async def _help_cancel(self, request_id: str | None, now: float) -> None:
        ids = [request_id] if request_id else self.consent.open_ids(now)
        if not ids:
            self._publish(HelpStatus("none_open"))
            return
        for rid in ids:
            await self.submit("emergency", "help_cancel", {"request_id": rid})
            self.consent.help_closed(rid)
            self._publish(HelpStatus("cancelled", rid))
        await self._save_consent()

    async def set_helper(self, state: str | bool, origin: str = "") -> bool:
        """Offer help to others (only a coarse cell leaves the car) or stop; persisted."""
        if isinstance(state, str):
            if state.strip().lower() not in HELPER_STATES:
                raise SyncError(f"helper state {state!r} is not on or off")
            state = HELPER_STATES[state.strip().lower()]
        self.consent.helper = state
        await self._save_consent()
        log.info("helper %s", "on" if state else "off")
        self._publish(HelperChanged(state, origin))
        await self._queue_status(self.clock())
        return state

    async def _save_consent(self) -> None:
        assert self.db is not None
        await self.db.set_state("consent", self.consent.to_json())

    async def _queue_status(self, now: float) -> None:
        if self.signals:
            await self.submit("status", "status", self.consent.status_body(self.signals, now),
                              key="vehicle")

    async def _alerts(self, sub: Subscription) -> None:
        async for event in sub:
            assert isinstance(event, AlertRaised | AlertCleared)
            item_id, body = alert_item(event)
            try:
                await self.submit("alert", "alert", body, item_id=item_id)
            except (SyncError, OutboxFull) as err:
                log.error("cannot queue alert %s (%s) for the cloud: %s", event.key,
                          body["event"], err)
                self._publish(SyncRejected(f"alert/{event.key}", str(err), "alerts"))

    def _refuse(self, event: Command, reason: str) -> None:
        log.error("cannot queue %s from %s: %s", event.name, event.origin, reason)
        self._publish(SyncRejected(event.name, reason, event.origin))

    async def _signals(self, sub: Any) -> None:
        async for event in sub:
            assert isinstance(event, SignalsUpdated)
            for name in STATUS_SIGNALS:
                if name in event.values:
                    self.signals[name] = event.values[name]

    async def _housekeeping(self) -> None:
        assert self.outbox is not None
        last_status = 0.0
        while True:
            now = self.clock()
            try:
                await self.queue_records()
                self._report_dropped(await self.outbox.expire(now))
                if self.signals and now - last_status >= self.cfg.status_interval_s:
                    last_status = now
                    await self._queue_status(now)
                self._publish(OutboxStats(await self.outbox.stats(now), now))
            except (SyncError, OutboxFull) as err:
                log.error("sync housekeeping: %s", err)
            await asyncio.sleep(min(HOUSEKEEPING_S, self.cfg.status_interval_s))

    async def queue_records(self) -> int:
        """Queue the service-history entries not queued yet; returns how many."""
        assert self.records is not None and self.outbox is not None, "start() first"
        try:
            items = await self.records.pending()
        except RecordsError as err:  # the device key is missing or unreadable
            log.error("service records cannot be uploaded: %s", err)
            return 0
        if not items:
            return 0
        _, dropped = await self.outbox.put_many(
            [(RECORDS_CLASS, RECORDS_KIND, body, None, item_id) for item_id, body in items],
            self.clock())
        self._report_dropped(dropped)
        await self.records.mark(items)
        count = sum(len(body["entries"]) for _, body in items)
        log.info("queued %d service record(s) for the cloud", count)
        if self.client is not None:
            self.client.nudge()
        return count

    def _report_dropped(self, dropped: list[Dropped]) -> None:
        for item in dropped:
            if item.why != "coalesced":
                self._publish(SyncRejected(f"{item.cls}/{item.kind}",
                                           f"{item.why} before reaching the cloud", "outbox"))

    def status(self) -> dict[str, Any]:
        """Client state and counters (the outbox figures arrive as OutboxStats events)."""
        return describe(self.client)


@contextlib.asynccontextmanager
async def running(cfg: Config, hub: Hub, state_dir: Path, **kwargs: Any) -> Any:
    """``async with running(cfg, hub, state_dir) as svc:`` start/stop helper."""
    svc = SyncService(cfg, hub, state_dir, **kwargs)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
