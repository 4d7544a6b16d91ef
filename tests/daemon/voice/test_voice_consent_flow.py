"""The car's voice for protocol 2 through the real voice service (hub, dialog, espeak-ng WAVs):
speech-flood bounds, per-group read-out, the help life cycle and the booking choice.

Typed text stands in for speech (recognition is not the point here)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from carlinkd.config import Config
from carlinkd.voice.settings import VoiceConfig
from carlinkd.events import (AlertCleared, AlertRaised, BookingOptions, Command, GroupsListed,
                             HelpCancelled, HelpRequest, MessageReceived, ShopOption,
                             SpeakRequest, Spoken)
from carlinkd.hub import Hub
from carlinkd.voice.pipeline import VoicePipeline
from carlinkd.voice.service import VoiceService
from carlinkd.voice.tts import WavDirSink

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng not installed (apt-get install espeak-ng)")


class Watch:
    """What the voice service says and which commands it sends."""

    def __init__(self, hub: Hub) -> None:
        self.sub = hub.subscribe(Spoken, Command, name="test-watch")
        self.spoken: list[Spoken] = []
        self.commands: list[Command] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.sub:
            if isinstance(event, Spoken):
                self.spoken.append(event)
            elif isinstance(event, Command) and event.origin == "voice":
                self.commands.append(event)

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.spoken]

    async def close(self) -> None:
        self.sub.close()
        await self.task


@pytest.fixture(scope="module")
def pipeline() -> VoicePipeline:
    return VoicePipeline(VoiceConfig())


@asynccontextmanager
async def voice(tmp_path: Path, pipeline: VoicePipeline,
                **options: Any) -> AsyncIterator[tuple[VoiceService, Hub, Watch]]:
    hub = Hub()
    watch = Watch(hub)
    svc = VoiceService(Config(voice=VoiceConfig(**options)), hub, pipeline=pipeline,
                       sink=WavDirSink(tmp_path / "said"), use_microphone=False)
    try:
        async with svc:
            yield svc, hub, watch
    finally:
        await watch.close()
        hub.close()


async def until(predicate: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def quiet(svc: VoiceService, hub: Hub, watch: Watch) -> None:
    """Every event published so far handled and everything queued said."""
    hub.publish(SpeakRequest("marker.", "chat"))
    await until(lambda: "marker." in watch.texts, "the marker")
    await svc.wait_quiet()
    watch.spoken = [s for s in watch.spoken if s.text != "marker."]


async def test_2000_chats_make_at_most_n_utterances_and_the_inbox_is_bounded(
        tmp_path: Path, pipeline: VoicePipeline) -> None:
    async with voice(tmp_path, pipeline, max_readouts_per_min=4, inbox_max=500) as \
            (svc, hub, watch):
        for i in range(2000):
            hub.publish(MessageReceived("family", f"car{i % 7}", f"message {i}", i + 1))
        await until(lambda: any("more messages" in t for t in watch.texts), "the summary")
        await svc.wait_quiet()
        await asyncio.sleep(0.5)
        chat = [s.text for s in watch.spoken if s.priority == "chat"]
        assert len(chat) <= 4, chat
        assert chat[:3] == [f"New message from car{i} in family. Say read to hear it."
                            for i in range(3)]
        assert chat[-1] == "1997 more messages. Say read my messages to hear them."
        inbox = svc.inbox
        assert len(inbox.messages) == 500 and inbox.dropped == 1500
        assert inbox.messages[-1].text == "message 1999"  # the newest are kept


async def test_a_muted_group_is_not_spoken_but_stays_readable(
        tmp_path: Path, pipeline: VoicePipeline) -> None:
    async with voice(tmp_path, pipeline, group_read_out={"friends": "off"}) as \
            (svc, hub, watch):
        hub.publish(MessageReceived("friends", "Li", "Running late", 1))
        hub.publish(MessageReceived("family", "Mum", "Dinner at seven", 2))
        await quiet(svc, hub, watch)
        assert watch.texts == ["New message from Mum in family. Say read to hear it."]
        assert [m.text for m, _ in svc.inbox.recent()] == ["Dinner at seven", "Running late"]
        said = await svc.handle_text("read my messages")
        assert said == ["Li in friends: Running late", "Mum in family: Dinner at seven"]
        svc.social.set_read_out("friends", "read")
        hub.publish(MessageReceived("friends", "Li", "Home soon", 3))
        await quiet(svc, hub, watch)
        assert watch.texts[-1] == "Li in friends: Home soon"


def request(rid: str, sender: str = "car1", expires: float | None = None) -> HelpRequest:
    now = time.time()
    return HelpRequest(rid, sender, float("nan"), float("nan"), 3.0, "flat tyre", now,
                       now + 3600 if expires is None else expires)


async def test_expired_repeated_and_cancelled_help_requests(
        tmp_path: Path, pipeline: VoicePipeline) -> None:
    async with voice(tmp_path, pipeline) as (svc, hub, watch):
        hub.publish(request("old", expires=time.time() - 5))  # reconnected hours later
        await quiet(svc, hub, watch)
        assert watch.texts == []
        hub.publish(request("r1"))
        await quiet(svc, hub, watch)
        assert watch.texts == ["car1 needs roadside help, 3 kilometers away.",
                               "Answer on my way? Say yes or cancel."]
        hub.publish(request("r2"))  # the same sender again within 5 min: not offered again
        await quiet(svc, hub, watch)
        assert len(watch.texts) == 2
        hub.publish(HelpCancelled("r1", "car1"))  # the offer was spoken: say so, drop it
        await quiet(svc, hub, watch)
        assert watch.texts[-1] == "car1 no longer needs help."
        assert svc.dialog.offer_made is None
        # an offer still waiting behind an exchange is taken back without a word
        await svc.handle_text("send a message to family")
        hub.publish(request("r3", sender="car2"))
        hub.publish(HelpCancelled("r3", "car2"))
        await quiet(svc, hub, watch)
        await svc.handle_text("cancel")
        await quiet(svc, hub, watch)
        assert not any("car2" in t for t in watch.texts) and watch.commands == []


async def test_booking_options_nearest_first_and_the_choice(
        tmp_path: Path, pipeline: VoicePipeline) -> None:
    options = (ShopOption("Demo Garage", 2.0, "2026-12-05", "09:00"),
               ShopOption("Garage Nord", 4.0, "2026-12-05", "09:00"))
    async with voice(tmp_path, pipeline) as (svc, hub, watch):
        hub.publish(BookingOptions("b1", "oil_change", "2026-12-05", "09:00", options))
        await quiet(svc, hub, watch)
        assert watch.texts == ["Demo Garage, 2 kilometers, or Garage Nord, 4 kilometers?",
                               "Say the first one or the second one."]
        assert await svc.handle_text("the second one") == ["Booking it now."]
        hub.publish(BookingOptions("b2", "oil_change", "2026-12-05", "09:00", options))
        await quiet(svc, hub, watch)
        await svc.handle_text("demo garage")  # by name (the shops are a live list)
        await quiet(svc, hub, watch)
    assert [(c.name, c.args["shop"]) for c in watch.commands] == [
        ("book_service", "Garage Nord"), ("book_service", "Demo Garage")]
    assert watch.commands[0].args == {"service": "oil_change", "day": "2026-12-05",
                                      "time": "09:00", "shop": "Garage Nord"}


async def test_cloud_groups_feed_the_grammar_and_list_groups(
        tmp_path: Path, pipeline: VoicePipeline) -> None:
    async with voice(tmp_path, pipeline) as (svc, hub, watch):
        hub.publish(GroupsListed(("family",), ("volvo owners",)))
        await quiet(svc, hub, watch)
        assert "volvo owners" in svc.pipeline.parser.groups
        assert await svc.handle_text("which groups can I join") == [
            "You're in family. You can join volvo owners."]
        assert await svc.handle_text("join volvo owners") == ["Asking to join volvo owners."]
        hub.publish(GroupsListed(("family", "volvo owners"), ()))
        await quiet(svc, hub, watch)
        assert watch.texts[-1] == "You're in volvo owners now."
    assert [(c.name, dict(c.args)) for c in watch.commands] == [
        ("list_groups", {}), ("join_group", {"group": "volvo owners"})]


async def test_active_alerts_answer_are_there_any_faults(
        tmp_path: Path, pipeline: VoicePipeline) -> None:
    async with voice(tmp_path, pipeline) as (svc, hub, watch):
        none = await svc.handle_text("are there any faults")
        hub.publish(AlertRaised("tire_low", "threshold", "warning", "Tire pressure low.",
                                "Tire pressure low on the rear left.", 0.0))
        await quiet(svc, hub, watch)
        some = await svc.handle_text("are there any faults")
        hub.publish(AlertCleared("tire_low", 1.0))
        await quiet(svc, hub, watch)
        again = await svc.handle_text("are there any faults")
    assert none == again != some
    assert "Tire pressure low on the rear left" in some[0]
