"""Service bookings chosen by the driver (docs/protocol.md §5, protocol 2).

``booking_options`` offers at most three shops open with a free slot, nearest first when the
car shared its position for the booking (else by name); ``booking`` books one (the nearest free
shop without a name); ``booking_cancel`` frees the slot. Shops are ranked by distance and
opening hours only: no shop can pay for a place in the list.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from typing import Any

from carlink_protocol import wire as p
from carlink_protocol.geo import great_circle_km

from .context import Ctx, Outcome, integer, position, text
from .shops import (Shop, check_slot, day_slots, fmt_clock, nearest_free, parse_clock,
                    parse_day, slot_start)
from .store import CloudStore

MAX_OPTIONS = 3
MAX_UPCOMING = 5  # confirmed bookings per car that have not started yet
FIELD_MAX = 64


def _taken(c: sqlite3.Connection, shop: Shop, day: dt.date) -> dict[int, int]:
    return {r[0]: r[1] for r in c.execute(
        "SELECT slot, COUNT(*) FROM bookings WHERE shop_id = ? AND day = ? GROUP BY slot",
        (shop.id, day.isoformat()))}


def _ranked(ctx: Ctx, item: p.UpItem) -> list[tuple[Shop, int | None]]:
    """Every shop (or the one named) with its distance in km, nearest first (by name without
    a position)."""
    where = position(item.body, required=False)
    shops = ctx.store.shops()
    wanted = item.body.get("shop")
    if isinstance(wanted, str) and wanted:
        shops = [s for s in shops if s.name == wanted]
    if where is None:
        return [(s, None) for s in sorted(shops, key=lambda s: s.name)]
    dist = {s.id: great_circle_km(*where, s.lat, s.lon) for s in shops}
    return [(s, round(dist[s.id])) for s in sorted(shops, key=lambda s: (dist[s.id], s.name))]


def _when(item: p.UpItem) -> tuple[str, dt.date, int]:
    service = text(item.body, "service", max_len=FIELD_MAX)
    day = parse_day(text(item.body, "day", max_len=FIELD_MAX),
                    dt.datetime.fromtimestamp(item.created, dt.UTC).date())
    return service, day, parse_clock(text(item.body, "time", max_len=FIELD_MAX))


def booking_options(ctx: Ctx, item: p.UpItem) -> Outcome:
    """At most three shops open with a free slot that day (the nearest slot to the wanted
    time), nearest first; sent downstream for the driver to choose."""
    service, day, minute = _when(item)
    options: list[dict[str, Any]] = []
    for shop, km in _ranked(ctx, item):
        if len(options) == MAX_OPTIONS:
            break
        if check_slot(shop, day, shop.opens, service):  # no such service, or closed that day
            continue
        slot = nearest_free(shop, minute, _taken(ctx.c, shop, day))
        if slot is not None:
            options.append({"shop": shop.name, "address": shop.address, "distance_km": km,
                            "day": day.isoformat(), "time": fmt_clock(slot)})
    ctx.down(ctx.device.id, "booking_options", {
        "request_id": item.id, "service": service, "day": day.isoformat(),
        "time": fmt_clock(minute), "options": options})
    return "stored", "", {"options": len(options)}


def booking(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Book a service slot: confirmed with a slot, or declined with a reason (both downstream)."""
    service = text(item.body, "service", max_len=FIELD_MAX)
    day_text, time_text = (text(item.body, k, max_len=FIELD_MAX) for k in ("day", "time"))
    shops = [s for s, _ in _ranked(ctx, item)]
    if position(item.body, required=False) is None:
        shops.sort(key=lambda s: s.id)  # as before protocol 2: the shops in enrolment order
    reply: dict[str, Any] = {"service": service, "day": day_text, "time": time_text, "shop": "",
                             "status": "declined", "reason": ""}
    try:
        day = parse_day(day_text, dt.datetime.fromtimestamp(item.created, dt.UTC).date())
        minute = parse_clock(time_text)
    except ValueError as err:
        reply["reason"] = str(err)
    else:
        reply.update(day=day.isoformat(), time=fmt_clock(minute))
        reply.update(_book_first_shop(ctx, item, shops, service, day, minute))
    ctx.down(ctx.device.id, "booking", reply)
    keys = ("status", "shop", "day", "time", "reason", "booking_id")
    return "stored", "", {k: reply[k] for k in keys if k in reply}


def _book_first_shop(ctx: Ctx, item: p.UpItem, shops: Sequence[Shop], service: str,
                     day: dt.date, minute: int) -> dict[str, Any]:
    upcoming = ctx.c.execute("SELECT COUNT(*) FROM bookings WHERE device_id = ? AND starts > ?",
                             (ctx.device.id, ctx.now)).fetchone()[0]
    if upcoming >= MAX_UPCOMING:  # one car cannot take every slot from the others
        return {"reason": f"this car already has {upcoming} upcoming bookings; cancel one "
                          "first"}
    reasons = []
    for shop in shops:
        why = check_slot(shop, day, minute, service)
        if why:
            reasons.append(why)
            continue
        slot = slot_start(shop, minute)
        taken = _taken(ctx.c, shop, day)
        if taken.get(slot, 0) >= shop.capacity:
            free = [s for s in day_slots(shop) if taken.get(s, 0) < shop.capacity]
            hint = f"; free that day: {', '.join(fmt_clock(s) for s in free[:3])}" if free else ""
            reasons.append(f"{shop.name} is fully booked at {fmt_clock(slot)}{hint}")
            continue
        starts = dt.datetime.combine(day, dt.time(slot // 60, slot % 60), dt.UTC).timestamp()
        booking_id = ctx.c.execute(
            "INSERT INTO bookings (device_id, item_id, shop_id, service, day, slot, starts) "
            "VALUES (?,?,?,?,?,?,?) RETURNING id",
            (ctx.device.id, item.id, shop.id, service, day.isoformat(), slot, starts)).fetchone()[0]
        return {"status": "confirmed", "shop": shop.name, "time": fmt_clock(slot),
                "booking_id": int(booking_id), "address": shop.address}
    return {"reason": "; ".join(reasons) or "no shop offers bookings"}


def booking_cancel(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Cancel one of this car's bookings: the slot is free again."""
    booking_id = integer(item.body, "booking_id", 1)
    row = ctx.c.execute("SELECT s.name, s.address, b.service, b.day, b.slot, b.starts FROM "
                        "bookings b JOIN shops s ON s.id = b.shop_id WHERE b.id = ? AND "
                        "b.device_id = ?", (booking_id, ctx.device.id)).fetchone()
    if row is None:
        return "rejected", f"this car has no booking {booking_id}", {}
    shop, address, service, day, slot, starts = row
    if starts <= ctx.now:
        return "rejected", f"booking {booking_id} has already started", {}
    ctx.c.execute("DELETE FROM bookings WHERE id = ?", (booking_id,))
    ctx.down(ctx.device.id, "booking", {
        "status": "cancelled", "booking_id": booking_id, "shop": shop, "address": address,
        "service": service, "day": day, "time": fmt_clock(slot), "reason": ""})
    return "stored", "", {"booking_id": booking_id}


def remind_due(store: CloudStore, now: float, lead_s: float = 86400.0) -> set[int]:
    """Send a reminder (where and when) for confirmed bookings starting within ``lead_s``;
    returns the devices to wake."""
    notified: set[int] = set()
    with store.tx() as c:
        rows = c.execute("SELECT b.id, b.device_id, s.name, s.address, b.service, b.day, "
                         "b.slot FROM bookings b JOIN shops s ON s.id = b.shop_id WHERE "
                         "b.reminded = 0 AND b.starts > ? AND b.starts <= ?",
                         (now, now + lead_s)).fetchall()
        for bid, device_id, shop, address, service, day, slot in rows:
            store.append_down(c, device_id, "booking", {
                "status": "reminder", "booking_id": bid, "shop": shop, "address": address,
                "service": service, "day": day, "time": fmt_clock(slot), "reason": ""}, now)
            c.execute("UPDATE bookings SET reminded = 1 WHERE id = ?", (bid,))
            notified.add(device_id)
    return notified
