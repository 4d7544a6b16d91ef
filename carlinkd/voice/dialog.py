"""The voice dialog: a pure state machine fed recognized intents and the time, returning actions.

No I/O and no clock: every input carries ``now`` and every output is an action for the adapter
(:mod:`carlinkd.voice.service`) to carry out. It fills missing slots with short prompts, reads
back and asks for confirmation before anything leaves the car (``send_message``,
``book_service``, ``emergency_help``), reprompts once after ``silence_timeout_s`` of silence and
gives up after the same again, cancels at any point, and stops speech at once on push-to-talk
(barge-in). Speech it did not understand never becomes an action.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from .intents import COMMAND_INTENTS, ParsedIntent
from .prompts import render

log = logging.getLogger(__name__)

#: Slots each command needs before it can go ahead, in the order they are asked for.
REQUIRED_SLOTS: Mapping[str, tuple[str, ...]] = {
    "send_message": ("group", "text"),
    "read_messages": (),
    "book_service": ("service", "day", "time"),
    "vehicle_status": ("item",),
    "emergency_help": (),
}
OPTIONAL_SLOTS: Mapping[str, tuple[str, ...]] = {"read_messages": ("group",)}
#: Commands read back and confirmed before they become hub commands.
CONFIRMED = ("send_message", "book_service", "emergency_help")
#: Failed turns (not understood, or silence) tolerated before giving up.
MAX_RETRIES = 1


class DialogState(enum.Enum):
    """Where the exchange stands."""

    IDLE = "idle"              # nothing under way
    LISTENING = "listening"    # waiting for a command
    FILLING = "filling"        # asked for a missing slot
    CONFIRMING = "confirming"  # read back, waiting for yes or cancel


@dataclass(frozen=True)
class Say:
    """Speak a reply (a dialog reply: barge-in may cut it)."""

    text: str


@dataclass(frozen=True)
class StopSpeaking:
    """Silence any speech at once (barge-in)."""


@dataclass(frozen=True)
class Listen:
    """Open the microphone for the driver's answer."""


@dataclass(frozen=True)
class EmitCommand:
    """A confirmed command for the hub."""

    name: str
    args: Mapping[str, str]


@dataclass(frozen=True)
class ReportStatus:
    """Answer a vehicle_status question from the latest signals."""

    item: str


@dataclass(frozen=True)
class ReadMessages:
    """Read unread messages aloud (optionally one group's)."""

    group: str | None


Action = Say | StopSpeaking | Listen | EmitCommand | ReportStatus | ReadMessages


@dataclass
class Dialog:
    """One driver's conversation with the car, in one language."""

    lang: str = "en"
    silence_timeout_s: float = 8.0
    state: DialogState = DialogState.IDLE
    intent: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    awaiting: str | None = None
    deadline: float | None = None
    retries: int = 0
    last_prompt: str = ""

    # --- inputs -------------------------------------------------------------------------

    def push_to_talk(self, now: float) -> list[Action]:
        """The driver pressed push-to-talk: barge in, and listen (keeping any context)."""
        if self.state is DialogState.IDLE:
            self._set(DialogState.LISTENING)
        self.deadline = None
        return [StopSpeaking()]

    def heard(self, parsed: ParsedIntent, now: float) -> list[Action]:
        """The recognizer's result for one utterance (``intent=None``: not understood)."""
        if self.state is DialogState.IDLE:
            self._set(DialogState.LISTENING)
        name = parsed.intent
        if name is None:
            return self._retry("not_understood", now)
        if name == "cancel":
            return self._finish([Say(render("cancelled", self.lang))])
        if name == "repeat":
            return self._ask_again(now)
        if self.state is DialogState.CONFIRMING:
            return self._on_confirming(parsed, now)
        if name in COMMAND_INTENTS:
            self.intent, self.slots, self.retries = name, {}, 0
            return self._merge(parsed.slots, now)
        if name == "answer" and self.state is DialogState.FILLING:
            return self._on_answer(parsed, now)
        if name == "confirm":
            return self._finish([Say(render("nothing_to_confirm", self.lang))])
        return self._retry("not_understood", now)

    def silence(self, now: float) -> list[Action]:
        """The driver said nothing (empty capture)."""
        if self.state is DialogState.IDLE:
            return []
        return self._retry(None, now)

    def tick(self, now: float) -> list[Action]:
        """Time passed; past the deadline it counts as silence."""
        if self.deadline is None or now < self.deadline:
            return []
        return self.silence(now)

    # --- transitions -----------------------------------------------------------------------

    def _on_confirming(self, parsed: ParsedIntent, now: float) -> list[Action]:
        if parsed.intent == "confirm":
            assert self.intent is not None
            done = render(f"done_{self.intent}", self.lang, self.slots)
            return self._finish([EmitCommand(self.intent, dict(self.slots)), Say(done)])
        if parsed.intent in COMMAND_INTENTS:
            self.intent, self.slots, self.retries = parsed.intent, {}, 0
            return self._merge(parsed.slots, now)
        return self._retry("say_yes_or_cancel", now)

    def _on_answer(self, parsed: ParsedIntent, now: float) -> list[Action]:
        assert self.intent is not None and self.awaiting is not None
        if self.awaiting not in parsed.slots:
            return self._retry("not_understood", now)
        self.retries = 0
        return self._merge(parsed.slots, now)

    def _merge(self, slots: Mapping[str, str], now: float) -> list[Action]:
        assert self.intent is not None
        wanted = REQUIRED_SLOTS[self.intent] + OPTIONAL_SLOTS.get(self.intent, ())
        self.slots.update({k: v for k, v in slots.items() if k in wanted})
        missing = [s for s in REQUIRED_SLOTS[self.intent] if s not in self.slots]
        if missing:
            self.awaiting = missing[0]
            self._set(DialogState.FILLING)
            return self._prompt(f"ask_{missing[0]}", now)
        self.awaiting = None
        if self.intent in CONFIRMED:
            self._set(DialogState.CONFIRMING)
            return self._prompt(f"confirm_{self.intent}", now)
        if self.intent == "vehicle_status":
            return self._finish([ReportStatus(self.slots["item"])])
        return self._finish([ReadMessages(self.slots.get("group"))])

    def _prompt(self, key: str, now: float) -> list[Action]:
        self.last_prompt = render(key, self.lang, self.slots)
        self.deadline = now + self.silence_timeout_s
        return [Say(self.last_prompt), Listen()]

    def _ask_again(self, now: float) -> list[Action]:
        if not self.last_prompt or self.state is DialogState.LISTENING:
            return self._retry("not_understood", now)
        self.deadline = now + self.silence_timeout_s
        return [Say(self.last_prompt), Listen()]

    def _retry(self, key: str | None, now: float) -> list[Action]:
        """One more chance (a reprompt), or give up when the retries are used."""
        if self.retries >= MAX_RETRIES:
            return self._finish([Say(render("gave_up", self.lang))])
        self.retries += 1
        self.deadline = now + self.silence_timeout_s
        if key == "say_yes_or_cancel":
            text = render(key, self.lang)
        elif self.last_prompt and self.state is not DialogState.LISTENING:
            text = self.last_prompt
        else:
            text = render("not_understood", self.lang)
        return [Say(text), Listen()]

    def _finish(self, actions: list[Action]) -> list[Action]:
        self.intent, self.slots, self.awaiting = None, {}, None
        self.deadline, self.retries, self.last_prompt = None, 0, ""
        self._set(DialogState.IDLE)
        return actions

    def _set(self, state: DialogState) -> None:
        if state is not self.state:
            log.debug("dialog %s -> %s (%s)", self.state.value, state.value, self.intent)
            self.state = state
