"""The speech trimmer finds the same speech whatever silence, level, DC offset, rate or channels
surround it (real espeak-ng speech, the real WebRTC VAD)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from carlinkd.voice import vad
from carlinkd.voice.audio import SAMPLE_RATE, resample
from carlinkd.voice.tts import EspeakSpeaker

# (silence before s, after s, level dBFS, DC offset, source rate)
VARIANTS = [(0.0, 0.0, -20, 0, 16000), (0.3, 0.5, -20, 0, 16000), (0.5, 1.0, -20, 0, 8000),
            (2.0, 2.0, -35, 0, 22050), (1.0, 0.2, -3, 0, 44100), (0.5, 0.5, -20, 3000, 48000)]


@pytest.fixture(scope="module")
def speech() -> dict[str, np.ndarray]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    speaker = EspeakSpeaker()
    out = {}
    for text in ("send it", "book a car wash today", "cancel"):
        samples, rate = speaker.synthesize(text, "en")
        out[text] = resample(samples, rate)
    return out


def variant(s: np.ndarray, pre: float, post: float, db: float, dc: float, rate: int,
            rng: np.random.Generator) -> np.ndarray:
    """The utterance with silence, level, DC offset and low noise, at ``rate``, back to 16 kHz."""
    f = s.astype(np.float64) / np.abs(s).max() * 32767 * 10 ** (db / 20)
    x = np.concatenate([np.zeros(int(pre * SAMPLE_RATE)), f, np.zeros(int(post * SAMPLE_RATE))])
    x = resample((x / 32768.0).astype(np.float32), SAMPLE_RATE, rate).astype(np.float64)
    x = x + dc + rng.normal(0, 3, len(x))
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return resample(pcm, rate)


@pytest.mark.parametrize("text", ["send it", "book a car wash today", "cancel"])
def test_span_is_the_same_speech_whatever_surrounds_it(speech: dict[str, np.ndarray],
                                                        text: str) -> None:
    rng = np.random.default_rng(7)
    spans = []
    for pre, post, db, dc, rate in VARIANTS:
        x = variant(speech[text], pre, post, db, dc, rate, rng)
        span = vad.speech_span(vad.speech_frames(vad.remove_dc(x)))
        assert span is not None, (text, pre, post, db, dc, rate)
        spans.append((span[0] * 0.03 - pre, span[1] * 0.03 - pre))
    starts, ends = [s for s, _ in spans], [e for _, e in spans]
    assert max(starts) - min(starts) <= 0.12, spans
    assert max(ends) - min(ends) <= 0.15, spans
    assert min(ends) - max(starts) >= 0.2, spans


def test_prepared_audio_has_margin_and_level(speech: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(3)
    short = vad.prepare(variant(speech["cancel"], 0.0, 0.0, -35, 0, 16000, rng))
    long = vad.prepare(variant(speech["cancel"], 2.0, 2.0, -3, 500, 16000, rng))
    assert short is not None and long is not None
    # 4 s of silence around it are cut to at most the margin each side; nothing is padded on
    assert len(short) <= len(long) <= len(short) + (2 * vad.MARGIN_S + 0.15) * SAMPLE_RATE
    assert abs(int(long.astype(np.int64).mean())) < 50          # DC offset removed
    ratio = np.abs(long).max() / np.abs(short).max()
    assert 0.7 < ratio < 1.4                                    # same level out


def test_noise_and_silence_only_give_no_speech() -> None:
    rng = np.random.default_rng(5)
    assert vad.prepare(np.zeros(SAMPLE_RATE * 2, np.int16)) is None
    hum = (rng.normal(0, 30, SAMPLE_RATE * 2) + 800).astype(np.int16)
    assert vad.prepare(hum) is None

