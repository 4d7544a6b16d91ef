"""The same words give the same result whatever surrounds them: 0-2 s of silence or low cabin
noise before and after, -35..-3 dBFS, 8/16/22.05/44.1/48 kHz, mono or stereo, a DC offset
(real espeak-ng speech through a WAV file, the WebRTC VAD trimmer and pocketsphinx)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from carlinkd.voice.settings import VoiceConfig
from carlinkd.voice.audio import SAMPLE_RATE, read_wav, resample
from carlinkd.voice.eval.render import Voice, render
from carlinkd.voice.pipeline import VoicePipeline
from carlinkd.voice.testset import cabin_noise

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="espeak-ng and sox needed (apt-get install espeak-ng sox)")

VOICE = Voice.parse("espeak:en-us+klatt@160/50")
# (text, context, intent): the words must come out as their typed parse (that intent, and the
# slots the parser gives the text) under every transform
UTTERANCES = [
    ("cancel", "confirm", "cancel"),
    ("book a car wash today", None, "book_service"),
    ("what's my fuel level", None, "vehicle_status"),
]
# (silence before s, after s, what fills it, level dBFS, DC offset, rate, channels)
TRANSFORMS = [
    (0.0, 0.0, "silence", -20, 0, 16000, 1),
    (0.3, 0.5, "silence", -20, 0, 16000, 1),
    (0.5, 1.0, "silence", -20, 0, 16000, 1),
    (2.0, 2.0, "noise", -20, 0, 16000, 1),
    (1.0, 0.2, "noise", -35, 0, 22050, 1),
    (0.2, 1.5, "silence", -3, 0, 44100, 2),
    (0.8, 0.8, "noise", -12, 2500, 48000, 2),
    (0.5, 0.5, "silence", -20, -1500, 8000, 1),
]


@pytest.fixture(scope="module")
def pipeline() -> VoicePipeline:
    return VoicePipeline(VoiceConfig())


@pytest.fixture(scope="module")
def bed() -> np.ndarray:
    return cabin_noise(10, "brownnoise lowpass 400").astype(np.float64)


def write_wav(path: Path, x: np.ndarray, rate: int, channels: int) -> None:
    import wave
    pcm = np.clip(np.round(x), -32768, 32767).astype("<i2")
    if channels == 2:  # right channel slightly quieter, as two cabin microphones would be
        pcm = np.stack([pcm, (pcm * 0.8).astype("<i2")], axis=1).reshape(-1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def transformed(speech: np.ndarray, bed: np.ndarray, pre: float, post: float, fill: str,
                db: float, dc: float, rate: int) -> np.ndarray:
    """The utterance scaled to ``db`` peak, surrounded, offset, at ``rate`` (float samples)."""
    f = speech.astype(np.float64) / np.abs(speech).max() * 32767 * 10 ** (db / 20)
    x = np.concatenate([np.zeros(int(pre * SAMPLE_RATE)), f, np.zeros(int(post * SAMPLE_RATE))])
    if fill == "noise":  # low cabin noise, 30 dB under the speech peak, over the whole clip
        x = x + bed[: len(x)] / np.abs(bed).max() * np.abs(f).max() * 10 ** (-30 / 20)
    x = x + np.random.default_rng(1).normal(0, 2, len(x))
    return resample((x / 32768.0).astype(np.float32), SAMPLE_RATE, rate).astype(np.float64) + dc


@pytest.mark.parametrize("text,context,intent", UTTERANCES)
def test_same_result_under_silence_level_rate_channels_dc(
        pipeline: VoicePipeline, bed: np.ndarray, tmp_path: Path, text: str,
        context: str | None, intent: str) -> None:
    typed = pipeline.parse_text(text)
    assert typed.intent == intent
    slots = dict(typed.slots)
    speech = render(VOICE, text)
    results = []
    for i, (pre, post, fill, db, dc, rate, channels) in enumerate(TRANSFORMS):
        wav = tmp_path / f"{i}.wav"
        write_wav(wav, transformed(speech, bed, pre, post, fill, db, dc, rate), rate, channels)
        parsed = pipeline.recognize(read_wav(wav), context)
        results.append(((pre, post, fill, db, dc, rate, channels), parsed.intent,
                        dict(parsed.slots), parsed.text))
    wrong = [r for r in results if (r[1], r[2]) != (intent, slots)]
    assert not wrong, wrong


def test_untrimmed_pipeline_is_not_invariant(bed: np.ndarray) -> None:
    """The check above can fail: without the trimmer, silence changes the answer."""
    raw = VoicePipeline(VoiceConfig(), trim=False)
    speech = render(VOICE, "book a car wash today")
    answers = set()
    for pre, post, fill, db, dc, rate, _ in TRANSFORMS:
        x = transformed(speech, bed, pre, post, fill, db, dc, rate)
        pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
        parsed = raw.recognize(resample(pcm, rate), None)
        answers.add((parsed.intent, tuple(sorted(parsed.slots.items()))))
    assert len(answers) > 1, answers


def test_noise_and_silence_alone_are_not_understood(pipeline: VoicePipeline,
                                                    bed: np.ndarray) -> None:
    rng = np.random.default_rng(9)
    clips = [np.zeros(SAMPLE_RATE * 2), rng.normal(0, 200, SAMPLE_RATE * 2) + 900,
             bed[: SAMPLE_RATE * 3] / np.abs(bed).max() * 3000,
             bed[SAMPLE_RATE:SAMPLE_RATE * 2] / np.abs(bed).max() * 20000]
    for clip in clips:
        pcm = np.clip(np.round(clip), -32768, 32767).astype(np.int16)
        assert pipeline.recognize(pcm).intent is None
