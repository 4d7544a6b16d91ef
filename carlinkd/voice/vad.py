"""Speech trimming before recognition: DC offset out, level normalised, silence cut by a VAD.

A push-to-talk recording has silence (or cabin noise) of any length at both ends, at any level.
The recognizer should see the same thing for the same words however long those ends are, so
:func:`prepare` removes the DC offset, finds the speech with the WebRTC voice-activity
detector (``webrtcvad-wheels``; aggressiveness 3 on 30 ms frames) agreeing with an energy check
above the recording's own floor, keeps up to ``MARGIN_S`` of real audio around it (never padded
where the recording has less), and scales the speech to a fixed active level. Cutting long
silence keeps the silence share, and so the recognizer's cepstral mean, about the same for any
length of silence. Padding a short recording is worse than none: digital zeros next to a real
noise floor made pocketsphinx hear a word in the step ("ten of clubs" -> "five ten of clubs" on
a real recording), and padding at 10 dB cabin noise (zeros, white noise at the floor level, or
the recording's own quietest frames) dropped exact results on 20 Klatt utterances from 19 to 10,
6 and 8.
Settings chosen on the tuning voices only (carlinkd/voice/eval/voices.yaml; en_utterances.tsv,
each utterance with 0-2 s of near silence at both ends at -35..-3 dBFS): exact intent + slots 56 %
untrimmed, 83 % trimmed with a 0.25 s zero-padded margin, 87 % with 0.4 s; 91 % with either once
the decoder's bestpath pass was off (asr.DECODER_OPTIONS). Held-out figures: benchmarks/bench_voice.py.
"""

from __future__ import annotations

import logging

import numpy as np
import webrtcvad  # type: ignore[import-untyped,unused-ignore]

from .audio import FRAME_SAMPLES, SAMPLE_RATE, Samples, active_rms

log = logging.getLogger(__name__)

VAD_MODE = 3                    # webrtcvad aggressiveness 0..3 (3 = fewest noise frames as speech)
MARGIN_S = 0.4                  # audio kept (or floor noise padded) before and after the speech
MIN_RUN = 3                     # consecutive speech frames (90 ms) that count as speech
HANG_FRAMES = 10                # a gap of up to 300 ms inside speech keeps it one utterance
ABOVE_FLOOR_DB = 8.0            # a speech frame is this much louder than the 10th-percentile frame
TARGET_ACTIVE_DBFS = -20.0      # active speech level fed to the recognizer


def remove_dc(samples: Samples) -> np.ndarray:
    """Float samples with the mean (DC offset) removed."""
    floats = samples.astype(np.float64)
    return floats - floats.mean() if floats.size else floats


def speech_frames(floats: np.ndarray) -> np.ndarray:
    """Per 30 ms frame: whether the VAD and the energy check both call it speech."""
    n = len(floats) // FRAME_SAMPLES
    if n == 0:
        return np.zeros(0, bool)
    frames = floats[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
    peak = np.abs(frames).max() or 1.0
    scaled = np.clip(frames * (16000.0 / peak), -32768, 32767).astype("<i2")
    vad = webrtcvad.Vad(VAD_MODE)
    voiced = np.array([vad.is_speech(f.tobytes(), SAMPLE_RATE) for f in scaled])
    energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-3)
    loud = energy > np.percentile(energy, 10) + ABOVE_FLOOR_DB
    # a recording with no quiet frames at all is speech throughout (the floor is the speech)
    if np.percentile(energy, 10) > 10 * np.log10((0.05 * 32768) ** 2):
        loud[:] = True
    flags: np.ndarray = voiced & loud
    return flags


def speech_span(flags: np.ndarray) -> tuple[int, int] | None:
    """First and last frame (exclusive) of the speech: runs of MIN_RUN frames, bridged over
    gaps of up to HANG_FRAMES; the longest bridged stretch wins."""
    starts = [i for i in range(len(flags) - MIN_RUN + 1) if flags[i:i + MIN_RUN].all()]
    if not starts:
        return None
    spans: list[list[int]] = []
    for i in starts:
        if spans and i <= spans[-1][1] + HANG_FRAMES:
            spans[-1][1] = max(spans[-1][1], i + MIN_RUN)
        else:
            spans.append([i, i + MIN_RUN])
    # keep everything from the first to the last stretch that is at least 1/4 of the longest
    longest = max(e - s for s, e in spans)
    kept = [s for s in spans if s[1] - s[0] >= longest / 4]
    return kept[0][0], kept[-1][1]


def prepare(samples: Samples) -> Samples | None:
    """The speech of one recording with a short margin at a fixed level, or None if none."""
    floats = remove_dc(samples)
    span = speech_span(speech_frames(floats))
    if span is None:
        return None
    margin = int(MARGIN_S * SAMPLE_RATE)
    start, end = span[0] * FRAME_SAMPLES, span[1] * FRAME_SAMPLES
    lo, hi = max(start - margin, 0), min(end + margin, len(floats))
    piece = floats[lo:hi]  # never padded: any synthetic padding hurt in cabin noise (see above)
    level = active_rms(floats[start:end]) if end > start else 0.0
    gain = (32768.0 * 10 ** (TARGET_ACTIVE_DBFS / 20.0)) / level if level > 0 else 1.0
    log.debug("speech %.2f-%.2f s of %.2f s, gain %.1f", start / SAMPLE_RATE,
              end / SAMPLE_RATE, len(floats) / SAMPLE_RATE, gain)
    return np.clip(np.round(piece * gain), -32768, 32767).astype(np.int16)
