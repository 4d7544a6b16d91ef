"""What the cloud sends, put into words: the chat inbox and its read-outs, help requests from
nearby cars (and their cancels and details), our own help request's life, booking options and
updates, and group changes.

Chat messages are read aloud, announced ("New message from car1 in family. Say read to hear
it."; the default) or only kept, per group (``[voice] group_read_out``, else ``[voice]
incoming_messages``); at most ``max_readouts_per_min`` chat utterances a minute, the rest
summarised (:mod:`carlinkd.voice.inbox`). A help request becomes an offer to answer "on my way"
(alert priority; yes makes a ``help_respond`` command) -- never when it has expired (car wall
clock), at most one per sender per HELP_OFFER_EVERY_S; a ``help_cancel`` takes a waiting offer
back and says "car1 no longer needs help" only if the offer was already spoken. Booking options
become a choice ("Demo Garage, 2 kilometers, or Garage Nord, 4 kilometers?"). Messages and help
requests we sent ourselves (the cloud echoes them) are not spoken.

:class:`Social` is the part of :class:`carlinkd.voice.service.VoiceService` that follows these
events; the service stays the orchestrator (audio capture, dialog, speech queue): it passes the
events in, attaches the speech output once open, and carries out the dialog actions of an offer.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from carlink_protocol.geo import great_circle_km
from ..events import (
    BookingOptions,
    BookingUpdated,
    CloudState,
    Event,
    GroupJoinRequest,
    GroupsListed,
    HelpCancelled,
    HelpDetail,
    HelpRequest,
    HelpResponse,
    HelpStatus,
    MessageReceived,
    SignalValue,
)
from .dialog import Action, Dialog, EmitCommand
from ..records.offers import ACCEPT, ServiceRecordOffered, offer_texts
from .inbox import ChatMessage, Inbox, ReadOutLimiter
from .prompts import (
    READ_ALOUD_HANZI,
    READ_ALOUD_WORDS,
    booking_text,
    breath_length,
    render,
    say_date,
    say_distance,
    say_reason,
)
from .tts import Priority

if TYPE_CHECKING:
    from .settings import VoiceConfig
    from .tts import SpeechOutput, Utterance

__all__ = ["SOCIAL_EVENTS", "ChatMessage", "Inbox", "Social", "great_circle_km"]

log = logging.getLogger(__name__)

LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
READ_OUT_TAG = "chat-"  # + Inbox ident: the tag of a chat read-out in the speech queue
#: At most one help offer per sender in this many seconds.
HELP_OFFER_EVERY_S = 300.0
READ_OUT_MODES = ("read", "announce", "off")
ORDINALS = {"en": ("First", "Second", "Third"), "zh": ("第一", "第二", "第三")}

#: The hub events :meth:`Social.handle` follows.
SOCIAL_EVENTS: tuple[type[Event], ...] = (
    MessageReceived, HelpRequest, HelpResponse, HelpCancelled, HelpDetail, HelpStatus,
    BookingUpdated, BookingOptions, CloudState, GroupsListed, GroupJoinRequest,
    ServiceRecordOffered)


def _read_out_tag(ident: int) -> str:
    """The speech-queue tag of a message's read-out (the message is read once it completes)."""
    return f"{READ_OUT_TAG}{ident}"


def _read_out_ident(tag: str) -> int | None:
    """The Inbox ident a read-out's tag names, None for any other utterance."""
    return int(tag.removeprefix(READ_OUT_TAG)) if tag.startswith(READ_OUT_TAG) else None


class Social:
    """Cloud-originated events for one car's voice: the inbox, read-outs, offers and news."""

    def __init__(self, cfg: VoiceConfig, dialog: Dialog,
                 signals: Mapping[str, SignalValue], *,
                 wall: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.lang = cfg.language
        self.dialog = dialog
        self.signals = signals  # the service's latest signal values (read, never written)
        self.wall = wall  # the car's wall clock: help requests expire in epoch seconds
        self.inbox = Inbox(cfg.inbox_max)
        self.limiter = ReadOutLimiter(cfg.max_readouts_per_min)
        self.read_out: dict[str, str] = dict(cfg.group_read_out)  # group -> read|announce|off
        self.output: SpeechOutput | None = None  # attached once the service opened speech
        self.device: str | None = None  # our own name in the cloud (from CloudState online)
        self.groups: GroupsListed | None = None  # what the cloud last said about our groups
        self.bookings: dict[int, BookingUpdated] = {}  # confirmed, by booking id
        self.last_offer: dict[str, float] = {}  # sender -> when we last offered to help
        self.offered: dict[str, str] = {}  # help request id -> sender, once spoken
        self.on_shops: Callable[[tuple[str, ...]], None] | None = None  # live shop grammar

    def attach(self, output: SpeechOutput) -> None:
        """Speak through ``output`` from now on (nothing is said before)."""
        self.output = output

    def handle(self, event: Event, now: float) -> list[Action]:
        """Speak or keep one of :data:`SOCIAL_EVENTS`; returns the dialog's actions for the
        service to carry out (those of an offer to the driver, else none)."""
        if isinstance(event, MessageReceived):
            self._on_message(event, now)
        elif isinstance(event, HelpRequest):
            return self._on_help_request(event, now)
        elif isinstance(event, HelpCancelled):
            return self._on_help_cancel(event, now)
        elif isinstance(event, HelpDetail):
            self._on_help_detail(event)
        elif isinstance(event, HelpStatus):
            self._on_help_status(event)
        elif isinstance(event, HelpResponse):
            if event.responder != self.device:
                self._say(render("help_response", self.lang, {"sender": event.responder,
                                                              "text": event.text}),
                          Priority.REPLY)
        elif isinstance(event, BookingUpdated):
            self._on_booking(event)
        elif isinstance(event, BookingOptions):
            return self._on_booking_options(event, now)
        elif isinstance(event, GroupsListed):
            self._on_groups(event)
        elif isinstance(event, GroupJoinRequest):
            return self._on_join_request(event, now)
        elif isinstance(event, ServiceRecordOffered):  # carlinkd.records.offers
            question, done = offer_texts(event, self.lang)
            return self.dialog.offer(EmitCommand(ACCEPT, {"booking_id": str(event.booking_id)}),
                                     question, now, done=done)
        elif isinstance(event, CloudState):
            if event.state == "online" and event.detail:
                self.device = event.detail  # the welcome names this car as others see it
        return []

    def set_read_out(self, group: str, mode: str) -> None:
        """How one group's messages are spoken from now on: read, announce or off."""
        if mode not in READ_OUT_MODES:
            raise ValueError(f"read-out {mode!r} is not one of {', '.join(READ_OUT_MODES)}")
        self.read_out[group] = mode

    def read_out_mode(self, group: str) -> str:
        """The group's read-out: its own setting, else ``[voice] incoming_messages``."""
        return self.read_out.get(group, self.cfg.incoming_messages)

    def tick(self, now: float) -> None:
        """Time passed: say the summary of held messages when it is due."""
        count = self.limiter.summary(now)
        if count:
            key = "more_message" if count == 1 else "more_messages"
            self._say(render(key, self.lang, said={"count": str(count)}), Priority.CHAT)

    def due(self, now: float) -> float | None:
        """When :meth:`tick` has something to do (None: nothing held)."""
        return self.limiter.due(now)

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
        """ "Cancel my booking": offer to cancel the latest confirmed booking (yes or no)."""
        if not self.bookings:
            self._say(render("no_booking", self.lang), Priority.REPLY)
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

    # --- internals: chat -------------------------------------------------------------------------

    def _say(self, text: str, priority: Priority, tag: str = "") -> None:
        if self.output is not None:
            self.output.say(text, priority, self.lang, tag)

    def _on_message(self, event: MessageReceived, now: float) -> None:
        """Chat: read aloud (marked read once said in full), announced, or only kept."""
        if self.device is not None and event.sender == self.device:
            log.debug("voice: not reading our own message back (seq %d)", event.seq)
            return
        msg = self.inbox.add(event.sender, event.group, event.text, self.wall())
        mode = self.read_out_mode(msg.group)
        if mode == "off" or self.output is None or not self.limiter.allow(now):
            return
        slots = {"sender": msg.sender, "group": msg.group, "text": msg.text}
        text = render("message", self.lang, slots)
        limit = READ_ALOUD_HANZI if self.lang == "zh" else READ_ALOUD_WORDS
        if mode == "read" and breath_length(text, self.lang) <= limit:
            self._say(text, Priority.CHAT, _read_out_tag(msg.ident))
        else:
            self._say(render("message_announce", self.lang, slots), Priority.CHAT)

    # --- internals: help -------------------------------------------------------------------------

    def _on_help_request(self, event: HelpRequest, now: float) -> list[Action]:
        """A nearby car needs help: offer to answer "on my way" (yes, cancel or silence)."""
        if self.device is not None and event.sender == self.device:
            return []
        wall = self.wall()
        if event.expires and event.expires <= wall:
            log.info("help request %s from %s expired %.0f s ago: not spoken",
                     event.request_id, event.sender, wall - event.expires)
            return []
        last = self.last_offer.get(event.sender)
        if last is not None and now - last < HELP_OFFER_EVERY_S:
            log.info("help request %s from %s: offered %.0f s ago already; not spoken",
                     event.request_id, event.sender, now - last)
            return []
        self.last_offer[event.sender] = now
        slots = {"sender": event.sender}
        km = self._help_distance(event)
        if km is None:
            intro = render("help_request_nearby", self.lang, slots)
        else:
            intro = render("help_request", self.lang, slots,
                           said={"distance": say_distance(km, self.lang)})
        answer = EmitCommand("help_respond", {"request_id": event.request_id,
                                              "to": event.sender,
                                              "text": render("help_offer_text", self.lang)})
        until = now + (event.expires - wall) if event.expires else None
        actions = self.dialog.offer(answer, render("help_offer", self.lang), now,
                                    intro=(intro,), until=until, key=event.request_id,
                                    done=render("done_help_respond", self.lang, slots))
        if actions:
            self.offered[event.request_id] = event.sender
        return actions

    def _on_help_cancel(self, event: HelpCancelled, now: float) -> list[Action]:
        """The car no longer needs help: take the offer back; say so if it was spoken."""
        asked, actions = self.dialog.withdraw(event.request_id, now)
        if asked or event.request_id in self.offered:
            self.offered.pop(event.request_id, None)
            self._say(render("help_no_longer", self.lang, {"sender": event.sender}),
                      Priority.ALERT)
        return actions

    def _on_help_detail(self, event: HelpDetail) -> None:
        """We said yes: where the car is (its note, too)."""
        km = self._distance_to(event.latitude, event.longitude)
        slots = {"sender": event.sender}
        if km is None:
            text = render("help_detail_no_distance", self.lang, slots)
        else:
            text = render("help_detail", self.lang, slots,
                          said={"distance": say_distance(km, self.lang)})
        self._say(text, Priority.ALERT)
        if event.note:
            self._say(render("help_note", self.lang, said={"note": event.note[:200]}),
                      Priority.ALERT)

    def _on_help_status(self, event: HelpStatus) -> None:
        """Our own request: say what the driver must know (no position, refused, none open)."""
        key = {"no_position": "help_no_position", "rejected": "help_rejected",
               "none_open": "help_none_open"}.get(event.state)
        if key is not None:
            self._say(render(key, self.lang, said={"reason": say_reason(event.detail,
                                                                        self.lang)}),
                      Priority.ALERT if key == "help_no_position" else Priority.REPLY)

    def _help_distance(self, event: HelpRequest) -> float | None:
        """The event's distance, else ours from the latest position signals, else None."""
        if math.isfinite(event.distance_km) and event.distance_km >= 0:
            return event.distance_km
        return self._distance_to(event.latitude, event.longitude)

    def _distance_to(self, lat2: float, lon2: float) -> float | None:
        lat, lon = self.signals.get(LATITUDE), self.signals.get(LONGITUDE)
        if lat is None or lon is None or isinstance(lat.value, str) \
                or isinstance(lon.value, str):
            return None
        if not all(math.isfinite(v) for v in (lat2, lon2, lat.value, lon.value)):
            return None
        return great_circle_km(float(lat.value), float(lon.value), lat2, lon2)

    # --- internals: bookings and groups -----------------------------------------------------------

    def _on_booking(self, event: BookingUpdated) -> None:
        if event.booking_id:
            if event.status == "confirmed":
                self.bookings[event.booking_id] = event
            elif event.status in ("cancelled", "declined"):
                self.bookings.pop(event.booking_id, None)
        slots = {"service": event.service, "day": event.day, "time": event.time,
                 "shop": event.shop, "reason": event.reason}
        self._say(booking_text(event.status, slots, self.lang, dt.date.today()),
                  Priority.REPLY)
        if event.address and event.status in ("confirmed", "reminder"):
            self._say(render("booking_address", self.lang, said={"address": event.address}),
                      Priority.REPLY)

    def _on_booking_options(self, event: BookingOptions, now: float) -> list[Action]:
        """Shops with a free slot: offer them by name and distance, nearest first."""
        options = event.options[:3]
        if not options:
            self._say(render("no_shop", self.lang), Priority.REPLY)
            return []
        names = tuple(o.shop for o in options)
        if self.on_shops is not None:
            self.on_shops(names)
        said = [o.shop if o.distance_km is None
                else f"{o.shop}, {say_distance(o.distance_km, self.lang)}" for o in options]
        choices = tuple(EmitCommand("book_service", {
            "service": event.service or "", "day": o.day or event.day,
            "time": o.time or event.time, "shop": o.shop}) for o in options)
        if len(said) == 3:  # three in one sentence is more than a breath: one each
            intro = tuple(render("shop_numbered", self.lang, said={
                "n": ORDINALS[self.lang][i], "option": text}) for i, text in enumerate(said))
        else:
            joiner = "，还是" if self.lang == "zh" else ", or "
            intro = (render("shop_options" if len(said) == 2 else "shop_option", self.lang,
                            said={"options": joiner.join(said), "option": said[0]}),)
        prompt = render({1: "ask_book_shop", 2: "ask_which_shop"}.get(len(said),
                                                                      "ask_which_shop3"),
                        self.lang)
        return self.dialog.offer(choices[0], prompt, now, intro=intro, choices=choices,
                                 names=names, key=f"booking:{event.request_id}",
                                 done=render("done_book_shop", self.lang))

    def _on_groups(self, event: GroupsListed) -> None:
        """The cloud's groups: say what changed since the last list (joined, pending)."""
        before = self.groups
        self.groups = event
        if before is None:
            return
        for group in event.joined:
            if group not in before.joined:
                self._say(render("group_joined", self.lang, said={"group": group}),
                          Priority.REPLY)
        for group in event.pending:
            if group not in before.pending:
                self._say(render("group_pending", self.lang, said={"group": group}),
                          Priority.REPLY)

    def _on_join_request(self, event: GroupJoinRequest, now: float) -> list[Action]:
        """Someone asks to join a group we own: offer to let them in."""
        slots = {"sender": event.sender, "group": event.group}
        action = EmitCommand("approve_group", {"group": event.group, "device": event.sender})
        return self.dialog.offer(action, render("ask_approve", self.lang, slots), now,
                                 intro=(render("join_request", self.lang, slots),),
                                 key=f"join:{event.group}:{event.sender}",
                                 done=render("done_approve", self.lang, slots))
