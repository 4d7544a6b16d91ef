"""The car's voice for the social features: chat read-outs, help requests from nearby cars,
answers to ours, booking updates; Spoken and VoiceState on the hub.

Real parts throughout: the hub, the dialog, espeak-ng writing WAVs to a directory, the
pocketsphinx pipeline, the sync service's outbox. Typed text stands in for speech where
recognition is not the point; the one push-to-talk test holds a WAV "microphone" down until
released (no sound card here: the only fake, at the audio-input boundary).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from carlinkd.config import Config
from carlinkd.voice.settings import VoiceConfig
from carlinkd.events import (
    AlertRaised,
    BookingUpdated,
    CloudState,
    Command,
    HelpRequest,
    HelpResponse,
    MessageReceived,
    SignalsUpdated,
    SignalValue,
    SpeakRequest,
    Spoken,
    VoiceActivity,
    VoiceState,
)
from carlinkd.hub import Hub
from carlinkd.sync.service import SyncService
from carlinkd.voice.audio import Endpointer, Samples, encode_wav, read_wav
from carlinkd.voice.pipeline import VoicePipeline
from carlinkd.voice.prompts import booking_text, say_date, say_distance
from carlinkd.voice.service import PUSH_TO_TALK, VoiceService
from carlinkd.voice.social import LATITUDE, LONGITUDE, great_circle_km
from carlinkd.voice.tts import EspeakSpeaker, WavDirSink

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng not installed (apt-get install espeak-ng)")

OFFER = "Answer on my way? Say yes or cancel."


# --- pure text helpers ------------------------------------------------------------------------


def test_distances_are_rounded_as_said() -> None:
    assert say_distance(0.012, "en") == "50 meters"
    assert say_distance(0.34, "en") == "350 meters"
    assert say_distance(0.97, "en") == "1 kilometer"
    assert say_distance(2.46, "en") == "2.5 kilometers"
    assert say_distance(3.0, "en") == "3 kilometers"
    assert say_distance(12.4, "en") == "12 kilometers"
    assert say_distance(2.46, "zh") == "2.5公里" and say_distance(0.3, "zh") == "300米"
    assert great_circle_km(48.1, 11.5, 48.1, 11.52) == pytest.approx(1.486, abs=0.01)


def test_booking_texts() -> None:
    today = dt.date(2025, 3, 10)  # a Monday
    confirmed = {"service": "oil_change", "day": "2025-03-11", "time": "09:30",
                 "shop": "Garage Mueller", "reason": ""}
    assert booking_text("confirmed", confirmed, "en", today) == \
        "Oil change booked tomorrow at 9:30 AM at Garage Mueller."
    assert booking_text("confirmed", {**confirmed, "shop": ""}, "en", today) == \
        "Oil change booked tomorrow at 9:30 AM."
    assert booking_text("reminder", {**confirmed, "day": "2025-03-10"}, "en", today) == \
        "Reminder: an oil change today at 9:30 AM at Garage Mueller."
    declined = {**confirmed, "reason": "Garage Mueller is fully booked at 09:30; free that "
                                       "day: 10:00, 10:30"}
    assert booking_text("declined", declined, "en", today) == \
        "Booking declined: Garage Mueller is fully booked at 09:30."
    assert booking_text("declined", confirmed, "en", today) == "Booking declined."
    assert say_date("2025-03-14", "en", today) == "on Friday"
    assert say_date("2025-04-01", "en", today) == "on April 1"
    assert say_date("tomorrow", "zh", today) == "明天"


# --- service fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def en_pipeline() -> VoicePipeline:
    return VoicePipeline(VoiceConfig())


class Watch:
    """Everything the voice service says and does, as seen by another hub subscriber."""

    def __init__(self, hub: Hub) -> None:
        self.sub = hub.subscribe(Spoken, VoiceState, Command, name="test-watch")
        self.spoken: list[Spoken] = []
        self.states: list[str] = []
        self.commands: list[Command] = []
        self.task = asyncio.create_task(self._run(), name="test-watch")

    async def _run(self) -> None:
        async for event in self.sub:
            if isinstance(event, Spoken):
                self.spoken.append(event)
            elif isinstance(event, VoiceState):
                self.states.append(event.state)
            elif isinstance(event, Command):
                self.commands.append(event)

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.spoken]

    async def close(self) -> None:
        self.sub.close()
        await self.task


@asynccontextmanager
async def voice(tmp_path: Path, pipeline: VoicePipeline, microphone: Any = None,
                realtime: bool = False,
                **options: Any) -> AsyncIterator[tuple[VoiceService, Hub, Watch, WavDirSink]]:
    hub = Hub()
    watch = Watch(hub)
    options.setdefault("incoming_messages", "read")  # these tests read aloud (default announce)
    cfg = Config(voice=VoiceConfig(**options))
    sink = WavDirSink(tmp_path / "said", realtime=realtime)
    svc = VoiceService(cfg, hub, pipeline=pipeline, sink=sink, microphone=microphone,
                       use_microphone=False)
    try:
        async with svc:
            yield svc, hub, watch, sink
    finally:
        await watch.close()
        hub.close()


async def until(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def quiet(svc: VoiceService, hub: Hub, watch: Watch) -> None:
    """Until every event published so far was handled and everything queued was said."""
    hub.publish(SpeakRequest("marker.", "chat"))
    await until(lambda: "marker." in watch.texts, "the marker to be said")
    await svc.wait_quiet()
    watch.spoken = [s for s in watch.spoken if s.text != "marker."]


# --- chat ---------------------------------------------------------------------------------


async def test_chat_read_out_waits_behind_alerts_and_replies_and_is_marked_read(
        tmp_path: Path, en_pipeline: VoicePipeline) -> None:
    async with voice(tmp_path, en_pipeline) as (svc, hub, watch, sink):
        hub.publish(MessageReceived("family", "Mum", "Dinner at seven", 1))
        hub.publish(MessageReceived("friends", "Li", "Running late", 2))
        hub.publish(SpeakRequest("A reply.", "reply"))
        hub.publish(AlertRaised("tire_low", "threshold", "warning", "Tire pressure low.",
                                "long", 0.0))
        hub.publish(AlertRaised("coolant", "threshold", "critical", "Engine overheating.",
                                "long", 0.0))
        await until(lambda: len(watch.spoken) == 5, "five utterances")
        await svc.wait_quiet()
        # the critical alert cut Mum's read-out short; it was said again in its turn
        assert [(s.text, s.priority) for s in watch.spoken] == [
            ("Engine overheating.", "critical"), ("Tire pressure low.", "alert"),
            ("A reply.", "reply"), ("Mum in family: Dinner at seven", "chat"),
            ("Li in friends: Running late", "chat")]
        assert all(s.lang == "en" for s in watch.spoken)
        assert len(sink.written) == 5 and all(read_wav(p).size > 1600 for p in sink.written)
        assert svc.inbox.unread == []  # read out in full: marked read
        assert await svc.handle_text("read my messages") == ["No new messages."]


async def test_chat_waits_while_the_driver_speaks_and_one_push_to_talk_exchange_states(
        tmp_path: Path, en_pipeline: VoicePipeline) -> None:
    speaker = EspeakSpeaker()
    samples, rate = speaker.synthesize("what's my fuel level", "en", voice="en-us+klatt",
                                       speed=160)
    wav = tmp_path / "ask.wav"
    wav.write_bytes(encode_wav(samples, rate))
    mic = HeldMicrophone(wav)

    def ptt(value: str) -> SignalsUpdated:
        return SignalsUpdated({PUSH_TO_TALK: SignalValue(PUSH_TO_TALK, value, None, 0.0)})

    async with voice(tmp_path, en_pipeline, microphone=mic) as (svc, hub, watch, sink):
        hub.publish(ptt("Pressed"))
        await until(lambda: svc.activity is VoiceActivity.LISTENING, "listening")
        hub.publish(MessageReceived("family", "Mum", "Dinner at seven", 1))
        await asyncio.sleep(0.5)
        assert watch.spoken == [] and sink.written == []  # held while the driver speaks
        hub.publish(ptt("Released"))
        await until(lambda: len(watch.spoken) == 2, "the answer and the read-out")
        await until(lambda: svc.activity is VoiceActivity.IDLE, "idle again")
        await asyncio.sleep(0.05)
    assert watch.texts == ["No fuel reading yet.", "Mum in family: Dinner at seven"]
    assert [s.priority for s in watch.spoken] == ["reply", "chat"]
    states = watch.states
    assert states[0] == "idle" and states[-1] == "idle"
    i = states.index("listening")
    j = states.index("thinking", i)
    k = states.index("speaking", j)
    assert "idle" in states[k:], states


class HeldMicrophone:
    """A push-to-talk button held down over a WAV file: capture returns on release."""

    def __init__(self, path: Path) -> None:
        self.samples = read_wav(path)
        self.released = threading.Event()

    def capture(self, endpointer: Endpointer | None = None) -> Samples:
        self.released.wait(10.0)
        self.released.clear()
        return self.samples

    def stop(self) -> None:
        self.released.set()


@pytest.mark.parametrize("mode", ["announce", "off"])
async def test_incoming_messages_announced_or_kept(tmp_path: Path, en_pipeline: VoicePipeline,
                                                   mode: str) -> None:
    async with voice(tmp_path, en_pipeline, incoming_messages=mode) as (svc, hub, watch, _):
        hub.publish(MessageReceived("family", "Mum", "Dinner at seven", 1))
        await quiet(svc, hub, watch)
        expected = ["New message from Mum in family. Say read to hear it."] if mode == "announce" else []
        assert watch.texts == expected
        assert [m.text for m in svc.inbox.unread] == ["Dinner at seven"]  # still unread
        assert await svc.handle_text("read my messages") == ["Mum in family: Dinner at seven"]
        assert svc.inbox.unread == []


async def test_own_echo_is_not_read_and_long_messages_are_announced(
        tmp_path: Path, en_pipeline: VoicePipeline) -> None:
    long_text = "Traffic is terrible on the ring road so take the north exit and meet us " \
                "at the cafe near the old station instead"
    async with voice(tmp_path, en_pipeline) as (svc, hub, watch, _):
        hub.publish(CloudState("online", "car-17"))
        hub.publish(MessageReceived("car club", "car-17", "Meet at nine", 5))
        hub.publish(MessageReceived("car club", "car-3", long_text, 6))
        await quiet(svc, hub, watch)
        assert watch.texts == ["New message from car-3 in car club. Say read to hear it."]
        assert [m.sender for m in svc.inbox.unread] == ["car-3"]


async def test_read_my_messages_takes_back_queued_read_outs(
        tmp_path: Path, en_pipeline: VoicePipeline) -> None:
    one, two, three = ("Mum in family: One", "Li in friends: Two", "Mum in family: Three")
    async with voice(tmp_path, en_pipeline, realtime=True) as (svc, hub, watch, _):
        hub.publish(MessageReceived("family", "Mum", "One", 1))
        hub.publish(MessageReceived("friends", "Li", "Two", 2))
        hub.publish(MessageReceived("family", "Mum", "Three", 3))
        await until(lambda: watch.spoken, "the first read-out")
        # typed text barges in: One is cut short (so still unread), Two and Three wait
        replies = await svc.handle_text("read my messages")
        await quiet(svc, hub, watch)
        assert svc.inbox.unread == []
    assert replies == [one, two, three]
    assert watch.texts == [one, one, two, three]  # Two and Three once: taken back, read now


# --- help requests ------------------------------------------------------------------------


def help_request(distance_km: float = 2.5, sender: str = "car-77") -> HelpRequest:
    return HelpRequest("h1", sender, 48.1, 11.52, distance_km, "flat tyre")


async def test_help_request_offer_yes_queues_help_respond(
        tmp_path: Path, en_pipeline: VoicePipeline) -> None:
    hub = Hub()
    watch = Watch(hub)
    cfg = Config(voice=VoiceConfig())
    sync = SyncService(cfg, hub, tmp_path / "state")
    await sync.start()
    svc = VoiceService(cfg, hub, pipeline=en_pipeline, sink=WavDirSink(tmp_path / "said"),
                       use_microphone=False)
    try:
        async with svc:
            hub.publish(help_request())
            # The offer is two utterances; the second starts when the first has been said.
            await until(lambda: svc.activity is VoiceActivity.CONFIRMING
                        and len(watch.spoken) >= 2, "the offer")
            assert [(s.text, s.priority) for s in watch.spoken] == [
                ("car-77 needs roadside help, 2.5 kilometers away.", "alert"), (OFFER, "alert")]
            assert watch.commands == []
            assert await svc.handle_text("yes") == ["Told car-77 you're on your way."]
            await svc.wait_quiet()
        assert sync.outbox is not None
        await until(lambda: watch.commands, "the command")
        items = await sync.outbox.peek(10)
    finally:
        await sync.stop()
        await watch.close()
        hub.close()
    assert watch.commands == [Command("help_respond", {"request_id": "h1", "to": "car-77",
                                                       "text": "On my way"},
                                      "voice")]
    assert [(i.kind, i.body["request_id"], i.body["text"]) for i in items
            if i.kind == "help_response"] == [("help_response", "h1", "On my way")]
    assert "confirming" in watch.states and watch.states[-1] == "idle"


async def test_help_offer_cancelled_makes_nothing(tmp_path: Path,
                                                  en_pipeline: VoicePipeline) -> None:
    async with voice(tmp_path, en_pipeline) as (svc, hub, watch, _):
        hub.publish(help_request())
        await until(lambda: svc.activity is VoiceActivity.CONFIRMING, "the offer")
        assert await svc.handle_text("cancel") == ["Cancelled."]
        await quiet(svc, hub, watch)
        assert watch.commands == [] and svc.activity is VoiceActivity.IDLE


async def test_help_offer_unanswered_times_out_quietly(tmp_path: Path,
                                                       en_pipeline: VoicePipeline) -> None:
    async with voice(tmp_path, en_pipeline, silence_timeout_s=0.4) as (svc, hub, watch, _):
        hub.publish(help_request())
        await until(lambda: len(watch.spoken) == 2 and svc.output is not None
                    and not svc.output.speaking, "the offer said")
        assert svc.activity is VoiceActivity.CONFIRMING
        await until(lambda: svc.activity is VoiceActivity.IDLE, "the offer to time out", 3.0)
        await asyncio.sleep(0.2)
        assert len(watch.spoken) == 2 and watch.commands == []  # no reprompt, no command
        assert await svc.handle_text("yes") == ["There is nothing to confirm."]
        await svc.wait_quiet()
        assert watch.commands == []


async def test_help_offer_during_an_exchange_waits_its_turn(
        tmp_path: Path, en_pipeline: VoicePipeline) -> None:
    async with voice(tmp_path, en_pipeline) as (svc, hub, watch, _):
        assert await svc.handle_text("send a message to family") == [
            "What message? For example, running late."]
        hub.publish(help_request())
        await quiet(svc, hub, watch)
        assert OFFER not in watch.texts and svc.dialog.intent == "send_message"
        assert await svc.handle_text("running late") == [
            "Send 'Running late' to family? Say yes or cancel."]
        said = await svc.handle_text("yes")
        assert said == ["Sent to family.", "car-77 needs roadside help, 2.5 kilometers away.",
                        OFFER]
        assert svc.dialog.intent == "help_respond"
        await svc.handle_text("yes")
        await quiet(svc, hub, watch)
    assert [(c.name, c.args.get("request_id")) for c in watch.commands] == [
        ("send_message", None), ("help_respond", "h1")]


async def test_help_distance_from_our_position_when_the_request_has_none(
        tmp_path: Path, en_pipeline: VoicePipeline) -> None:
    async with voice(tmp_path, en_pipeline) as (svc, hub, watch, _):
        hub.publish(help_request(math.nan))
        await until(lambda: len(watch.spoken) == 2, "the offer without a position")
        assert watch.texts[0] == "car-77 needs roadside help."
        await svc.handle_text("cancel")
        hub.publish(SignalsUpdated({LATITUDE: SignalValue(LATITUDE, 48.1, "deg", 0.0),
                                    LONGITUDE: SignalValue(LONGITUDE, 11.5, "deg", 0.0)}))
        hub.publish(help_request(math.nan, "car-78"))  # car-77 was offered already (5 min)
        await until(lambda: len(watch.spoken) >= 5, "the offer with our position")
        await svc.wait_quiet()
        assert "car-78 needs roadside help, 1.5 kilometers away." in watch.texts


# --- answers and bookings -----------------------------------------------------------------


async def test_help_response_and_booking_updates_are_spoken(
        tmp_path: Path, en_pipeline: VoicePipeline) -> None:
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    async with voice(tmp_path, en_pipeline) as (svc, hub, watch, _):
        hub.publish(HelpResponse("req-9", "car-3", "On my way"))
        hub.publish(BookingUpdated("confirmed", "Garage Mueller", "oil_change", tomorrow,
                                   "09:30"))
        hub.publish(BookingUpdated("declined", "", "car_wash", "monday", "10:00",
                                   "no shop offers car_wash"))
        await quiet(svc, hub, watch)
    assert [(s.text, s.priority) for s in watch.spoken] == [
        ("car-3: On my way", "reply"),
        ("Oil change booked tomorrow at 9:30 AM at Garage Mueller.", "reply"),
        ("Booking declined: no shop offers car_wash.", "reply")]
