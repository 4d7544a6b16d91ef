"""Where the simulated car is: dead reckoning of its own motion on the WGS 84 sphere (pure).

The navigation unit integrates the model's speed and yaw rate, so the position on the bus is
consistent with the speed, the wheel pulses and the steering: a turn at a junction turns the
course over ground, a stop at a light stops the position. The start position is configurable and
the initial course is drawn from the seed, so the same seed always drives the same route.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_000.0  # mean radius; the error against the ellipsoid is below 0.5 %
# Marienplatz, Munich: where the demo car starts unless told otherwise.
DEFAULT_START = (48.137154, 11.576124)


def on_earth(lat: float, lon: float) -> bool:
    """True for a latitude in -90..90 and a longitude in -180..180 degrees."""
    return -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


def parse_position(text: str) -> tuple[float, float]:
    """'LAT,LON' in decimal degrees -> (lat, lon); ValueError with a clear message otherwise."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"{text!r} is not LAT,LON in decimal degrees (e.g. 48.137,11.576)") \
            from None
    if not on_earth(lat, lon):
        raise ValueError(f"{text!r} is outside -90..90 latitude, -180..180 longitude")
    return lat, lon


def position_arg(text: str) -> tuple[float, float]:
    """:func:`parse_position` for argparse (``type=position_arg``): a usage error on bad input."""
    try:
        return parse_position(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def offset_position(lat: float, lon: float, distance_m: float,
                    bearing_deg: float) -> tuple[float, float]:
    """The point ``distance_m`` from (lat, lon) along ``bearing_deg`` (great circle)."""
    f1, l1 = math.radians(lat), math.radians(lon)
    d, b = distance_m / EARTH_RADIUS_M, math.radians(bearing_deg)
    f2 = math.asin(math.sin(f1) * math.cos(d) + math.cos(f1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(f1),
                         math.cos(d) - math.sin(f1) * math.sin(f2))
    return math.degrees(f2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


@dataclass
class Navigation:
    """Position (degrees), course over ground (degrees clockwise from north) and fix quality."""

    latitude: float = DEFAULT_START[0]
    longitude: float = DEFAULT_START[1]
    heading: float = 0.0
    time: float = 0.0

    @classmethod
    def seeded(cls, seed: int, start: tuple[float, float] | None = None) -> Navigation:
        """Start at ``start`` (default :data:`DEFAULT_START`) on a course drawn from ``seed``."""
        lat, lon = start if start is not None else DEFAULT_START
        # A private generator: the model's noise generator must not shift with this draw.
        heading = random.Random(f"nav:{seed}").uniform(0.0, 360.0)
        return cls(lat, lon, heading)

    def step(self, dt: float, speed_mps: float, yaw_rate_rps: float) -> None:
        """Advance by ``dt`` seconds at a speed and yaw rate (positive counter-clockwise)."""
        self.time += dt
        self.heading = (self.heading - math.degrees(yaw_rate_rps) * dt) % 360.0
        if speed_mps == 0.0:
            return
        travelled = speed_mps * dt
        course = math.radians(self.heading)
        north, east = travelled * math.cos(course), travelled * math.sin(course)
        self.latitude += math.degrees(north / EARTH_RADIUS_M)
        self.latitude = max(-89.9, min(89.9, self.latitude))
        cos_lat = max(1e-6, math.cos(math.radians(self.latitude)))
        self.longitude += math.degrees(east / (EARTH_RADIUS_M * cos_lat))
        self.longitude = (self.longitude + 540.0) % 360.0 - 180.0

    @property
    def satellites(self) -> int:
        """Satellites in use: 8 to 14, slowly changing as they rise and set."""
        return 11 + round(3.0 * math.sin(self.time / 97.0))

    @property
    def accuracy_m(self) -> float:
        """Horizontal accuracy estimate: better with more satellites."""
        return round(1.0 + 9.0 / self.satellites, 1)
