"""``carlinkd records add|list|verify|export``: the service history from the command line.

Wiring (in carlinkd.cli): ``register(sub)`` in ``build_parser`` and, in ``_dispatch``,
``if args.command == "records": return asyncio.run(records_cli.run(args, cfg))``.
Exit codes: 0 OK, 1 history does not verify (one line on stdout says which record and why);
errors are raised as CarlinkError subclasses with one-line messages.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RecordsError
from carlink_protocol.chain import Entry, Report, ServiceRecord

if TYPE_CHECKING:
    from ..config import Config
    from .history import ServiceHistory

EXIT_OK, EXIT_INVALID = 0, 1


def register(subparsers: Any) -> None:
    """Add the ``records`` subcommand tree to an argparse subparsers object."""
    rec = subparsers.add_parser("records", help="tamper-evident service history")
    sub = rec.add_subparsers(dest="records_command", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="append a signed service record")
    add.add_argument("--date", default=None, help="YYYY-MM-DD (default: today)")
    add.add_argument("--odometer", type=int, required=True, help="odometer in whole km")
    add.add_argument("--shop", required=True, help="who did the work")
    add.add_argument("--item", action="append", required=True, dest="items",
                     help="item done (repeatable): oil, tire_rotation, brake_fluid, "
                     "inspection, or your own lowercase_name")
    add.add_argument("--part", action="append", default=[], dest="parts",
                     help="part fitted (repeatable)")
    add.add_argument("--cost", help="amount, e.g. 129.90")
    add.add_argument("--currency", help="e.g. EUR")
    add.add_argument("--notes", default="")
    lst = sub.add_parser("list", help="list the service records")
    lst.add_argument("--json", action="store_true", help="one JSON object per line")
    ver = sub.add_parser("verify", help="verify the local history, or a BUNDLE offline")
    ver.add_argument("bundle", nargs="?", type=Path, help="exported bundle (JSON) to check")
    ver.add_argument("--expect-key", metavar="FINGERPRINT",
                     help="the device key fingerprint the bundle must be signed with")
    ver.add_argument("--registry-key", metavar="FINGERPRINT",
                     help="the shop registry key to check shop signatures with "
                     "(carlink-cloud registry-key prints it)")
    exp = sub.add_parser("export", help="write a bundle a buyer can verify offline")
    exp.add_argument("output", type=Path, help="bundle file to write ('-' for stdout)")
    exp.add_argument("--vin", help="vehicle identification number (default: the one stored)")


async def run(args: argparse.Namespace, cfg: Config) -> int:
    """Run one ``records`` action; return the exit code."""
    action = args.records_command
    if action == "verify" and args.bundle is not None:
        from .history import read_bundle, verify_bundle

        report = verify_bundle(read_bundle(args.bundle), args.expect_key, args.registry_key)
        return _print_report(report, f"{args.bundle}")
    from ..store.db import Store
    from .history import ServiceHistory
    from .keys import load_device_key, load_or_create_device_key

    state = cfg.daemon.state_dir
    key_path = cfg.store.key_path(state)
    key = load_or_create_device_key(key_path) if action == "add" else load_device_key(key_path)
    store = await Store.open(cfg.store.db_path(state), cfg.store, background=False)
    try:
        history = ServiceHistory(store, key)
        if action == "add":
            return await _add(history, args)
        if action == "list":
            return _list(await history.entries(), history, args.json)
        if action == "verify":
            registry = args.registry_key and public_key_arg(args.registry_key)
            return _print_report(await history.verify(registry or None), str(store.path))
        if action == "export":
            return await _export(history, args)
    finally:
        await store.close()
    raise AssertionError(action)


async def _add(history: ServiceHistory, args: argparse.Namespace) -> int:
    record = ServiceRecord(args.date or date.today().isoformat(), args.odometer, args.shop,
                           tuple(args.items), tuple(args.parts), args.cost, args.currency,
                           args.notes)
    entry = await history.add(record)
    print(f"added record #{entry.seq} ({record.date}, {record.odometer_km} km): "
          f"hash {entry.hash[:16]}...")
    return EXIT_OK


def _list(entries: list[Entry], history: ServiceHistory, as_json: bool) -> int:
    if as_json:
        for e in entries:
            print(json.dumps({**e.body, "hash": e.hash}, ensure_ascii=False))
        return EXIT_OK
    print(f"device key {history.fingerprint}")
    for e in entries:
        if e.kind in ("odometer", "dtc"):
            ev = e.body[e.kind]
            what = (f"{ev.get('km', '?'):>8} km  odometer ({ev.get('source', '?')})"
                    if e.kind == "odometer" else
                    f"DTC {ev.get('code', '?')} {ev.get('event', '?')} "
                    f"{ev.get('description', '')}")
            print(f"#{e.seq:<3} {ev.get('date', '?')}  {what}".rstrip())
            continue
        try:
            r = e.record
        except RecordsError as err:
            print(f"#{e.seq:<3} (unreadable: {err})")
            continue
        cost = f"  {r.cost} {r.currency or ''}".rstrip() if r.cost else ""
        who = "  [shop-signed]" if "shop_sig" in e.body else "  [owner-entered]"
        print(f"#{e.seq:<3} {r.date}  {r.odometer_km:>8} km  {r.shop}: {', '.join(r.items)}"
              f"{cost}{who}")
    if not entries:
        print("(no service records)")
    return EXIT_OK


async def _export(history: ServiceHistory, args: argparse.Namespace) -> int:
    bundle = await history.export(args.vin)
    text = json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"
    if str(args.output) == "-":
        sys.stdout.write(text)
    else:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as err:
            raise RecordsError(f"{args.output}: cannot write: {err.strerror}") from err
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"exported {len(bundle['entries'])} record(s) to {args.output} at {stamp}; "
              f"key {history.fingerprint}", file=sys.stderr)
    return EXIT_OK


def _print_report(report: Report, what: str) -> int:
    print(f"{what}: {report.line()}")
    vin = report.head.get("vin") if report.ok else None
    if vin:
        print(f"VIN {vin}")
    return EXIT_OK if report.clean else EXIT_INVALID


def public_key_arg(text: str) -> Any:
    """A registry key given as 64 hex digits (a fingerprint alone only works on bundles)."""
    from carlink_protocol.shopsig import public_from_hex

    try:
        return public_from_hex(text.replace(" ", ""))
    except ValueError:
        raise RecordsError(f"--registry-key {text!r}: give the key as 64 hex digits") from None
