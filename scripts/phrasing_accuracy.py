#!/usr/bin/env python3
"""Typed-text accuracy of the intent templates on the phrasing corpora, and the ASR grammar size.

    .venv/bin/python scripts/phrasing_accuracy.py [--failures FILE...] [--grammar]

Prints, per corpus file (tests/fixtures/voice/phrasings_*.tsv): exact intent + slots, wrong
action (an intent or slot that differs from the expected one), not understood. ``--failures``
lists the misses of the named files (use it on the tuning files only; the held-out files are
for the figure). ``--grammar`` prints the pocketsphinx JSGF size and its compiled FSG size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from carlinkd.voice.intents import IntentParser  # noqa: E402
from carlinkd.voice.testset import Case, load_cases  # noqa: E402

FIX = ROOT / "tests" / "fixtures" / "voice"


def corpus_lang(path: Path, case: Case) -> str:
    """The language of one case: from the file name, or the fourth column of the OOG file."""
    if "_zh_" in path.name:
        return "zh"
    if "_en_" in path.name:
        return "en"
    return case.context or "en"


def score(path: Path, parsers: dict[str, IntentParser], show: bool) -> None:
    """Print one file's figures (and its misses when ``show``)."""
    cases = load_cases(path)
    exact = wrong = missed = 0
    for case in cases:
        got = parsers[corpus_lang(path, case)].parse(case.text)
        if got.intent == case.intent and dict(got.slots) == case.slots:
            exact += 1
            continue
        if got.intent is None:
            missed += 1
        else:
            wrong += 1
        if show:
            print(f"   MISS {case.text!r}: want {case.intent} {case.slots}, "
                  f"got {got.intent} {dict(got.slots)}")
    n = len(cases)
    print(f"{path.name:32s} n={n:4d}  exact {100 * exact / n:5.1f} %  "
          f"wrong action {100 * wrong / n:4.1f} %  not understood {100 * missed / n:4.1f} %")


def grammar_size() -> None:
    """JSGF characters and compiled FSG states/transitions of the English command grammar."""
    import pocketsphinx  # type: ignore[import-untyped]

    from carlinkd.voice.asr import PocketsphinxRecognizer

    rec = PocketsphinxRecognizer()
    start = time.perf_counter()
    rec.update_grammar(IntentParser("en"))
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        jsgf_path = Path(tmp) / "g.jsgf"
        jsgf_path.write_text(rec.jsgf, encoding="utf-8")
        jsgf = pocketsphinx.Jsgf(str(jsgf_path))
        fsg = jsgf.build_fsg(jsgf.get_rule("carlinkd.utterance"), pocketsphinx.LogMath(), 1.0)
        fsg_path = Path(tmp) / "g.fsg"
        fsg.writefile(str(fsg_path))
        lines = fsg_path.read_text(encoding="utf-8").splitlines()
    states = next(int(line.split()[1]) for line in lines if line.startswith("NUM_STATES"))
    trans = sum(1 for line in lines if line.startswith("TRANSITION"))
    print(f"en JSGF: {len(rec.jsgf)} chars, {rec.jsgf.count(chr(10))} lines; FSG: {states} "
          f"states, {trans} transitions; grammar build + load {load_s:.2f} s")


def main() -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--failures", nargs="*", default=[], help="corpus file names to list misses of")
    ap.add_argument("--grammar", action="store_true", help="also print the ASR grammar size")
    args = ap.parse_args()
    parsers = {lang: IntentParser(lang) for lang in ("en", "zh")}
    for path in sorted(FIX.glob("phrasings_*.tsv")):
        score(path, parsers, path.name in args.failures or path.stem in args.failures)
    if args.grammar:
        grammar_size()
    return 0


if __name__ == "__main__":
    sys.exit(main())
