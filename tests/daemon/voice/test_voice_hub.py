"""The voice service on the hub: announced alerts are spoken, chat waits to be read aloud
(``incoming_messages = "off"``), and the D-Bus/CLI path (typed text) reaches the same dialog.
The social read-outs (chat, help, bookings) are in test_voice_social.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

from carlinkd.config import Config
from carlinkd.voice.settings import VoiceConfig
from carlinkd.events import AlertRaised, Command, IntentRecognized, MessageReceived
from carlinkd.hub import Hub
from carlinkd.voice.service import VoiceService


async def settle(predicate: object, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)


async def test_alerts_spoken_chat_queued_text_understood(tmp_path: Path) -> None:
    cfg = Config(voice=VoiceConfig(reply_dir=tmp_path, incoming_messages="off"))
    hub = Hub()
    intents = hub.subscribe(IntentRecognized)
    async with VoiceService(cfg, hub) as svc:
        hub.publish(AlertRaised("coolant_critical", "threshold", "critical",
                                "Engine overheating. Stop safely.", "long", 0.0))
        hub.publish(AlertRaised("quiet", "threshold", "warning", "Not spoken.", "x", 0.0,
                                announce=False))
        hub.publish(MessageReceived("family", "Mum", "on my way", 1))
        await settle(lambda: len(svc.inbox.unread) == 1 and list(tmp_path.glob("*.wav")))
        await svc.wait_quiet()
        spoken = len(list(tmp_path.glob("*.wav")))
        assert spoken == 1  # the announced alert only
        assert [(m.sender, m.text) for m in svc.inbox.unread] == [("Mum", "on my way")]
        hub.publish(Command("submit_text", {"text": "what is the tire pressure"}, "dbus"))
        await settle(lambda: len(intents) > 0)
        await svc.wait_quiet()
    event = intents.get_nowait()
    hub.close()
    assert isinstance(event, IntentRecognized)
    assert event.intent == "vehicle_status" and event.slots.get("item") == "tire_pressure"
    assert len(list(tmp_path.glob("*.wav"))) == spoken + 1  # the spoken status answer
