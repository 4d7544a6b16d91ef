"""The ``carlinkd sim`` plugin command: light to import, so ``carlinkd --help`` stays fast."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """the vehicle simulator: scenarios onto socketcand, a python-can bus or a log file"""
    from carlink_sim.cli import main as sim_main

    code: int = sim_main(None if argv is None else list(argv))
    return code
