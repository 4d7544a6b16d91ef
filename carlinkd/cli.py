"""carlinkd: the in-car companion daemon and its tools (run, demo, decode, obd, records, ...)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import signal
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from carlink_protocol.cmdline import error_line as error_line  # re-exported for plugin commands
from carlink_protocol.cmdline import parse

from . import __version__
from .config import Config, load_config, to_toml
from .errors import CarlinkError, ConfigError
from .logutil import setup_logging

log = logging.getLogger("carlinkd")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

# Other packages add commands here (the simulator, the demo, the backend): the daemon finds
# them by entry point and imports none of them itself.
PLUGIN_GROUP = "carlinkd.commands"


def plugins() -> dict[str, EntryPoint]:
    """The commands installed packages add to ``carlinkd`` (name -> entry point)."""
    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


# Subcommands whose modules import heavy libraries: registered in full only when chosen.
LAZY_COMMANDS = ((".can.obd.cli", ("obd",)), (".records.cli", ("records",)),
                 (".voice.cli", ("listen", "intent", "say")), (".report.cli", ("report",)))
LAZY_HELP = {
    "obd": "OBD-II: decode logs; query PIDs, trouble codes and the VIN",
    "records": "tamper-evident service history",
    "report": "write a condition report for a buyer (HTML or PDF, with the verifiable bundle "
              "beside it)",
    "listen": "recognize one utterance from a WAV file (or raw 16 kHz PCM on stdin) and print "
              "its intent",
    "intent": "print the intent of typed text",
    "say": "speak text with the configured voice",
}
ALL = "*"  # build_parser(ALL): every subcommand in full


def _wanted(name: str, command: str | None) -> bool:
    return command == ALL or command == name


def chosen_command(args: list[str]) -> str:
    """The subcommand named on a command line ('' for none, ALL when unsure)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config", "--log-level"):
            i += 2
            continue
        if not arg.startswith("-"):
            return arg
        if arg not in ("-h", "--help", "--version") and "=" not in arg:
            return ALL  # an option this scan does not know: build everything
        i += 1
    return ""


def build_parser(command: str | None = ALL) -> argparse.ArgumentParser:
    """The argument parser; subcommands other than ``command`` only by name and help."""
    parser = argparse.ArgumentParser(prog="carlinkd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"carlinkd {__version__}")
    parser.add_argument("--config", type=Path, help="TOML configuration file "
                        "(default /etc/carlinkd/carlinkd.toml when it exists)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="override [daemon] log_level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="run the daemon on the configured CAN bus")
    sub.add_parser("doctor", help="check the installation and say how to fix what is missing")
    status = sub.add_parser("status", help="cloud connection settings and outbox depth per class")
    status.add_argument("--json", action="store_true", help="as JSON, with the inbound cursor")

    dec = sub.add_parser("decode", help="decode a CAN log file to JSON Lines")
    dec.add_argument("--dbc", type=Path, action="append", default=[],
                     help="CAN database file (repeatable; default: the demo DBC)")
    dec.add_argument("logfile", help="log file (.log .asc .blf .trc .csv ...) or - for "
                     "a candump log on stdin")

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = cfg_sub.add_parser("check", help="validate and print the effective configuration")
    check.add_argument("file", nargs="?", type=Path, help="file to check (default: --config)")

    for module, names in LAZY_COMMANDS:
        if any(_wanted(name, command) for name in names):
            importlib.import_module(module, __package__).register(sub)
        else:  # named in --help, its module (and its imports) loaded only when it runs
            for name in names:
                sub.add_parser(name, help=LAZY_HELP[name])

    for name, ep in sorted(plugins().items()):
        # Plugin entry modules are light (their heavy imports happen when they run).
        doc = (getattr(ep.load(), "__doc__", None) or "").strip().splitlines()
        sub.add_parser(name, add_help=False, help=(doc[0] if doc else "") +
                       f" (see carlinkd {name} --help; from {ep.value.split(':')[0]})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments, run one command, turn errors into exit codes."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    chosen = chosen_command(args_list)
    found = plugins()
    if chosen in found:
        # Global options before a plugin command are passed on to it (e.g. --config for demo).
        split = args_list.index(chosen)
        command: Callable[[list[str]], int] = found[chosen].load()
        return command(args_list[:split] + args_list[split + 1:])
    args = parse(build_parser(chosen), args_list)
    if isinstance(args, int):
        return args
    return guarded(lambda: _dispatch(args))


def guarded(call: Callable[[], int]) -> int:
    """Run ``call`` and turn carlinkd errors into a one-line message and an exit code."""
    try:
        return call()
    except ConfigError as err:
        error_line(f"carlinkd: config error: {err}")
        return EXIT_USAGE
    except CarlinkError as err:
        error_line(f"carlinkd: {err}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "config":
        return _config_check(args.file or args.config)
    cfg = load_config(args.config)
    setup_logging(args.log_level or cfg.daemon.log_level)
    if args.command == "run":
        return asyncio.run(_run(cfg))
    if args.command == "decode":
        return _decode(args)
    if args.command == "obd":
        from .can.obd import cli as obd_cli
        obd_code: int = asyncio.run(obd_cli.run(args, cfg))
        return obd_code
    if args.command == "records":
        from .records import cli as records_cli
        code: int = asyncio.run(records_cli.run(args, cfg))
        return code
    if args.command == "report":
        from .report import cli as report_cli
        report_code: int = asyncio.run(report_cli.run(args, cfg))
        return report_code
    from .voice import cli as voice_cli
    if args.command in voice_cli.COMMANDS:
        voice_code: int = asyncio.run(voice_cli.run(args, cfg))
        return voice_code
    if args.command == "status":
        from .sync.status import status_lines, sync_status
        print(json.dumps(sync_status(cfg), indent=2) if args.json else "\n".join(status_lines(cfg)))
        return EXIT_OK
    if args.command == "doctor":
        from .doctor import report, run_checks
        text, code = report(run_checks(cfg))
        print(text)
        return code
    raise AssertionError(args.command)


def _config_check(path: Path | None) -> int:
    cfg = load_config(path, required=path is not None)
    sys.stdout.write(to_toml(cfg))
    source = path if path is not None else "defaults (no file)"
    print(f"# configuration OK: {source}", file=sys.stderr)
    return EXIT_OK


def _decode(args: argparse.Namespace) -> int:
    from .can.database import load_database
    from .can.logfile import decode_log

    db = load_database(args.dbc)
    try:
        summary = decode_log(db, args.logfile, sys.stdout)
    except BrokenPipeError:  # e.g. piped into `head`
        return EXIT_OK
    print(summary.line(args.logfile), file=sys.stderr)
    return EXIT_OK


async def _run(cfg: Config) -> int:
    from .service import serve

    await serve(cfg, stop_event())
    return EXIT_OK


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM on the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
