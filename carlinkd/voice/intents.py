"""Intent recognition on text: hassil templates per language, with live slot lists.

The sentence files (``sentences/en.yaml``, ``sentences/zh.yaml``) declare intents, slots and
static lists. Three lists are live: ``group`` (message groups from configuration, then the
cloud's ``groups`` item), ``time`` (clock times, spoken forms mapped to 24 h ``"HH:MM"``) and
``shop`` (the shops a booking offer named); :class:`IntentParser` rebuilds them when
:meth:`IntentParser.set_groups` / :meth:`IntentParser.set_shops` change them, and bumps
``revision`` so the ASR grammar built from the same templates is rebuilt too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]
from hassil import Intents, SlotList, TextChunk, TextSlotList, TextSlotValue
from hassil.recognize import RecognizeResult, recognize_all

from ..errors import GrammarError

log = logging.getLogger(__name__)

#: Intents that act on their own; the rest steer a dialog already under way.
COMMAND_INTENTS = ("send_message", "read_messages", "book_service", "vehicle_status",
                   "emergency_help", "join_group", "leave_group", "list_groups", "cancel_help",
                   "helper_mode", "cancel_booking")
DIALOG_INTENTS = ("confirm", "cancel", "repeat", "answer", "choose")
LANGUAGES = ("en", "zh")

DEFAULT_GROUPS: Mapping[str, tuple[str, ...]] = {
    "en": ("family", "friends", "car club"), "zh": ("家人", "朋友", "车友会")}

_CJK_SPACE = re.compile(r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")


@dataclass(frozen=True)
class ParsedIntent:
    """What one utterance means: intent name (None = not understood) and slot values."""

    text: str
    intent: str | None
    slots: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The shape ``carlinkd listen/intent --json`` prints."""
        return {"text": self.text, "intent": self.intent, "slots": dict(self.slots)}


def sentences_path(lang: str) -> Path:
    """The packaged sentence file for a language."""
    return Path(str(resources.files("carlinkd.voice") / "sentences" / f"{lang}.yaml"))


def load_sentences(path: Path) -> dict[str, Any]:
    """Read one hassil sentence file as a dict, translating errors to GrammarError."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError as err:
        raise GrammarError(f"{path}: sentence file not found") from err
    except (OSError, yaml.YAMLError) as err:
        raise GrammarError(f"{path}: cannot read sentences: {err}") from err
    if not isinstance(data, dict) or "intents" not in data or "language" not in data:
        raise GrammarError(f"{path}: expected a hassil file with 'language' and 'intents'")
    return data


# --- live lists -------------------------------------------------------------------------

_EN_HOURS = ("twelve", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
             "ten", "eleven", "twelve")
_EN_MINUTES = {0: ("", "o'clock"), 15: ("fifteen",), 30: ("thirty",), 45: ("forty five",)}
_EN_PM = ("p.m.", "in the afternoon", "in the evening")
_EN_AM = ("a.m.", "in the morning")


def default_hour24(hour12: int) -> int:
    """An hour said without a.m./p.m.: 7-11 morning, 12 noon, 1-6 afternoon (service hours)."""
    return hour12 if 7 <= hour12 <= 12 else hour12 + 12


def _to24(hour12: int, pm: bool) -> int:
    return (hour12 % 12) + (12 if pm else 0)


def en_time_values() -> list[tuple[str, str]]:
    """Spoken and typed English clock times, each as (text, "HH:MM")."""
    out: list[tuple[str, str]] = [("noon", "12:00"), ("midday", "12:00")]
    for h in range(1, 13):
        word = _EN_HOURS[h]
        for minute, forms in _EN_MINUTES.items():
            for form in forms:
                base = f"{word} {form}".strip()
                out.append((base, f"{default_hour24(h):02d}:{minute:02d}"))
                for suffix in _EN_AM:
                    out.append((f"{base} {suffix}", f"{_to24(h, False):02d}:{minute:02d}"))
                for suffix in _EN_PM:
                    out.append((f"{base} {suffix}", f"{_to24(h, True):02d}:{minute:02d}"))
        out.append((f"half past {word}", f"{default_hour24(h):02d}:30"))
        out.append((f"quarter past {word}", f"{default_hour24(h):02d}:15"))
    out.extend(_digit_times(("am", "a.m."), ("pm", "p.m.")))
    return out


def _digit_times(am: Sequence[str], pm: Sequence[str]) -> Iterator[tuple[str, str]]:
    """Typed forms: 24 h "HH:MM" / "H:MM", and 12 h "9", "9:30", "9am", "9:30 pm"."""
    for h in range(24):
        for m in range(0, 60, 5):
            hhmm = f"{h:02d}:{m:02d}"
            yield hhmm, hhmm
            if h < 10:
                yield f"{h}:{m:02d}", hhmm
    for h in range(1, 13):
        for m in range(0, 60, 5):
            clock = f"{h}" if m == 0 else f"{h}:{m:02d}"
            if m == 0:
                yield clock, f"{default_hour24(h):02d}:00"
            for suffix in am:
                yield f"{clock} {suffix}", f"{_to24(h, False):02d}:{m:02d}"
                yield f"{clock}{suffix}", f"{_to24(h, False):02d}:{m:02d}"
            for suffix in pm:
                yield f"{clock} {suffix}", f"{_to24(h, True):02d}:{m:02d}"
                yield f"{clock}{suffix}", f"{_to24(h, True):02d}:{m:02d}"


_ZH_DIGITS = "零一二三四五六七八九"


def zh_number(n: int) -> str:
    """Chinese numerals for 0-59 (as said in clock times)."""
    if n < 10:
        return _ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    head = "十" if tens == 1 else _ZH_DIGITS[tens] + "十"
    return head + (_ZH_DIGITS[ones] if ones else "")


_ZH_PERIODS = {"": None, "上午": False, "早上": False, "中午": True, "下午": True, "晚上": True}
_ZH_MINUTES = {0: ("", "整"), 15: ("十五分", "一刻"), 30: ("半", "三十分", "三十"),
               45: ("四十五分", "三刻")}


def zh_time_values() -> list[tuple[str, str]]:
    """Spoken and typed Mandarin clock times, each as (text, "HH:MM")."""
    out: list[tuple[str, str]] = []
    for h in range(1, 13):
        names = [zh_number(h)] + (["两"] if h == 2 else [])
        for period, pm in _ZH_PERIODS.items():
            if pm is None:
                hour24 = default_hour24(h)
            elif period == "中午":
                hour24 = 12 if h == 12 else h + 12 if h <= 2 else -1
            else:
                hour24 = _to24(h, pm)
            if hour24 < 0:
                continue
            for name in names:
                for minute, forms in _ZH_MINUTES.items():
                    for form in forms:
                        out.append((f"{period}{name}点{form}", f"{hour24:02d}:{minute:02d}"))
                        out.append((f"{period}{h}点{form}", f"{hour24:02d}:{minute:02d}"))
    out.extend((text, value) for text, value in _digit_times((), ()) if ":" in text)
    return _dedupe(out)


def _dedupe(values: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for text, value in values:
        seen.setdefault(text, value)
    return list(seen.items())


def time_values(lang: str) -> list[tuple[str, str]]:
    """The live ``time`` list for a language."""
    return _dedupe(en_time_values()) if lang == "en" else zh_time_values()


def _plain_list(name: str, values: Iterable[tuple[str, str]]) -> TextSlotList:
    """A text list of literal (not template) values."""
    return TextSlotList(name=name, values=[
        TextSlotValue(text_in=TextChunk(text), value_out=value) for text, value in values])


# --- parser -----------------------------------------------------------------------------


class IntentParser:
    """Text to :class:`ParsedIntent` for one language, with live group and time lists."""

    def __init__(self, lang: str, groups: Sequence[str] | None = None,
                 sentences: Path | None = None) -> None:
        self.lang = lang
        self.path = sentences or sentences_path(lang)
        data = load_sentences(self.path)
        try:
            self.intents = Intents.from_dict(data)
        except (KeyError, TypeError, ValueError) as err:
            raise GrammarError(f"{self.path}: invalid sentence templates: {err}") from err
        self.revision = 0
        self.slot_lists: dict[str, SlotList] = dict(self.intents.slot_lists)
        self.slot_lists["time"] = _plain_list("time", time_values(lang))
        self.groups: tuple[str, ...] = ()
        self.shops: tuple[str, ...] = ()
        self.slot_lists["shop"] = _plain_list("shop", ())
        self.set_groups(groups if groups is not None else DEFAULT_GROUPS.get(lang, ()))

    def set_groups(self, groups: Sequence[str]) -> bool:
        """Replace the live group names; returns whether anything changed."""
        new = tuple(dict.fromkeys(g.strip() for g in groups if g.strip()))
        if new == self.groups:
            return False
        self.groups = new
        self.slot_lists["group"] = _plain_list("group", ((g, g) for g in new))
        self.revision += 1
        log.debug("%s groups now %s (revision %d)", self.lang, new, self.revision)
        return True

    def set_shops(self, shops: Sequence[str]) -> bool:
        """Replace the live shop names (the ones just offered); returns whether they changed."""
        new = tuple(dict.fromkeys(s.strip() for s in shops if s.strip()))
        if new == self.shops:
            return False
        self.shops = new
        self.slot_lists["shop"] = _plain_list("shop", ((s.casefold(), s) for s in new))
        self.revision += 1
        return True

    def normalize(self, text: str) -> str:
        """Casefold and tidy whitespace (and drop it between CJK characters)."""
        text = " ".join(text.replace("\u2019", "'").split())
        return _CJK_SPACE.sub("", text).casefold()

    def parse(self, text: str) -> ParsedIntent:
        """The best intent for the text, or ``intent=None`` when nothing matches exactly."""
        clean = self.normalize(text)
        if not clean:
            return ParsedIntent(text, None)
        best: tuple[tuple[int, int, int], RecognizeResult] | None = None
        for result in recognize_all(clean, self.intents, slot_lists=self.slot_lists,
                                    language=self.lang):
            if result.unmatched_entities:
                continue
            rank = (int(result.intent.name != "answer"), len(result.entities),
                    result.text_chunks_matched)
            if best is None or rank > best[0]:
                best = (rank, result)
        if best is None:
            return ParsedIntent(text, None)
        result = best[1]
        slots = {name: str(ent.value) for name, ent in result.entities.items()}
        return ParsedIntent(text, result.intent.name, slots)
