"""What leaves the car, by the driver's consent: a pure core (time passed in, no I/O).

``[sync] location`` is ``off``, ``help`` (default) or ``always``:

- ``status`` items never carry latitude, longitude or speed with ``off``/``help``; with
  ``always``, or for ``help_share_s`` after a confirmed help request, they do.
- A helper (``[social] helper``, or "I can help others" at run time) with location not ``off``
  reports ``"helper": true`` and the coarse cell of :func:`carlink_protocol.geo.cell_of` only.
- A confirmed help request carries the exact position unless location is ``off``.
- Booking requests carry a position only while status items may (``always`` or the window).

:class:`Consent` also keeps the car's own open help requests (id -> expires) so "I'm OK now"
knows what to cancel; :meth:`Consent.to_json` / :meth:`Consent.from_json` persist it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from carlink_protocol.geo import cell_of

from ..events import SignalValue

LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
SPEED = "Vehicle.Speed"
#: Signals that say where the car is or how it moves: only with consent.
POSITION_SIGNALS = (LATITUDE, LONGITUDE, SPEED)
LOCATION_MODES = ("off", "help", "always")
#: A help request's life when the car does not say otherwise (the backend's default too).
HELP_EXPIRES_S = 3600.0
#: The help request's ``vehicle`` object holds at most this many entries (protocol 2).
VEHICLE_MAX = 20


def position(signals: Mapping[str, SignalValue]) -> tuple[float, float] | None:
    """The latest finite, in-range latitude/longitude, else None."""
    lat, lon = signals.get(LATITUDE), signals.get(LONGITUDE)
    if lat is None or lon is None:
        return None
    try:
        la, lo = float(lat.value), float(lon.value)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(la) and math.isfinite(lo) and -90 <= la <= 90 and -180 <= lo <= 180):
        return None
    return la, lo


@dataclass
class Consent:
    """The location settings, the helper opt-in, the share window and the open requests."""

    location: str = "help"
    help_share_s: float = 1800.0
    helper: bool = False
    share_until: float = 0.0
    open_requests: dict[str, float] = field(default_factory=dict)  # own id -> expires

    def sharing(self, now: float) -> bool:
        """Whether items may carry the exact position right now."""
        return self.location == "always" or (self.location != "off" and now < self.share_until)

    def status_body(self, signals: Mapping[str, SignalValue], now: float) -> dict[str, Any]:
        """The ``status`` item body: position and speed only while sharing, a helper's cell."""
        body: dict[str, Any] = {"vehicle": {n: v.value for n, v in signals.items()
                                            if n not in POSITION_SIGNALS}}
        pos = position(signals)
        if self.sharing(now):
            if pos is not None:
                body["lat"], body["lon"] = pos
            if SPEED in signals:
                body["speed"] = signals[SPEED].value
        if self.helper and self.location != "off" and pos is not None:
            body.update(helper=True, cell=cell_of(*pos))
        return body

    def help_body(self, signals: Mapping[str, SignalValue], note: str,
                  now: float) -> tuple[dict[str, Any], bool]:
        """A confirmed help request's body and whether it carries a position."""
        body: dict[str, Any] = {"note": note[:500], "expires": round(now + HELP_EXPIRES_S)}
        vehicle = {n: v.value for n, v in signals.items()
                   if n not in (LATITUDE, LONGITUDE) and isinstance(v.value, int | float | str)}
        body["vehicle"] = dict(list(vehicle.items())[:VEHICLE_MAX])
        pos = position(signals) if self.location != "off" else None
        if pos is not None:
            body["lat"], body["lon"] = pos
        return body, pos is not None

    def help_sent(self, request_id: str, body: Mapping[str, Any], now: float) -> None:
        """A help request went into the outbox: remember it, open the share window."""
        self.open_requests[request_id] = float(body.get("expires", now + HELP_EXPIRES_S))
        if "lat" in body:
            self.share_until = max(self.share_until, now + self.help_share_s)

    def help_closed(self, request_id: str) -> None:
        """A request was cancelled or refused: forget it; the window closes with the last one."""
        self.open_requests.pop(request_id, None)
        if not self.open_requests:
            self.share_until = 0.0

    def open_ids(self, now: float) -> list[str]:
        """Own requests not expired yet (the expired ones are forgotten)."""
        self.open_requests = {k: v for k, v in self.open_requests.items() if v > now}
        return list(self.open_requests)

    def position_for_booking(self, signals: Mapping[str, SignalValue],
                             now: float) -> dict[str, float]:
        """``lat``/``lon`` for a booking request, only while sharing."""
        pos = position(signals) if self.sharing(now) else None
        return {"lat": pos[0], "lon": pos[1]} if pos is not None else {}

    def to_json(self) -> dict[str, Any]:
        """What survives a restart (the run-time helper choice, window and open requests)."""
        return {"helper": self.helper, "share_until": self.share_until,
                "open_requests": dict(self.open_requests)}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Apply what :meth:`to_json` stored (wrong-typed values are ignored)."""
        if isinstance(data.get("helper"), bool):
            self.helper = data["helper"]
        if isinstance(data.get("share_until"), int | float):
            self.share_until = float(data["share_until"])
        opened = data.get("open_requests")
        if isinstance(opened, dict):
            self.open_requests = {str(k): float(v) for k, v in opened.items()
                                  if isinstance(v, int | float)}
