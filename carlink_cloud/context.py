"""What every upstream handler shares: the batch context and the body field checks.

A check raises ValueError with the field's name; :func:`~carlink_cloud.handlers.handle_batch`
turns it into a ``rejected`` ack with that reason.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping
from typing import Any

from carlink_protocol import wire as p
from carlink_protocol.geo import check_lat_lon

from .store import CloudStore, Device

TEXT_MAX = 2000
Outcome = tuple[str, str, dict[str, Any]]


class Ctx:
    """One batch: the store, its open transaction, the device, the clock, whom to wake."""

    def __init__(self, store: CloudStore, c: sqlite3.Connection, device: Device,
                 now: float) -> None:
        self.store, self.c, self.device, self.now = store, c, device, now
        self.notify: set[int] = set()
        # (device id, item, its body's JSON) of every item queued, when the server wants them
        # (sent from memory after the commit instead of being read back: carlink_cloud.commit).
        self.fresh: list[tuple[int, p.DownItem, str]] | None = None
        self._last: tuple[str, dict[str, Any], str] | None = None

    def down(self, device_id: int, kind: str, body: dict[str, Any]) -> int:
        """Queue a downstream item for a device and remember to wake its connection."""
        self.notify.add(device_id)
        if self._last is not None and self._last[0] == kind and self._last[1] == body:
            text = self._last[2]  # a fan-out: the same body for every member, encoded once
        else:
            text = p.encode_down_body(kind, body)
            self._last = (kind, body, text)
        seq = self.store.append_down(self.c, device_id, kind, body, self.now, text)
        if self.fresh is not None:
            self.fresh.append((device_id, p.DownItem(seq, kind, body, self.now), text))
        return seq


def text(body: Mapping[str, Any], key: str, default: str | None = None,
         max_len: int = TEXT_MAX) -> str:
    """A required non-empty string field (stripped), at most ``max_len`` characters."""
    value = body.get(key, default)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise ValueError(f"'{key}' must be a non-empty string (at most {max_len} chars)")
    return value.strip()


def optional_text(body: Mapping[str, Any], key: str, max_len: int) -> str:
    """An optional string field ('' when absent), at most ``max_len`` characters."""
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > max_len:
        raise ValueError(f"'{key}' must be a string of at most {max_len} chars")
    return value.strip()


def coord(body: Mapping[str, Any], key: str) -> float | None:
    """A finite number field, else None (status bodies are free-form)."""
    value = body.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def position(body: Mapping[str, Any], required: bool) -> tuple[float, float] | None:
    """``(lat, lon)`` of a body, range-checked; None when both are absent and not required."""
    if body.get("lat") is None and body.get("lon") is None:
        if required:
            raise ValueError("position required: 'lat' and 'lon'")
        return None
    return check_lat_lon(body.get("lat"), body.get("lon"))


def integer(body: Mapping[str, Any], key: str, minimum: int = 0,
            maximum: int = 2**63 - 1) -> int:
    """A required integer field within range."""
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise ValueError(f"'{key}' must be an integer from {minimum} to {maximum}")
    return value
