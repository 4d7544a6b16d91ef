"""Roadside help requests with a life cycle (docs/protocol.md §5, protocol 2).

A request is keyed by (sender device, item id), carries the sender's exact position, and asks
only helpers (cars that opted in and report a coarse cell, fresher than 15 minutes, within
25 km). A helper hears the distance in whole km; the exact position and vehicle data go only to
a helper who answers. At expiry or cancel the position, note and vehicle data are erased from
the request and from every downstream copy.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

from carlink_protocol import wire as p
from carlink_protocol.geo import cell_center, cells_within, great_circle_km

from .context import Ctx, Outcome, optional_text, position, text
from .store import CloudStore

HELP_RADIUS_KM = 25.0
FRESH_S = 15 * 60.0            # a helper's cell, or the sender's own position, counts this long
NEAR_OWN_KM = 50.0             # a request farther than this from the sender's own fresh position
PER_HOUR = 3                   # help requests per device per hour
DEFAULT_TTL_S = 3600.0
MAX_TTL_S = 4 * 3600.0
NOTE_MAX = 500
REPLY_MAX = 200
VEHICLE_MAX = 20
VEHICLE_VALUE_MAX = 100
ID_MAX = p.ID_MAX_LEN


def _vehicle(value: object) -> dict[str, Any]:
    """The optional ``vehicle`` object: at most 20 entries of finite numbers or short strings."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > VEHICLE_MAX:
        raise ValueError(f"'vehicle' must be an object of at most {VEHICLE_MAX} entries")
    for key, entry in value.items():
        if len(key) > ID_MAX:
            raise ValueError(f"'vehicle' names must be at most {ID_MAX} chars")
        number = isinstance(entry, int | float) and not isinstance(entry, bool)
        if number and not (math.isfinite(entry) and abs(entry) < 1e15):
            raise ValueError(f"'vehicle.{key[:32]}' must be a finite number")
        if not number and not (isinstance(entry, str) and len(entry) <= VEHICLE_VALUE_MAX):
            raise ValueError(f"'vehicle.{key[:32]}' must be a number or a string of at most "
                             f"{VEHICLE_VALUE_MAX} chars")
    return dict(value)


def _expires(value: object, now: float) -> float:
    """When a request ends: ``expires`` if given (capped at 4 h), else in 1 h."""
    if value is None:
        return now + DEFAULT_TTL_S
    if (not isinstance(value, int | float) or isinstance(value, bool)
            or not math.isfinite(value)):
        raise ValueError("'expires' must be a time in seconds since the epoch")
    if value <= now:
        raise ValueError("'expires' is already past")
    return min(float(value), now + MAX_TTL_S)


def _own_position(ctx: Ctx) -> tuple[float, float] | None:
    """The sender's freshest position known to the server (status lat/lon or helper cell)."""
    row = ctx.c.execute("SELECT lat, lon, cell FROM status WHERE device_id = ? AND received >= ?"
                        " AND created >= ?", (ctx.device.id, ctx.now - FRESH_S,
                                              ctx.now - FRESH_S)).fetchone()
    if row is None:
        return None
    if row[0] is not None and row[1] is not None:
        return float(row[0]), float(row[1])
    return cell_center(row[2]) if row[2] else None


def helpers_query(cells: int) -> str:
    """The helper lookup for ``cells`` cells: served by the partial index status_helper_cell
    (parameters: the cells, fresh-since twice, the sender's device id)."""
    return ("SELECT s.device_id, s.cell FROM status s JOIN devices d ON d.id = s.device_id "
            f"WHERE s.helper = 1 AND s.cell IN ({','.join('?' * cells)}) AND s.received >= ? "
            "AND s.created >= ? AND s.device_id != ? AND d.revoked = 0")


def _helpers_near(ctx: Ctx, lat: float, lon: float) -> list[tuple[int, int]]:
    """(device, km) of every helper with a fresh cell whose centre lies within the radius."""
    cells = cells_within(lat, lon, HELP_RADIUS_KM)
    fresh = ctx.now - FRESH_S
    rows = ctx.c.execute(helpers_query(len(cells)),
                         (*cells, fresh, fresh, ctx.device.id)).fetchall()
    out = []
    for device_id, cell in rows:
        km = great_circle_km(lat, lon, *cell_center(cell))
        if km <= HELP_RADIUS_KM:
            out.append((int(device_id), round(km)))
    return out


def help_request(ctx: Ctx, item: p.UpItem) -> Outcome:
    """Ask the helpers near the sender's position; the ack says when it expires, not who."""
    where = position(item.body, required=True)
    assert where is not None
    lat, lon = where
    note = optional_text(item.body, "note", NOTE_MAX)
    vehicle = _vehicle(item.body.get("vehicle"))
    expires = _expires(item.body.get("expires"), ctx.now)
    if ctx.c.execute("SELECT 1 FROM help_requests WHERE device_id = ? AND item_id = ?",
                     (ctx.device.id, item.id)).fetchone():
        return "rejected", "this car already sent a help request with this id", {}
    recent = ctx.c.execute("SELECT COUNT(*) FROM help_requests WHERE device_id = ? AND "
                           "created > ?", (ctx.device.id, ctx.now - 3600)).fetchone()[0]
    if recent >= PER_HOUR:
        return "rejected", f"rate limited: {PER_HOUR} help requests per hour", {}
    own = _own_position(ctx)
    if own is not None and great_circle_km(lat, lon, *own) > NEAR_OWN_KM:
        return "rejected", (f"position is more than {NEAR_OWN_KM:g} km from where this car "
                            "was last seen"), {}
    request = ctx.c.execute(
        "INSERT INTO help_requests (device_id, item_id, lat, lon, note, vehicle, created, "
        "expires) VALUES (?,?,?,?,?,?,?,?) RETURNING id",
        (ctx.device.id, item.id, lat, lon, note, p.encode_down_body("help_request", vehicle),
         ctx.now, expires)).fetchone()[0]
    p.encode_down_body("help_detail", {"note": note, "vehicle": vehicle})  # fits an item
    for device_id, km in _helpers_near(ctx, lat, lon):
        seq = ctx.down(device_id, "help_request", {
            "request_id": item.id, "from": ctx.device.name, "distance_km": km, "note": note,
            "created": ctx.now, "expires": expires})
        ctx.c.execute("INSERT INTO help_asked (request, device_id, asked_seq) VALUES (?,?,?)",
                      (request, device_id, seq))
    return "stored", "", {"request_id": item.id, "expires": expires}


def _request(c: sqlite3.Connection, sender: str, request_id: str) -> tuple[Any, ...] | None:
    row = c.execute("SELECT h.id, h.device_id, h.lat, h.lon, h.note, h.vehicle, h.expires, "
                    "h.open FROM help_requests h JOIN devices d ON d.id = h.device_id "
                    "WHERE d.name = ? AND h.item_id = ?", (sender, request_id)).fetchone()
    return None if row is None else tuple(row)


def help_response(ctx: Ctx, item: p.UpItem) -> Outcome:
    """A helper's answer: relayed to the requester; the helper gets the exact position."""
    request_id = text(item.body, "request_id", max_len=ID_MAX)
    to = text(item.body, "to", max_len=128)
    reply = optional_text(item.body, "text", REPLY_MAX) or "on my way"
    row = _request(ctx.c, to, request_id)
    asked = None if row is None else ctx.c.execute(
        "SELECT detail_seq FROM help_asked WHERE request = ? AND device_id = ?",
        (row[0], ctx.device.id)).fetchone()
    if row is None or asked is None:  # one answer for both: no oracle of others' requests
        return "rejected", f"this car was not asked to help with {request_id!r} from {to!r}", {}
    request, requester, lat, lon, note, vehicle, expires, is_open = row
    if not is_open or expires <= ctx.now:
        return "rejected", f"help request {request_id!r} from {to!r} is over " \
                           "(cancelled or expired)", {}
    ctx.down(requester, "help_response", {"request_id": request_id, "from": ctx.device.name,
                                          "text": reply})
    if asked[0] is None:
        seq = ctx.down(ctx.device.id, "help_detail", {
            "request_id": request_id, "from": to, "lat": lat, "lon": lon, "note": note,
            "vehicle": json.loads(vehicle)})
        ctx.c.execute("UPDATE help_asked SET responded = 1, detail_seq = ? WHERE request = ? "
                      "AND device_id = ?", (seq, request, ctx.device.id))
    return "stored", "", {}


def help_cancel(ctx: Ctx, item: p.UpItem) -> Outcome:
    """The sender's own request is over: closed, erased, and every asked helper told."""
    request_id = text(item.body, "request_id", max_len=ID_MAX)
    row = ctx.c.execute("SELECT id, open FROM help_requests WHERE device_id = ? AND item_id = ?",
                        (ctx.device.id, request_id)).fetchone()
    if row is None:
        return "rejected", f"this car has no help request {request_id!r}", {}
    if row[1]:
        for device_id in close_request(ctx.c, row[0], request_id, ctx.device.name):
            ctx.down(device_id, "help_cancel", {"request_id": request_id,
                                                "from": ctx.device.name})
    return "stored", "", {}


def close_request(c: sqlite3.Connection, request: int, request_id: str,
                  sender: str) -> list[int]:
    """Close a request and erase its position, note and vehicle data everywhere they were
    stored (the request row, the helpers' downstream copies); returns the asked devices."""
    c.execute("UPDATE help_requests SET open = 0, lat = NULL, lon = NULL, note = '', "
              "vehicle = '{}' WHERE id = ?", (request,))
    asked = c.execute("SELECT device_id, asked_seq, detail_seq FROM help_asked WHERE "
                      "request = ?", (request,)).fetchall()
    over = json.dumps({"request_id": request_id, "from": sender}, separators=(",", ":"))
    for device_id, asked_seq, detail_seq in asked:
        c.execute("UPDATE downstream SET body = json_set(body, '$.note', '') WHERE "
                  "device_id = ? AND seq = ?", (device_id, asked_seq))
        if detail_seq is not None:  # the exact position: replaced by "it is over"
            c.execute("UPDATE downstream SET kind = 'help_cancel', body = ? WHERE "
                      "device_id = ? AND seq = ?", (over, device_id, detail_seq))
    return [int(r[0]) for r in asked]


def expire_help(store: CloudStore, now: float) -> int:
    """Close every open request whose time is up (erasing its position); returns how many."""
    with store.tx() as c:
        rows = c.execute("SELECT h.id, h.item_id, d.name FROM help_requests h JOIN devices d "
                         "ON d.id = h.device_id WHERE h.open = 1 AND h.expires <= ?",
                         (now,)).fetchall()
        for request, request_id, sender in rows:
            close_request(c, request, request_id, sender)
    return len(rows)

