"""``carlinkd-sim``: play a scenario onto socketcand, a python-can bus or a log file.

Exit codes: 0 done (duration over, or SIGINT/SIGTERM), 1 a runtime failure (port in use, bus
unavailable), 2 bad arguments. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import NoReturn

import can
from cantools.database.errors import Error as CantoolsError

from carlink_sim.navigation import DEFAULT_START, position_arg
from carlink_sim.outputs import SERVERS, OutputSpec, parse_output, write_log
from carlink_sim.scenarios import SCENARIOS
from carlink_sim.simulator import Simulator

PROG = "carlinkd-sim"
DEFAULT_FLOOD_LOG_S = 10.0  # a flood has no natural length; log this much when none is given


class _UsageError(Exception):
    """A bad command line, reported as one line and exit code 2."""


class _Exit(Exception):
    """argparse finished early (``--help``)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting the process."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error by raising instead of exiting."""
        raise _UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        """Finish early (after --help) by raising instead of exiting."""
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = _Parser(prog=PROG, description="Simulate the carlinkd demo car on a CAN bus.")
    parser.add_argument("--scenario", metavar="NAME", default="city-drive", choices=list(SCENARIOS),
                        help=f"one of: {', '.join(SCENARIOS)} (default: city-drive)")
    parser.add_argument("--duration", metavar="SECONDS", type=_positive,
                        help="bus seconds to run (default: until interrupted; for a log file the "
                             "scenario's length divided by the time scale)")
    parser.add_argument("--time-scale", metavar="X", type=_positive, default=1.0,
                        help="advance the car X times faster than the bus clock; the frame rate "
                             "stays real (default: 1)")
    parser.add_argument("--seed", metavar="N", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--start", metavar="LAT,LON", type=position_arg, default=None,
                        help="where the car sets off, in decimal degrees (default: "
                             f"{DEFAULT_START[0]},{DEFAULT_START[1]}); the seed picks the course")
    parser.add_argument("--flood", metavar="FPS", type=_positive,
                        help="instead of the scenario's schedule, send FPS pre-encoded frames per second")
    parser.add_argument("--output", metavar="SPEC", default="socketcand",
                        help="socketcand[:HOST:PORT] (default 127.0.0.1:29536, channel vcan0), "
                             "virtual:CHANNEL, socketcan:CHANNEL, or a log file (.log .asc .blf .trc .csv)")
    parser.add_argument("--dbc", metavar="PATH", help="DBC to encode with (default: the demo DBC)")
    parser.add_argument("--obd", nargs="?", const="11bit", choices=["11bit", "29bit"],
                        help="also answer OBD-II requests (engine 0x7E8, transmission 0x7E9) on a "
                             "socketcand or bus output; 29bit: 0x18DAF110/0x18DAF118")
    parser.add_argument("--list-scenarios", action="store_true", help="list the scenarios and exit")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    return parser


def _list_scenarios() -> None:
    width = max(len(name) for name in SCENARIOS)
    for scenario in SCENARIOS.values():
        minutes = scenario.duration_s / 60.0
        print(f"{scenario.name:<{width}}  {minutes:4.0f} min  {scenario.description}")


def _announce(line: str) -> None:
    print(line, flush=True)


async def _serve(sim: Simulator, spec: OutputSpec, duration: float | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (RuntimeError, ValueError, NotImplementedError):
            pass  # not the main thread (e.g. called from a test): rely on duration instead
    try:
        await SERVERS[spec.kind](sim, spec, duration, stop, _announce)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _run(args: argparse.Namespace, spec: OutputSpec) -> int:
    try:
        sim = Simulator(args.scenario, seed=args.seed, time_scale=args.time_scale, flood=args.flood,
                        dbc=args.dbc, obd=args.obd or False, start=args.start)
    except (ValueError, OSError, CantoolsError) as err:  # bad values or an unloadable DBC
        raise _UsageError(f"cannot set up the simulation: {err}") from err
    if spec.kind == "file":
        assert spec.path is not None
        duration = args.duration or (DEFAULT_FLOOD_LOG_S if args.flood else sim.scenario_length)
        count = write_log(sim, spec.path, duration)
        print(f"wrote {count} frames ({duration:g} s of bus time) to {spec.path}", flush=True)
        return 0
    asyncio.run(_serve(sim, spec, args.duration))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``carlinkd-sim`` (and ``carlinkd sim``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.list_scenarios:
            _list_scenarios()
            return 0
        try:
            spec = parse_output(args.output)
        except ValueError as err:
            raise _UsageError(str(err)) from None
        level = logging.WARNING - 10 * min(args.verbose, 2)
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return _run(args, spec)
    except _Exit as done:
        return done.status
    except _UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except (OSError, can.CanError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
