"""What the reference backend does with each upstream item kind (docs/protocol.md §5).

Every handler runs inside the batch transaction of :func:`handle_batch` and returns
``(status, reason, result)``; downstream items it creates are committed in the same transaction
as the upstream answer, so a crash never leaves one without the other.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from carlink_protocol.geo import great_circle_km
from carlink_protocol.errors import RecordsError
from carlink_protocol.chain import GENESIS, Entry, check_head, fingerprint, key_id, verify_links
from carlink_protocol import wire as p

from .shops import check_slot, day_slots, fmt_clock, parse_clock, parse_day, slot_start
from .store import CloudStore, Device

HELP_RADIUS_KM = 25.0
TEXT_MAX = 2000
Outcome = tuple[str, str, dict[str, Any]]


class Ctx:
    """One batch: the store, its open transaction, the device, the clock, whom to wake."""

    def __init__(self, store: CloudStore, c: sqlite3.Connection, device: Device,
                 now: float) -> None:
        self.store, self.c, self.device, self.now = store, c, device, now
        self.notify: set[int] = set()

    def down(self, device_id: int, kind: str, body: dict[str, Any]) -> int:
        """Queue a downstream item for a device and remember to wake its connection."""
        self.notify.add(device_id)
        return self.store.append_down(self.c, device_id, kind, body, self.now)


def _text(body: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value.strip() or len(value) > TEXT_MAX:
        raise ValueError(f"'{key}' must be a non-empty string (at most {TEXT_MAX} chars)")
    return value.strip()


def _coord(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _group(ctx: Ctx, name: str) -> tuple[int, str, str]:
    row = ctx.c.execute("SELECT id, model, region FROM groups WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise ValueError(f"no group {name!r}")
    return row[0], row[1], row[2]


def _is_member(ctx: Ctx, gid: int) -> bool:
    return ctx.c.execute("SELECT 1 FROM members WHERE group_id = ? AND device_id = ?",
                         (gid, ctx.device.id)).fetchone() is not None


def chat(ctx: Ctx, item: p.UpItem) -> Outcome:
    """A message to a group: fanned out to every other member's downstream log."""
    group, text = _text(item.body, "group"), _text(item.body, "text")
    gid, _, _ = _group(ctx, group)
    if not _is_member(ctx, gid):
        return "rejected", f"not a member of group {group!r}", {}
    members = [r[0] for r in ctx.c.execute(
        "SELECT device_id FROM members WHERE group_id = ? AND device_id != ?",
        (gid, ctx.device.id))]
    for member in members:
        ctx.down(member, "chat", {"group": group, "from": ctx.device.name, "text": text,
                                  "id": item.id, "sent": item.created})
    return "stored", "", {"delivered_to": len(members)}


def _groups_item(ctx: Ctx) -> dict[str, Any]:
    joined = [r[0] for r in ctx.c.execute(
        "SELECT g.name FROM groups g JOIN members m ON m.group_id = g.id WHERE m.device_id = ?"
        " ORDER BY g.name", (ctx.device.id,))]
    available = [r[0] for r in ctx.c.execute(
        "SELECT name FROM groups WHERE model IN ('', ?) AND region IN ('', ?) ORDER BY name",
        (ctx.device.model, ctx.device.region)) if r[0] not in joined]
    return {"joined": joined, "available": available}


def group_join(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Join a group whose car model and region match this car's ('' matches any)."""
    name = _text(item.body, "group")
    gid, model, region = _group(ctx, name)
    if model not in ("", ctx.device.model) or region not in ("", ctx.device.region):
        return "rejected", f"group {name!r} is for {model or 'any model'} in " \
                           f"{region or 'any region'}", {}
    ctx.c.execute("INSERT OR IGNORE INTO members VALUES (?,?)", (gid, ctx.device.id))
    ctx.down(ctx.device.id, "groups", _groups_item(ctx))
    return "stored", "", {"group": name}


def group_leave(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Leave a group (leaving one you are not in is not an error)."""
    name = _text(item.body, "group")
    gid, _, _ = _group(ctx, name)
    ctx.c.execute("DELETE FROM members WHERE group_id = ? AND device_id = ?", (gid, ctx.device.id))
    ctx.down(ctx.device.id, "groups", _groups_item(ctx))
    return "stored", "", {"group": name}


def group_list(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Send the joined and joinable groups downstream."""
    ctx.down(ctx.device.id, "groups", _groups_item(ctx))
    return "stored", "", {}


def booking(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Book a service slot: confirmed with a slot, or declined with a reason (both downstream)."""
    service, day_text, time_text = (_text(item.body, k) for k in ("service", "day", "time"))
    shops = ctx.store.shops()
    wanted = item.body.get("shop")
    if isinstance(wanted, str) and wanted:
        shops = [s for s in shops if s.name == wanted]
    reply = {"service": service, "day": day_text, "time": time_text, "shop": "",
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
    return "stored", "", {k: reply[k] for k in ("status", "shop", "day", "time", "reason")}


def _book_first_shop(ctx: Ctx, item: p.UpItem, shops: Sequence[Any], service: str,
                     day: dt.date, minute: int) -> dict[str, Any]:
    reasons = []
    for shop in shops:
        why = check_slot(shop, day, minute, service)
        if why:
            reasons.append(why)
            continue
        slot = slot_start(shop, minute)
        taken = {r[0]: r[1] for r in ctx.c.execute(
            "SELECT slot, COUNT(*) FROM bookings WHERE shop_id = ? AND day = ? GROUP BY slot",
            (shop.id, day.isoformat()))}
        if taken.get(slot, 0) >= shop.capacity:
            free = [s for s in day_slots(shop) if taken.get(s, 0) < shop.capacity]
            hint = f"; free that day: {', '.join(fmt_clock(s) for s in free[:3])}" if free else ""
            reasons.append(f"{shop.name} is fully booked at {fmt_clock(slot)}{hint}")
            continue
        starts = dt.datetime.combine(day, dt.time(slot // 60, slot % 60), dt.UTC).timestamp()
        ctx.c.execute("INSERT INTO bookings (device_id, item_id, shop_id, service, day, slot, "
                      "starts) VALUES (?,?,?,?,?,?,?)",
                      (ctx.device.id, item.id, shop.id, service, day.isoformat(), slot, starts))
        return {"status": "confirmed", "shop": shop.name, "time": fmt_clock(slot)}
    return {"reason": "; ".join(reasons) or "no shop offers bookings"}


def remind_due(store: CloudStore, now: float, lead_s: float = 86400.0) -> set[int]:
    """Send a reminder for confirmed bookings starting within ``lead_s``; returns devices."""
    notified: set[int] = set()
    with store.tx() as c:
        rows = c.execute("SELECT b.id, b.device_id, s.name, b.service, b.day, b.slot FROM "
                         "bookings b JOIN shops s ON s.id = b.shop_id WHERE b.reminded = 0 "
                         "AND b.starts > ? AND b.starts <= ?", (now, now + lead_s)).fetchall()
        for bid, device_id, shop, service, day, slot in rows:
            store.append_down(c, device_id, "booking", {
                "status": "reminder", "shop": shop, "service": service, "day": day,
                "time": fmt_clock(slot), "reason": ""}, now)
            c.execute("UPDATE bookings SET reminded = 1 WHERE id = ?", (bid,))
            notified.add(device_id)
    return notified



def help_request(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Roadside help: sent to every car whose latest status is within the radius."""
    lat, lon = _coord(item.body, "lat"), _coord(item.body, "lon")
    if lat is None or lon is None:
        row = ctx.c.execute("SELECT lat, lon FROM status WHERE device_id = ?",
                            (ctx.device.id,)).fetchone()
        lat, lon = (row[0], row[1]) if row else (None, None)
    ctx.c.execute("INSERT OR IGNORE INTO help_requests VALUES (?,?,?,?,?)",
                  (item.id, ctx.device.id, lat, lon, ctx.now))
    if lat is None or lon is None:
        return "stored", "", {"request_id": item.id, "notified": 0, "note": "no location"}
    note = item.body.get("note", "")
    vehicle = item.body.get("vehicle", {})
    notified = 0
    for dev_id, dlat, dlon in ctx.c.execute(
            "SELECT device_id, lat, lon FROM status WHERE device_id != ? AND lat IS NOT NULL",
            (ctx.device.id,)).fetchall():
        dist = great_circle_km(lat, lon, dlat, dlon)
        if dist <= HELP_RADIUS_KM:
            ctx.down(dev_id, "help_request", {
                "request_id": item.id, "from": ctx.device.name, "lat": lat, "lon": lon,
                "distance_km": round(dist, 2), "note": note if isinstance(note, str) else "",
                "vehicle": vehicle if isinstance(vehicle, dict) else {}})
            notified += 1
    return "stored", "", {"request_id": item.id, "notified": notified}


def help_response(ctx: Ctx, item: p.UpItem) -> Outcome:
    """An answer to a help request ("on my way"), relayed to the requester."""
    request_id = _text(item.body, "request_id")
    text = item.body.get("text", "on my way")
    row = ctx.c.execute("SELECT device_id FROM help_requests WHERE id = ?",
                        (request_id,)).fetchone()
    if row is None:
        return "rejected", f"no help request {request_id[:40]!r}", {}
    ctx.down(row[0], "help_response", {"request_id": request_id, "from": ctx.device.name,
                                        "text": text if isinstance(text, str) else "on my way"})
    return "stored", "", {}


def service_record(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Service-history entries (docs/protocol.md §6), checked with carlink_protocol.chain: they
    must be signed by the key enrolled for this car (`carlink-cloud add-device --record-key`)
    and continue the chain kept for it.

    Only the new entries are verified, against the last kept one (verified when it was kept),
    so an upload costs the same however long the history is."""
    public, key_hex, entries, head = _records_upload(item.body)
    enrolled = ctx.store.record_key(ctx.c, ctx.device.id)
    if enrolled is None:
        return "rejected", ("no service-record key is enrolled for this car: register it with "
                            "`carlink-cloud set-record-key NAME FINGERPRINT` (the fingerprint "
                            "`carlinkd records list` shows)"), {}
    if key_id(public) != enrolled:
        return "rejected", (f"signed by key {fingerprint(public)}, not the key enrolled for this"
                            f" car ({_grouped(enrolled)}): a history copied from another car "
                            "is refused"), {}
    pinned, count, last = ctx.c.execute(
        "SELECT record_key, record_index, record_head FROM devices WHERE id = ?",
        (ctx.device.id,)).fetchone()
    if pinned is not None and pinned != key_hex:
        old = Ed25519PublicKey.from_public_bytes(bytes.fromhex(pinned))
        return "rejected", (f"signed by another device key ({fingerprint(public)}); this car's "
                            f"history is signed by {fingerprint(old)}"), {}
    new = list(entries)
    kept = dict(ctx.c.execute("SELECT idx, hash FROM records WHERE device_id = ? AND idx >= ?",
                              (ctx.device.id, max(1, min(e.seq for e in new)))).fetchall())
    while new and 1 <= new[0].seq <= count:  # a re-upload of kept entries: must be identical
        if kept.get(new[0].seq) != new[0].hash:
            return "rejected", (f"record #{new[0].seq} differs from the one already stored for "
                                "this car (history rewritten)"), {}
        new.pop(0)
    # record_index/record_head are the seq and hash of the last kept entry (set together).
    last = last or GENESIS
    report = verify_links(new, public, count, last)
    total = count + len(new)
    last = new[-1].hash if new else last
    if report.ok and head is not None:
        report = check_head(report, total, last, public, head)
    if not report.ok:
        return "rejected", report.problem, {}
    for entry in new:
        ctx.c.execute("INSERT INTO records VALUES (?,?,?,?)",
                      (ctx.device.id, entry.seq, entry.hash, json.dumps(entry.to_json())))
    ctx.c.execute("UPDATE devices SET record_key = ?, record_index = ?, record_head = ? "
                  "WHERE id = ?", (key_hex, total, last, ctx.device.id))
    return "stored", "", {"count": total, "added": len(new), "head": last,
                          "key_id": key_id(public)}


def _grouped(kid: str) -> str:
    return " ".join(kid[i:i + 4] for i in range(0, len(kid), 4))


def _records_upload(body: Mapping[str, Any]) -> tuple[Ed25519PublicKey, str, list[Entry],
                                                      dict[str, Any] | None]:
    """(public key, its hex, entries, signed head or None) of a service_record body."""
    key_hex, raw, head = (body.get(k) for k in ("public_key", "entries", "head"))
    if not isinstance(key_hex, str) or not isinstance(raw, list) or not raw:
        raise ValueError("'public_key' (hex) and 'entries' (a non-empty list) are required")
    if head is not None and not isinstance(head, dict):
        raise ValueError("'head' must be an object")
    try:
        entries = [Entry.from_json(e) for e in raw]
    except RecordsError as err:
        raise ValueError(str(err)) from err
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex)), key_hex, entries, head


def status(ctx: Ctx, item: p.UpItem) -> Outcome:
    """The latest status snapshot per car (an older snapshot never replaces a newer one)."""
    lat, lon = _coord(item.body, "lat"), _coord(item.body, "lon")
    ctx.c.execute("INSERT INTO status VALUES (?,?,?,?,?) ON CONFLICT (device_id) DO UPDATE SET "
                  "body = excluded.body, created = excluded.created, lat = excluded.lat, "
                  "lon = excluded.lon WHERE excluded.created >= status.created",
                  (ctx.device.id, json.dumps(item.body), item.created, lat, lon))
    return "stored", "", {}


def alert(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Alerts are kept in the upstream log for the fleet view."""
    _text(item.body, "name")
    return "stored", "", {}


HANDLERS: dict[tuple[str, str], Callable[[Ctx, p.UpItem], Outcome]] = {
    ("emergency", "help_request"): help_request,
    ("emergency", "help_response"): help_response,
    ("alert", "alert"): alert,
    ("chat", "chat"): chat,
    ("chat", "group_join"): group_join,
    ("chat", "group_leave"): group_leave,
    ("chat", "group_list"): group_list,
    ("booking", "booking"): booking,
    ("service_record", "service_record"): service_record,
    ("status", "status"): status,
}


Admit = Callable[[int, p.UpItem, float], str | None]


def handle_batch(store: CloudStore, device: Device, msgs: Sequence[p.UpItem | p.CursorAck],
                 now: float, admit: Admit | None = None) -> tuple[list[p.ItemAck], set[int], int]:
    """Handle a batch of one connection's messages in one durable transaction.

    ``admit(device id, item, now)`` (carlink_cloud.quota) is asked for each new item before its
    handler: a reason refuses it (rejected, its body not kept). Returns the acks to send (after
    the commit), the devices to wake, and the duplicates seen.
    """
    acks: list[p.ItemAck] = []
    duplicates = 0
    with store.tx() as c:
        ctx = Ctx(store, c, device, now)
        for msg in msgs:
            if isinstance(msg, p.CursorAck):
                c.execute("UPDATE devices SET acked_seq = MAX(acked_seq, ?) WHERE id = ?",
                          (msg.cursor, device.id))
                continue
            old = c.execute("SELECT status, reason, result FROM upstream WHERE device_id = ? "
                            "AND item_id = ?", (device.id, msg.id)).fetchone()
            if old is not None:
                duplicates += 1
                acks.append(p.ItemAck(msg.id, old[0], old[1], json.loads(old[2])))
                continue
            handler = HANDLERS.get((msg.cls, msg.kind))
            c.execute("SAVEPOINT item")
            refused = None
            try:
                refused = admit(device.id, msg, now) if admit is not None else None
                if refused is not None:
                    outcome: Outcome = ("rejected", refused, {})
                elif handler is None:
                    outcome = ("rejected", f"unknown kind {msg.kind!r} for class "
                                        f"{msg.cls!r}", {})
                else:
                    outcome = handler(ctx, msg)
            except (ValueError, TypeError, KeyError, ArithmeticError, RecursionError,
                    OSError) as err:
                # ArithmeticError: e.g. an integer too large for SQLite (OverflowError);
                # OSError: a timestamp the C library cannot convert (created = 1e17).
                c.execute("ROLLBACK TO item")
                outcome = ("rejected", f"{msg.kind}: {err}"[:300], {})
            c.execute("RELEASE item")
            st, reason, result = outcome
            c.execute("INSERT INTO upstream VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (device.id, msg.id, msg.cls, msg.kind,
                       "{}" if refused is not None else json.dumps(msg.body), msg.created,
                       now, st, reason, json.dumps(result)))
            acks.append(p.ItemAck(msg.id, st, reason, result))
    return acks, ctx.notify, duplicates
