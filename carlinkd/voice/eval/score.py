"""Score a recognizer pipeline on rendered test sets: per voice family and noise level, the share
of exact results (intent + all slots), wrong actions, not-understood, and false accepts."""

from __future__ import annotations

import logging
import shutil
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml  # type: ignore[import-untyped,unused-ignore]

from ..audio import Samples, mix_at_snr
from ..intents import ParsedIntent
from ..testset import Case, cabin_noise
from .render import Voice, render

log = logging.getLogger(__name__)

VOICES_FILE = Path(__file__).with_name("voices.yaml")
Recognize = Callable[[Samples, "str | None"], ParsedIntent]


@dataclass(frozen=True)
class Split:
    """The written-down voice split for one language."""

    tuning: tuple[Voice, ...]
    heldout: tuple[Voice, ...]
    noise_effects: str
    snrs: tuple[float, ...]


def load_split(lang: str, path: Path = VOICES_FILE, installed_only: bool = True) -> Split:
    """Tuning and held-out voices of a language (those whose synthesizer is installed)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    part = data[lang]

    def voices(key: str) -> tuple[Voice, ...]:
        found = [Voice.parse(v["voice"], v.get("family", "")) for v in part[key]]
        missing = [v.label for v in found if not v.available()]
        if missing and installed_only:
            log.warning("voices not installed, skipped: %s", ", ".join(missing))
        return tuple(v for v in found if v.available() or not installed_only)

    noise = data.get("noise", {})
    return Split(voices("tuning"), voices("heldout"), str(noise.get("sox_effects", "")),
                 tuple(float(s) for s in noise.get("snrs", (10,))))


@dataclass
class Tally:
    """Outcomes for one group of utterances."""

    exact: int = 0
    wrong: int = 0
    not_understood: int = 0
    n: int = 0
    false_accepts: int = 0
    negatives: int = 0
    misses: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, case: Case, parsed: ParsedIntent, voice: str) -> None:
        """Count one result against what was said."""
        if case.intent is None:
            self.negatives += 1
            if parsed.intent is not None:
                self.false_accepts += 1
                self.misses.append((voice, case.text, f"ACCEPTED {parsed.text}"))
            return
        self.n += 1
        if parsed.intent is None:
            self.not_understood += 1
            self.misses.append((voice, case.text, f"not understood ({parsed.text})"))
        elif parsed.intent == case.intent and dict(parsed.slots) == case.slots:
            self.exact += 1
        else:
            self.wrong += 1
            self.misses.append((voice, case.text, f"WRONG {parsed.intent} {dict(parsed.slots)}"))

    def merge(self, other: Tally) -> None:
        """Add another tally's counts into this one."""
        for name in ("exact", "wrong", "not_understood", "n", "false_accepts", "negatives"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.misses.extend(other.misses)

    def rates(self) -> dict[str, float]:
        """Shares: exact, wrong, not understood (of in-grammar), false accepts (of negatives)."""
        n, neg = max(self.n, 1), max(self.negatives, 1)
        return {"exact": self.exact / n, "wrong": self.wrong / n,
                "not_understood": self.not_understood / n, "false_accepts":
                self.false_accepts / neg}


def noise_bed(effects: str, seconds: float = 60.0) -> Samples:
    """A long cabin-noise recording to cut pieces from (None without sox)."""
    return cabin_noise(seconds, effects)


def push_to_talk(samples: Samples, seed: str) -> Samples:
    """The utterance as a push-to-talk recording: 0-2 s of near silence before and after, peak
    level -35..-3 dBFS, a DC offset up to +-500 (all drawn from ``seed``)."""
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    pre, post, db = rng.uniform(0, 2), rng.uniform(0, 2), rng.uniform(-35, -3)
    f = samples.astype(np.float64)
    f = f / (np.abs(f).max() or 1.0) * 32767 * 10 ** (db / 20)
    f = np.concatenate([np.zeros(int(pre * 16000)), f, np.zeros(int(post * 16000))])
    f += rng.normal(0, 3, len(f)) + rng.uniform(-500, 500)
    return np.clip(np.round(f), -32768, 32767).astype(np.int16)


def noisy(samples: Samples, noise: Samples | None, snr: float | None, seed: str) -> Samples:
    """The samples with a piece of the noise bed mixed in at ``snr`` dB (clean when None)."""
    if noise is None or snr is None:
        return samples
    offset = zlib.crc32(seed.encode()) % max(len(noise) - len(samples), 1)
    return mix_at_snr(samples, noise[offset:offset + len(samples)], snr)


def condition(samples: Samples, noise: Samples | None, snr: float | None, seed: str) -> Samples:
    """A rendered utterance as the recognizer gets it: push-to-talk framing, then cabin noise
    over the whole recording (silence included) at ``snr`` dB against the speech."""
    return noisy(push_to_talk(samples, seed), noise, snr, seed)


def rendered(cases: Sequence[Case], voices: Sequence[Voice], lang: str, every: bool = False,
             ) -> Iterator[tuple[Case, Voice, Samples]]:
    """Each case in one voice (round-robin over the voices) or, with ``every``, in all."""
    for i, case in enumerate(cases):
        chosen = voices if every else (voices[i % len(voices)],)
        for voice in chosen:
            yield case, voice, render(voice, case.text, lang)


def evaluate(recognize: Recognize, items: Iterable[tuple[Case, Voice, Samples]],
             noise: Samples | None = None, snr: float | None = None,
             ) -> dict[str, Tally]:
    """Tallies per voice family (and ``"all"``) for rendered cases at one noise level."""
    out: dict[str, Tally] = {"all": Tally()}
    for case, voice, samples in items:
        parsed = recognize(condition(samples, noise, snr, case.text + voice.label),
                           case.context)
        out.setdefault(voice.family, Tally()).add(case, parsed, voice.label)
        out["all"].add(case, parsed, voice.label)
    return out


def noise_only_clips(effects: str, n: int, seed: int = 11) -> list[Samples]:
    """Clips with no speech: cabin noise at several levels and lengths, hum, clicks, silence."""
    rng = np.random.default_rng(seed)
    bed = cabin_noise(30, effects).astype(np.float64) if shutil.which("sox") else None
    clips = []
    for i in range(n):
        seconds = 0.5 + 2.5 * rng.random()
        m = int(seconds * 16000)
        kind = i % 4
        if kind == 0 and bed is not None:
            start = int(rng.integers(0, len(bed) - m))
            x = bed[start:start + m] / (np.abs(bed).max() or 1) * 32767 * 10 ** (
                -(6 + 30 * rng.random()) / 20)
        elif kind == 1:
            t = np.arange(m) / 16000
            x = 3000 * np.sin(2 * np.pi * (50 + 70 * rng.random()) * t) + rng.normal(0, 50, m)
        elif kind == 2:
            x = rng.normal(0, 20, m)
            for at in rng.integers(0, m - 200, 3):
                x[at:at + 200] += rng.normal(0, 8000, 200)
        else:
            x = rng.normal(0, 300 + 2000 * rng.random(), m)
        clips.append(np.clip(np.round(x), -32768, 32767).astype(np.int16))
    return clips


def summary(tallies: dict[str, Tally]) -> dict[str, Any]:
    """Rates per group, rounded, for printing."""
    return {k: {**{r: round(v, 3) for r, v in t.rates().items()}, "n": t.n,
                "neg": t.negatives} for k, t in tallies.items()}


def load_negatives(lang: str, part: str) -> list[Case]:
    """Out-of-grammar sentences of a language: ``part`` "tuning" or "heldout" (see the file)."""
    path = Path(__file__).with_name(f"out_of_grammar_{lang}.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    cut = next((i for i, line in enumerate(lines) if line.strip() == "## heldout"), len(lines))
    chosen = lines[:cut] if part == "tuning" else lines[cut + 1:]
    return [Case(line.strip(), None) for line in chosen
            if line.strip() and not line.startswith("#")]
