"""Group commit (carlink_cloud/commit.py): several connections' batches in one transaction, a
failing one rolled back alone; cursor acks cost no commit of their own but are kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from carlink_cloud import CloudServer, CloudStore
from carlink_cloud import handlers
from carlink_cloud.commit import handle_batches
from carlink_protocol import wire as p
from cloud_wire import acks, car, enrol, item


def test_a_failing_batch_is_rolled_back_alone(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    enrol(tmp_path / "c.db", "a", "b")
    store = CloudStore(tmp_path / "c.db")
    original = handlers.HANDLERS[("alert", "alert")]

    def alert(ctx: handlers.Ctx, up: p.UpItem) -> handlers.Outcome:
        if up.body.get("name") == "boom":
            raise RuntimeError("disk on fire")  # not a field error: the whole batch fails
        return original(ctx, up)

    monkeypatch.setitem(handlers.HANDLERS, ("alert", "alert"), alert)
    a, b = store.device_by_name("a"), store.device_by_name("b")
    ok = p.UpItem("i1", "alert", "alert", {"name": "fine"}, 1.0)
    boom = p.UpItem("i2", "alert", "alert", {"name": "boom"}, 1.0)
    results = handle_batches(store, [(a, [ok, boom], 3), (b, [ok], 0)], 10.0, None)
    assert isinstance(results[0], RuntimeError)
    assert not isinstance(results[1], Exception)
    assert [x.status for x in results[1][0]] == ["stored"]
    assert store.upstream_log("a") == []  # a's ok item went with its batch
    assert [r["id"] for r in store.upstream_log("b")] == ["i1"]
    assert [d["acked_seq"] for d in store.summary()["devices"]] == [0, 0]
    store.close()


async def test_cursor_acks_are_written_when_the_car_leaves(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    tokens = enrol(db, "a", "b", group="g")
    async with CloudServer(db) as server:
        async with car(server, tokens["a"]) as ws_a, car(server, tokens["b"]) as ws_b:
            for i in range(5):
                await ws_a.send(item(f"c{i}", "chat", "chat", {"group": "g", "text": f"{i}"}))
            await acks(ws_a, 5)
            got = [json.loads(await ws_b.recv()) for _ in range(5)]
            assert [m["body"]["text"] for m in got] == ["0", "1", "2", "3", "4"]
            await ws_b.send(p.encode(p.CursorAck(got[-1]["seq"])))
            await asyncio.sleep(0.2)
            assert server.store is not None
            # nothing was committed for the ack alone
            assert [d["acked_seq"] for d in server.store.summary()["devices"]] == [0, 0]
        for _ in range(100):
            if [d["acked_seq"] for d in server.store.summary()["devices"]] == [0, 5]:
                break
            await asyncio.sleep(0.05)
        assert [d["acked_seq"] for d in server.store.summary()["devices"]] == [0, 5]
