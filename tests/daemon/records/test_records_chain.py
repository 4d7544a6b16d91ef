"""Service history: hash chain, signatures, tamper detection, bundles, device key, CLI."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carlinkd.config import Config
from carlinkd.settings import DaemonConfig
from carlinkd.errors import BundleError, DeviceKeyError, RecordsError
from carlinkd.records import cli as records_cli
from carlink_protocol.chain import ServiceRecord, canonical, make_entry, sign_head, verify
from carlinkd.records.history import ServiceHistory, verify_bundle
from carlinkd.records.keys import load_device_key, load_or_create_device_key
from carlinkd.store.db import Store
from support.db import tamper


def record(n: int) -> ServiceRecord:
    return ServiceRecord(f"2024-0{n}-15", 40_000 + 5_000 * n, "Garage Müller", ("oil",),
                         ("oil filter", "5W-30 4.5 l"), f"{100 + n}.90", "EUR", f"visit {n}")


@pytest.fixture
async def history(tmp_path: Path) -> Any:
    key = load_or_create_device_key(tmp_path / "device-key.pem")
    store = await Store.open(tmp_path / "carlinkd.db", background=False)
    hist = ServiceHistory(store, key)
    for n in range(1, 6):
        await hist.add(record(n), now=1_700_000_000 + n)
    yield hist
    await store.close()


async def test_intact_chain_verifies(history: ServiceHistory) -> None:
    report = await history.verify()
    assert report.ok and report.count == 5, report.problem
    assert [e.seq for e in await history.entries()] == [1, 2, 3, 4, 5]
    assert report.signer == history.fingerprint


async def test_edited_record_is_named(history: ServiceHistory) -> None:
    row = (await history.store.service_rows())[2]
    body = json.loads(row.body)
    body["record"]["odometer_km"] -= 20_000  # roll back the odometer
    tamper(history.store.path, f"UPDATE service_records SET body = '{canonical(body).decode()}' "
           f"WHERE pos = {row.pos}")
    report = await history.verify()
    assert not report.ok and report.kind == "edited" and report.position == 3
    assert "record #3" in report.problem and "does not match its hash" in report.problem


async def test_edited_and_rehashed_record_fails_its_signature(history: ServiceHistory) -> None:
    from carlink_protocol.chain import sha256_hex
    row = (await history.store.service_rows())[1]
    body = json.loads(row.body)
    body["record"]["shop"] = "Dealer"
    tamper(history.store.path, f"UPDATE service_records SET body = '{canonical(body).decode()}', "
           f"hash = '{sha256_hex(canonical(body))}' WHERE pos = {row.pos}")
    report = await history.verify()
    assert (report.kind, report.position) == ("edited", 2)
    assert "signature does not match" in report.problem


async def test_deleted_record_is_named(history: ServiceHistory) -> None:
    tamper(history.store.path, "DELETE FROM service_records WHERE pos = 2")
    report = await history.verify()
    assert (report.kind, report.position) == ("deleted", 2)
    assert "record #2 before it is missing" in report.problem


async def test_deleted_last_record_is_caught_by_the_signed_head(history: ServiceHistory) -> None:
    tamper(history.store.path, "DELETE FROM service_records WHERE pos = 5")
    report = await history.verify()
    assert not report.ok and report.kind == "deleted" and "record #5 onward deleted" in report.problem


async def test_inserted_record_is_named(history: ServiceHistory) -> None:
    rows = await history.store.service_rows()
    forger = Ed25519PrivateKey.generate()
    prev = (await history.entries())[1]
    fake = make_entry(prev, record(9), 1_700_000_100, forger)  # claims to be #3
    tamper(history.store.path,
           "UPDATE service_records SET pos = pos + 100 WHERE pos >= 3",
           "INSERT INTO service_records (pos, body, hash, signature, key_id, stored_at) VALUES "
           f"(3, '{canonical(fake.body).decode()}', '{fake.hash}', '{fake.signature}', "
           f"'{fake.key_id}', 0)")
    assert len(await history.store.service_rows()) == len(rows) + 1
    report = await history.verify()
    assert (report.kind, report.position) == ("inserted", 3)


async def test_reordered_records_are_named(history: ServiceHistory) -> None:
    tamper(history.store.path, "UPDATE service_records SET pos = 99 WHERE pos = 3",
           "UPDATE service_records SET pos = 3 WHERE pos = 4",
           "UPDATE service_records SET pos = 4 WHERE pos = 99")
    report = await history.verify()
    assert (report.kind, report.position) == ("reordered", 3)
    assert "record #4" in report.problem and "where record #3 belongs" in report.problem


async def test_history_re_signed_with_another_key_fails(history: ServiceHistory,
                                                        tmp_path: Path) -> None:
    other = Ed25519PrivateKey.generate()
    entries, prev = [], None
    for e in await history.entries():
        prev = make_entry(prev, e.record, e.body["recorded_at"], other)
        entries.append(prev)
    head = sign_head({"count": 5, "last": entries[-1].hash}, other)
    report = verify(entries, history.public, head)
    assert (report.kind, report.position) == ("wrong-key", 1)
    assert "signed with another key" in report.problem
    # in a bundle the forger also swaps the public key: --expect-key catches it
    bundle = await history.export(vin="WVWZZZ1JZXW000001", now=1_700_000_000)
    bundle["public_key"] = other.public_key().public_bytes_raw().hex()
    bundle["entries"] = [e.to_json() for e in entries]
    fields = {k: v for k, v in bundle["head"].items() if k != "signature"}
    bundle["head"] = sign_head({**fields, "count": 5, "last": entries[-1].hash}, other)
    assert verify_bundle(bundle).ok  # self-consistent: only the trusted fingerprint tells
    forged = verify_bundle(bundle, expect_key=history.fingerprint)
    assert forged.kind == "wrong-key" and "not the expected" in forged.problem


async def test_add_refuses_to_extend_a_broken_chain(history: ServiceHistory) -> None:
    tamper(history.store.path, "DELETE FROM service_records WHERE pos = 2")
    with pytest.raises(RecordsError, match="does not verify"):
        await history.add(record(6))


async def test_bundle_round_trip_and_tampering(history: ServiceHistory, tmp_path: Path) -> None:
    bundle = await history.export(vin="WVWZZZ1JZXW000001", now=1_700_000_000)
    assert bundle["vin"] == "WVWZZZ1JZXW000001" and len(bundle["entries"]) == 5
    ok = verify_bundle(json.loads(json.dumps(bundle)), expect_key=history.fingerprint)
    assert ok.ok and ok.head["vin"] == "WVWZZZ1JZXW000001"
    edited = json.loads(json.dumps(bundle))
    edited["entries"][3]["body"]["record"]["cost"] = "9.90"
    bad = verify_bundle(edited)
    assert (bad.kind, bad.position) == ("edited", 4)
    cut = json.loads(json.dumps(bundle))
    del cut["entries"][-1]
    assert verify_bundle(cut).kind == "deleted"
    revin = json.loads(json.dumps(bundle))
    revin["vin"] = "OTHERVIN000000000"
    assert "VIN" in verify_bundle(revin).problem
    with pytest.raises(BundleError):
        verify_bundle({"format": "carlinkd-service-history", "entries": "nope"})


def test_device_key_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "device-key.pem"
    key = load_or_create_device_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = load_or_create_device_key(path)
    assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    path.chmod(0o644)
    load_device_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened
    with pytest.raises(DeviceKeyError, match="not found"):
        load_device_key(tmp_path / "missing.pem")


def test_record_validation() -> None:
    with pytest.raises(RecordsError, match="YYYY-MM-DD"):
        ServiceRecord("15.01.2024", 1, "x", ("oil",))
    with pytest.raises(RecordsError, match="item"):
        ServiceRecord("2024-01-15", 1, "x", ("Oil Change",))
    with pytest.raises(RecordsError, match="cost"):
        ServiceRecord("2024-01-15", 1, "x", ("oil",), cost="12,50")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="carlinkd")
    records_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


async def test_cli_add_list_verify_export_and_verify_bundle(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = Config(daemon=DaemonConfig(state_dir=tmp_path / "state"))
    for n in (1, 2):
        args = parse(["records", "add", "--date", f"2024-0{n}-01", "--odometer", str(1000 * n),
                      "--shop", "ATU", "--item", "oil", "--item", "tire_rotation",
                      "--part", "filter", "--cost", "89.90", "--currency", "EUR"])
        assert await records_cli.run(args, cfg) == 0
    assert await records_cli.run(parse(["records", "list"]), cfg) == 0
    assert await records_cli.run(parse(["records", "verify"]), cfg) == 0
    bundle = tmp_path / "history.json"
    args = parse(["records", "export", str(bundle), "--vin", "WVWZZZ1JZXW000001"])
    assert await records_cli.run(args, cfg) == 0
    out = capsys.readouterr().out
    assert "#2" in out and "2024-02-01" in out and "OK: 2 service record(s)" in out
    fpr = out.split("device key ")[1].splitlines()[0]
    assert await records_cli.run(parse(["records", "verify", str(bundle), "--expect-key", fpr]),
                                 cfg) == 0
    data = json.loads(bundle.read_text())
    data["entries"][0]["body"]["record"]["odometer_km"] = 5
    bundle.write_text(json.dumps(data))
    assert await records_cli.run(parse(["records", "verify", str(bundle)]), cfg) == 1
    assert "INVALID: record #1" in capsys.readouterr().out
