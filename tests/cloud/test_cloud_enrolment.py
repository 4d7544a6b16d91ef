"""Issue 18 item 7: a service-record chain is bound to the car it was enrolled for (a chain
copied from another car is refused), and `carlink-cloud revoke-device` run beside a live server
closes the car's connection within seconds, not at the next housekeeping round."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.exceptions import ConnectionClosed

from carlink_cloud import CloudServer, CloudStore
from carlink_cloud import server as server_module
from carlink_cloud.errors import CloudError
from carlink_protocol import wire as p
from carlink_protocol.chain import Entry, ServiceRecord, fingerprint, make_entry, raw_public
from cloud_wire import acks, car, item


def chain(key: Ed25519PrivateKey, n: int) -> list[Entry]:
    entries: list[Entry] = []
    for i in range(n):
        entries.append(make_entry(entries[-1] if entries else None,
                                  ServiceRecord(f"2024-0{i + 1}-15", 40_000 + 5_000 * i,
                                                "Garage Nord", ("oil",)),
                                  1_700_000_000 + i, key))
    return entries


def upload(item_id: str, key: Ed25519PrivateKey, entries: list[Entry]) -> str:
    body: dict[str, Any] = {"public_key": raw_public(key.public_key()).hex(),
                            "entries": [e.to_json() for e in entries]}
    return item(item_id, "service_record", "service_record", body)


async def test_a_chain_copied_from_another_car_is_refused(tmp_path: Path) -> None:
    key_a, key_b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    store = CloudStore(tmp_path / "c.db")
    # as an operator enrols: the fingerprint `carlinkd records list` shows on each car
    token_a = store.add_device("car-a", record_key=fingerprint(key_a.public_key()))
    token_b = store.add_device("car-b", record_key=raw_public(key_b.public_key()).hex())
    token_c = store.add_device("car-c")
    with pytest.raises(CloudError, match="already enrolled for 'car-a'"):
        store.set_record_key("car-c", fingerprint(key_a.public_key()))
    with pytest.raises(CloudError, match="expected the device key fingerprint"):
        store.set_record_key("car-c", "not a key")
    store.close()
    history_a = chain(key_a, 3)
    async with CloudServer(tmp_path / "c.db") as server:
        async with car(server, token_a) as ws:
            await ws.send(upload("r1", key_a, history_a))
            assert (await acks(ws, 1))["r1"]["status"] == "stored"
        async with car(server, token_b) as ws:  # car-b presents car-a's whole history
            await ws.send(upload("r1", key_a, history_a))
            await ws.send(upload("r2", key_b, chain(key_b, 1)))  # its own is fine
            got = await acks(ws, 2)
        assert got["r1"]["status"] == "rejected"
        assert "copied from another car" in got["r1"]["reason"]
        assert fingerprint(key_a.public_key()) in got["r1"]["reason"]
        assert got["r2"]["status"] == "stored"
        async with car(server, token_c) as ws:  # enrolled without a key: nothing is pinned
            await ws.send(upload("r1", key_a, history_a))
            got = await acks(ws, 1)
        assert got["r1"]["status"] == "rejected"
        assert "no service-record key is enrolled" in got["r1"]["reason"]
        assert server.store is not None
        assert len(server.store.service_history("car-a")) == 3
        assert len(server.store.service_history("car-b")) == 1
        assert server.store.service_history("car-c") == []


def test_the_cli_enrols_the_record_key(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    db = str(tmp_path / "c.db")
    cli = [sys.executable, "-m", "carlink_cloud"]
    done = subprocess.run([*cli, "add-device", "--db", db, "car-a", "--record-key",
                           fingerprint(key.public_key())], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*cli, "set-record-key", "--db", db, "car-b", "abcd"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("carlink-cloud: ")
    store = CloudStore(tmp_path / "c.db")
    try:
        dev = store.device_by_name("car-a")
        assert store.record_key(store.conn, dev.id) == "".join(
            fingerprint(key.public_key()).split())
    finally:
        store.close()


async def test_cli_revocation_closes_the_live_connection_within_seconds(tmp_path: Path) -> None:
    assert server_module.REVOKE_POLL_S <= 1.0 < server_module.HOUSEKEEPING_S
    store = CloudStore(tmp_path / "c.db")
    token, other = store.add_device("car-a"), store.add_device("car-b")
    store.close()
    async with CloudServer(tmp_path / "c.db") as server:
        async with car(server, token) as ws, car(server, other) as ws_b:
            await asyncio.sleep(1.5)  # a few watcher rounds with nothing to do
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "carlink_cloud", "revoke-device", "--db",
                str(tmp_path / "c.db"), "car-a", stderr=subprocess.PIPE)
            _, err = await proc.communicate()
            assert proc.returncode == 0, err
            revoked_at = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10.0)  # housekeeping alone: 60 s
            lag = time.monotonic() - revoked_at
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == p.CLOSE_AUTH_FAILED
            assert closed.value.rcvd.reason == "device revoked"
            await ws_b.send(item("a1", "alert", "alert", {"name": "still here"}))
            assert (await acks(ws_b, 1))["a1"]["status"] == "stored"
            assert "car-a" not in server.connected_devices()
        print(json.dumps({"revocation_lag_s": round(lag, 2)}))
