"""The durable outbox: priority order, coalescing, byte caps, loud refusal, expiry, persistence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from carlinkd.errors import OutboxFull, SyncError
from carlinkd.sync.db import SyncDb
from carlinkd.sync.inbound import InboundLog, interpret
from carlinkd.sync.outbox import POLICIES, ClassPolicy, Outbox
from carlink_protocol import wire as p


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SyncDb]:
    database = await SyncDb.open(tmp_path / "sync.db")
    yield database
    await database.close()


async def test_priority_then_arrival_order(db: SyncDb) -> None:
    box = Outbox(db)
    for cls in ("status", "service_record", "booking", "chat", "alert", "emergency"):
        await box.put(cls, "k", {"c": cls, "n": 1}, 1.0, key="vehicle")
        await box.put(cls, "k", {"c": cls, "n": 2}, 2.0, key="other")
    order = [(i.cls, i.body["n"]) for i in await box.peek(20)]
    assert order == [("emergency", 1), ("emergency", 2), ("alert", 1), ("alert", 2),
                     ("chat", 1), ("chat", 2), ("booking", 1), ("booking", 2),
                     ("service_record", 1), ("service_record", 2), ("status", 1), ("status", 2)]
    assert [i.cls for i in await box.peek(2, exclude={order and "x"})][:1] == ["emergency"]


async def test_status_coalesces_per_key(db: SyncDb) -> None:
    box = Outbox(db)
    for n in range(5):
        await box.put("status", "status", {"n": n}, float(n), key="vehicle")
    await box.put("status", "status", {"tyres": 1}, 9.0, key="tyres")
    items = await box.peek(10)
    assert [i.body for i in items] == [{"n": 4}, {"tyres": 1}]
    assert box.dropped["status"] == 0  # coalescing is not loss


async def test_lossless_class_full_refuses_loudly_and_keeps_everything(db: SyncDb) -> None:
    tiny = dict(POLICIES, chat=ClassPolicy("chat", 2, 200, None, lossless=True))
    box = Outbox(db, tiny)
    accepted = 0
    with pytest.raises(OutboxFull, match="chat is full"):
        for n in range(100):
            await box.put("chat", "chat", {"group": "g", "text": f"message {n}"}, 1.0)
            accepted += 1
    assert 0 < accepted < 100
    assert len(await box.peek(200)) == accepted
    assert box.refused["chat"] == 1
    # the refused put left no trace, and room returns after an ack
    first = (await box.peek(1))[0]
    await box.ack([first.id])
    await box.put("chat", "chat", {"group": "g", "text": "again"}, 2.0)


async def test_lossy_class_evicts_oldest_and_reports_it(db: SyncDb) -> None:
    tiny = dict(POLICIES, status=ClassPolicy("status", 5, 100, None, lossless=False))
    box = Outbox(db, tiny)
    dropped = []
    for n in range(10):
        _, d = await box.put("status", "status", {"n": n, "pad": "x" * 20}, float(n),
                             key=f"k{n}")
        dropped += d
    assert dropped and all(d.why == "evicted" for d in dropped)
    remaining = [i.body["n"] for i in await box.peek(20)]
    assert remaining == sorted(remaining) and remaining[-1] == 9
    assert box.dropped["status"] == len(dropped)


async def test_expiry_is_loud_and_counted(db: SyncDb) -> None:
    box = Outbox(db)
    await box.put("emergency", "help_request", {}, 0.0)
    await box.put("service_record", "service_record", {"records": []}, 0.0)
    assert await box.expire(3600.0) == []
    expired = await box.expire(7 * 3600.0)
    assert [(d.cls, d.why) for d in expired] == [("emergency", "expired")]
    assert [i.cls for i in await box.peek(5)] == ["service_record"]  # never expires


async def test_stats_show_depth_bytes_and_oldest_age(db: SyncDb) -> None:
    box = Outbox(db)
    await box.put("chat", "chat", {"text": "a"}, 100.0)
    await box.put("chat", "chat", {"text": "b"}, 130.0)
    stats = await box.stats(160.0)
    assert stats["chat"]["items"] == 2 and stats["chat"]["oldest_age_s"] == 60.0
    assert stats["chat"]["bytes"] > 0 and stats["alert"]["items"] == 0


async def test_items_survive_reopen(tmp_path: Path) -> None:
    db1 = await SyncDb.open(tmp_path / "s.db")
    box = Outbox(db1)
    ids, _ = await box.put_many([("chat", "chat", {"n": n}, None, None) for n in range(3)], 1.0)
    await box.ack(ids[:1])
    await db1.close()
    db2 = await SyncDb.open(tmp_path / "s.db")
    box2 = Outbox(db2)
    await box2.load()
    assert [i.body["n"] for i in await box2.peek(10)] == [1, 2]
    await db2.close()


async def test_bad_items_are_refused_before_storage(db: SyncDb) -> None:
    box = Outbox(db)
    with pytest.raises(SyncError, match="unknown outbox class"):
        await box.put("can_frames", "x", {}, 0.0)
    with pytest.raises(OutboxFull, match="exceeds"):
        await box.put("chat", "chat", {"text": "x" * 300_000}, 0.0)
    with pytest.raises(SyncError, match="JSON"):
        await box.put("chat", "chat", {"text": float("nan")}, 0.0)
    assert await box.depth() == 0


async def test_explicit_ids_are_idempotent(db: SyncDb) -> None:
    box = Outbox(db)
    await box.put("chat", "chat", {"n": 1}, 0.0, item_id="same")
    await box.put("chat", "chat", {"n": 2}, 0.0, item_id="same")
    assert [i.body for i in await box.peek(5)] == [{"n": 1}]


async def test_inbound_log_stores_once_and_keeps_cursor(db: SyncDb) -> None:
    log = InboundLog(db)
    await log.load()
    items = [p.DownItem(s, "chat", {"group": "g", "from": "a", "text": "t"}, 1.0)
             for s in (1, 2)]
    assert await log.store("e", items, ["ok", "ok"], 5.0) == 2
    assert await log.store("e", items, ["ok", "ok"], 6.0) == 2
    log2 = InboundLog(db)
    assert await log2.load() == ("e", 2)
    assert len(await log2.recent()) == 2


def test_interpret_rejects_unknown_kinds_and_wrong_types() -> None:
    ok, verdict = interpret(p.DownItem(1, "chat", {"group": "g", "from": "a", "text": "hi"}, 0))
    assert verdict == "ok" and ok is not None
    for kind, body in (("clear_dtc", {}), ("can_send", {"id": 0x7DF, "data": "04"}),
                       ("chat", {"group": 1, "from": "a", "text": "hi"}),
                       ("help_request", {"request_id": "r", "from": "a", "lat": "x",
                                         "lon": 1, "distance_km": 1}),
                       ("booking", {"status": "exploded"})):
        event, verdict = interpret(p.DownItem(1, kind, body, 0))
        assert event is None and verdict.startswith("rejected"), kind


@pytest.mark.parametrize("content", [b"not a database at all " * 300, b""], ids=["garbage", "empty"])
async def test_broken_sync_db_is_set_aside_and_a_fresh_one_opens(
        tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "sync.db"
    path.write_bytes(content)
    db = await SyncDb.open(path)
    try:
        outbox = Outbox(db)
        await outbox.put("chat", "chat", {"group": "family", "text": "hi"}, now=1.0)
        assert len(await outbox.peek(10)) == 1  # the fresh database works
    finally:
        await db.close()
    aside = list(tmp_path.glob("sync.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "moved it aside" in errors[0], errors
