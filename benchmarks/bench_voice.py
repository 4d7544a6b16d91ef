"""Voice speed figures: recognition real-time factor and push-to-talk-release-to-reply latency.

Each figure comes with a baseline measured in the same run: the recognizer's RTF beside the
cost of just synthesizing the audio, and the reply latency beside the same exchange with typed
text (no recognition). Usage: python benchmarks/bench_voice.py [--n N]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from carlinkd.config import Config
from carlinkd.voice.settings import VoiceConfig
from carlinkd.hub import Hub
from carlinkd.voice.audio import SAMPLE_RATE, WavSource, encode_wav
from carlinkd.voice.pipeline import VoicePipeline
from carlinkd.voice.service import VoiceService
from carlinkd.voice.testset import load_cases, load_renderings, render_cases
from carlinkd.voice.tts import EspeakSpeaker, NullSink

FIX = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "voice"


def recognition_rtf(n: int) -> None:
    """Decode time / audio time over n utterances; baseline: synthesis time / audio time."""
    pipeline = VoicePipeline(VoiceConfig())
    t0 = time.perf_counter()
    _ = pipeline.recognizer
    load_s = time.perf_counter() - t0
    cases = load_cases(FIX / "en_utterances.tsv")[:n]
    renderings, _ = load_renderings(FIX / "voices.yaml")
    speaker = EspeakSpeaker()
    audio_s = synth_s = decode_s = 0.0
    t_synth = time.perf_counter()
    rendered = list(render_cases(cases, renderings, speaker))
    synth_s = time.perf_counter() - t_synth
    for _case, _r, samples in rendered:
        audio_s += len(samples) / SAMPLE_RATE
        t = time.perf_counter()
        pipeline.recognize(samples)
        decode_s += time.perf_counter() - t
    print(f"recognizer load + grammar build: {load_s:.2f} s")
    print(f"recognition RTF (pocketsphinx, grammar + phone-loop check): {decode_s / audio_s:.3f} "
          f"over {audio_s:.0f} s of audio, {len(rendered)} utterances")
    print(f"  baseline: espeak-ng synthesis RTF {synth_s / audio_s:.3f}")


async def reply_latency(n: int) -> None:
    """PTT release -> reply queued for speech, audio vs typed text (same dialog, same hub)."""
    speaker = EspeakSpeaker()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "q.wav"
        samples, rate = speaker.synthesize("what's my fuel level", "en", voice="en-us+klatt")
        wav.write_bytes(encode_wav(samples, rate))
        cfg = dataclasses.replace(Config(), voice=VoiceConfig())
        hub = Hub()
        svc = VoiceService(cfg, hub, sink=NullSink(), use_microphone=False)
        await svc.start()
        audio, typed, synth = [], [], []
        for _ in range(n):
            source = WavSource(wav)
            captured = source.capture()
            t = time.perf_counter()
            await svc._process_audio(captured)  # the part after push-to-talk release
            audio.append(time.perf_counter() - t)
            t = time.perf_counter()
            await svc.handle_text("what's my fuel level")
            typed.append(time.perf_counter() - t)
            t = time.perf_counter()
            await asyncio.get_running_loop().run_in_executor(
                None, speaker.synthesize, "No fuel reading yet.", "en")
            synth.append(time.perf_counter() - t)
            await svc.wait_quiet()
        await svc.stop()
        hub.close()
    ms = lambda xs: f"median {statistics.median(xs) * 1000:.0f} ms"
    print(f"PTT release -> reply decided (audio, {len(samples) / rate:.1f} s utterance): "
          f"{ms(audio)}")
    print(f"  baseline: typed text -> reply decided: {ms(typed)}")
    print(f"  + first reply audio synthesized (espeak-ng): {ms(synth)}")


def main() -> None:
    """Run both figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40, help="utterances for the RTF figure")
    args = parser.parse_args()
    recognition_rtf(args.n)
    asyncio.run(reply_latency(10))


if __name__ == "__main__":
    main()
