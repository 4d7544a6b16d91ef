"""The ``carlinkd demo`` command line: options, and the checks that need several of them at once.

Kept free of heavy imports: the main parser is built for every command.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from carlink_sim.navigation import DEFAULT_START, position_arg

MAX_CARS = 10
_CAR_PREFIX = re.compile(r"\s*(car\d+)\s*:(.*)", re.IGNORECASE | re.DOTALL)


class DemoUsageError(ValueError):
    """The demo's options do not fit together; reported as one line, exit code 2."""


@dataclass(frozen=True)
class Step:
    """One thing a driver says: typed text, or a WAV file through push-to-talk."""

    car: str
    kind: Literal["say", "ptt"]
    text: str = ""
    wav: Path | None = None

    def describe(self) -> str:
        """How the step reads in the output."""
        if self.kind == "say":
            return f'"{self.text}" (typed)'
        return f"{self.wav} (push-to-talk)"


class _StepAction(argparse.Action):
    """--say and --ptt append to one list, so their order on the command line is kept."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        steps = list(getattr(namespace, "steps", None) or [])
        steps.append((self.const, str(values)))
        namespace.steps = steps


def _cars(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_CARS:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and {MAX_CARS}")
    return value


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The demo's options (the main parser's ``demo`` sub-parser)."""
    from carlink_sim.scenarios import SCENARIOS

    demo.add_argument("--scenario", default="city-drive", choices=sorted(SCENARIOS),
                      help="simulator scenario, for every car (default: city-drive)")
    demo.add_argument("--duration", type=float, default=None,
                      help="seconds to run (default: until the voice steps are done, else until "
                           "Ctrl-C)")
    demo.add_argument("--time-scale", type=float, default=1.0,
                      help="simulated seconds per wall-clock second")
    demo.add_argument("--seed", type=int, default=1, help="seed of car1 (car N: seed + N - 1)")
    demo.add_argument("--bus", choices=["virtual", "socketcand"], default="virtual",
                      help="how each simulator reaches its daemon")
    demo.add_argument("--state-dir", type=Path, default=None,
                      help="keep the demo's databases and keys here, one directory per car and "
                           "the backend's cloud.db (default: a temporary dir)")
    demo.add_argument("--cars", type=_cars, default=1, metavar="N",
                      help="simulated cars in one group, all talking to the one backend "
                           f"(1-{MAX_CARS}, default 1); with 3 or more the last is 60 km away")
    demo.add_argument("--start", type=position_arg, default=None, metavar="LAT,LON",
                      help="where car1 sets off (default: "
                           f"{DEFAULT_START[0]},{DEFAULT_START[1]}); the others start near it")
    demo.add_argument("--no-cloud", action="store_true",
                      help="no backend: the cars stay offline and queue what they would send")
    demo.add_argument("--say", action=_StepAction, const="say", metavar="[CAR:]TEXT",
                      dest="steps", help="the driver of CAR (default car1) says TEXT, typed; "
                                         "repeatable, run in order with --ptt")
    demo.add_argument("--ptt", action=_StepAction, const="ptt", metavar="[CAR:]FILE.wav",
                      dest="steps", help="push-to-talk with a WAV file through the recognizer; "
                                         "repeatable")
    demo.add_argument("--speech-dir", type=Path, default=None, metavar="DIR",
                      help="write each car's spoken replies as WAV files to DIR/CAR/")
    demo.add_argument("--report", type=Path, default=None, metavar="FILE.html|FILE.pdf",
                      help="at the end, write car1's condition report (and FILE.bundle.json)")
    demo.set_defaults(steps=[])


def parse_steps(raw: list[tuple[str, str]], cars: int) -> list[Step]:
    """The --say/--ptt values as steps; DemoUsageError names the option and what is wrong."""
    names = [f"car{i}" for i in range(1, cars + 1)]
    steps = []
    for kind, value in raw:
        option = f"--{kind} {value}"
        match = _CAR_PREFIX.fullmatch(value)
        car, rest = (match.group(1).lower(), match.group(2).strip()) if match else \
            ("car1", value.strip())
        if car not in names:
            raise DemoUsageError(f"{option}: there is no {car} (--cars {cars} runs "
                                 f"{', '.join(names) if cars < 4 else f'car1..car{cars}'})")
        if not rest:
            raise DemoUsageError(f"{option}: nothing to {'say' if kind == 'say' else 'play'}")
        if kind == "say":
            steps.append(Step(car, "say", text=rest))
            continue
        steps.append(Step(car, "ptt", wav=_readable_wav(option, Path(rest))))
    return steps


def _readable_wav(option: str, wav: Path) -> Path:
    from carlinkd.errors import AudioError
    from carlinkd.voice.audio import read_wav

    if not wav.is_file():
        raise DemoUsageError(f"{option}: no such file {wav}")
    try:
        read_wav(wav)
    except AudioError as err:
        raise DemoUsageError(f"{option}: {str(err).removeprefix(f'{wav}: ')}") from None
    return wav


def check(args: argparse.Namespace) -> list[Step]:
    """Checks across options, after parsing; returns the voice steps."""
    if args.duration is not None and not args.duration > 0:
        raise DemoUsageError(f"--duration {args.duration:g}: must be greater than 0")
    if not args.time_scale > 0:
        raise DemoUsageError(f"--time-scale {args.time_scale:g}: must be greater than 0")
    return parse_steps(args.steps, args.cars)
