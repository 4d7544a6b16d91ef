"""``carlinkd report --out FILE.html|FILE.pdf [--since DATE]``: the condition report."""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Config


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not YYYY-MM-DD") from None


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand."""
    rep = subparsers.add_parser("report", help="write a condition report for a buyer "
                                "(HTML or PDF, with the verifiable bundle beside it)")
    rep.add_argument("--out", type=Path, required=True, metavar="FILE.html|FILE.pdf",
                     help="report file; the bundle is written beside it as FILE.bundle.json")
    rep.add_argument("--since", type=_day, metavar="DATE",
                     help="only what happened on or after this day (YYYY-MM-DD)")


async def export_report(cfg: Config, out: Path, since: date | None = None,
                        now: float | None = None) -> list[Path]:
    """Open the store and device key read-write, write the report; the files written."""
    from ..records.history import ServiceHistory
    from ..records.keys import load_device_key
    from ..store.db import Store
    from . import write_report

    state = cfg.daemon.state_dir
    key = load_device_key(cfg.store.key_path(state))
    store = await Store.open(cfg.store.db_path(state), cfg.store, background=False)
    try:
        return await write_report(ServiceHistory(store, key), out, since,
                                  time.time() if now is None else now)
    finally:
        await store.close()


async def run(args: argparse.Namespace, cfg: Config) -> int:
    """Write the report; print where."""
    written = await export_report(cfg, args.out, args.since)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
