"""Audio in: WAV files, raw PCM on stdin, a microphone; resampling and end-of-speech detection.

Everything downstream takes 16 kHz mono signed 16-bit PCM. Resampling uses libsoxr (the
``soxr`` wheel): a proper band-limited resampler (no aliasing or imaging artefacts, unlike the
``audioop.ratecv`` it replaces, which is gone in Python 3.13) with a streaming mode for
microphone chunks, in a ~1 MB wheel rather than all of SciPy.

:class:`Endpointer` is the pure end-of-speech detector (frames in, decision out, no clock):
speech starts after ``START_FRAMES`` loud frames; it ends after ``end_of_speech_s`` of quiet,
after ``max_utterance_s`` in all, or with no speech at all within ``start_timeout_s``.
"""

from __future__ import annotations

import enum
import io
import logging
import sys
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped,unused-ignore]

from ..errors import AudioError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_S = 0.03                    # 30 ms analysis frames
FRAME_SAMPLES = int(SAMPLE_RATE * FRAME_S)
START_FRAMES = 3                  # 90 ms above threshold = speech has started
SPEECH_MARGIN_DB = 9.0            # frame energy above the noise floor that counts as speech
NOISE_FLOOR_MIN_DB = -70.0        # digital silence is clamped here
LOUD_ENOUGH_DB = -55.0            # quieter frames never count as speech (dBFS)
SPEECH_LEVEL_DB = -35.0           # a recording whose quietest tenth is this loud is all speech

Samples = npt.NDArray[np.int16]


def to_pcm16(samples: npt.NDArray[Any]) -> Samples:
    """Float (-1..1) or integer samples to int16, clipping."""
    if samples.dtype == np.int16:
        return samples
    if np.issubdtype(samples.dtype, np.floating):
        return np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
    raise AudioError(f"unsupported sample type {samples.dtype}")


def resample(samples: npt.NDArray[Any], rate: int, target: int = SAMPLE_RATE) -> Samples:
    """Band-limited resampling of mono samples (soxr, high quality)."""
    if rate == target:
        return to_pcm16(samples)
    floats = samples.astype(np.float32) / (32768.0 if samples.dtype == np.int16 else 1.0)
    return to_pcm16(soxr.resample(floats, rate, target, quality="HQ"))


def decode_wav(data: BinaryIO, name: str = "WAV") -> Samples:
    """Read a PCM WAV (8/16/24/32-bit, any rate, any channels) as 16 kHz mono int16."""
    try:
        with wave.open(data, "rb") as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as err:
        raise AudioError(f"{name}: not a PCM WAV file ({err})") from err
    if width == 1:
        floats = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        floats = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16))
        floats = (np.where(ints & 0x800000, ints - 0x1000000, ints) / 8388608.0).astype(np.float32)
    elif width == 4:
        floats = (np.frombuffer(raw, "<i4") / 2147483648.0).astype(np.float32)
    else:
        raise AudioError(f"{name}: unsupported sample width {width} bytes")
    if channels > 1:
        floats = floats.reshape(-1, channels).mean(axis=1)
    return resample(floats, rate)


def read_wav(path: Path) -> Samples:
    """A WAV file as 16 kHz mono int16."""
    try:
        with open(path, "rb") as fh:
            return decode_wav(fh, str(path))
    except OSError as err:
        raise AudioError(f"{path}: cannot read: {err.strerror}") from err


def encode_wav(samples: Samples, rate: int = SAMPLE_RATE) -> bytes:
    """Mono int16 samples as WAV bytes."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def rms(samples: npt.NDArray[Any]) -> float:
    """Root-mean-square amplitude."""
    return float(np.sqrt(np.mean(np.square(samples.astype(np.float64))))) if samples.size else 0.0


def active_rms(samples: Samples) -> float:
    """RMS over the frames that carry speech (louder than 1/10 of the loudest frame)."""
    n = len(samples) // FRAME_SAMPLES
    if n == 0:
        return rms(samples)
    frames = samples[: n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES)
    energies = np.sqrt(np.mean(frames**2, axis=1))
    active = frames[energies >= energies.max() / 10.0]
    return float(np.sqrt(np.mean(active**2)))


def mix_at_snr(speech: Samples, noise: Samples, snr_db: float) -> Samples:
    """Add noise scaled so active-speech RMS / noise RMS is ``snr_db`` decibels."""
    if len(noise) < len(speech):
        noise = np.resize(noise, len(speech))
    noise = noise[: len(speech)]
    noise_rms = rms(noise)
    if noise_rms == 0.0:
        return speech
    gain = active_rms(speech) / (noise_rms * 10 ** (snr_db / 20.0))
    mixed = speech.astype(np.float64) + noise.astype(np.float64) * gain
    return np.clip(np.round(mixed), -32768, 32767).astype(np.int16)


# --- end-of-speech detection ----------------------------------------------------------------


class Endpoint(enum.Enum):
    """What the endpointer concluded so far."""

    WAITING = "waiting"        # no speech yet
    SPEECH = "speech"          # speech under way
    END = "end"                # speech ended (trailing quiet or length cap)
    NO_SPEECH = "no-speech"    # nothing said within the start timeout


@dataclass
class Endpointer:
    """Energy-based end-of-speech detection on 30 ms frames, with an adaptive noise floor."""

    start_timeout_s: float = 8.0
    end_of_speech_s: float = 0.8
    max_utterance_s: float = 10.0

    def __post_init__(self) -> None:
        self.state = Endpoint.WAITING
        self.frames = 0
        self.loud_run = 0
        self.quiet_run = 0
        self.floor_db: float | None = None
        self._pending = np.zeros(0, np.int16)

    def feed(self, samples: Samples) -> Endpoint:
        """Feed 16 kHz samples (any length); return the state after them."""
        buf = np.concatenate([self._pending, samples])
        n = len(buf) // FRAME_SAMPLES
        self._pending = buf[n * FRAME_SAMPLES:]
        for i in range(n):
            if self.state in (Endpoint.END, Endpoint.NO_SPEECH):
                break
            self._frame(buf[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES])
        return self.state

    def _frame(self, frame: Samples) -> None:
        self.frames += 1
        db = max(20.0 * np.log10(max(rms(frame), 1e-9) / 32768.0), NOISE_FLOOR_MIN_DB)
        if self.floor_db is None:
            self.floor_db = db
        loud = db > self.floor_db + SPEECH_MARGIN_DB
        if not loud:  # track the floor slowly upward, quickly downward
            self.floor_db += (db - self.floor_db) * (0.5 if db < self.floor_db else 0.05)
        self.loud_run = self.loud_run + 1 if loud else 0
        self.quiet_run = 0 if loud else self.quiet_run + 1
        elapsed = self.frames * FRAME_S
        if self.state is Endpoint.WAITING:
            if self.loud_run >= START_FRAMES:
                self.state = Endpoint.SPEECH
            elif elapsed >= self.start_timeout_s:
                self.state = Endpoint.NO_SPEECH
        elif self.state is Endpoint.SPEECH and (
                self.quiet_run * FRAME_S >= self.end_of_speech_s
                or elapsed >= self.max_utterance_s):
            self.state = Endpoint.END


def has_speech(samples: Samples) -> bool:
    """Whether a whole recording holds speech: some frames well above its quietest tenth.

    A recording loud throughout (no quiet frames to measure a floor) counts as speech; the
    recognizer's own rejection then decides.
    """
    n = len(samples) // FRAME_SAMPLES
    if n < START_FRAMES:
        return False
    frames = samples[: n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES)
    db = 20.0 * np.log10(np.maximum(np.sqrt(np.mean(frames**2, axis=1)), 1e-9) / 32768.0)
    floor = max(float(np.percentile(db, 10)), NOISE_FLOOR_MIN_DB)
    loud = db > max(floor + SPEECH_MARGIN_DB, LOUD_ENOUGH_DB)
    return bool(loud.sum() >= START_FRAMES or floor > SPEECH_LEVEL_DB)


# --- sources ---------------------------------------------------------------------------------


class AudioSource(Protocol):
    """Where one utterance comes from; ``capture`` blocks (run it in an executor)."""

    def capture(self, endpointer: Endpointer | None = None) -> Samples:
        """Return one utterance as 16 kHz mono int16 samples."""

    def stop(self) -> None:
        """End a capture under way (push-to-talk released); safe from any thread."""


class WavSource:
    """A WAV file as one utterance."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def capture(self, endpointer: Endpointer | None = None) -> Samples:
        """The whole file, converted."""
        return read_wav(self.path)

    def stop(self) -> None:
        """Nothing to stop."""


class PcmSource:
    """Raw 16 kHz mono s16le PCM from a binary stream (default: stdin) until EOF."""

    def __init__(self, stream: BinaryIO | None = None, rate: int = SAMPLE_RATE) -> None:
        self.stream = stream
        self.rate = rate

    def capture(self, endpointer: Endpointer | None = None) -> Samples:
        """Everything up to EOF."""
        data = (self.stream or sys.stdin.buffer).read()
        samples = np.frombuffer(data[: len(data) // 2 * 2], "<i2").astype(np.int16)
        return resample(samples, self.rate)

    def stop(self) -> None:
        """Nothing to stop."""


class MicrophoneSource:
    """A PortAudio input (sounddevice, optional) until push-to-talk release or end of speech."""

    BLOCK_S = 0.03

    def __init__(self, device: str | None = None) -> None:
        try:
            import sounddevice  # type: ignore[import-untyped,unused-ignore]
        except (ImportError, OSError) as err:
            raise AudioError(f"no microphone support: {err}") from err
        self._sd = sounddevice
        self.device = device
        try:
            info = sounddevice.query_devices(device, kind="input")
        except (ValueError, sounddevice.PortAudioError) as err:
            raise AudioError(f"no microphone: {err}") from err
        self.rate = int(info["default_samplerate"])
        self._stopped = threading.Event()

    def capture(self, endpointer: Endpointer | None = None) -> Samples:
        """Record until stop(), the endpointer's end, or its no-speech timeout."""
        self._stopped.clear()
        stream = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32")
        chunks: list[Samples] = []
        block = int(self.rate * self.BLOCK_S)
        try:
            with self._sd.InputStream(samplerate=self.rate, channels=1, dtype="float32",
                                      device=self.device, blocksize=block) as mic:
                while not self._stopped.is_set():
                    data, _overflowed = mic.read(block)
                    chunk = to_pcm16(stream.resample_chunk(data[:, 0]))
                    chunks.append(chunk)
                    if endpointer is not None and endpointer.feed(chunk) in (
                            Endpoint.END, Endpoint.NO_SPEECH):
                        break
        except self._sd.PortAudioError as err:
            raise AudioError(f"microphone failed: {err}") from err
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def stop(self) -> None:
        """Release: end the capture at the next block."""
        self._stopped.set()
