"""Clock times as drivers say and type them, each mapped to 24 h ``"HH:MM"`` (the ``time`` slot).

Pure tables, no I/O: :func:`time_values` is the live ``time`` list of a language; the
:func:`period_values` lists hold the times said after a part of the day ("tomorrow morning at
nine", "tonight at eight", 明早八点, 今晚七点半), where the period picks a.m. or p.m.

English: "nine", "nine o'clock", "nine fifteen/thirty/forty five", "half past nine", "quarter
past/to ten", each bare or with "a.m."/"am"/"in the morning" or "p.m."/"pm"/"in the afternoon"/
"in the evening"/"at night"; "noon", "midday"; typed "9", "9:30", "9am", "9 a.m.", "21:15".
Mandarin: [上午|早上|下午|晚上|傍晚] + hour (九 / 9 / 两) + 点 + [整|钟|一刻|十五分|半|三十|
三刻|四十五分] (the period is a slot of its own, see :func:`with_period`); 中午 alone or with
twelve to two o'clock. An hour said without a period is 7-11 morning, 12 noon, 1-6
afternoon (service hours).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

_EN_HOURS = ("twelve", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
             "ten", "eleven", "twelve")
_EN_MINUTES = ((0, ""), (0, " o'clock"), (15, " fifteen"), (30, " thirty"), (45, " forty five"))
_EN_AM = ("a.m.", "am", "in the morning")
_EN_PM = ("p.m.", "pm", "in the afternoon", "in the evening", "at night")
_EN_NOON = ("noon", "midday", "twelve noon")
# Forms for typed text only: "am" is not how "a.m." sounds, "pm" sounds as "p.m." does, and
# the rest are rare enough in speech that they would only widen what a recognizer can mishear.
_TYPED_ONLY_TAILS = (" am", " pm", " at night")

#: A clock form: (text, hour on the 12 h dial, minutes from that hour; negative = "to").
ClockForm = tuple[str, int, int]


def default_hour24(hour12: int) -> int:
    """An hour said without a.m./p.m.: 7-11 morning, 12 noon, 1-6 afternoon (service hours)."""
    return hour12 if 7 <= hour12 <= 12 else hour12 + 12


def _to24(hour12: int, pm: bool) -> int:
    return (hour12 % 12) + (12 if pm else 0)


def hhmm(hour12: int, minute: int, pm: bool | None) -> str:
    """A 12 h dial hour, minutes from it (negative for "quarter to") and a period as HH:MM."""
    hour = default_hour24(hour12) if pm is None else _to24(hour12, pm)
    total = (hour * 60 + minute) % (24 * 60)
    return f"{total // 60:02d}:{total % 60:02d}"


def en_clock_forms() -> Iterator[ClockForm]:
    """The spoken English clock forms without a period, for every hour of the dial."""
    for h in range(1, 13):
        word = _EN_HOURS[h]
        for minute, tail in _EN_MINUTES:
            yield f"{word}{tail}", h, minute
        yield f"half past {word}", h, 30
        yield f"quarter past {word}", h, 15
        yield f"quarter to {word}", h, -15


def en_time_values() -> list[tuple[str, str]]:
    """Spoken and typed English clock times, each as (text, "HH:MM")."""
    out: list[tuple[str, str]] = [(text, "12:00") for text in _EN_NOON]
    for text, h, minute in en_clock_forms():
        out.append((text, hhmm(h, minute, None)))
        out.extend((f"{text} {suffix}", hhmm(h, minute, False)) for suffix in _EN_AM)
        out.extend((f"{text} {suffix}", hhmm(h, minute, True)) for suffix in _EN_PM)
    out.extend(_digit_times(_EN_AM, _EN_PM))
    return _dedupe(out)


def _digit_times(am: Sequence[str], pm: Sequence[str]) -> Iterator[tuple[str, str]]:
    """Typed forms: 24 h "HH:MM" / "H:MM", and 12 h "9", "9:30", "9am", "9:30 pm"."""
    for h in range(24):
        for m in range(0, 60, 5):
            yield f"{h:02d}:{m:02d}", f"{h:02d}:{m:02d}"
            if h < 10:
                yield f"{h}:{m:02d}", f"{h:02d}:{m:02d}"
    for h in range(1, 13):
        for m in range(0, 60, 5):
            clock = f"{h}" if m == 0 else f"{h}:{m:02d}"
            if m == 0:
                yield clock, hhmm(h, 0, None)
                yield f"{clock} o'clock", hhmm(h, 0, None)
            for suffixes, pm_ in ((am, False), (pm, True)):
                for suffix in suffixes:
                    yield f"{clock} {suffix}", hhmm(h, m, pm_)
                    if "." in suffix or " " not in suffix:
                        yield f"{clock}{suffix}", hhmm(h, m, pm_)


_ZH_DIGITS = "零一二三四五六七八九"


def zh_number(n: int) -> str:
    """Chinese numerals for 0-59 (as said in clock times)."""
    if n < 10:
        return _ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    head = "十" if tens == 1 else _ZH_DIGITS[tens] + "十"
    return head + (_ZH_DIGITS[ones] if ones else "")


#: The Mandarin periods (the ``period`` list of sentences/zh.yaml says the same).
_ZH_PERIOD_NAMES = {"上午": "am", "早上": "am", "下午": "pm", "晚上": "pm", "傍晚": "pm"}
_ZH_MINUTES = {0: ("", "整", "钟"), 15: ("十五分", "一刻"), 30: ("半", "三十分", "三十"),
               45: ("四十五分", "三刻")}


def zh_clock_forms() -> Iterator[ClockForm]:
    """The Mandarin clock forms without a period: 九点, 9点半, 两点一刻, ..."""
    for h in range(1, 13):
        names = [zh_number(h), str(h)] + (["两"] if h == 2 else [])
        for name in names:
            for minute, forms in _ZH_MINUTES.items():
                for form in forms:
                    yield f"{name}点{form}", h, minute


def zh_clock_values() -> list[tuple[str, str]]:
    """The live Mandarin ``time`` list: clock forms without a period (九点半, 9点, 两点一刻)
    and typed 9:30 / 21:15. 上午/下午/... said before the clock is a ``period`` slot of its
    own, applied by :func:`with_period`: one list of periods and one of clocks instead of every
    combination keeps hassil's matching of Mandarin text fast."""
    out = [(text, hhmm(h, minute, None)) for text, h, minute in zh_clock_forms()]
    out.extend((text, value) for text, value in _digit_times((), ()) if ":" in text)
    return _dedupe(out)


def zh_noon_values() -> list[tuple[str, str]]:
    """中午 alone (12:00) and with the clocks it goes with (中午十二点, 中午一点半; 12-2 p.m.)."""
    out = [("中午", "12:00")]
    out.extend((f"中午{text}", hhmm(h, minute, True)) for text, h, minute in zh_clock_forms()
               if h in (12, 1, 2))
    return _dedupe(out)


#: The values of the Mandarin ``period`` slot (the ``period`` list in sentences/zh.yaml).
PERIODS = ("am", "pm")


def with_period(period: str, clock: str) -> str | None:
    """A clock time ("HH:MM" as said without a period) moved into a period ("am", "pm"), its
    hour read on the 12 h dial (下午三点 and 下午15:00 are both 15:00); None for another period."""
    if period not in PERIODS:
        return None
    hour, minute = int(clock[:2]), int(clock[3:])
    return hhmm(hour % 12 or 12, minute, period == "pm")


def zh_time_values() -> list[tuple[str, str]]:
    """Every Mandarin time form with or without a period, each as (text, "HH:MM") (a table
    for documentation and tests; the parser composes period and clock, see above)."""
    out = zh_clock_values() + zh_noon_values()
    for text, value in zh_clock_values():
        for period, name in _ZH_PERIOD_NAMES.items():
            out.append((f"{period}{text}", with_period(name, value) or ""))
    return _dedupe(out)


def period_values(lang: str, pm: bool) -> list[tuple[str, str]]:
    """Times said after a part of the day that already says a.m. (``pm=False``) or p.m."""
    forms = en_clock_forms() if lang == "en" else zh_clock_forms()
    out = [(text, hhmm(h, minute, pm)) for text, h, minute in forms
           if pm or h != 12]  # "this morning at twelve" is not a thing people say
    if lang == "en":
        out.extend((f"{h}" if m == 0 else f"{h}:{m:02d}", hhmm(h, m, pm))
                   for h in range(1, 13) for m in range(0, 60, 5) if pm or h != 12)
    return _dedupe(out)


def typed_time(text: str) -> bool:
    """Whether a time form is for typed text only (digits, "am"/"pm", "at night", ...)."""
    return (any(c.isdigit() for c in text) or text.endswith(_TYPED_ONLY_TAILS)
            or text == "twelve noon")


def _dedupe(values: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for text, value in values:
        seen.setdefault(text, value)
    return list(seen.items())


def time_values(lang: str) -> list[tuple[str, str]]:
    """The live ``time`` list for a language."""
    return en_time_values() if lang == "en" else zh_clock_values()
