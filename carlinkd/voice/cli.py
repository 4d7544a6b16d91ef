"""Voice subcommands: ``carlinkd listen``, ``carlinkd intent``, ``carlinkd say``.

Wired in by the main CLI: ``register(subparsers)`` adds the parsers, ``run(args, cfg)`` runs
one of them and returns an exit code; errors are raised as CarlinkError subclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import AudioError
from .grammar import CONTEXT_LISTS
from .intents import LANGUAGES, ParsedIntent

COMMANDS = ("listen", "intent", "say")


def register(subparsers: Any) -> None:
    """Add the voice subcommands to the main parser's subparsers."""
    listen = subparsers.add_parser("listen", help="recognize one utterance from a WAV file "
                                   "(or raw 16 kHz PCM on stdin) and print its intent")
    src = listen.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav", type=Path, help="WAV file (any rate/channels; - for stdin)")
    src.add_argument("--pcm", action="store_true",
                     help="raw 16 kHz mono s16le PCM on stdin")
    _lang(listen)
    listen.add_argument("--expect", choices=sorted({*CONTEXT_LISTS, "confirm"}), default=None,
                        help="the question the utterance answers (a slot the car asked for, "
                        "or confirm for a read-back): recognize against its answers")
    listen.add_argument("--json", action="store_true", help="print one JSON object")

    intent = subparsers.add_parser("intent", help="print the intent of typed text")
    _lang(intent)
    intent.add_argument("--json", action="store_true", help="print one JSON object (default)")
    intent.add_argument("text", help="what the driver said")

    say = subparsers.add_parser("say", help="speak text with the configured voice")
    _lang(say)
    say.add_argument("--out", type=Path, help="write a WAV file instead of playing")
    say.add_argument("text", help="text to speak")


def _lang(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", choices=LANGUAGES, default=None,
                        help="language (default: [voice] language)")


async def run(args: argparse.Namespace, cfg: Config) -> int:
    """Run one voice subcommand; returns the exit code (main() runs the coroutine)."""
    lang = args.lang or cfg.voice.language
    voice_cfg = dataclasses.replace(cfg.voice, language=lang)
    if args.command == "intent":
        from .pipeline import VoicePipeline
        _print(VoicePipeline(voice_cfg).parse_text(args.text), True)
        return 0
    if args.command == "listen":
        return _listen(args, voice_cfg)
    if args.command == "say":
        return await _say(args, cfg, lang)
    raise AssertionError(args.command)


def _listen(args: argparse.Namespace, voice_cfg: Any) -> int:
    from .audio import PcmSource, WavSource, decode_wav
    from .pipeline import VoicePipeline

    if args.pcm:
        samples = PcmSource().capture()
    elif str(args.wav) == "-":
        import io
        samples = decode_wav(io.BytesIO(sys.stdin.buffer.read()), "stdin")
    else:
        samples = WavSource(args.wav).capture()
    parsed = VoicePipeline(voice_cfg).recognize(samples, args.expect)
    _print(parsed, args.json)
    return 0


async def _say(args: argparse.Namespace, cfg: Config, lang: str) -> int:
    from .audio import encode_wav
    from .tts import DeviceSink, EspeakSpeaker, Priority, Utterance

    samples, rate = EspeakSpeaker.from_config(cfg.voice).synthesize(args.text, lang)
    if args.out is not None:
        try:
            args.out.write_bytes(encode_wav(samples, rate))
        except OSError as err:
            raise AudioError(f"{args.out}: cannot write: {err.strerror}") from err
        return 0
    sink = DeviceSink()
    await sink.play(Utterance(Priority.REPLY, 0, args.text, lang), samples, rate)
    return 0


def _print(parsed: ParsedIntent, as_json: bool) -> None:
    if as_json:
        print(json.dumps(parsed.to_json(), ensure_ascii=False))
    else:
        slots = " ".join(f"{k}={v}" for k, v in parsed.slots.items())
        print(f"{parsed.intent or '(not understood)'} {slots}".rstrip()
              + f"\t{parsed.text!r}")
