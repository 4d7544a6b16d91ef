"""Where the demo DBC lives: installed as package data of ``carlinkd.dbc``, or in the source tree."""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

import cantools
from cantools.database.can import Database

DEMO_DBC_NAME = "carlinkd_demo.dbc"


def demo_dbc_path() -> Path:
    """Path of the demo vehicle DBC (the one source of truth for it)."""
    try:
        installed = importlib.resources.files("carlinkd.dbc") / DEMO_DBC_NAME
        if installed.is_file():
            return Path(str(installed))
    except ImportError:
        pass  # running from a source checkout: carlinkd.dbc only exists once installed
    return Path(__file__).resolve().parent.parent / "dbc" / DEMO_DBC_NAME


@functools.lru_cache(maxsize=1)
def load_demo_dbc() -> Database:
    """The demo DBC, loaded strictly once per process."""
    return load_can_dbc(demo_dbc_path())


def load_can_dbc(path: str | Path) -> Database:
    """Load a CAN database strictly; ``ValueError`` if the file holds another kind (e.g. diagnostics)."""
    db = cantools.database.load_file(str(path), strict=True)
    if isinstance(db, Database):
        return db
    raise ValueError(f"{path} is not a CAN database")
