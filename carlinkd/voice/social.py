"""What the cloud sends, put into words: the chat inbox and its read-outs, help requests from
nearby cars, answers to our own help requests, and booking updates.

Chat messages are read aloud at chat priority as they arrive (``[voice] incoming_messages =
"read"``; marked read once said in full), announced, or only kept for "read my messages". A help
request becomes an offer to answer "on my way" (alert priority; yes makes a ``help_respond``
command), with the distance from the request or else from our own position signals. Messages and
help requests we sent ourselves (the cloud echoes them) are not spoken.

:class:`Social` is the part of :class:`carlinkd.voice.service.VoiceService` that follows these
events; the service stays the orchestrator (audio capture, dialog, speech queue): it passes the
events in, attaches the speech output once open, and carries out the dialog actions of an offer.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from carlink_protocol.geo import great_circle_km
from ..events import (
    BookingUpdated,
    CloudState,
    Event,
    GroupsListed,
    HelpRequest,
    HelpResponse,
    MessageReceived,
    SignalValue,
)
from .dialog import Action, Dialog, EmitCommand
from ..records.offers import ACCEPT, ServiceRecordOffered, offer_texts
from .prompts import (
    READ_ALOUD_HANZI,
    READ_ALOUD_WORDS,
    booking_text,
    breath_length,
    render,
    say_date,
    say_distance,
)
from .tts import Priority

if TYPE_CHECKING:
    from .settings import VoiceConfig
    from .tts import SpeechOutput, Utterance

log = logging.getLogger(__name__)

LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
READ_OUT_TAG = "chat-"  # + Inbox ident: the tag of a chat read-out in the speech queue

#: The hub events :meth:`Social.handle` follows.
SOCIAL_EVENTS: tuple[type[Event], ...] = (MessageReceived, HelpRequest, HelpResponse,
                                          BookingUpdated, CloudState, GroupsListed,
                                          ServiceRecordOffered)


@dataclass(frozen=True)
class ChatMessage:
    """An unread message to read aloud."""

    sender: str
    group: str
    text: str
    timestamp: float
    ident: int = field(default=0, compare=False)


class Inbox:
    """Unread messages, oldest first; the sync subsystem adds, reading aloud consumes."""

    def __init__(self) -> None:
        self.unread: list[ChatMessage] = []
        self._next = 1

    def add(self, sender: str, group: str, text: str,
            timestamp: float | None = None) -> ChatMessage:
        """A message arrived."""
        msg = ChatMessage(sender, group, text, timestamp or time.time(), self._next)
        self._next += 1
        self.unread.append(msg)
        return msg

    def take(self, group: str | None, skip: Collection[int] = ()) -> list[ChatMessage]:
        """Remove and return unread messages (of one group, not those in ``skip``), oldest
        first (newest last)."""
        picked = [m for m in self.unread
                  if (group is None or m.group == group) and m.ident not in skip]
        taken = {m.ident for m in picked}
        self.unread = [m for m in self.unread if m.ident not in taken]
        return sorted(picked, key=lambda m: m.timestamp)

    def mark_read(self, ident: int) -> None:
        """A message was read aloud in full."""
        self.unread = [m for m in self.unread if m.ident != ident]


def _read_out_tag(ident: int) -> str:
    """The speech-queue tag of a message's read-out (the message is read once it completes)."""
    return f"{READ_OUT_TAG}{ident}"


def _read_out_ident(tag: str) -> int | None:
    """The Inbox ident a read-out's tag names, None for any other utterance."""
    return int(tag.removeprefix(READ_OUT_TAG)) if tag.startswith(READ_OUT_TAG) else None



class Social:
    """Cloud-originated events for one car's voice: the inbox, read-outs, offers and news."""

    def __init__(self, cfg: VoiceConfig, dialog: Dialog,
                 signals: Mapping[str, SignalValue]) -> None:
        self.cfg = cfg
        self.lang = cfg.language
        self.dialog = dialog
        self.signals = signals  # the service's latest signal values (read, never written)
        self.inbox = Inbox()
        self.output: SpeechOutput | None = None  # attached once the service opened speech
        self.device: str | None = None  # our own name in the cloud (from CloudState online)
        self.groups: GroupsListed | None = None  # what the cloud last said about our groups
        self.bookings: dict[int, BookingUpdated] = {}  # confirmed, by booking id

    def attach(self, output: SpeechOutput) -> None:
        """Speak through ``output`` from now on (nothing is said before)."""
        self.output = output

    def handle(self, event: Event, now: float) -> list[Action]:
        """Speak or keep one of :data:`SOCIAL_EVENTS`; returns the dialog's actions for the
        service to carry out (those of an offer to the driver, else none)."""
        if isinstance(event, MessageReceived):
            self._on_message(event)
        elif isinstance(event, HelpRequest):
            return self._on_help_request(event, now)
        elif isinstance(event, HelpResponse):
            if event.responder != self.device:
                self._say(render("help_response", self.lang, {"sender": event.responder,
                                                              "text": event.text}),
                          Priority.REPLY)
        elif isinstance(event, BookingUpdated):
            self._track_booking(event)
            slots = {"service": event.service, "day": event.day, "time": event.time,
                     "shop": event.shop, "reason": event.reason}
            self._say(booking_text(event.status, slots, self.lang, dt.date.today()),
                      Priority.REPLY)
        elif isinstance(event, GroupsListed):
            self.groups = event
        elif isinstance(event, ServiceRecordOffered):  # carlinkd.records.offers
            question, done = offer_texts(event, self.lang)
            return self.dialog.offer(EmitCommand(ACCEPT, {"booking_id": str(event.booking_id)}),
                                     question, now, done=done)
        elif isinstance(event, CloudState):
            if event.state == "online" and event.detail:
                self.device = event.detail  # the welcome names this car as others see it
        return []

    def read_messages(self, group: str | None) -> list[str]:
        """"Read my messages": queue the unread ones (of ``group``) now; returns the texts."""
        playing = self.output.queue.current if self.output is not None else None
        reading_now = _read_out_ident(playing.tag) if playing is not None else None
        messages = self.inbox.take(group, () if reading_now is None else (reading_now,))
        if messages and self.output is not None:  # read now, in order, rather than twice
            self.output.withdraw({_read_out_tag(m.ident) for m in messages})
        if not messages and reading_now is not None:
            return []  # the one being read aloud right now is the answer
        if not messages:
            text = render("no_messages", self.lang)
            self._say(text, Priority.REPLY)
            return [text]
        texts = [render("message", self.lang, {"sender": m.sender, "group": m.group,
                                               "text": m.text}) for m in messages]
        for text in texts:
            self._say(text, Priority.CHAT)
        return texts

    def describe_groups(self) -> str:
        """ "Which groups can I join": the groups the cloud last listed, said as a reply."""
        g = self.groups
        if g is None:
            text = render("groups_unknown", self.lang)
        else:
            sep = "、" if self.lang == "zh" else ", "
            key = ("groups_both" if g.joined and g.available else
                   "groups_joined" if g.joined else
                   "groups_available" if g.available else "groups_none")
            text = render(key, self.lang, said={"joined": sep.join(g.joined),
                                                "available": sep.join(g.available)})
        self._say(text, Priority.REPLY)
        return text

    def offer_booking_cancel(self, now: float) -> list[Action]:
        """ "Cancel my booking": offer to cancel the latest confirmed booking (yes or cancel)."""
        if not self.bookings:
            text = render("no_booking", self.lang)
            self._say(text, Priority.REPLY)
            return []
        ident = max(self.bookings)
        b = self.bookings[ident]
        slots = {"service": b.service, "time": b.time, "shop": b.shop}
        said = {"day": say_date(b.day, self.lang, dt.date.today())}
        action = EmitCommand("booking_cancel", {"booking_id": str(ident)})
        return self.dialog.offer(action, render("confirm_booking_cancel", self.lang, slots,
                                                said=said), now,
                                 done=render("done_booking_cancel", self.lang))

    def speech_ended(self, utt: Utterance, completed: bool) -> None:
        """An utterance ended: a read-out said in full marks its message read (one cut short
        stays unread)."""
        ident = _read_out_ident(utt.tag)
        if completed and ident is not None:
            self.inbox.mark_read(ident)

    # --- internals -----------------------------------------------------------------------------

    def _say(self, text: str, priority: Priority, tag: str = "") -> None:
        if self.output is not None:
            self.output.say(text, priority, self.lang, tag)

    def _track_booking(self, event: BookingUpdated) -> None:
        if not event.booking_id:
            return
        if event.status == "confirmed":
            self.bookings[event.booking_id] = event
        elif event.status in ("cancelled", "declined"):
            self.bookings.pop(event.booking_id, None)

    def _on_message(self, event: MessageReceived) -> None:
        """Chat: read aloud (marked read once said in full), announced, or only kept."""
        if self.device is not None and event.sender == self.device:
            log.debug("voice: not reading our own message back (seq %d)", event.seq)
            return
        msg = self.inbox.add(event.sender, event.group, event.text)
        mode = self.cfg.incoming_messages
        if mode == "off" or self.output is None:
            return
        slots = {"sender": msg.sender, "group": msg.group, "text": msg.text}
        text = render("message", self.lang, slots)
        limit = READ_ALOUD_HANZI if self.lang == "zh" else READ_ALOUD_WORDS
        if mode == "read" and breath_length(text, self.lang) <= limit:
            self._say(text, Priority.CHAT, _read_out_tag(msg.ident))
        else:
            self._say(render("message_announce", self.lang, slots), Priority.CHAT)

    def _on_help_request(self, event: HelpRequest, now: float) -> list[Action]:
        """A nearby car needs help: offer to answer "on my way" (yes, cancel or silence)."""
        if self.device is not None and event.sender == self.device:
            return []
        slots = {"sender": event.sender}
        km = self._help_distance(event)
        if km is None:
            intro = render("help_request_nearby", self.lang, slots)
        else:
            intro = render("help_request", self.lang, slots,
                           said={"distance": say_distance(km, self.lang)})
        answer = EmitCommand("help_respond", {"request_id": event.request_id,
                                              "text": render("help_offer_text", self.lang)})
        return self.dialog.offer(answer, render("help_offer", self.lang), now, intro=(intro,),
                                 done=render("done_help_respond", self.lang, slots))

    def _help_distance(self, event: HelpRequest) -> float | None:
        """The event's distance, else ours from the latest position signals, else None."""
        if math.isfinite(event.distance_km) and event.distance_km >= 0:
            return event.distance_km
        lat, lon = self.signals.get(LATITUDE), self.signals.get(LONGITUDE)
        if lat is None or lon is None or isinstance(lat.value, str) \
                or isinstance(lon.value, str):
            return None
        if not all(math.isfinite(v) for v in (event.latitude, event.longitude,
                                              lat.value, lon.value)):
            return None
        return great_circle_km(float(lat.value), float(lon.value), event.latitude,
                               event.longitude)
