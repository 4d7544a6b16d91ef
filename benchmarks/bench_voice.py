"""Voice figures: recognition quality per backend x language x voice family x SNR on the TUNING
and the HELD-OUT voices (carlinkd/voice/eval/voices.yaml), false accepts on out-of-grammar
sentences and noise-only clips, recognition real-time factor on one core, and
push-to-talk-release-to-reply latency.

Every utterance is framed as a push-to-talk recording (0-2 s of near silence at both ends,
-35..-3 dBFS, a DC offset) and, for the noisy rows, mixed with cabin noise (sox) over the whole
recording. Baselines in the same run: the untrimmed pipeline (no VAD, as before issue 12) on the
same audio, synthesis RTF beside recognition RTF, typed text beside audio for the reply latency.
Renders are cached (carlinkd.voice.eval.render). Usage:
  nice -n 10 python benchmarks/bench_voice.py [--part heldout|tuning|both] [--snr clean,10]
      [--limit N] [--every] [--no-baseline] [--no-speed] [--lang en,zh] [--misses]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from carlinkd.config import Config
from carlinkd.errors import RecognizerUnavailable
from carlinkd.hub import Hub
from carlinkd.voice.audio import SAMPLE_RATE, WavSource, encode_wav
from carlinkd.voice.eval.render import render
from carlinkd.voice.eval.score import (Tally, condition, evaluate, load_negatives, load_split,
                                       noise_bed, noise_only_clips, rendered)
from carlinkd.voice.pipeline import VoicePipeline
from carlinkd.voice.service import VoiceService
from carlinkd.voice.settings import VoiceConfig
from carlinkd.voice.testset import Case, load_cases
from carlinkd.voice.tts import EspeakSpeaker, NullSink

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "voice"
NOISE_CLIPS = 40


def sentence_sets(lang: str, part: str) -> list[Path]:
    """Sentence files for a voice part: tuning voices speak the tuning sentences, held-out
    voices the held-out ones (the phrasing corpus is split the same way)."""
    names = {("en", "tuning"): ["en_utterances.tsv", "phrasings_en_tuning.tsv"],
             ("en", "heldout"): ["en_heldout.tsv", "phrasings_en_heldout.tsv"],
             ("zh", "tuning"): ["zh_utterances.tsv", "phrasings_zh_tuning.tsv"],
             ("zh", "heldout"): ["phrasings_zh_heldout.tsv"]}[(lang, part)]
    return [FIX / n for n in names if (FIX / n).exists()]


def negatives_for(lang: str, part: str) -> list[Case]:
    """Out-of-grammar sentences: the eval lists' part, and for held-out also the phrasing
    corpus's (phrasings_oog.tsv: text, "-", "", language)."""
    cases = load_negatives(lang, part)
    oog = FIX / "phrasings_oog.tsv"
    if part == "heldout" and oog.exists():
        for line in oog.read_text(encoding="utf-8").splitlines():
            cols = line.split("\t")
            if line.strip() and not line.startswith("#") and len(cols) >= 4 and \
                    cols[3].strip() == lang:
                cases.append(Case(cols[0].strip(), None))
    return cases


def row(label: str, t: Tally) -> str:
    """One table row."""
    r = t.rates()
    fa = f"{r['false_accepts']:6.1%} of {t.negatives:<4}" if t.negatives else " " * 14
    return (f"  {label:<22} {t.n:>5} {r['exact']:7.1%} {r['wrong']:7.1%} "
            f"{r['not_understood']:7.1%}   {fa}")


HEADER = (f"  {'voice family':<22} {'n':>5} {'exact':>7} {'wrong':>7} {'not-und':>7}"
          f"   false accepts")


def quality(pipeline: VoicePipeline, lang: str, part: str, snrs: list[float | None],
            args: argparse.Namespace) -> None:
    """Tables for one backend x language x voice part, one per SNR."""
    split = load_split(lang)
    voices = split.tuning if part == "tuning" else split.heldout
    cases = [c for p in sentence_sets(lang, part) for c in load_cases(p)]
    if args.limit:  # an even spread over the sets rather than the first file only
        cases = cases[::max(len(cases) // args.limit, 1)][:args.limit]
    negatives = negatives_for(lang, part)
    noise = noise_bed(split.noise_effects)
    baseline = VoicePipeline(pipeline.cfg, lang, recognizer=pipeline.recognizer, trim=False) \
        if args.baseline else None
    for snr in snrs:
        label = "clean" if snr is None else f"{snr:g} dB SNR"
        t0 = time.perf_counter()
        items = list(rendered(cases + negatives, voices, lang, every=args.every))
        tallies = evaluate(pipeline.recognize, items, noise, snr)
        print(f"\n[{pipeline.recognizer.name} {lang} {part} voices ({len(voices)}), {label}, "
              f"{len(items)} utterances, {time.perf_counter() - t0:.0f} s]")
        print(HEADER)
        for family, tally in sorted(tallies.items(), key=lambda kv: kv[0] == "all"):
            print(row(family, tally))
        if args.misses:
            for miss in tallies["all"].misses:
                print("     miss", miss)
        if baseline is not None:
            base = evaluate(baseline.recognize, items, noise, snr)["all"]
            ratio = tallies["all"].rates()["exact"] / max(base.rates()["exact"], 1e-9)
            print(row("baseline: untrimmed", base) + f"   (exact ratio {ratio:.2f}x)")
    if part == "heldout" or args.part == "tuning":
        noise_only(pipeline, split.noise_effects)


def noise_only(pipeline: VoicePipeline, effects: str) -> None:
    """False accepts on clips without speech."""
    clips = noise_only_clips(effects, NOISE_CLIPS)
    accepted = sum(pipeline.recognize(c, None).intent is not None for c in clips)
    print(f"  noise-only clips: {accepted} of {len(clips)} became an intent "
          f"({accepted / len(clips):.1%} false accepts)")


def recognition_rtf(pipeline: VoicePipeline, n: int) -> None:
    """CPU time of recognition / audio time on one core; baseline: synthesis on the same core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    voices = load_split("en").heldout
    cases = load_cases(FIX / "en_heldout.tsv")[:n]
    audio_s = decode_s = synth_s = 0.0
    for i, case in enumerate(cases):
        voice = voices[i % len(voices)]
        t = time.process_time()
        samples = render(dataclasses.replace(voice, speed=voice.speed + 1), case.text)  # uncached
        synth_s += time.process_time() - t
        x = condition(samples, None, None, case.text)
        audio_s += len(x) / SAMPLE_RATE
        t = time.process_time()
        pipeline.recognize(x, case.context)
        decode_s += time.process_time() - t
    print(f"\nrecognition RTF on one core (VAD trim + pocketsphinx grammar + phone-loop check): "
          f"{decode_s / audio_s:.3f} over {audio_s:.0f} s of push-to-talk audio, {len(cases)} "
          f"utterances")
    print(f"  baseline: synthesis CPU / audio {synth_s / audio_s:.3f} (this process's share "
          f"only; the synthesizer is a child process)")


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
        audio, typed = [], []
        for _ in range(n):
            captured = WavSource(wav).capture()
            t = time.perf_counter()
            await svc._process_audio(captured)  # the part after push-to-talk release
            audio.append(time.perf_counter() - t)
            t = time.perf_counter()
            await svc.handle_text("what's my fuel level")
            typed.append(time.perf_counter() - t)
            await svc.wait_quiet()
        await svc.stop()
        hub.close()
    ms = lambda xs: f"median {statistics.median(xs) * 1000:.0f} ms"  # noqa: E731
    print(f"PTT release -> reply decided (audio, {len(samples) / rate:.1f} s utterance): "
          f"{ms(audio)}")
    print(f"  baseline: typed text -> reply decided: {ms(typed)}")


def pipeline_for(lang: str) -> VoicePipeline | None:
    """The configured default pipeline for a language, or None (reason printed)."""
    pipeline = VoicePipeline(VoiceConfig(language=lang))  # type: ignore[arg-type]
    try:
        _ = pipeline.recognizer
    except RecognizerUnavailable as err:
        print(f"\n[{lang}] no recognizer here: {err}")
        return None
    return pipeline


def main() -> None:
    """Print the tables, then the speed figures."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["heldout", "tuning", "both"], default="heldout")
    parser.add_argument("--snr", default="clean,20,10,6")
    parser.add_argument("--lang", default="en,zh")
    parser.add_argument("--limit", type=int, default=0, help="N sentences spread over the sets")
    parser.add_argument("--every", action="store_true", help="every sentence in every voice")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    parser.add_argument("--no-speed", dest="speed", action="store_false")
    parser.add_argument("--misses", action="store_true")
    args = parser.parse_args()
    snrs = [None if s == "clean" else float(s) for s in args.snr.split(",")]
    parts = ["tuning", "heldout"] if args.part == "both" else [args.part]
    for lang in args.lang.split(","):
        pipeline = pipeline_for(lang)
        for part in parts if pipeline is not None else []:
            quality(pipeline, lang, part, snrs, args)
    if args.speed:
        en = pipeline_for("en")
        if en is not None:
            recognition_rtf(en, 40)
        asyncio.run(reply_latency(10))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
