"""Service history end to end: `carlinkd records add` on the car -> sync outbox -> the reference
backend, which verifies the real chain entries with carlink_protocol.chain (one implementation)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carlinkd.cli import build_parser
from carlinkd.config import Config, build_config
from carlinkd.events import SyncRejected
from carlinkd.records import cli as records_cli
from carlink_protocol.chain import Entry, ServiceRecord, make_entry, raw_public, verify_links
from carlinkd.records.history import ServiceHistory
from carlinkd.records.keys import load_device_key, load_or_create_device_key
from carlinkd.store.db import Store
from carlinkd.sync.records import Chain, upload_items
from carlinkd.sync.service import SyncService
from carlink_cloud import CloudServer, CloudStore
from support.sync_car import eventually, started_car
from support.db import tamper


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[CloudServer, str]]:
    # Enrolled with the key the car (state dir tmp_path/car) signs its history with.
    cfg = build_config([("test", {"daemon": {"state_dir": str(tmp_path / "car")}})])
    key = load_or_create_device_key(cfg.store.key_path(cfg.daemon.state_dir))
    store = CloudStore(tmp_path / "cloud.db")
    token = store.add_device("car-a", record_key=raw_public(key.public_key()).hex())
    store.close()
    async with CloudServer(tmp_path / "cloud.db") as server:
        yield server, token


def car_config(state: Path, server: CloudServer, token: str) -> Config:
    # status_interval_s also paces housekeeping, which picks up new service records.
    return build_config([("test", {"daemon": {"state_dir": str(state)},
                                   "sync": {"url": server.url, "token": token,
                                            "status_interval_s": 0.1,
                                            "backoff_initial_s": 0.05}})])


@contextlib.asynccontextmanager
async def running_car(cfg: Config) -> AsyncIterator[tuple[SyncService, list[SyncRejected]]]:
    async with started_car(cfg, cfg.daemon.state_dir) as car:
        yield car.svc, car.rejected


async def records_add(cfg: Config, *argv: str) -> None:
    """`carlinkd records add ...` exactly as the command line runs it (its own store handle)."""
    args = build_parser().parse_args(["records", "add", *argv])
    assert await records_cli.run(args, cfg) == 0


def record(n: int) -> ServiceRecord:
    return ServiceRecord(f"2024-0{n}-15", 40_000 + 5_000 * n, "Garage Nord", ("oil",),
                         ("oil filter",), f"{100 + n}.90", "EUR", f"visit {n}")


async def local_entries(cfg: Config) -> list[Entry]:
    store = await Store.open(cfg.store.db_path(cfg.daemon.state_dir), background=False)
    try:
        key = load_device_key(cfg.store.key_path(cfg.daemon.state_dir))
        return await ServiceHistory(store, key).entries()
    finally:
        await store.close()


async def test_records_added_on_a_running_car_reach_the_backend_verified(
        tmp_path: Path, cloud: tuple[CloudServer, str]) -> None:
    server, token = cloud
    cfg = car_config(tmp_path / "car", server, token)
    # The daemon holds its store open while `records add` writes to it from "another process".
    daemon_store = await Store.open(cfg.store.db_path(cfg.daemon.state_dir))
    try:
        async with running_car(cfg) as (svc, rejected):
            await records_add(cfg, "--date", "2024-03-01", "--odometer", "45000", "--shop",
                              "Garage Nord", "--item", "oil", "--cost", "129.90",
                              "--currency", "EUR")
            await records_add(cfg, "--date", "2024-09-01", "--odometer", "60000", "--shop",
                              "Garage Nord", "--item", "inspection", "--item", "brake_fluid")
            await eventually(lambda: len(server.store.service_history("car-a")) == 2)
            await records_add(cfg, "--date", "2025-03-01", "--odometer", "75000", "--shop",
                              "Reifen Kurz", "--item", "tire_rotation")
            await eventually(lambda: len(server.store.service_history("car-a")) == 3)
            assert svc.outbox is not None
            outbox = svc.outbox

            async def drained() -> bool:
                return await outbox.depth() == 0
            await eventually(drained)
            assert not rejected
    finally:
        await daemon_store.close()
    mine = await local_entries(cfg)
    theirs = [Entry.from_json(e) for e in server.store.service_history("car-a")]
    assert [e.to_json() for e in theirs] == [e.to_json() for e in mine]  # byte for byte
    public = load_device_key(cfg.store.key_path(cfg.daemon.state_dir)).public_key()
    assert verify_links(theirs, public).ok
    log = server.store.upstream_log("car-a", "service_record")
    assert [r["status"] for r in log] == ["stored"] * len(log) and 2 <= len(log) <= 3
    assert log[-1]["body"]["head"]["count"] == 3  # the last upload carries the signed head


async def test_lost_sync_state_reuploads_without_duplicates(
        tmp_path: Path, cloud: tuple[CloudServer, str]) -> None:
    server, token = cloud
    cfg = car_config(tmp_path / "car", server, token)
    for n in (1, 2):
        await records_add(cfg, "--date", f"2024-0{n}-01", "--odometer", f"{n}0000", "--shop",
                          "Garage Nord", "--item", "oil")
    async with running_car(cfg):
        await eventually(lambda: len(server.store.service_history("car-a")) == 2)
    (tmp_path / "car" / "sync.db").unlink()  # a new head unit: the outbox and marker are gone
    await records_add(cfg, "--date", "2024-05-01", "--odometer", "30000", "--shop",
                      "Garage Nord", "--item", "oil")
    async with running_car(cfg) as (_, rejected):
        await eventually(lambda: len(server.store.service_history("car-a")) == 3)
        assert not rejected
    log = server.store.upstream_log("car-a", "service_record")
    assert log[-1]["status"] == "stored"
    seqs = [e["body"]["seq"] for e in server.store.service_history("car-a")]
    assert seqs == [1, 2, 3]


@pytest.mark.parametrize("attack, sql, reason", [
    ("edited", ["UPDATE service_records SET body = replace(body, '50000', '20000') "
                "WHERE pos = 2"], "edited"),
    ("deleted", ["DELETE FROM service_records WHERE pos = 2"], "deleted"),
    ("reordered", ["UPDATE service_records SET pos = 99 WHERE pos = 2",
                   "UPDATE service_records SET pos = 2 WHERE pos = 3",
                   "UPDATE service_records SET pos = 3 WHERE pos = 99"], "reordered"),
])
async def test_tampered_history_is_refused_with_the_reason(
        tmp_path: Path, cloud: tuple[CloudServer, str], attack: str, sql: list[str],
        reason: str) -> None:
    server, token = cloud
    cfg = car_config(tmp_path / "car", server, token)
    key = load_or_create_device_key(cfg.store.key_path(cfg.daemon.state_dir))
    store = await Store.open(cfg.store.db_path(cfg.daemon.state_dir), background=False)
    try:
        for n in (1, 2, 3):
            await ServiceHistory(store, key).add(record(n), now=1_700_000_000 + n)
    finally:
        await store.close()
    tamper(cfg.store.db_path(cfg.daemon.state_dir), *sql)
    async with running_car(cfg) as (_, rejected):
        await eventually(lambda: bool(rejected))
    assert reason in rejected[0].reason, rejected[0].reason
    assert rejected[0].origin == "cloud"
    assert server.store.service_history("car-a") == []  # nothing of a broken chain is kept
    (entry,) = server.store.upstream_log("car-a", "service_record")
    assert entry["status"] == "rejected" and reason in entry["reason"]


async def test_other_key_and_rewritten_history_are_refused(
        tmp_path: Path, cloud: tuple[CloudServer, str]) -> None:
    server, token = cloud
    cfg = car_config(tmp_path / "car", server, token)
    mine, thief = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    chain = [make_entry(None, record(1), 1_700_000_001, mine)]
    chain.append(make_entry(chain[0], record(2), 1_700_000_002, mine))
    rewritten = [make_entry(None, record(3), 1_700_000_003, mine)]  # a new #1, same key
    foreign = [make_entry(None, record(1), 1_700_000_001, thief)]
    slipped_in = [make_entry(chain[1], record(3), 1_700_000_003, thief)]  # #3 by another key

    def body(entries: list[Entry], key: Ed25519PrivateKey) -> dict[str, Any]:
        ((_, item),) = upload_items(Chain(tuple(entries), None), raw_public(key.public_key()), 0)
        return item

    assert server.store is not None
    # Enrol as the CLI does: its own connection (the server's is busy in its commit thread).
    admin = CloudStore(server.store.path)
    try:
        admin.set_record_key("car-a", raw_public(mine.public_key()).hex())
    finally:
        admin.close()
    async with running_car(cfg) as (svc, rejected):
        for item in (body(chain[:1], mine), body(chain, mine),  # accepted; #1 again is a no-op
                     body(rewritten, mine),                     # history rewritten
                     body(foreign, thief),                      # not the enrolled key
                     body(slipped_in, mine)):                   # claims our key, signed by another
            await svc.submit("service_record", "service_record", item)
        await eventually(lambda: len(rejected) == 3)
    log = server.store.upstream_log("car-a", "service_record")
    assert [r["status"] for r in log] == ["stored", "stored", "rejected", "rejected", "rejected"]
    assert "record #1 differs" in log[2]["reason"]
    assert "not the key enrolled for this car" in log[3]["reason"]
    assert "record #3" in log[4]["reason"] and "another key" in log[4]["reason"]
    assert [e["hash"] for e in server.store.service_history("car-a")] == [e.hash for e in chain]


def test_reference_backend_has_no_chain_code_of_its_own() -> None:
    cloud_dir = Path(__file__).resolve().parents[2] / "carlink_cloud"
    assert not (cloud_dir / "records_check.py").exists()
    source = "\n".join(p.read_text() for p in cloud_dir.glob("*.py"))
    assert "from carlink_protocol.chain import" in source
    assert "hashlib" not in (cloud_dir / "handlers.py").read_text()
