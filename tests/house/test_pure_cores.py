"""The pure cores stay pure: no I/O module imported, no clock read, no file opened.

A pure core takes ``now`` (and its inputs) as arguments; the service around it owns the clock,
the sockets and the files. This test reads the source (AST), so it fails the moment somebody adds
``import socket`` or ``time.monotonic()`` to one of them, whatever the tests of the core do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: (file, class or None for the whole module). The speech queue shares tts.py with the espeak-ng
#: process code, so only its class is checked.
PURE_CORES = [
    ("carlinkd/can/decode.py", None),
    ("carlinkd/can/obd/codec.py", None),
    ("carlinkd/can/obd/current_data.py", None),
    ("carlinkd/can/obd/dtc.py", None),
    ("carlinkd/can/obd/reassembly.py", None),
    ("carlinkd/alerts/engine.py", None),
    ("carlinkd/alerts/rules.py", None),
    ("carlinkd/alerts/lifecycle.py", None),
    ("carlinkd/voice/dialog.py", None),
    ("carlinkd/voice/nearest.py", None),
    ("carlinkd/voice/tts.py", "SpeechQueue"),
    ("carlinkd/sync/session.py", None),
    ("carlinkd/sync/consent.py", None),
    ("carlinkd/voice/inbox.py", None),
    ("carlink_protocol/chain.py", None),
    ("carlink_protocol/wire.py", None),
    ("carlink_protocol/geo.py", None),
]

#: Modules that do I/O or read a clock when imported into a core.
IO_MODULES = {"asyncio", "socket", "ssl", "subprocess", "threading", "multiprocessing", "sqlite3",
              "aiosqlite", "websockets", "can", "isotp", "os", "shutil", "io", "time", "urllib",
              "http", "requests", "sounddevice", "dbus_fast", "selectors", "signal", "tempfile"}
#: Calls that read a clock or open a file: (object name, attribute) or (None, function name).
CLOCK_CALLS = {("time", "time"), ("time", "monotonic"), ("time", "perf_counter"),
               ("time", "time_ns"), ("time", "monotonic_ns"), ("datetime", "now"),
               ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
               ("loop", "time"), (None, "open")}


def _target(path: str, cls: str | None) -> ast.AST:
    tree = ast.parse((ROOT / path).read_text(), path)
    if cls is None:
        return tree
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return node
    raise AssertionError(f"{path} has no class {cls}")


def impurities(node: ast.AST) -> list[str]:
    """What in ``node`` imports an I/O module or reads a clock, as 'line N: what' strings."""
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            names = [a.name.split(".")[0] for a in sub.names]
        elif isinstance(sub, ast.ImportFrom) and sub.level == 0 and sub.module:
            names = [sub.module.split(".")[0]]
        else:
            names = []
        found += [f"line {sub.lineno}: imports {n}" for n in names if n in IO_MODULES]
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Attribute):
                owner = func.value
                name = owner.id if isinstance(owner, ast.Name) else (
                    owner.attr if isinstance(owner, ast.Attribute) else None)
                key: tuple[str | None, str] = (name, func.attr)
            elif isinstance(func, ast.Name):
                key = (None, func.id)
            else:
                continue
            if key in CLOCK_CALLS:
                found.append(f"line {sub.lineno}: calls {'.'.join(filter(None, key))}()")
    return found


@pytest.mark.parametrize(("path", "cls"), PURE_CORES,
                         ids=[f"{p}{'::' + c if c else ''}" for p, c in PURE_CORES])
def test_pure_core_does_no_io_and_reads_no_clock(path: str, cls: str | None) -> None:
    assert impurities(_target(path, cls)) == []


def test_the_check_catches_what_it_looks_for() -> None:
    bad = ast.parse("import socket\nfrom time import monotonic\nimport datetime as dt\n"
                    "def f(loop):\n    t = time.monotonic()\n    d = dt.datetime.now()\n"
                    "    open('x')\n    return loop.time()\n")
    assert impurities(bad) == ["line 1: imports socket", "line 2: imports time",
                               "line 5: calls time.monotonic()", "line 6: calls datetime.now()",
                               "line 7: calls open()", "line 8: calls loop.time()"]
