"""Whisper + grammar mapping beside pocketsphinx: accuracy by language x voice family x noise, RTF.

Every case is rendered in one voice of the split (round-robin), clean and with cabin noise.
Each recognizer hears the same audio; pocketsphinx (English only) is the baseline in the same
run. Figures per group: exact (intent + every slot), wrong (an intent or slot that differs:
a wrong action), not understood, and false accepts on out-of-grammar sentences and noise-only
clips. RTF = recognition time / audio time; run under ``taskset -c 0`` for one core.

Voices: the split of :mod:`carlinkd.voice.eval` when it is installed, else the espeak-ng
voices below (the same names as that split's espeak part). ``--tune`` sweeps the mapping's
distance threshold on the TUNING voices only (transcripts are kept, so the sweep costs no
recognition); report figures with ``--split heldout``.

Usage: taskset -c 0 nice -n 10 python benchmarks/bench_voice_whisper.py [--lang en|zh]
       [--split tuning|heldout] [--backends whisper,pocketsphinx] [--n N] [--snr 10] [--tune]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from carlinkd.voice.settings import VoiceConfig
from carlinkd.voice.audio import SAMPLE_RATE, Samples, has_speech, mix_at_snr
from carlinkd.voice.intents import IntentParser, ParsedIntent
from carlinkd.voice.nearest import GrammarMatcher
from carlinkd.voice.pipeline import VoicePipeline
from carlinkd.voice.testset import Case, cabin_noise, load_cases
from carlinkd.voice.tts import EspeakSpeaker
from carlinkd.voice.whisper import DEFAULT_MODELS, WhisperRecognizer

FIX = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "voice"
SETS = {"en": {"tuning": ["en_utterances.tsv"], "heldout": ["en_heldout.tsv"]},
        "zh": {"tuning": ["zh_utterances.tsv"], "heldout": ["zh_utterances.tsv"]}}
OUT_OF_GRAMMAR = {"en": "out_of_grammar.txt", "zh": "zh_out_of_grammar.txt"}
# Used where the fixture above is missing: speech that is no command.
ZH_OUT_OF_GRAMMAR = ["今天天气怎么样", "播放一首歌", "打开车窗", "导航到机场", "讲个笑话",
                     "现在几点了", "附近有加油站吗", "把空调调低一点", "我想听新闻",
                     "孩子们在后面睡觉", "这首歌真好听", "前面堵车了"]
# Fallback split (espeak-ng only) until carlinkd.voice.eval provides the shared one.
FALLBACK_SPLIT = {
    "en": {"tuning": [("en-us+klatt", 160, 50, "espeak-klatt"), ("en-us", 165, 50, "espeak-us"),
                      ("en-us+m3", 150, 40, "espeak-us"), ("en-gb+m1", 160, 50, "espeak-gb"),
                      ("en-gb-scotland+m5", 155, 45, "espeak-scotland"),
                      ("en-029+f3", 160, 50, "espeak-029")],
           "heldout": [("en-us+klatt5", 165, 55, "espeak-klatt"), ("en-us+f4", 165, 50, "espeak-us"),
                       ("en-us+m7", 180, 35, "espeak-us"), ("en-gb", 165, 50, "espeak-gb"),
                       ("en-gb-scotland+f4", 160, 60, "espeak-scotland"),
                       ("en-029+m4", 150, 50, "espeak-029")]},
    "zh": {"tuning": [("cmn-latn-pinyin", 150, 50, "espeak-cmn"),
                      ("cmn-latn-pinyin+f2", 160, 60, "espeak-cmn")],
           "heldout": [("cmn-latn-pinyin+m3", 140, 45, "espeak-cmn"),
                       ("cmn-latn-pinyin+f4", 165, 55, "espeak-cmn")]},
}


@dataclass(frozen=True)
class Item:
    """One rendered utterance."""

    case: Case
    family: str
    voice: str
    samples: Samples


@dataclass
class Tally:
    """Outcomes of one group."""

    n: int = 0
    exact: int = 0
    wrong: int = 0
    negatives: int = 0
    false_accepts: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, case: Case, got: ParsedIntent, note: str) -> None:
        """Count one result."""
        if case.intent is None:
            self.negatives += 1
            if got.intent is not None:
                self.false_accepts += 1
                self.misses.append(f"FA {note}: {case.text!r} -> {got.intent} {dict(got.slots)}")
            return
        self.n += 1
        if got.intent == case.intent and dict(got.slots) == case.slots:
            self.exact += 1
        elif got.intent is not None:
            self.wrong += 1
            self.misses.append(f"WRONG {note}: {case.text!r} -> {got.intent} {dict(got.slots)}")
        else:
            self.misses.append(f"MISS {note}: {case.text!r}")

    def row(self) -> str:
        """Percentages for a table row."""
        n, neg = max(self.n, 1), max(self.negatives, 1)
        return (f"exact {100 * self.exact / n:5.1f} %  wrong {100 * self.wrong / n:4.1f} %  "
                f"not understood {100 * (self.n - self.exact - self.wrong) / n:5.1f} %  (n={self.n})"
                + (f"  false accepts {100 * self.false_accepts / neg:4.1f} % (of {self.negatives})"
                   if self.negatives else ""))


def _pinyin(text: str) -> str:
    from pypinyin import Style, lazy_pinyin
    return " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True))


def voices(lang: str, split: str) -> list[tuple[str, str, Callable[[str], Samples]]]:
    """(family, label, render) per voice of the split."""
    try:
        from carlinkd.voice.eval.render import render  # type: ignore[import-not-found]
        from carlinkd.voice.eval.score import load_split  # type: ignore[import-not-found]
    except ImportError:
        speaker = EspeakSpeaker()
        out = []
        for voice, speed, pitch, family in FALLBACK_SPLIT[lang][split]:
            def say(text: str, v: str = voice, s: int = speed, p: int = pitch) -> Samples:
                said = _pinyin(text) if v.startswith("cmn-latn") else text
                return speaker.synthesize(said, lang, voice=v, speed=s, pitch=p)[0]
            out.append((family, f"espeak:{voice}@{speed}/{pitch}", say))
        print(f"voices: fallback espeak-ng split in this script ({split})")
        return out
    chosen = getattr(load_split(lang), split)
    print(f"voices: carlinkd.voice.eval split ({split}, {len(chosen)} voices)")
    return [(v.family, v.label, lambda text, v=v: render(v, text, lang)) for v in chosen]


def items(lang: str, split: str, n: int) -> Iterator[Item]:
    """Cases (and out-of-grammar sentences) of the split, each in one voice round-robin."""
    cases: list[Case] = []
    for name in SETS[lang][split]:
        cases.extend(load_cases(FIX / name)[:n])
    oog = FIX / OUT_OF_GRAMMAR[lang]
    if oog.exists():
        cases.extend(Case(line, None) for line in oog.read_text(encoding="utf-8").splitlines()
                     if line.strip() and not line.startswith("#"))
    elif lang == "zh":
        cases.extend(Case(line, None) for line in ZH_OUT_OF_GRAMMAR)
    chosen = voices(lang, split)
    for i, case in enumerate(cases):
        family, label, say = chosen[i % len(chosen)]
        yield Item(case, family, label, say(case.text))


def noise_clips(count: int) -> list[Samples]:
    """Noise-only clips: cabin noise at several levels and lengths."""
    rng = np.random.default_rng(5)
    bed = cabin_noise(30, "brownnoise lowpass 400").astype(np.float64)
    out = []
    for _ in range(count):
        m = int((0.6 + 2.4 * rng.random()) * SAMPLE_RATE)
        start = int(rng.integers(0, len(bed) - m))
        x = bed[start:start + m] / (np.abs(bed).max() or 1) * 32767 * 10 ** (-(6 + 30 * rng.random()) / 20)
        out.append(np.clip(np.round(x), -32768, 32767).astype(np.int16))
    return out


class Runner:
    """One backend: recognizes audio, keeps what it heard for the threshold sweep."""

    def __init__(self, name: str, lang: str) -> None:
        self.name = name
        cfg = VoiceConfig(language=lang)  # type: ignore[arg-type]
        t = time.perf_counter()
        if name == "whisper":
            self.rec: WhisperRecognizer | None = WhisperRecognizer(DEFAULT_MODELS[lang], lang,
                                                                   threads=1)
            self.pipeline = VoicePipeline(cfg, recognizer=self.rec)
            self.rec.update_grammar(self.pipeline.parser)
        else:
            self.rec = None
            self.pipeline = VoicePipeline(cfg)
            _ = self.pipeline.recognizer
        self.load_s = time.perf_counter() - t
        self.audio_s = self.busy_s = 0.0
        self.heard: list[tuple[Case, str, str]] = []  # case, family, raw transcript

    def recognize(self, samples: Samples, case: Case, family: str) -> ParsedIntent:
        """Recognize one utterance, timing it."""
        t = time.perf_counter()
        got = self.pipeline.recognize(samples, case.context)
        self.busy_s += time.perf_counter() - t
        self.audio_s += len(samples) / SAMPLE_RATE
        raw = self.rec.last_raw if self.rec is not None and has_speech(samples) else ""
        self.heard.append((case, family, raw))
        return got


def run(args: argparse.Namespace, lang: str) -> None:
    """Score every backend on one language's split, clean and at each SNR."""
    rendered = list(items(lang, args.split, args.n))
    noise = cabin_noise(60, "brownnoise lowpass 400")
    backends = [b for b in args.backends.split(",") if b != "pocketsphinx" or lang == "en"]
    for backend in backends:
        runner = Runner(backend, lang)
        print(f"\n== {lang} {backend} ({args.split} voices) load {runner.load_s:.1f} s")
        for snr in [None, *args.snr]:
            tallies: dict[str, Tally] = {}
            for k, it in enumerate(rendered):
                samples = it.samples if snr is None else mix_at_snr(
                    it.samples, noise[(k * 7919) % (len(noise) - len(it.samples)):][:len(it.samples)], snr)
                got = runner.recognize(samples, it.case, it.family)
                heard = runner.heard[-1][2]
                for group in ("all", it.family):
                    tallies.setdefault(group, Tally()).add(it.case, got, f"{it.voice} {heard!r}")
            label = "clean" if snr is None else f"{snr:g} dB"
            for group, tally in sorted(tallies.items()):
                print(f"  {label:6} {group:16} {tally.row()}")
            if args.verbose:
                for miss in tallies["all"].misses:
                    print("     ", miss)
        fa = sum(runner.pipeline.recognize(c, None).intent is not None for c in noise_clips(20))
        print(f"  noise-only clips: {fa} of 20 false accepts")
        print(f"  RTF {runner.busy_s / max(runner.audio_s, 1e-9):.3f} over {runner.audio_s:.0f} s"
              f" of audio (cores: {sorted(os.sched_getaffinity(0))})")
        if args.save and runner.rec is not None:
            with open(args.save, "a", encoding="utf-8") as fh:
                for case, family, raw in runner.heard:
                    fh.write(json.dumps({"lang": lang, "case": dataclasses.asdict(case),
                                         "family": family, "raw": raw}, ensure_ascii=False) + "\n")
        if args.tune and runner.rec is not None:
            sweep(runner.pipeline.parser, runner.heard, args.verbose)


def replay(path: Path, verbose: bool) -> None:
    """The threshold sweep on transcripts saved by an earlier --save run."""
    heard: dict[str, list[tuple[Case, str, str]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        heard.setdefault(row["lang"], []).append((Case(**row["case"]), row["family"], row["raw"]))
    for lang, rows in heard.items():
        print(f"== {lang}: {len(rows)} transcripts from {path}")
        sweep(IntentParser(lang), rows, verbose)


def sweep(parser: IntentParser, heard: list[tuple[Case, str, str]], verbose: bool = False,
          ) -> None:
    """Exact / wrong / false accepts for several mapping thresholds, on what was heard."""
    matcher = GrammarMatcher(parser)
    default = (matcher.max_distance, matcher.max_unexplained)
    for unexplained in (0, 1, 99):
        for threshold in sorted({0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, default[0]}):
            matcher.max_distance, matcher.max_unexplained = threshold, unexplained
            tally = Tally()
            for case, _family, raw in heard:
                match = matcher.match(raw, case.context) if raw else None
                got = parser.parse(match.text) if match else ParsedIntent(raw, None)
                tally.add(case, got, f"{raw!r} -> {match.text if match else None!r}")
            print(f"  threshold {threshold:.2f} unexplained <= {unexplained}: {tally.row()}")
            if verbose and (threshold, unexplained) == default:
                for miss in tally.misses:
                    if not miss.startswith("MISS"):
                        print("     ", miss)


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", choices=("en", "zh", "both"), default="both")
    parser.add_argument("--split", choices=("tuning", "heldout"), default="heldout")
    parser.add_argument("--backends", default="whisper,pocketsphinx")
    parser.add_argument("--n", type=int, default=1000, help="at most N cases per set file")
    parser.add_argument("--snr", type=float, nargs="*", default=[10.0])
    parser.add_argument("--tune", action="store_true", help="sweep the mapping threshold")
    parser.add_argument("--verbose", action="store_true", help="print every miss")
    parser.add_argument("--save", type=Path, help="append what Whisper heard to this file")
    parser.add_argument("--replay", type=Path, help="only sweep thresholds on a --save file")
    args = parser.parse_args()
    if args.replay:
        replay(args.replay, args.verbose)
        return
    for lang in (("en", "zh") if args.lang == "both" else (args.lang,)):
        run(args, lang)


if __name__ == "__main__":
    main()
