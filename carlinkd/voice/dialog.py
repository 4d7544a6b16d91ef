"""The voice dialog: a pure state machine fed recognized intents and the time, returning actions.

No I/O and no clock: every input carries ``now`` and every output is an action for the adapter
(:mod:`carlinkd.voice.service`) to carry out. It fills missing slots with short prompts, reads
back and asks for confirmation before anything leaves the car (``send_message``,
``book_service``, ``emergency_help``), reprompts once after ``silence_timeout_s`` of silence and
gives up after the same again, cancels at any point, and stops speech at once on push-to-talk
(barge-in). Speech it did not understand never becomes an action.

The car can also ask on its own (:meth:`Dialog.offer`, e.g. "answer a help request?"): the
offer waits while an exchange is under way and is put when the dialog is idle again; "yes"
makes its command, "cancel" or silence drops it without a word. An offer may hold choices
("Demo Garage, 2 km, or Garage Nord, 4 km?"): "the first one" or a shop's name picks one. At
most MAX_WAITING_OFFERS wait; one past its ``until`` (e.g. a help request that expired) is
never put, and :meth:`Dialog.withdraw` takes one back (a help request cancelled).
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
    "join_group": ("group",),
    "leave_group": ("group",),
    "list_groups": (),
    "cancel_help": (),
    "helper_mode": ("state",),
    "cancel_booking": (),
    "prepare_report": (),
}
OPTIONAL_SLOTS: Mapping[str, tuple[str, ...]] = {"read_messages": ("group",)}
#: Commands that go ahead without a read-back: the hub command each becomes (None: an action
#: for the adapter, see :class:`Lookup`).
DIRECT: Mapping[str, str | None] = {
    "join_group": "join_group", "leave_group": "leave_group", "helper_mode": "set_helper",
    "cancel_help": "help_cancel", "list_groups": None, "cancel_booking": None,
    "prepare_report": "export_report",
}
#: Commands read back and confirmed before they become hub commands.
CONFIRMED = ("send_message", "book_service", "emergency_help")
#: Failed turns (not understood, or silence) tolerated before giving up.
MAX_RETRIES = 1
#: An offer still waiting for the dialog after this long is stale (the moment has passed).
OFFER_MAX_AGE_S = 300.0
#: Offers waiting for the dialog at most; a newer one past this is dropped (logged).
MAX_WAITING_OFFERS = 3
#: Confirmed commands that go to the hub under another name (a booking asks for shops first).
COMMAND_NAMES: Mapping[str, str] = {"book_service": "booking_options"}


class DialogState(enum.Enum):
    """Where the exchange stands."""

    IDLE = "idle"              # nothing under way
    LISTENING = "listening"    # waiting for a command
    FILLING = "filling"        # asked for a missing slot
    CONFIRMING = "confirming"  # read back, waiting for yes or cancel


@dataclass(frozen=True)
class Say:
    """Speak a reply (a dialog reply: barge-in may cut it); offers speak at "alert" priority."""

    text: str
    priority: str = "reply"


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


@dataclass(frozen=True)
class Lookup:
    """A command the adapter answers from what the car knows ("list_groups": the groups the
    cloud last listed; "cancel_booking": an offer to cancel the booking it last confirmed)."""

    name: str


Action = Say | StopSpeaking | Listen | EmitCommand | ReportStatus | ReadMessages | Lookup


@dataclass(frozen=True)
class Offer:
    """A question the car puts on its own: ``intro`` then ``prompt``; yes makes ``action``."""

    action: EmitCommand
    prompt: str
    created: float
    intro: tuple[str, ...] = ()
    done: str = ""
    choices: tuple[EmitCommand, ...] = ()  # picked by "the first one" or by name
    names: tuple[str, ...] = ()  # the choices' names (shop names), casefolded match
    until: float | None = None  # never put at or after this time
    key: str = ""  # what withdraw() matches (e.g. the help request id)


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
    offer_made: Offer | None = None  # the offer being asked, while it is
    offers: list[Offer] = field(default_factory=list)  # waiting for the dialog to be idle

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
            return self._finish([Say(render("cancelled", self.lang))], now)
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
            return self._finish([Say(render("nothing_to_confirm", self.lang))], now)
        return self._retry("not_understood", now)

    def expecting(self) -> str | None:
        """The question the next utterance answers: the slot asked for, "confirm" while a
        read-back waits for yes or cancel, None when a new command may come. An offer the car
        made on its own expects any command too: the driver may have something else in mind."""
        if self.state is DialogState.CONFIRMING and self.offer_made is None:
            return "confirm"
        if self.state is DialogState.FILLING:
            return self.awaiting
        return None

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

    def spoke(self, now: float) -> None:
        """The car finished speaking: a pending answer's silence timeout counts from now."""
        if self.deadline is not None:
            self.deadline = max(self.deadline, now + self.silence_timeout_s)

    def offer(self, action: EmitCommand, prompt: str, now: float, *,
              intro: tuple[str, ...] = (), done: str = "",
              choices: tuple[EmitCommand, ...] = (), names: tuple[str, ...] = (),
              until: float | None = None, key: str = "") -> list[Action]:
        """Ask on the car's own initiative whether to do ``action`` (yes, cancel or silence),
        or which of ``choices`` to take.

        Put at once when the dialog is idle; otherwise it waits, and is put when the exchange
        under way has finished (dropped when older than OFFER_MAX_AGE_S or past ``until``).
        """
        offer = Offer(action, prompt, now, intro, done, choices, names, until, key)
        if self.state is not DialogState.IDLE:
            if len(self.offers) >= MAX_WAITING_OFFERS:
                log.info("offer %s dropped: %d offers wait already", action.name,
                         len(self.offers))
                return []
            self.offers.append(offer)
            log.debug("offer %s waits for the exchange under way", action.name)
            return []
        return self._put_offer(offer, now)

    def withdraw(self, key: str, now: float) -> tuple[bool, list[Action]]:
        """Take back the offers made with ``key``: (whether one was being asked, actions)."""
        self.offers = [o for o in self.offers if o.key != key]
        if self.offer_made is not None and self.offer_made.key == key:
            log.info("offer %s withdrawn while asked", self.intent)
            return True, self._finish([], now)
        return False, []

    # --- transitions -----------------------------------------------------------------------

    def _on_confirming(self, parsed: ParsedIntent, now: float) -> list[Action]:
        made = self.offer_made
        if made is not None and made.choices:
            picked = self._pick(made, parsed)
            if picked is not None:
                return self._finish([picked, *([Say(made.done)] if made.done else [])], now)
            if parsed.intent in ("confirm", "choose"):
                return self._retry("say_which_one", now)
        if parsed.intent == "confirm":
            assert self.intent is not None
            if self.offer_made is not None:
                made = self.offer_made
                done_offer = [Say(made.done)] if made.done else []
                return self._finish([made.action, *done_offer], now)
            done = render(f"done_{self.intent}", self.lang, self.slots)
            name = COMMAND_NAMES.get(self.intent, self.intent)
            return self._finish([EmitCommand(name, dict(self.slots)), Say(done)], now)
        if parsed.intent in COMMAND_INTENTS:
            self.offer_made = None
            self.intent, self.slots, self.retries = parsed.intent, {}, 0
            return self._merge(parsed.slots, now)
        return self._retry("say_yes_or_cancel", now)

    @staticmethod
    def _pick(offer: Offer, parsed: ParsedIntent) -> EmitCommand | None:
        """The choice "the first one" or a name picks (a lone choice: also "yes")."""
        if parsed.intent == "confirm" and len(offer.choices) == 1:
            return offer.choices[0]
        if parsed.intent != "choose":
            return None
        number = parsed.slots.get("choice", "")
        if number.isdigit() and 1 <= int(number) <= len(offer.choices):
            return offer.choices[int(number) - 1]
        wanted = parsed.slots.get("shop", "").casefold()
        for name, choice in zip(offer.names, offer.choices, strict=False):
            if wanted and name.casefold() == wanted:
                return choice
        return None

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
            return self._finish([ReportStatus(self.slots["item"])], now)
        if self.intent in DIRECT:
            return self._finish(self._direct(self.intent, dict(self.slots)), now)
        return self._finish([ReadMessages(self.slots.get("group"))], now)

    def _direct(self, intent: str, slots: dict[str, str]) -> list[Action]:
        """A command that needs no read-back: the hub command and a short word, or a Lookup."""
        command = DIRECT[intent]
        if command is None:
            return [Lookup(intent)]
        key = f"done_{intent}" + (f"_{slots['state']}" if intent == "helper_mode" else "")
        return [EmitCommand(command, slots), Say(render(key, self.lang, slots))]

    def _prompt(self, key: str, now: float) -> list[Action]:
        self.last_prompt = render(key, self.lang, self.slots)
        self.deadline = now + self.silence_timeout_s
        return [Say(self.last_prompt), Listen()]

    def _put_offer(self, offer: Offer, now: float) -> list[Action]:
        self.intent, self.slots = offer.action.name, dict(offer.action.args)
        self.offer_made, self.retries, self.awaiting = offer, 0, None
        self.last_prompt = offer.prompt
        self.deadline = now + self.silence_timeout_s
        self._set(DialogState.CONFIRMING)
        return [*(Say(t, "alert") for t in offer.intro), Say(offer.prompt, "alert"), Listen()]

    def _ask_again(self, now: float) -> list[Action]:
        if not self.last_prompt or self.state is DialogState.LISTENING:
            return self._retry("not_understood", now)
        self.deadline = now + self.silence_timeout_s
        intro = self.offer_made.intro if self.offer_made is not None else ()
        return [*(Say(t) for t in intro), Say(self.last_prompt), Listen()]

    def _retry(self, key: str | None, now: float) -> list[Action]:
        """One more chance (a reprompt), or give up when the retries are used.

        An offer the driver stays silent on is dropped without a word: they chose not to answer.
        """
        if self.offer_made is not None and (key is None or self.retries >= MAX_RETRIES):
            log.info("offer %s dropped: no answer", self.intent)
            return self._finish([], now)
        if self.retries >= MAX_RETRIES:
            return self._finish([Say(render("gave_up", self.lang))], now)
        self.retries += 1
        self.deadline = now + self.silence_timeout_s
        if key in ("say_yes_or_cancel", "say_which_one"):
            text = render(key, self.lang)
        elif self.last_prompt and self.state is not DialogState.LISTENING:
            text = self.last_prompt
        else:
            text = render("not_understood", self.lang)
        return [Say(text), Listen()]

    def _finish(self, actions: list[Action], now: float) -> list[Action]:
        """End the exchange; put the oldest waiting offer that is not stale yet."""
        self.intent, self.slots, self.awaiting = None, {}, None
        self.deadline, self.retries, self.last_prompt = None, 0, ""
        self.offer_made = None
        self._set(DialogState.IDLE)
        while self.offers:
            offer = self.offers.pop(0)
            if now - offer.created <= OFFER_MAX_AGE_S and (offer.until is None
                                                          or now < offer.until):
                return [*actions, *self._put_offer(offer, now)]
            log.info("offer %s dropped: stale after %.0f s", offer.action.name,
                     now - offer.created)
        return actions

    def _set(self, state: DialogState) -> None:
        if state is not self.state:
            log.debug("dialog %s -> %s (%s)", self.state.value, state.value, self.intent)
            self.state = state
