"""``carlink-demo`` / ``carlinkd demo``: parse the options, load the car configuration, run."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

from carlink_protocol.cmdline import parse
from carlinkd.cli import EXIT_USAGE, error_line, guarded
from carlinkd.config import load_config
from carlinkd.logutil import setup_logging

from .args import DemoUsageError, add_arguments, check


def build_parser(prog: str = "carlinkd demo") -> argparse.ArgumentParser:
    """The demo's argument parser (the car-side --config and --log-level included)."""
    parser = argparse.ArgumentParser(prog=prog, description="simulated cars, their daemons "
                                     "and the reference backend, with a live view")
    parser.add_argument("--config", type=Path, help="TOML configuration for every car")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        default="warning", help="the live view is the output; log warnings only "
                        "by default")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """simulated cars, their daemons and the backend together, with a live view and voice"""
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        steps = check(args)
    except DemoUsageError as err:
        error_line(f"carlinkd demo: error: {err}")
        return EXIT_USAGE

    def run() -> int:
        from .run import run_demo

        cfg = load_config(args.config)
        setup_logging(args.log_level)
        return asyncio.run(run_demo(cfg, args, steps))

    return guarded(run)
