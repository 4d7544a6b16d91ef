"""What the reference backend does with each upstream item kind (docs/protocol.md §5).

Every handler runs inside the batch transaction of :func:`handle_batch` and returns
``(status, reason, result)``; downstream items it creates are committed in the same transaction
as the upstream answer, so a crash never leaves one without the other.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from carlink_protocol.errors import RecordsError
from carlink_protocol.chain import GENESIS, Entry, check_head, fingerprint, key_id, verify_links
from carlink_protocol.geo import cell_of, parse_cell
from carlink_protocol import wire as p

from .bookings import booking, booking_cancel, booking_options, remind_due
from .context import TEXT_MAX, Ctx, Outcome, position
from .context import text as _text
from .groups import group_approve, group_join, group_leave, group_list
from .help import help_cancel, help_request, help_response
from .store import CloudStore, Device, kept_body

__all__ = ["HANDLERS", "TEXT_MAX", "Ctx", "Outcome", "handle_batch", "remind_due"]


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
    """The latest status snapshot per car (an older snapshot never replaces a newer one); a
    helper's coarse cell is what help requests are matched by."""
    where = position(item.body, required=False)
    helper = item.body.get("helper") is True
    cell = item.body.get("cell")
    if cell is not None:
        parse_cell(cell)
    elif helper and where is not None:
        cell = cell_of(*where)
    lat, lon = where if where is not None else (None, None)
    ctx.c.execute("INSERT INTO status (device_id, body, created, lat, lon, helper, cell, "
                  "received) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (device_id) DO UPDATE SET "
                  "body = excluded.body, created = excluded.created, lat = excluded.lat, "
                  "lon = excluded.lon, helper = excluded.helper, cell = excluded.cell, "
                  "received = excluded.received WHERE excluded.created >= status.created",
                  (ctx.device.id, json.dumps(item.body), item.created, lat, lon, int(helper),
                   cell if helper else None, ctx.now))
    return "stored", "", {}


def alert(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Alerts are kept in the upstream log for the fleet view."""
    _text(item.body, "name")
    return "stored", "", {}


HANDLERS: dict[tuple[str, str], Callable[[Ctx, p.UpItem], Outcome]] = {
    ("emergency", "help_request"): help_request,
    ("emergency", "help_response"): help_response,
    ("emergency", "help_cancel"): help_cancel,
    ("alert", "alert"): alert,
    ("chat", "chat"): chat,
    ("chat", "group_join"): group_join,
    ("chat", "group_leave"): group_leave,
    ("chat", "group_list"): group_list,
    ("chat", "group_approve"): group_approve,
    ("booking", "booking"): booking,
    ("booking", "booking_options"): booking_options,
    ("booking", "booking_cancel"): booking_cancel,
    ("service_record", "service_record"): service_record,
    ("status", "status"): status,
}


Admit = Callable[[int, p.UpItem, float], str | None]


BatchResult = tuple[list[p.ItemAck], set[int], int]


_FIELD_ERRORS = (ValueError, TypeError, KeyError, ArithmeticError, RecursionError, OSError)


def _handle_one(ctx: Ctx, msg: p.UpItem,
                admit: Admit | None) -> tuple[str, str, dict[str, Any], str]:
    """(status, reason, result, body to keep) for one new item, in its own savepoint: a field
    error (ValueError, TypeError, KeyError; ArithmeticError: e.g. an integer too large for
    SQLite; OSError: a timestamp the C library cannot convert, created = 1e17; RecursionError)
    rolls the item back and is its reason. Reason and result are made valid Unicode (a lone
    surrogate in a field would otherwise be echoed into the ack and the database)."""
    c = ctx.c
    handler = HANDLERS.get((msg.cls, msg.kind))
    c.execute("SAVEPOINT item")
    refused = None
    try:
        refused = admit(ctx.device.id, msg, ctx.now) if admit is not None else None
        if refused is not None:
            outcome: Outcome = ("rejected", refused, {})
        elif handler is None:
            outcome = ("rejected", f"unknown kind {msg.kind!r} for class {msg.cls!r}", {})
        else:
            outcome = handler(ctx, msg)
        kept = "{}" if refused is not None else json.dumps(kept_body(msg.cls, dict(msg.body)))
    except _FIELD_ERRORS as err:
        c.execute("ROLLBACK TO item")
        outcome, kept = ("rejected", f"{msg.kind}: {err}"[:300], {}), "{}"
    c.execute("RELEASE item")
    st, reason, result = outcome
    try:
        json.dumps(result, ensure_ascii=False).encode("utf-8")
    except _FIELD_ERRORS:
        result = {}
    return st, reason.encode("utf-8", "replace").decode("utf-8"), result, kept


def handle_batch(store: CloudStore, device: Device, msgs: Sequence[p.UpItem | p.CursorAck],
                 now: float, admit: Admit | None = None) -> BatchResult:
    """Handle a batch of one connection's messages in one durable transaction (the server
    groups several connections' batches into one: carlink_cloud.commit)."""
    with store.tx() as c:
        return handle_in(store, c, device, msgs, now, admit)


def handle_in(store: CloudStore, c: sqlite3.Connection, device: Device,
              msgs: Sequence[p.UpItem | p.CursorAck], now: float, admit: Admit | None = None,
              fresh: list[tuple[int, p.DownItem, str]] | None = None) -> BatchResult:
    """Handle a batch of one connection's messages inside the open transaction ``c``.

    ``admit(device id, item, now)`` (carlink_cloud.quota) is asked for each new item before its
    handler: a reason refuses it (rejected, its body not kept). The downstream items created
    are appended to ``fresh`` when given. Returns the acks to send (after the commit), the
    devices to wake, and the duplicates seen.
    """
    acks: list[p.ItemAck] = []
    duplicates = 0
    ctx = Ctx(store, c, device, now)
    ctx.fresh = fresh
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
        st, reason, result, kept = _handle_one(ctx, msg, admit)
        c.execute("INSERT INTO upstream VALUES (?,?,?,?,?,?,?,?,?,?)",
                  (device.id, msg.id, msg.cls, msg.kind, kept, msg.created, now, st, reason,
                   json.dumps(result)))
        acks.append(p.ItemAck(msg.id, st, reason, result))
    return acks, ctx.notify, duplicates
