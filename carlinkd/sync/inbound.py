"""Downstream items: the durable inbound log with its cursor, and what each kind means to the car.

:func:`interpret` is the only way a downstream item becomes a hub event. It maps a fixed set of
informational kinds (chat, booking, help, groups) to informational events; it never produces a
:class:`~carlinkd.events.Command`, so nothing from the cloud can reach the CAN bus or clear DTCs.
Anything else is logged, stored with its rejection reason, and skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..events import (BookingOptions, BookingUpdated, Event, GroupJoinRequest, GroupsListed,
                      HelpCancelled, HelpDetail, HelpRequest, HelpResponse, MessageReceived,
                      ShopOption)
from carlink_protocol import wire as p
from .db import SyncDb
from ..records import offers

TEXT_MAX = 2000


class InboundLog:
    """Stored downstream items and the cursor acknowledged to the cloud."""

    def __init__(self, db: SyncDb) -> None:
        self.db = db
        self.epoch: str | None = None
        self.cursor = 0

    async def load(self) -> tuple[str | None, int]:
        """Read the stored (epoch, cursor)."""
        rows = await self.db.read("SELECT epoch, seq FROM sync_cursor WHERE one = 1")
        if rows:
            self.epoch, self.cursor = rows[0][0], int(rows[0][1])
        return self.epoch, self.cursor

    async def store(self, epoch: str, items: Sequence[p.DownItem], verdicts: Sequence[str],
                    now: float) -> int:
        """Store items and advance the cursor in one transaction; returns the new cursor."""
        async with self.db.transaction() as conn:
            if epoch != self.epoch:
                await self._reset(conn, epoch, 0)
            await conn.executemany(
                "INSERT OR IGNORE INTO sync_inbound (epoch, seq, kind, body, created, received,"
                " verdict) VALUES (?,?,?,?,?,?,?)",
                [(epoch, it.seq, it.kind, json.dumps(it.body, ensure_ascii=False), it.created,
                  now, verdict) for it, verdict in zip(items, verdicts, strict=True)])
            cursor = max([self.cursor, *(it.seq for it in items)])
            await conn.execute("UPDATE sync_cursor SET seq = ? WHERE one = 1", (cursor,))
        self.cursor = cursor
        return cursor

    async def set_cursor(self, epoch: str, seq: int) -> None:
        """Record a new epoch or a gap the server cannot fill."""
        async with self.db.transaction() as conn:
            await self._reset(conn, epoch, seq)

    async def _reset(self, conn: Any, epoch: str, seq: int) -> None:
        await conn.execute("INSERT INTO sync_cursor (one, epoch, seq) VALUES (1, ?, ?) "
                           "ON CONFLICT (one) DO UPDATE SET epoch = excluded.epoch, "
                           "seq = excluded.seq", (epoch, seq))
        self.epoch, self.cursor = epoch, seq

    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest stored items, newest first (for status displays and tests)."""
        rows = await self.db.read(
            "SELECT epoch, seq, kind, body, received, verdict FROM sync_inbound "
            "ORDER BY received DESC, seq DESC LIMIT ?", (limit,))
        return [{"epoch": r[0], "seq": r[1], "kind": r[2], "body": json.loads(r[3]),
                 "received": r[4], "verdict": r[5]} for r in rows]


def _text(body: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or len(value) > TEXT_MAX:
        raise ValueError(f"'{key}' must be a string of at most {TEXT_MAX} characters")
    return value


def _number(body: Mapping[str, Any], key: str) -> float:
    value = body.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"'{key}' must be a finite number")
    return float(value)


def _strings(body: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"'{key}' must be a list of strings")
    return tuple(value[:500])


def _chat(b: Mapping[str, Any], seq: int) -> Event:
    return MessageReceived(_text(b, "group"), _text(b, "from"), _text(b, "text"), seq)


def _booking(b: Mapping[str, Any], seq: int) -> Event:
    status = _text(b, "status")
    if status not in ("confirmed", "declined", "reminder", "cancelled"):
        raise ValueError(f"unknown booking status {status[:20]!r}")
    booking_id = b.get("booking_id", 0)
    if not isinstance(booking_id, int) or isinstance(booking_id, bool) \
            or not 0 <= booking_id < 2**63:
        raise ValueError("'booking_id' must be a non-negative integer")
    return BookingUpdated(status, _text(b, "shop", ""), _text(b, "service", ""),
                          _text(b, "day", ""), _text(b, "time", ""), _text(b, "reason", ""),
                          booking_id, _text(b, "address", ""))


def _optional_number(body: Mapping[str, Any], key: str, default: float) -> float:
    return default if body.get(key) is None else _number(body, key)


def _help_request(b: Mapping[str, Any], seq: int) -> Event:
    nan = float("nan")
    return HelpRequest(_text(b, "request_id"), _text(b, "from"), _optional_number(b, "lat", nan),
                       _optional_number(b, "lon", nan), _optional_number(b, "distance_km", nan),
                       _text(b, "note", ""), _optional_number(b, "created", 0.0),
                       _optional_number(b, "expires", 0.0))


def _vehicle(b: Mapping[str, Any]) -> dict[str, float | int | str]:
    value = b.get("vehicle") or {}
    if not isinstance(value, dict) or len(value) > 20 or not all(
            isinstance(k, str) and isinstance(v, int | float | str) and not isinstance(v, bool)
            for k, v in value.items()):
        raise ValueError("'vehicle' must be an object of at most 20 numbers or strings")
    return {k: (v[:TEXT_MAX] if isinstance(v, str) else v) for k, v in value.items()}


def _help_detail(b: Mapping[str, Any], seq: int) -> Event:
    lat, lon = _number(b, "lat"), _number(b, "lon")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError("'lat'/'lon' out of range")
    return HelpDetail(_text(b, "request_id"), _text(b, "from"), lat, lon, _text(b, "note", ""),
                      _vehicle(b))


def _help_cancel(b: Mapping[str, Any], seq: int) -> Event:
    return HelpCancelled(_text(b, "request_id"), _text(b, "from"))


def _option(o: Any) -> ShopOption:
    if not isinstance(o, dict):
        raise ValueError("each of 'options' must be an object")
    km = None if o.get("distance_km") is None else _number(o, "distance_km")
    return ShopOption(_text(o, "shop"), km, _text(o, "day", ""), _text(o, "time", ""))


def _booking_options(b: Mapping[str, Any], seq: int) -> Event:
    options = b.get("options", [])
    if not isinstance(options, list) or len(options) > 3:
        raise ValueError("'options' must be a list of at most 3 shops")
    return BookingOptions(_text(b, "request_id", ""), _text(b, "service", ""),
                          _text(b, "day", ""), _text(b, "time", ""),
                          tuple(_option(o) for o in options))


def _group_join_request(b: Mapping[str, Any], seq: int) -> Event:
    return GroupJoinRequest(_text(b, "group"), _text(b, "from"))


def _help_response(b: Mapping[str, Any], seq: int) -> Event:
    return HelpResponse(_text(b, "request_id"), _text(b, "from"), _text(b, "text"))


def _groups(b: Mapping[str, Any], seq: int) -> Event:
    return GroupsListed(_strings(b, "joined"), _strings(b, "available"), _strings(b, "invited"),
                        _strings(b, "pending"))


# The complete list of downstream kinds the car acts on. Each maps to an informational event;
# none maps to a Command (tests/daemon/sync/test_sync_safety.py checks this stays true).
KINDS: dict[str, Callable[[Mapping[str, Any], int], Event]] = {
    "chat": _chat,
    "booking": _booking,
    "help_request": _help_request,
    "help_response": _help_response,
    "help_detail": _help_detail,
    "help_cancel": _help_cancel,
    "groups": _groups,
    "group_join_request": _group_join_request,
    "booking_options": _booking_options,
    offers.KIND: offers.parse_offer,
}


def drop_cancelled(events: Sequence[Event]) -> list[Event]:
    """The events of one batch without help requests cancelled in the same batch (a car that
    reconnects after a request was cancelled gets both; it must not hear the request)."""
    over = {(e.request_id, e.sender) for e in events if isinstance(e, HelpCancelled)}
    return [e for e in events
            if not (isinstance(e, HelpRequest) and (e.request_id, e.sender) in over)
            and not (isinstance(e, HelpCancelled) and e.sender and
                     any(isinstance(r, HelpRequest) and (r.request_id, r.sender) ==
                         (e.request_id, e.sender) for r in events))]


def interpret(item: p.DownItem) -> tuple[Event | None, str]:
    """The hub event for a downstream item and its verdict ("ok" or "rejected: <reason>")."""
    handler = KINDS.get(item.kind)
    if handler is None:
        return None, f"rejected: unknown kind {item.kind[:32]!r}"
    try:
        return handler(item.body, item.seq), "ok"
    except ValueError as err:
        return None, f"rejected: {item.kind}: {err}"
