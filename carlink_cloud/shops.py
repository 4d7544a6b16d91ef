"""Service shops: opening hours, slots and capacity (pure functions, no database)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Shop:
    """A service shop as the backend stores it."""

    id: int
    name: str
    lat: float
    lon: float
    days: tuple[int, ...]      # weekday numbers, Monday = 0
    opens: int                 # minutes after midnight
    closes: int
    slot_minutes: int
    capacity: int              # bookings per slot
    services: tuple[str, ...]  # empty: every service
    address: str = ""


def parse_days(text: str) -> tuple[int, ...]:
    """'mon-fri', 'mon,wed,sat' or 'daily' -> weekday numbers."""
    text = text.strip().lower()
    if text in ("daily", "all", "*"):
        return tuple(range(7))
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo not in WEEKDAYS or (hi and hi not in WEEKDAYS):
            raise ValueError(f"unknown weekday in {text!r}; use mon..sun, ranges or 'daily'")
        a, b = WEEKDAYS.index(lo), WEEKDAYS.index(hi or lo)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return tuple(sorted(out))


def parse_clock(text: str) -> int:
    """'08:30', '8:30', '9am', '2 pm' -> minutes after midnight."""
    m = re.fullmatch(r"\s*(\d{1,2})(?::(\d{2}))?\s*([ap]\.?m\.?)?\s*", text.lower())
    if not m:
        raise ValueError(f"not a time of day: {text!r}")
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    if m.group(3):
        if not 1 <= hour <= 12:
            raise ValueError(f"not a time of day: {text!r}")
        hour = hour % 12 + (12 if m.group(3).startswith("p") else 0)
    if hour > 23 or minute > 59:
        raise ValueError(f"not a time of day: {text!r}")
    return hour * 60 + minute


def parse_day(text: str, today: dt.date) -> dt.date:
    """'2025-11-25', 'today', 'tomorrow' or a weekday name (the next one) -> a date."""
    low = text.strip().lower()
    if low == "today":
        return today
    if low == "tomorrow":
        return today + dt.timedelta(days=1)
    for i, name in enumerate(WEEKDAYS):
        if low.startswith(name):
            ahead = (i - today.weekday()) % 7 or 7
            return today + dt.timedelta(days=ahead)
    try:
        return dt.date.fromisoformat(low)
    except ValueError:
        raise ValueError(f"not a day: {text!r}; use YYYY-MM-DD, today, tomorrow or a "
                         "weekday") from None


def fmt_clock(minutes: int) -> str:
    """Minutes after midnight -> 'HH:MM'."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def check_slot(shop: Shop, day: dt.date, minute: int, service: str) -> str:
    """Why this slot cannot be booked at all, or '' when it is within opening hours."""
    if shop.services and service.lower() not in shop.services:
        return f"{shop.name} does not offer {service!r}"
    if day.weekday() not in shop.days:
        return f"{shop.name} is closed on {WEEKDAYS[day.weekday()]}"
    if not shop.opens <= minute <= shop.closes - shop.slot_minutes:
        return (f"{shop.name} takes bookings from {fmt_clock(shop.opens)} to "
                f"{fmt_clock(shop.closes - shop.slot_minutes)}")
    return ""


def slot_start(shop: Shop, minute: int) -> int:
    """The slot a time falls into."""
    return shop.opens + (minute - shop.opens) // shop.slot_minutes * shop.slot_minutes


def day_slots(shop: Shop) -> list[int]:
    """Every slot start of an opening day."""
    return list(range(shop.opens, shop.closes - shop.slot_minutes + 1, shop.slot_minutes))


def nearest_free(shop: Shop, minute: int, taken: dict[int, int]) -> int | None:
    """The free slot of an opening day nearest to ``minute`` (the later one on a tie), or
    None when the day is full; ``taken`` counts bookings per slot start."""
    free = [s for s in day_slots(shop) if taken.get(s, 0) < shop.capacity]
    if not free:
        return None
    target = slot_start(shop, min(max(minute, shop.opens), shop.closes - shop.slot_minutes))
    return min(free, key=lambda s: (abs(s - target), -s))
