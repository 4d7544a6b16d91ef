"""Lazy subcommands: `carlinkd --help` names every command without importing their modules."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from carlinkd.cli import ALL, LAZY_HELP, build_parser, chosen_command


def test_lazy_help_is_the_full_parsers_help() -> None:
    """The help strings kept in cli.py match what the modules register (no drift)."""
    assert build_parser("").format_help() == build_parser(ALL).format_help()
    for name in LAZY_HELP:
        assert build_parser(name).format_help() == build_parser(ALL).format_help()


@pytest.mark.parametrize(("argv", "command"), [
    (["--help"], ""), ([], ""), (["decode", "x.log"], "decode"),
    (["--config", "c.toml", "--log-level", "info", "obd", "vin"], "obd"),
    (["--config=c.toml", "say", "hi"], "say"), (["--bogus", "say"], ALL),
])
def test_chosen_command(argv: list[str], command: str) -> None:
    assert chosen_command(argv) == command


def test_help_does_not_import_subcommand_modules() -> None:
    code = ("import sys; from carlinkd.cli import main; main(['--help']); "
            "print(sorted(m for m in sys.modules if m.startswith(('carlinkd.voice', "
            "'carlinkd.can.obd', 'cantools', 'hassil', 'sim'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # The configuration needs the voice and OBD settings: light modules in light packages.
    allowed = {"carlinkd.voice", "carlinkd.voice.settings", "carlinkd.can.obd",
               "carlinkd.can.obd.settings"}
    loaded = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert sorted(set(loaded) - allowed) == []
