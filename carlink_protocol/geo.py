"""Distances between positions: one formula for the car (help-request distances), the demo and
the reference backend (who is near enough to help)."""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0  # mean radius (IUGG); the error against the ellipsoid is below 0.5 %


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance between two WGS-84 positions on a sphere, in km."""
    f1, f2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((f2 - f1) / 2) ** 2
         + math.cos(f1) * math.cos(f2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
