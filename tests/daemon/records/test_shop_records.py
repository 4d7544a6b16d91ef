"""Shop co-signed service records, odometer evidence and rollbacks, each problem by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carlink_protocol import shopsig
from carlink_protocol.audit import ROLLBACK, audit
from carlink_protocol.chain import ServiceRecord, make_entry, sign_head, verify
from carlinkd.records.history import REGISTRY_META_KEY, ServiceHistory, verify_bundle
from carlinkd.store.db import Store

T0 = 1_700_000_000
REGISTRY = Ed25519PrivateKey.generate()
SHOP_KEY = Ed25519PrivateKey.generate()
CERT = shopsig.make_cert(REGISTRY, "Demo Garage", 1, SHOP_KEY.public_key(), "2024-01-01")


def oil(km: int, day: str = "2024-03-01", shop: str = "Demo Garage") -> ServiceRecord:
    return ServiceRecord(day, km, shop, ("oil",), ("oil filter",))


def shop_signed(record: ServiceRecord, key: Ed25519PrivateKey = SHOP_KEY,
                cert: dict[str, Any] = CERT,
                registry: Ed25519PrivateKey = REGISTRY) -> dict[str, Any]:
    return {"shop_sig": shopsig.sign_record(key, cert, registry.public_key(), record.to_json(),
                                            7, "car1")}


@pytest.fixture
async def history(tmp_path: Path) -> Any:
    store = await Store.open(tmp_path / "carlinkd.db", background=False)
    await store.set_meta(REGISTRY_META_KEY, shopsig._hex(REGISTRY.public_key()))
    yield ServiceHistory(store, Ed25519PrivateKey.generate())
    await store.close()


async def test_shop_signed_entry_verifies_and_unsigned_is_owner_entered(
        history: ServiceHistory) -> None:
    await history.add(oil(30_000), T0, shop_signed(oil(30_000)))
    await history.add(oil(35_000, "2024-09-01", "Me"), T0 + 1)
    report = await history.verify()
    assert report.clean, report.line()
    entries = await history.entries()
    labels = audit(entries, REGISTRY.public_key()).labels
    assert labels[1].status == shopsig.SHOP_SIGNED and labels[1].shop == "Demo Garage"
    assert labels[2].status == shopsig.OWNER_ENTERED
    assert "owner-entered" in labels[2].label()


def chain_of(device: Ed25519PrivateKey,
             parts: list[tuple[ServiceRecord | None, Any]]) -> list[Any]:
    entries: list[Any] = []
    for n, (rec, extra) in enumerate(parts):
        entries.append(make_entry(entries[-1] if entries else None, rec, T0 + n, device, extra))
    return entries


def test_tampered_shop_signature_is_named() -> None:
    device = Ed25519PrivateKey.generate()
    signed = shop_signed(oil(30_000))
    # The owner (who holds the device key) raises the odometer figure the shop signed.
    entries = chain_of(device, [(oil(31_000), signed)])
    head = sign_head({"count": 1, "last": entries[-1].hash}, device)
    report = verify(entries, device.public_key(), head)
    assert report.ok  # the device chain itself is intact...
    report.findings = audit(entries, REGISTRY.public_key()).findings
    assert report.names() == [shopsig.BAD_SHOP_SIGNATURE]  # ...but the shop's is not
    assert "Demo Garage" in report.line() and not report.clean


def test_forged_shop_key_is_named() -> None:
    device = Ed25519PrivateKey.generate()
    fake_registry, fake_shop = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    fake_cert = shopsig.make_cert(fake_registry, "Demo Garage", 1, fake_shop.public_key(),
                                  "2024-01-01")
    uncertified = dict(CERT, public_key=shopsig._hex(fake_shop.public_key()))
    entries = chain_of(device, [
        (oil(30_000), shop_signed(oil(30_000), fake_shop, fake_cert, fake_registry)),
        (oil(40_000), shop_signed(oil(40_000), fake_shop, uncertified)),
        (oil(50_000, shop="Other Shop"), shop_signed(oil(50_000, shop="Other Shop")))])
    found = audit(entries, REGISTRY.public_key()).findings
    assert [k for k, _ in found] == [shopsig.FORGED_SHOP_KEY] * 3
    assert "not the trusted registry key" in found[0][1]
    assert "not signed by the registry key" in found[1][1]
    assert "'Other Shop' but the key belongs to 'Demo Garage'" in found[2][1]


def test_odometer_rollback_is_named_with_both_readings() -> None:
    device = Ed25519PrivateKey.generate()
    odo = [{"odometer": {"km": km, "source": "dbc", "date": f"2024-0{n + 1}-01"}}
           for n, km in enumerate((10_000, 12_000, 14_000))]
    entries = chain_of(device, [(None, odo[0]), (None, odo[1]), (oil(11_000), None),
                                (None, odo[2]),
                                (None, {"odometer": {"km": 9_000, "source": "obd",
                                                     "date": "2024-05-01"}})])
    found = audit(entries, None).findings
    assert [k for k, _ in found] == [ROLLBACK, ROLLBACK]
    assert "record #3 (2024-03-01, owner) reads 11000 km after record #2" in found[0][1]
    assert "record #5 (2024-05-01, obd) reads 9000 km after record #4" in found[1][1]


def test_reordered_entry_is_named() -> None:
    device = Ed25519PrivateKey.generate()
    entries = chain_of(device, [(oil(10_000), None), (oil(20_000), shop_signed(oil(20_000))),
                                (oil(30_000), None)])
    swapped = [entries[0], entries[2], entries[1]]
    report = verify(swapped, device.public_key(), None)
    assert not report.ok and report.kind == "reordered" and report.position == 2


async def test_bundle_checks_shop_keys_against_a_trusted_registry(
        history: ServiceHistory, tmp_path: Path) -> None:
    await history.add(oil(30_000), T0, shop_signed(oil(30_000)))
    bundle = await history.export("WDB1234567890ABCD", now=T0 + 5)
    assert verify_bundle(bundle).clean
    trusted = shopsig.fingerprint(REGISTRY.public_key())
    assert verify_bundle(bundle, registry_key=trusted).clean
    other = shopsig.fingerprint(Ed25519PrivateKey.generate().public_key())
    report = verify_bundle(json.loads(json.dumps(bundle)), registry_key=other)
    assert report.ok and report.names() == [shopsig.FORGED_SHOP_KEY]
    assert other in report.findings[0][1]


async def test_cli_names_findings_and_lists_evidence(history: ServiceHistory, tmp_path: Path,
                                                     capsys: Any) -> None:
    import argparse

    from carlinkd.config import Config
    from carlinkd.records import cli as records_cli

    await history.add(oil(30_000), T0, shop_signed(oil(30_000)))
    await history.add(None, T0 + 1, {"odometer": {"km": 12_000, "source": "obd",
                                                  "date": "2024-03-02"}})
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps(await history.export("VIN9", now=T0 + 2)))
    args = argparse.Namespace(records_command="verify", bundle=bundle, expect_key=None,
                              registry_key=None)
    assert await records_cli.run(args, Config()) == records_cli.EXIT_INVALID
    out = capsys.readouterr().out
    assert "WARNING: chain of 2 entr(ies) intact, but odometer-rollback: record #2" in out
    records_cli._list(await history.entries(), history, False)
    listed = capsys.readouterr().out.splitlines()
    assert listed[1].endswith("Demo Garage: oil  [shop-signed]")
    assert listed[2] == "#2   2024-03-02     12000 km  odometer (obd)"
