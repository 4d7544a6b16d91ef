"""Real human speech (Debian's pocketsphinx-testdata: recordings with their JSGF grammars and
transcripts) through the pocketsphinx adapter, the speech trimmer and the carlinkd grammar."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from carlinkd.voice.settings import VoiceConfig
from carlinkd.voice import vad
from carlinkd.voice.asr import PocketsphinxRecognizer
from carlinkd.voice.audio import SAMPLE_RATE, read_wav, resample
from carlinkd.voice.pipeline import VoicePipeline

DATA = Path("/usr/share/pocketsphinx/test/data")
pytestmark = pytest.mark.skipif(not (DATA / "cards").is_dir(), reason=(
    "pocketsphinx-testdata not installed (apt-get install pocketsphinx-testdata)"))


def transcripts(path: Path) -> dict[str, str]:
    """Sphinx transcription file: ``<s> words </s> (id)`` per line."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*(?:<s>)?\s*(.*?)\s*(?:</s>)?\s*\((\S+)\)\s*$", line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


@pytest.fixture(scope="module")
def cards() -> PocketsphinxRecognizer:
    rec = PocketsphinxRecognizer()
    rec.set_jsgf((DATA / "cards" / "cards.gram").read_text())
    return rec


def test_cards_recordings_decode_to_their_transcripts(cards: PocketsphinxRecognizer) -> None:
    expected = transcripts(DATA / "cards" / "cards.transcription")
    assert len(expected) == 5
    for fid, words in expected.items():
        pcm = read_wav(DATA / "cards" / f"{fid}.wav")
        assert cards.recognize(pcm.tobytes()).text == words, fid


def test_trimmed_real_speech_decodes_the_same_with_silence_rate_and_level(
        cards: PocketsphinxRecognizer) -> None:
    expected = transcripts(DATA / "cards" / "cards.transcription")
    rng = np.random.default_rng(4)
    for fid, words in expected.items():
        x = read_wav(DATA / "cards" / f"{fid}.wav").astype(np.float64)
        for pre, post, gain, rate in ((0.0, 0.0, 1.0, 16000), (1.5, 0.7, 0.1, 44100),
                                      (0.4, 2.0, 2.0, 22050)):
            floor = rng.normal(0, x[:800].std() * gain + 1, int(pre * SAMPLE_RATE))
            tail = rng.normal(0, x[:800].std() * gain + 1, int(post * SAMPLE_RATE))
            y = np.concatenate([floor, x * gain, tail]) + 700
            pcm = np.clip(np.round(y), -32768, 32767).astype(np.int16)
            pcm = resample(resample(pcm, SAMPLE_RATE, rate), rate)
            trimmed = vad.prepare(pcm)
            assert trimmed is not None, (fid, pre, post, gain, rate)
            assert cards.recognize(trimmed.tobytes()).text == words, (fid, pre, post, gain, rate)


def test_goforward_recording() -> None:
    rec = PocketsphinxRecognizer()
    rec.set_jsgf((DATA / "goforward.gram").read_text())
    pcm = np.frombuffer((DATA / "goforward.raw").read_bytes(), "<i2").astype(np.int16)
    assert rec.recognize(pcm.tobytes()).text == "go forward ten meters"
    trimmed = vad.prepare(pcm)
    assert trimmed is not None and rec.recognize(trimmed.tobytes()).text == \
        "go forward ten meters"


def test_real_out_of_grammar_speech_is_not_an_action() -> None:
    """Read-aloud book sentences and other commands (real voices) against carlinkd's grammar."""
    pipeline = VoicePipeline(VoiceConfig())
    clips = [read_wav(p) for p in sorted((DATA / "librivox").glob("*.wav"))]
    clips += [np.frombuffer((DATA / f).read_bytes(), "<i2").astype(np.int16)
              for f in ("goforward.raw", "numbers.raw", "something.raw")]
    clips += [read_wav(p) for p in sorted((DATA / "cards").glob("*.wav"))]
    assert len(clips) == 13
    accepted = [(i, pipeline.recognize(c).text) for i, c in enumerate(clips)]
    assert [a for a in accepted if a[1]] == []
