"""``carlink-cloud ...``: run and administer the reference backend.

Also reachable as ``carlinkd cloud ...`` (the daemon's CLI finds this command through the
``carlinkd.commands`` entry point; it imports nothing of this package) and ``python -m
carlink_cloud``. Errors are :class:`~carlink_protocol.errors.CarlinkError` subclasses, printed as
one line; exit codes 0 success, 1 failure, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from carlink_protocol.cmdline import error_line, parse
from carlink_protocol.errors import CarlinkError

from .errors import CloudError

DEFAULT_CLOUD_DB = Path("carlinkd-cloud.db")
DEFAULT_PORT = 8765


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"must be a positive number of days, not {text!r}")
    return value


def build_parser(prog: str = "carlink-cloud") -> argparse.ArgumentParser:
    """The backend's argument parser with every action."""
    cloud = argparse.ArgumentParser(prog=prog, description="the reference cloud backend "
                                    "(docs/protocol.md)")
    cloud.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                       default="info")
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
    srv.add_argument("--retention-days", type=_positive, default=7.0,
                     help="keep upstream, status and help rows this long (default 7)")
    dev = sub.add_parser("add-device", parents=[db], help="enroll a car; prints its token once")
    dev.add_argument("name")
    dev.add_argument("--model", default="")
    dev.add_argument("--region", default="")
    dev.add_argument("--record-key", metavar="FINGERPRINT",
                     help="the key the car signs its service history with: the fingerprint "
                     "`carlinkd records list` prints on the car (uploads signed by any other "
                     "key are refused; without one, service records are refused)")
    rkey = sub.add_parser("set-record-key", parents=[db],
                          help="enrol (or replace) a car's service-record key")
    rkey.add_argument("name")
    rkey.add_argument("fingerprint", help="as `carlinkd records list` prints it, or the raw "
                      "public key in hex")
    rev = sub.add_parser("revoke-device", parents=[db], help="refuse a car's token from now on "
                         "(a running server closes its connection within a second)")
    rev.add_argument("name")
    grp = sub.add_parser("add-group", parents=[db],
                         help="create a group for a car model and region")
    grp.add_argument("name")
    grp.add_argument("--model", default="", help="car model ('' = any)")
    grp.add_argument("--region", default="", help="region ('' = any)")
    grp.add_argument("--member", action="append", default=[], help="device to add (repeatable)")
    policy = grp.add_mutually_exclusive_group()
    policy.add_argument("--invite", dest="policy", action="store_const", const="invite",
                        help="joining needs an invitation or the owner's approval (default)")
    policy.add_argument("--open", dest="policy", action="store_const", const="open",
                        help="an open circle: any car of the model and region may join")
    grp.set_defaults(policy="invite")
    grp.add_argument("--owner", help="device that approves join requests")
    inv = sub.add_parser("invite", parents=[db], help="invite a car into a group")
    inv.add_argument("group")
    inv.add_argument("device")
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
    shop.add_argument("--address", default="", help="street address (said in reminders)")
    pki = sub.add_parser("dev-certs", help="write a development CA, server and car certificates"
                         " (PEM) for trying wss:// and --client-ca")
    pki.add_argument("directory", type=Path)
    pki.add_argument("--host", action="append", default=[],
                     help="server name or IP (repeatable; default 127.0.0.1 and localhost)")
    pki.add_argument("--device", action="append", default=[],
                     help="device name to issue a client certificate for (repeatable)")
    sub.add_parser("status", parents=[db], help="backend counts as JSON")
    done = sub.add_parser("complete-booking", parents=[db], help="a shop finished a booking: "
                          "send the car a service record signed by the shop")
    done.add_argument("booking_id", type=int, metavar="ID")
    done.add_argument("--work", required=True, help="what was done, e.g. 'oil change' "
                      "(comma-separated for several items)")
    done.add_argument("--odometer", type=int, required=True, help="odometer in whole km")
    done.add_argument("--parts", action="append", default=[], help="part fitted (repeatable)")
    done.add_argument("--cost", help="amount, e.g. 89.00")
    done.add_argument("--currency", help="e.g. EUR")
    sub.add_parser("registry-key", parents=[db], help="the key that certifies shop keys: "
                   "its fingerprint, for checking a car's service history")
    return cloud


def main(argv: Sequence[str] | None = None) -> int:
    """the reference cloud backend: serve, enrol and revoke cars, groups, shops, dev certificates"""
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run(args))
    except CarlinkError as err:
        error_line(f"carlink-cloud: {err}")
        return 1
    except KeyboardInterrupt:
        return 0


async def run(args: argparse.Namespace) -> int:
    """Execute a parsed command; returns the exit code."""
    action = args.cloud_command
    if action == "serve":
        return await _serve(args)
    if action == "dev-certs":
        from .devpki import dev_pki

        written = dev_pki(args.directory, args.host or ("127.0.0.1", "localhost"), args.device)
        for name, path in written.items():
            print(f"{name}: {path}")
        return 0
    from .store import CloudStore

    store = CloudStore(args.db)
    try:
        if action == "add-device":
            print(store.add_device(args.name, args.model, args.region, args.record_key))
        elif action == "set-record-key":
            store.set_record_key(args.name, args.fingerprint)
        elif action == "revoke-device":
            store.revoke_device(args.name)
        elif action == "add-group":
            store.add_group(args.name, args.model, args.region, args.member, args.policy,
                            args.owner)
        elif action == "invite":
            print(store.invite(args.group, args.device, time.time()))
        elif action == "add-shop":
            store.add_shop(args.name, args.lat, args.lon, args.days, args.opens, args.closes,
                           args.slot_minutes, args.capacity, args.service, args.address)
        elif action == "status":
            print(json.dumps(store.summary(), indent=2))
        elif action in ("complete-booking", "registry-key"):
            _shop_action(store, args)
        else:
            raise AssertionError(action)
    finally:
        store.close()
    return 0


def _shop_action(store: Any, args: argparse.Namespace) -> None:
    from . import shopkeys

    if args.cloud_command == "registry-key":
        fpr, hexkey = shopkeys.registry_fingerprint(store)
        print(f"registry key {fpr}\n{hexkey}")
        return
    offer = shopkeys.complete_booking(store, args.booking_id, args.work, args.odometer,
                                      args.parts, args.cost, args.currency)
    print(f"booking {args.booking_id} completed at {offer['shop']}: "
          f"{', '.join(offer['record']['items'])} at {args.odometer} km; "
          "offer queued for the car")


async def _serve(args: argparse.Namespace) -> int:
    from .server import CloudServer

    server = CloudServer(args.db, args.host, args.port, tls_cert=args.tls_cert,
                         tls_key=args.tls_key, client_ca=args.client_ca,
                         max_connections=args.max_connections,
                         retention_s=args.retention_days * 86400.0)
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
