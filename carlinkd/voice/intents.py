"""Intent recognition on text: hassil templates per language, with live slot lists.

The sentence files (``sentences/en.yaml``, ``sentences/zh.yaml``) declare intents, slots and
static lists. Three lists are live: ``group`` (message groups from configuration, then the
cloud's ``groups`` item), ``time`` (clock times, spoken forms mapped to 24 h ``"HH:MM"``) and
``shop`` (the shops a booking offer named); :class:`IntentParser` rebuilds them when
:meth:`IntentParser.set_groups` / :meth:`IntentParser.set_shops` change them, and bumps
``revision`` so the ASR grammar built from the same templates is rebuilt too. The clock-time
lists (``time``, and ``time_am``/``time_pm`` for times after "morning"/"tonight") come from
:mod:`carlinkd.voice.times`; forms for typed text only carry ``typed_only`` metadata, which
keeps them out of recognition grammars (see :func:`carlinkd.voice.grammar.typed_only`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]
from hassil import Intents, SlotList, TextChunk, TextSlotList, TextSlotValue
from hassil.recognize import RecognizeResult, recognize_all

from ..errors import GrammarError
from .times import (en_time_values, period_values, time_values, typed_time, with_period,
                    zh_noon_values, zh_time_values)

__all__ = ["IntentParser", "ParsedIntent", "en_time_values", "zh_time_values", "load_sentences",
           "sentences_path"]

log = logging.getLogger(__name__)

#: Intents that act on their own; the rest steer a dialog already under way.
COMMAND_INTENTS = ("send_message", "read_messages", "book_service", "vehicle_status",
                   "emergency_help", "join_group", "leave_group", "list_groups", "cancel_help",
                   "helper_mode", "cancel_booking", "prepare_report")
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

def _plain_list(name: str, values: Iterable[tuple[str, str]],
                typed: Callable[[str], bool] | None = None) -> TextSlotList:
    """A text list of literal (not template) values; ``typed`` marks the typed-only ones."""
    return TextSlotList(name=name, values=[
        TextSlotValue(text_in=TextChunk(text), value_out=value,
                      metadata={"typed_only": True} if typed and typed(text) else None)
        for text, value in values])


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
        times = {"time": time_values(lang), "time_am": period_values(lang, pm=False),
                 "time_pm": period_values(lang, pm=True)}
        if lang == "zh":
            times["time_noon"] = zh_noon_values()
        for name, values in times.items():
            self.slot_lists[name] = _plain_list(name, values, typed_time)
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
        if "period" in slots:  # Mandarin 上午/下午 said before the clock
            moved = with_period(slots.pop("period"), slots.get("time", ""))
            if moved is None:
                return ParsedIntent(text, None)
            slots["time"] = moved
        return ParsedIntent(text, result.intent.name, slots)
