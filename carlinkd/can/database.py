"""Loading CAN databases (DBC, KCD, SYM, ARXML) with a lenient fallback for real-world files."""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cantools

from ..errors import DatabaseLoadError

log = logging.getLogger(__name__)

DEMO_DBC_NAME = "carlinkd_demo.dbc"


def demo_dbc_path() -> Path:
    """Path of the demo vehicle's DBC, installed as package data of ``carlinkd.dbc``."""
    try:
        resource = importlib.resources.files("carlinkd.dbc") / DEMO_DBC_NAME
        if resource.is_file():
            return Path(str(resource))
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "dbc" / DEMO_DBC_NAME


#: The largest DBC file loaded. Real vehicles' databases are far smaller (the largest in
#: ../shared/data/realworld is 124 KiB; big multi-bus opendbc files stay under 2 MiB).
MAX_DBC_BYTES = 8 * 2**20


def load_database(paths: Iterable[Path], strict: bool = True) -> Any:
    """Load one or more database files into one cantools database.

    A file that fails strict loading is retried with ``strict=False`` and a warning, since
    many real-world DBCs have overlapping signals or out-of-range values that cantools'
    strict mode rejects. A file that fails both ways raises DatabaseLoadError naming it.
    """
    files = [Path(p) for p in paths] or [demo_dbc_path()]
    db = cantools.database.Database(strict=False)
    for path in files:
        _add_file(db, path, strict)
    db.refresh()
    return db


def _add_file(db: Any, path: Path, strict: bool) -> None:
    if not path.is_file():
        raise DatabaseLoadError(f"{path}: no such CAN database file")
    size = path.stat().st_size
    if size > MAX_DBC_BYTES:
        # cantools needs ~90 bytes of memory per byte of DBC and tens of seconds for such a file
        # (15 MB: 33 s and 1.36 GB before it failed); no vehicle's database is that large.
        raise DatabaseLoadError(f"{path}: {size / 2**20:.1f} MiB is larger than a CAN database "
                                f"can be ({MAX_DBC_BYTES // 2**20} MiB); refusing to load it")
    try:
        single = cantools.database.load_file(str(path), strict=strict)
    except Exception as err:  # cantools raises ParseError, UnsupportedDatabaseFormatError, ...
        if not strict:
            raise DatabaseLoadError(f"{path}: cannot load: {_first_line(err)}") from err
        try:
            single = cantools.database.load_file(str(path), strict=False)
        except Exception as err2:
            raise DatabaseLoadError(f"{path}: cannot load: {_first_line(err2)}") from err2
        log.warning("%s: loaded leniently (strict load failed: %s)", path, _first_line(err))
    if not isinstance(single, cantools.database.can.Database):
        raise DatabaseLoadError(f"{path}: not a CAN database (diagnostics databases are not used)")
    known = {(m.frame_id, m.is_extended_frame) for m in db.messages}
    for message in single.messages:
        if (message.frame_id, message.is_extended_frame) in known:
            log.warning("%s: message %s (0x%X) already defined by an earlier file; ignored",
                        path, message.name, message.frame_id)
            continue
        db.messages.append(message)
    log.debug("%s: %d messages", path, len(single.messages))


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
