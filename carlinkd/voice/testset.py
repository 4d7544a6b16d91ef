"""Utterance test sets kept as text, rendered to audio on demand (tests and benchmarks).

A set is a TSV file: ``text<TAB>intent<TAB>k=v;k=v[<TAB>context]`` (intent ``-`` = must not be
understood; context = the question it answers: a slot name, or ``confirm`` for a read-back).
Renderings (espeak-ng voice, speed, pitch) and the cabin-noise recipe come from a YAML file;
audio is synthesized into memory at run time and never stored in the repository.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from ..errors import AudioError
from .audio import Samples, decode_wav, mix_at_snr
from .tts import EspeakSpeaker, _fix_stream_header


@dataclass(frozen=True)
class Case:
    """One utterance and what it must come out as."""

    text: str
    intent: str | None
    slots: dict[str, str] = field(default_factory=dict)
    context: str | None = None


@dataclass(frozen=True)
class Rendering:
    """One espeak-ng voice setting."""

    voice: str
    speed: int
    pitch: int

    def label(self) -> str:
        """Short name for reports."""
        return f"{self.voice}@{self.speed}"


def load_cases(path: Path) -> list[Case]:
    """Read a TSV test set."""
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        text, intent, slots, context = (line.split("\t") + ["", "", ""])[:4]
        pairs = dict(kv.split("=", 1) for kv in slots.split(";") if kv)
        cases.append(Case(text, None if intent in ("-", "") else intent, pairs,
                          context.strip() or None))
    return cases


def load_renderings(path: Path) -> tuple[list[Rendering], dict[str, Any]]:
    """Voices and the noise recipe from a YAML file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    renderings = [Rendering(r["voice"], int(r["speed"]), int(r["pitch"]))
                  for r in data["renderings"]]
    return renderings, dict(data.get("noise", {}))


def cabin_noise(seconds: float, effects: str) -> Samples:
    """Car-like noise made by sox (e.g. ``brownnoise lowpass 400``), 16 kHz mono."""
    sox = shutil.which("sox")
    if sox is None:
        raise AudioError("sox is not installed (apt-get install sox)")
    cmd = [sox, "-q", "-n", "-r", "16000", "-c", "1", "-b", "16", "-t", "wav", "-",
           "synth", str(seconds), *effects.split()]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    return decode_wav(io.BytesIO(_fix_stream_header(out)), "sox")


def render_cases(cases: list[Case], renderings: list[Rendering], speaker: EspeakSpeaker,
                 noise: Samples | None = None, snr_db: float = 10.0,
                 ) -> Iterator[tuple[Case, Rendering, Samples]]:
    """Each case in one rendering (round-robin), optionally mixed with noise at an SNR."""
    for i, case in enumerate(cases):
        rendering = renderings[i % len(renderings)]
        samples, _ = speaker.synthesize(case.text, "en", voice=rendering.voice,
                                        speed=rendering.speed, pitch=rendering.pitch)
        if noise is not None:
            offset = (i * 7919) % max(len(noise) - len(samples), 1)
            samples = mix_at_snr(samples, noise[offset:offset + len(samples)], snr_db)
        yield case, rendering, samples
