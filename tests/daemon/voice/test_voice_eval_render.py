"""The evaluation's renderer: every listed synthesizer speaks, renders are cached by content,
and Mandarin goes to espeak-ng as pinyin it reads as Mandarin (tones), not as English letters."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from carlinkd.voice.eval import render as eval_render
from carlinkd.voice.eval.render import Voice, pinyin_text, render
from carlinkd.voice.eval.score import load_negatives, load_split

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")


@needs_espeak
def test_every_installed_voice_speaks_and_is_cached(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARLINKD_VOICE_CACHE", str(tmp_path))
    split = load_split("en")
    engines = {v.engine: v for v in (*split.tuning, *split.heldout)}
    assert "espeak" in engines
    for voice in engines.values():
        samples = render(voice, "check the tire pressure")
        assert samples.dtype == np.int16 and 0.6 < len(samples) / 16000 < 4, voice.label
        assert np.abs(samples).max() > 3000, voice.label
    cached = sorted(tmp_path.glob("*.npy"))
    assert len(cached) == len(engines)
    again = render(next(iter(engines.values())), "check the tire pressure")
    assert sorted(tmp_path.glob("*.npy")) == cached and len(again) > 0


def test_split_is_disjoint_and_the_negative_halves_too() -> None:
    split = load_split("en", installed_only=False)
    assert not {v.label for v in split.tuning} & {v.label for v in split.heldout}
    assert len(split.heldout) >= 10 and len(split.tuning) >= 10
    for lang in ("en", "zh"):
        tuning, heldout = load_negatives(lang, "tuning"), load_negatives(lang, "heldout")
        assert tuning and heldout and not {c.text for c in tuning} & {c.text for c in heldout}
    # (the benchmark adds the phrasing corpus's 75, tests/fixtures/voice/phrasings_oog.tsv)
    assert len(load_negatives("en", "heldout")) + len(load_negatives("zh", "heldout")) >= 40
    with pytest.raises(ValueError, match="engine"):
        Voice.parse("mbrola:us1")


@needs_espeak
def test_mandarin_is_rendered_as_mandarin() -> None:
    text = "预约明天上午九点保养"
    pinyin = pinyin_text(text)
    assert pinyin.split() == ["yu4", "yue1", "ming2", "tian1", "shang4", "wu3", "jiu3", "dian3",
                              "bao3", "yang3"]
    def phonemes(voice: str, words: str) -> str:
        return subprocess.run(["espeak-ng", "-q", "-x", "-v", voice, words], check=True,
                              capture_output=True, text=True).stdout
    good = phonemes("cmn-latn-pinyin", pinyin)
    assert "(en)" not in good
    assert len(re.findall(r"[1-5]{2,3}", good)) == len(text)  # one tone contour per syllable
    assert "(en)" in phonemes("cmn", text)  # why: cmn reads these hanzi as English letters
    assert eval_render.render(Voice.parse("espeak:cmn-latn-pinyin@150/50"), text, "zh").size
