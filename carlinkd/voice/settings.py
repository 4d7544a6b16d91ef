"""Settings of the offline voice path ([voice])."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

VoiceBackend = Literal["auto", "pocketsphinx", "vosk", "whisper"]


def _default_groups() -> dict[str, tuple[str, ...]]:
    return {"en": ("family", "friends", "car club"), "zh": ("家人", "朋友", "车友会")}


@dataclass(frozen=True)
class VoiceConfig:
    """Offline voice: recognizer backend and models, dialog timeouts, speech output."""

    enabled: bool = True
    language: Literal["en", "zh"] = "en"
    # "auto": vosk when a model directory is configured for the language, else pocketsphinx
    # (en) or Whisper (zh, when faster-whisper and its model are installed); see the README.
    backend: VoiceBackend = "auto"
    # Language code -> vosk model directory (e.g. vosk-model-small-en-us-0.15).
    vosk_models: dict[str, Path] = field(default_factory=dict)
    # Language code -> Whisper model ("tiny.en", "base" from their PyPI packages, or a
    # CTranslate2 model directory); unset: tiny.en for en, base for zh (carlinkd.voice.whisper).
    whisper_models: dict[str, str] = field(default_factory=dict)
    # CPU threads for Whisper; 0 = CTranslate2's default (4).
    whisper_threads: int = 0
    # Language code -> message group names known to the car (later also from the cloud).
    groups: dict[str, tuple[str, ...]] = field(default_factory=_default_groups)
    # Dialog: reprompt after this much silence, give up after the same again.
    silence_timeout_s: float = 8.0
    # End-of-speech detection on a live microphone: trailing silence and hard cap.
    end_of_speech_s: float = 0.8
    max_utterance_s: float = 10.0
    # Microphone (sounddevice, optional); None = the default input device and its rate.
    input_device: str | None = None
    # Speech out: espeak-ng voice per language, words per minute, pitch 0-99.
    tts_voices: dict[str, str] = field(default_factory=lambda: {"en": "en-us", "zh": "cmn"})
    tts_speed: int = 165
    tts_pitch: int = 50
    # Where spoken replies are written as WAV; unset = the audio device when there is one.
    reply_dir: Path | None = None
    # Chat messages as they arrive: "read" aloud (then marked read), "announce" the sender
    # only (the message waits for "read my messages"), or "off" (it just waits).
    incoming_messages: Literal["read", "announce", "off"] = "announce"
    # Per group, overriding incoming_messages: {family = "read", "car club" = "off"}; a group
    # set to "off" is not spoken but its messages stay readable.
    group_read_out: dict[str, Literal["read", "announce", "off"]] = field(default_factory=dict)
    # Speech-flood bounds: chat utterances per minute (the last one a summary of the rest) and
    # messages kept in the inbox (the oldest read ones dropped first).
    max_readouts_per_min: int = 4
    inbox_max: int = 500

    def __post_init__(self) -> None:
        if not 1 <= self.max_readouts_per_min <= 60:
            raise TypeError("max_readouts_per_min must be between 1 and 60")
        if not 1 <= self.inbox_max <= 100_000:
            raise TypeError("inbox_max must be between 1 and 100000")
