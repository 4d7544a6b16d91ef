"""A shop's ``service_record_offer``: asked of the driver; on yes appended with its signature.

The cloud delivers the offer (docs/protocol.md, downstream ``service_record_offer``:
``booking_id``, ``shop``, ``service``, ``work``, ``record``, ``shop_sig``);
:func:`parse_offer` checks it (a valid record, a shop signature that matches it under the
registry key it names) and makes a :class:`ServiceRecordOffered` event. The voice asks "Demo
Garage finished your oil change. Add it to your service history?"; yes publishes the command
``service_record_accept`` {booking_id}, on which :class:`OfferService` appends the record with
the shop's signature beside the car's. Cancel, no answer or ``service_record_decline`` add
nothing. The first registry key accepted is kept (trust on first use, it came over the
authenticated cloud connection); an offer certified by another one is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from carlink_protocol import shopsig
from carlink_protocol.chain import ServiceRecord
from carlink_protocol.errors import RecordsError

from ..aio import cancel_all
from ..errors import CarlinkError
from ..events import Command, Event, Overflow

if TYPE_CHECKING:
    from ..hub import Hub, Subscription
    from .history import ServiceHistory

log = logging.getLogger(__name__)

KIND = "service_record_offer"
ACCEPT, DECLINE = "service_record_accept", "service_record_decline"
MAX_PENDING = 20  # offers kept waiting for an answer (oldest dropped first)


@dataclass(frozen=True, slots=True)
class ServiceRecordOffered(Event):
    """A shop offers a signed record of work it finished on this car."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    booking_id: int
    shop: str
    work: str
    record: Mapping[str, Any]
    shop_sig: Mapping[str, Any]
    seq: int = 0


def parse_offer(body: Mapping[str, Any], seq: int) -> ServiceRecordOffered:
    """The event for an offer body (ValueError saying what is wrong)."""
    record, sig = body.get("record"), body.get("shop_sig")
    booking = body.get("booking_id")
    if not isinstance(record, Mapping) or not isinstance(sig, Mapping) or \
            isinstance(booking, bool) or not isinstance(booking, int):
        raise ValueError("an offer needs 'booking_id', 'record' and 'shop_sig'")
    try:
        ServiceRecord.from_json(record)
    except RecordsError as err:
        raise ValueError(f"offered record: {err}") from err
    check = shopsig.check({"record": record, "shop_sig": sig}, None)
    if check.status != shopsig.SHOP_SIGNED:
        raise ValueError(f"offered record: {check.detail}")
    work = body.get("work") or ", ".join(map(str, record.get("items", [])))
    return ServiceRecordOffered(booking, check.shop, str(work)[:100], dict(record), dict(sig),
                                seq)


def offer_texts(offer: ServiceRecordOffered, lang: str) -> tuple[str, str]:
    """(question, what is said after yes) for the driver."""
    if lang == "zh":
        return (f"{offer.shop}已完成您的{offer.work}。要加入保养记录吗？",
                "已加入保养记录。")
    return (f"{offer.shop} finished your {offer.work}. Add it to your service history?",
            "Added to your service history.")


class OfferService:
    """Keeps offers until answered; appends an accepted one to the chain."""

    def __init__(self, hub: Hub, history: ServiceHistory, clock: Callable[[], float]) -> None:
        self.hub, self.history, self.clock = hub, history, clock
        self.pending: dict[int, ServiceRecordOffered] = {}
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Subscribe to offers and to the accept/decline commands."""
        self._sub = self.hub.subscribe(ServiceRecordOffered, Command, name="offers")
        self._tasks.append(asyncio.create_task(self._consume(self._sub), name="offers"))

    async def stop(self) -> None:
        """Stop; unanswered offers are dropped (nothing is added)."""
        await cancel_all(self._tasks)
        if self._sub is not None:
            self._sub.close()

    async def handle(self, event: Event) -> str:
        """One event; returns what happened (for logs and tests)."""
        if isinstance(event, ServiceRecordOffered):
            self.pending[event.booking_id] = event
            while len(self.pending) > MAX_PENDING:
                self.pending.pop(next(iter(self.pending)))
            return "pending"
        if not isinstance(event, Command) or event.name not in (ACCEPT, DECLINE):
            return ""
        try:
            booking = int(event.args.get("booking_id", ""))
        except ValueError:
            return "ignored"
        offer = self.pending.pop(booking, None)
        if offer is None:
            log.info("no pending service record offer for booking %s", booking)
            return "ignored"
        if event.name == DECLINE:
            log.info("service record of booking %d at %s declined", booking, offer.shop)
            return "declined"
        return await self._accept(offer)

    async def _accept(self, offer: ServiceRecordOffered) -> str:
        from .history import REGISTRY_META_KEY

        registry = str(offer.shop_sig.get("registry_key", ""))
        pinned = await self.history.store.get_meta(REGISTRY_META_KEY)
        if pinned and pinned != registry:
            log.warning("refused the record from %s: its shop key is certified by another "
                        "registry key than the one this car trusts", offer.shop)
            return "refused"
        record = ServiceRecord.from_json(offer.record)
        entry = await self.history.add(record, self.clock(), {"shop_sig": dict(offer.shop_sig)})
        if not pinned:
            await self.history.store.set_meta(REGISTRY_META_KEY, registry)
        log.info("service record #%d from %s added (booking %d)", entry.seq, offer.shop,
                 offer.booking_id)
        return "added"

    async def _consume(self, sub: Subscription) -> None:
        async for event in sub:
            try:
                await self.handle(event)
            except CarlinkError as err:
                log.warning("service record offer not added: %s", err)
