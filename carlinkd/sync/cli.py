"""``carlinkd cloud ...``: run and administer the reference backend; sync status for the car.

Wiring (in carlinkd.cli): ``register(sub)`` in ``build_parser`` and, in ``_dispatch``,
``if args.command == "cloud": return asyncio.run(sync_cli.run(args, cfg))``; ``python -m
sim.cloud ...`` goes through the same ``carlinkd.cli.main``. Errors are
:class:`~carlinkd.errors.CarlinkError` subclasses with one-line messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CloudError

if TYPE_CHECKING:
    from ..config import Config

DEFAULT_CLOUD_DB = Path("carlinkd-cloud.db")
DEFAULT_PORT = 8765


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``cloud`` command and its actions to the main parser's subparsers."""
    cloud: argparse.ArgumentParser = subparsers.add_parser(
        "cloud", help="reference cloud backend and sync status")
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", type=Path, default=DEFAULT_CLOUD_DB,
                    help=f"backend database (default ./{DEFAULT_CLOUD_DB})")
    sub = cloud.add_subparsers(dest="cloud_command", required=True, metavar="ACTION")
    srv = sub.add_parser("serve", parents=[db],
                         help="run the backend (WebSocket, docs/protocol.md)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=DEFAULT_PORT)
    srv.add_argument("--tls-cert", type=Path, help="server certificate (PEM): serve wss://")
    srv.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    srv.add_argument("--client-ca", type=Path,
                     help="require client certificates from this CA (subject CN = device name)")
    srv.add_argument("--max-connections", type=int, default=1000)
    dev = sub.add_parser("add-device", parents=[db], help="enroll a car; prints its token once")
    dev.add_argument("name")
    dev.add_argument("--model", default="")
    dev.add_argument("--region", default="")
    rev = sub.add_parser("revoke-device", parents=[db], help="refuse a car's token from now on")
    rev.add_argument("name")
    grp = sub.add_parser("add-group", parents=[db],
                         help="create a group for a car model and region")
    grp.add_argument("name")
    grp.add_argument("--model", default="", help="car model ('' = any)")
    grp.add_argument("--region", default="", help="region ('' = any)")
    grp.add_argument("--member", action="append", default=[], help="device to add (repeatable)")
    shop = sub.add_parser("add-shop", parents=[db], help="register a service shop")
    shop.add_argument("name")
    shop.add_argument("--lat", type=float, required=True)
    shop.add_argument("--lon", type=float, required=True)
    shop.add_argument("--days", default="mon-fri", help="e.g. mon-fri, mon,wed,sat, daily")
    shop.add_argument("--opens", default="08:00")
    shop.add_argument("--closes", default="18:00")
    shop.add_argument("--slot-minutes", type=int, default=60)
    shop.add_argument("--capacity", type=int, default=2, help="bookings per slot")
    shop.add_argument("--service", action="append", default=[], help="offered (default: all)")
    pki = sub.add_parser("dev-certs", help="write a development CA, server and car certificates"
                         " (PEM) for trying wss:// and --client-ca")
    pki.add_argument("directory", type=Path)
    pki.add_argument("--host", action="append", default=[],
                     help="server name or IP (repeatable; default 127.0.0.1 and localhost)")
    pki.add_argument("--device", action="append", default=[],
                     help="device name to issue a client certificate for (repeatable)")
    sub.add_parser("status", parents=[db], help="backend counts as JSON")
    sub.add_parser("outbox", help="this car's outbox depth, oldest age and inbound cursor")
    return cloud


async def run(args: argparse.Namespace, cfg: Config) -> int:
    """Execute a parsed ``cloud`` command; returns the exit code."""
    action = args.cloud_command
    if action == "serve":
        return await _serve(args)
    if action == "outbox":
        print(json.dumps(sync_status(cfg), indent=2))
        return 0
    if action == "dev-certs":
        from sim.cloud.devpki import dev_pki

        written = dev_pki(args.directory, args.host or ("127.0.0.1", "localhost"), args.device)
        for name, path in written.items():
            print(f"{name}: {path}")
        return 0
    from sim.cloud.store import CloudStore

    store = CloudStore(args.db)
    try:
        if action == "add-device":
            print(store.add_device(args.name, args.model, args.region))
        elif action == "revoke-device":
            store.revoke_device(args.name)
        elif action == "add-group":
            store.add_group(args.name, args.model, args.region, args.member)
        elif action == "add-shop":
            store.add_shop(args.name, args.lat, args.lon, args.days, args.opens, args.closes,
                           args.slot_minutes, args.capacity, args.service)
        elif action == "status":
            print(json.dumps(store.summary(), indent=2))
        else:
            raise AssertionError(action)
    finally:
        store.close()
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from sim.cloud.server import CloudServer

    server = CloudServer(args.db, args.host, args.port, tls_cert=args.tls_cert,
                         tls_key=args.tls_key, client_ca=args.client_ca,
                         max_connections=args.max_connections)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except OSError as err:
        await server.stop()
        raise CloudError(f"cannot listen on {args.host}:{args.port}: {err.strerror}") from err
    print(f"listening on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


def sync_status(cfg: Config) -> dict[str, Any]:
    """Outbox depth and oldest age per class and the inbound cursor, read from the sync
    database without the daemon (for ``carlinkd status``)."""
    path = cfg.sync.db_path(cfg.daemon.state_dir)
    out: dict[str, Any] = {"url": cfg.sync.url or "(offline: sync.url not set)", "db": str(path)}
    if not path.exists():
        out["outbox"] = {}
        return out
    now = time.time()
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT class, COUNT(*), SUM(size), MIN(created) FROM "
                                "sync_outbox GROUP BY class").fetchall()
            cursor = conn.execute("SELECT epoch, seq FROM sync_cursor").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise CloudError(f"cannot read sync database {path}: {err}") from err
    out["outbox"] = {r[0]: {"items": r[1], "bytes": r[2], "oldest_age_s": round(now - r[3], 1)}
                     for r in rows}
    out["inbound_cursor"] = cursor[1] if cursor else 0
    return out


def status_lines(cfg: Config) -> list[str]:
    """Human-readable lines for ``carlinkd status``."""
    st = sync_status(cfg)
    lines = [f"cloud: {st['url']}"]
    if not st["outbox"]:
        lines.append("outbox: empty")
    for cls, row in sorted(st["outbox"].items()):
        lines.append(f"outbox {cls}: {row['items']} items, {row['bytes']} bytes, "
                     f"oldest {row['oldest_age_s']} s")
    if "inbound_cursor" in st:
        lines.append(f"inbound cursor: {st['inbound_cursor']}")
    return lines
