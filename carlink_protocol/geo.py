"""Distances and coarse cells: one formula for the car (help-request distances), the demo and
the reference backend (who is near enough to help). Pure: no I/O.

A helper car reports only its cell (:func:`cell_of`, 0.05 degrees square, about 5.5 km north to
south), never its position (docs/protocol.md §5, protocol 2).
"""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0  # mean radius (IUGG); the error against the ellipsoid is below 0.5 %
CELL_DEG = 0.05
CELL_PREFIX = "g5"
_ROWS = round(180 / CELL_DEG)     # 3600 cell rows, south to north
_COLS = round(360 / CELL_DEG)     # 7200 cell columns, west to east
_KM_PER_DEG = math.pi * EARTH_RADIUS_KM / 180


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance between two WGS-84 positions on a sphere, in km."""
    f1, f2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((f2 - f1) / 2) ** 2
         + math.cos(f1) * math.cos(f2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def check_lat_lon(lat: object, lon: object) -> tuple[float, float]:
    """``(lat, lon)`` as floats when finite and in range, else ValueError naming the field."""
    out = []
    for key, value, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
        if (not isinstance(value, int | float) or isinstance(value, bool)
                or not math.isfinite(value) or not -limit <= value <= limit):
            raise ValueError(f"'{key}' must be a number from {-limit:g} to {limit:g}")
        out.append(float(value))
    return out[0], out[1]


def _index(lat: float, lon: float) -> tuple[int, int]:
    i = min(_ROWS - 1, max(0, math.floor((lat + 90) / CELL_DEG)))
    j = math.floor((lon + 180) / CELL_DEG) % _COLS
    return i, j


def cell_of(lat: float, lon: float) -> str:
    """The coarse grid cell of a position: ``"g5:<i>:<j>"``."""
    lat, lon = check_lat_lon(lat, lon)
    i, j = _index(lat, lon)
    return f"{CELL_PREFIX}:{i}:{j}"


def parse_cell(cell: object) -> tuple[int, int]:
    """``(i, j)`` of a cell string, or ValueError."""
    if isinstance(cell, str) and len(cell) <= 16:
        prefix, _, rest = cell.partition(":")
        a, _, b = rest.partition(":")
        if prefix == CELL_PREFIX and a.isdigit() and b.isdigit():
            i, j = int(a), int(b)
            if i < _ROWS and j < _COLS:
                return i, j
    raise ValueError(f"'cell' must be a {CELL_PREFIX}:<row>:<column> grid cell")


def cell_center(cell: str) -> tuple[float, float]:
    """The centre ``(lat, lon)`` of a cell."""
    i, j = parse_cell(cell)
    return (i + 0.5) * CELL_DEG - 90, (j + 0.5) * CELL_DEG - 180


def cells_within(lat: float, lon: float, km: float) -> list[str]:
    """Every cell whose square may lie within ``km`` of a position (a superset, for an indexed
    query; filter the matches by their exact distance)."""
    lat, lon = check_lat_lon(lat, lon)
    dlat = km / _KM_PER_DEG
    lo_i, _ = _index(max(-90.0, lat - dlat), lon)
    hi_i, _ = _index(min(90.0, lat + dlat), lon)
    widest = max(abs(lat - dlat), abs(lat + dlat))
    cos = math.cos(math.radians(min(90.0, widest)))
    dlon = 180.0 if cos * _KM_PER_DEG * 180 <= km else km / (_KM_PER_DEG * cos)
    _, j0 = _index(lat, lon)
    span = min(_COLS // 2, math.ceil(dlon / CELL_DEG) + 1)
    cols = sorted({(j0 + d) % _COLS for d in range(-span, span + 1)})
    out = []
    for i in range(lo_i, hi_i + 1):
        south, north = i * CELL_DEG - 90, (i + 1) * CELL_DEG - 90
        near_lat = min(max(lat, south), north)
        for j in cols:
            west = j * CELL_DEG - 180
            near_lon = _clamp_lon(lon, west, west + CELL_DEG)
            if great_circle_km(lat, lon, near_lat, near_lon) <= km:
                out.append(f"{CELL_PREFIX}:{i}:{j}")
    return out


def _clamp_lon(lon: float, west: float, east: float) -> float:
    """The longitude within [west, east] nearest to ``lon`` (across the antimeridian)."""
    if west <= lon <= east:
        return lon
    to_west = (west - lon) % 360
    to_east = (lon - east) % 360
    return west if to_west <= to_east else east
