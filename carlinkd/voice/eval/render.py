"""Render text with many synthesizers (espeak-ng, flite, festival), cached on disk by content.

A voice is written ``engine:name[@speed[/pitch]]`` (see voices.yaml). Renders are 16 kHz mono
int16, stored as ``.npy`` under the cache directory (``$CARLINKD_VOICE_CACHE``, default
``$XDG_CACHE_HOME/carlinkd/voice-eval``) named by a hash of the engine, voice, text and
synthesizer version, so a second run (or the test after the benchmark) does not synthesize again.
Mandarin text goes to espeak-ng's ``cmn-latn-pinyin`` as numbered pinyin (pypinyin): Debian's
espeak-ng 1.51 reads most hanzi in ``cmn`` as letter names and tone digits.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import AudioError
from ..audio import Samples, decode_wav, read_wav
from ..tts import _fix_stream_header

log = logging.getLogger(__name__)

TIMEOUT_S = 60
BINARIES = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}


@dataclass(frozen=True)
class Voice:
    """One synthesizer voice at one speed and pitch."""

    engine: str
    name: str
    speed: int = 100
    pitch: int = 50
    family: str = ""

    @classmethod
    def parse(cls, spec: str, family: str = "") -> Voice:
        """``engine:name[@speed[/pitch]]`` to a Voice."""
        engine, sep, rest = spec.partition(":")
        if not sep or engine not in BINARIES:
            raise ValueError(f"voice {spec!r}: expected engine:name with engine one of "
                             f"{', '.join(BINARIES)}")
        name, _, tail = rest.partition("@")
        speed, _, pitch = tail.partition("/")
        default_speed = 160 if engine == "espeak" else 100
        return cls(engine, name, int(speed or default_speed), int(pitch or 50),
                   family or engine)

    @property
    def label(self) -> str:
        """The spec string, for reports."""
        return f"{self.engine}:{self.name}@{self.speed}/{self.pitch}"

    def available(self) -> bool:
        """Whether the synthesizer (and for festival, the voice) is installed."""
        if shutil.which(BINARIES[self.engine]) is None:
            return False
        if self.engine == "festival":
            return self.name in festival_voices()
        return True


@lru_cache(maxsize=1)
def festival_voices() -> frozenset[str]:
    """Voice directories Debian's festvox packages installed."""
    root = Path("/usr/share/festival/voices")
    return frozenset(p.name for p in root.glob("*/*") if p.is_dir()) if root.is_dir() else \
        frozenset()


@lru_cache(maxsize=8)
def engine_version(engine: str) -> str:
    """A version string that goes into the cache key (a new synthesizer renders anew)."""
    binary = shutil.which(BINARIES[engine]) or ""
    try:
        st = os.stat(binary)
    except OSError:
        return "missing"
    return f"{st.st_size}-{int(st.st_mtime)}"


def cache_dir() -> Path:
    """Where renders are kept."""
    env = os.environ.get("CARLINKD_VOICE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "carlinkd" / "voice-eval"


def pinyin_text(text: str) -> str:
    """Hanzi to numbered pinyin (ni3 hao3) for espeak-ng's cmn-latn-pinyin voice."""
    try:
        from pypinyin import Style, lazy_pinyin  # type: ignore[import-untyped,unused-ignore]
    except ImportError as err:
        raise AudioError("pypinyin is not installed (pip install pypinyin)") from err
    syllables = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True,
                            errors=lambda chars: " ")
    return " ".join(s.strip() for s in syllables if s.strip() and s.strip() not in "，。：！？、")


def render(voice: Voice, text: str, lang: str = "en") -> Samples:
    """The text spoken by the voice, 16 kHz mono int16 (from the cache when there)."""
    spoken = pinyin_text(text) if lang == "zh" else text
    key = "\0".join([voice.label, engine_version(voice.engine), lang, spoken])
    path = cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npy"
    if path.exists():
        try:
            cached: Samples = np.load(path).astype(np.int16)
            return cached
        except (OSError, ValueError):
            log.warning("%s: unreadable cached render, synthesizing again", path)
    samples = _synthesize(voice, spoken)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, samples)
    os.replace(tmp, path)
    return samples


def _synthesize(voice: Voice, text: str) -> Samples:
    if voice.engine == "espeak":
        cmd = ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch),
               "-b", "1", "--stdout"]
        return decode_wav(io.BytesIO(_fix_stream_header(_run(cmd, text.encode()))),
                          voice.label)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        if voice.engine == "flite":
            _run(["flite", "-voice", voice.name, "--setf",
                  f"duration_stretch={voice.speed / 100:.2f}", "-t", text, "-o", str(out)], b"")
        else:
            src = Path(tmp) / "in.txt"
            src.write_text(text, encoding="utf-8")
            stretch = f"(Parameter.set 'Duration_Stretch {voice.speed / 100:.2f})"
            _run(["text2wave", "-eval", f"(voice_{voice.name})", "-eval", stretch, str(src),
                  "-o", str(out)], b"")
        return read_wav(out)


def _run(cmd: list[str], stdin: bytes) -> bytes:
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise AudioError(f"{cmd[0]} failed: {err}") from err
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{cmd[0]} failed: {detail[0] if detail else proc.returncode}")
    return proc.stdout
