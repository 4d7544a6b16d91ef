"""Held-out floors: voices no threshold was tuned on (carlinkd/voice/eval/voices.yaml "heldout":
espeak-ng, flite and festival) speak held-out sentences framed as push-to-talk recordings
(0-2 s of near silence, -35..-3 dBFS, DC offset), through the whole pipeline. A small spread
of the benchmark's held-out set (benchmarks/bench_voice.py prints the full tables)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from carlinkd.voice.eval.render import Voice
from carlinkd.voice.eval.score import (evaluate, load_negatives, load_split, noise_only_clips,
                                       rendered)
from carlinkd.voice.pipeline import VoicePipeline
from carlinkd.voice.settings import VoiceConfig
from carlinkd.voice.testset import load_cases

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "voice"
# Measured with this subset (7 held-out voices, one per family; 48 sentences, 15 negatives):
# exact 68.8 %, wrong 8.3 %, not understood 22.9 %, false accepts 1 of 15. Far from the issue's
# targets (95 % / 1 % / 2 %); the floors stop it getting worse: a little below what was measured.
EXACT_FLOOR = 0.64
WRONG_CEILING = 0.11
FALSE_ACCEPT_CEILING = 0.14
SENTENCES = 48
NEGATIVES = 16

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="espeak-ng and sox needed (apt-get install espeak-ng sox)")


def heldout_voices() -> list[Voice]:
    """One held-out voice per synthesizer family (those installed)."""
    seen: dict[str, Voice] = {}
    for voice in load_split("en").heldout:
        seen.setdefault(voice.family, voice)
    return list(seen.values())


def test_heldout_voices_floors() -> None:
    cases = [c for name in ("en_heldout.tsv", "phrasings_en_heldout.tsv")
             if (FIX / name).exists() for c in load_cases(FIX / name)]
    cases = cases[::max(len(cases) // SENTENCES, 1)][:SENTENCES]
    negatives = load_negatives("en", "heldout")[::2][:NEGATIVES]
    voices = heldout_voices()
    assert len(voices) >= 4
    pipeline = VoicePipeline(VoiceConfig())
    tally = evaluate(pipeline.recognize, rendered(cases + negatives, voices, "en"))["all"]
    rates = tally.rates()
    print(f"\nheld-out subset: {rates} n={tally.n} negatives={tally.negatives}")
    for miss in tally.misses:
        print("   miss", miss)
    assert tally.n == len(cases) and tally.negatives == len(negatives)
    assert rates["exact"] >= EXACT_FLOOR
    assert rates["wrong"] <= WRONG_CEILING
    assert rates["false_accepts"] <= FALSE_ACCEPT_CEILING


def test_noise_only_clips_never_become_an_action() -> None:
    pipeline = VoicePipeline(VoiceConfig())
    clips = noise_only_clips("brownnoise lowpass 400", 12)
    assert [pipeline.recognize(c, None).intent for c in clips] == [None] * len(clips)
