"""The pure sync core: wire format validation, session decisions and backoff, with plain data."""

from __future__ import annotations

import json
import random

import pytest

from carlinkd.errors import ProtocolError
from carlink_protocol import wire as p
from carlinkd.sync.session import (ACK_TIMEOUT_S, Acked, Backoff, ClientSession, Close, CloseKind,
                                   Problem, Ready, Send, SessionState, SkipGap, Store,
                                   classify_close, retry_minimum)

EPOCH = "e1"


def welcome(cursor: int = 0, epoch: str = EPOCH, last: int = 0) -> str:
    return p.encode(p.Welcome(p.PROTOCOL_VERSION, "car", epoch, cursor, last))


def down(seq: int, kind: str = "chat") -> str:
    return p.encode(p.DownItem(seq, kind, {"group": "g", "from": "x", "text": "t"}, 1.0))


def ready_session(cursor: int = 0, window: int = 4) -> ClientSession:
    s = ClientSession(cursor=cursor, epoch=EPOCH, window=window)
    s.connected(0.0)
    s.receive(welcome(cursor), 0.0)
    assert s.state is SessionState.READY
    return s


def up(i: int, cls: str = "chat") -> p.UpItem:
    return p.UpItem(f"id{i}", cls, "chat", {"group": "g", "text": str(i)}, 1.0)


def test_roundtrip_every_message_type() -> None:
    for msg in (p.Hello(p.PROTOCOL_VERSION, 5, "e", 8, "a"), up(1), p.CursorAck(3)):
        assert p.parse_client(p.encode(msg)) == msg
    for smsg in (p.Welcome(p.PROTOCOL_VERSION, "car", "e", 2, 9), p.ItemAck("x", "stored", "", {"a": 1}),
                 p.DownItem(3, "chat", {"a": 1}, 2.5), p.Gap(1, 4)):
        assert p.parse_server(p.encode(smsg)) == smsg


@pytest.mark.parametrize("frame, why", [
    ("{", "invalid JSON"),
    ("[1]", "JSON object"),
    (b'{"type":"ack"}', "binary"),
    ('{"type":"item","seq":"1","kind":"chat","body":{},"created":1}', "'seq'"),
    ('{"type":"item","seq":1,"kind":"chat","body":[],"created":1}', "'body'"),
    ('{"type":"item","seq":0,"kind":"chat","body":{},"created":1}', "'seq'"),
    ('{"type":"item","seq":true,"kind":"chat","body":{},"created":1}', "'seq'"),
    ('{"type":"item","seq":1,"kind":"chat","body":{},"created":NaN}', "invalid JSON"),
    ('{"type":"ack","id":"x","status":"maybe"}', "'status'"),
    ('{"type":"gap","from":5,"to":2}', "before"),
    ('{"type":"explode"}', "unknown message type"),
    ('{"kind":1}', "'type'"),
    ('[' * 100000 + ']' * 100000, "invalid JSON"),
])
def test_server_frames_rejected_with_reason(frame: str | bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        p.parse_server(frame)


def test_client_item_class_must_be_known() -> None:
    bad = json.dumps({"type": "item", "id": "a", "class": "can_tx", "kind": "x", "body": {},
                      "created": 1})
    with pytest.raises(ProtocolError, match="unknown item class"):
        p.parse_client(bad)


def test_hello_then_welcome_then_window() -> None:
    s = ClientSession(cursor=7, epoch=EPOCH, window=2)
    (hello,) = s.connected(0.0)
    assert isinstance(hello, Send)
    assert json.loads(hello.text) == {"type": "hello", "protocol": p.PROTOCOL_VERSION, "cursor": 7,
                                      "epoch": EPOCH, "window": 2, "agent": "carlinkd"}
    assert s.room() == 0
    (ready,) = s.receive(welcome(7), 1.0)
    assert isinstance(ready, Ready) and not ready.reset
    sends = s.offer([up(1), up(2), up(3)], 1.0)
    assert [json.loads(a.text)["id"] for a in sends if isinstance(a, Send)] == ["id1", "id2"]
    assert s.room() == 0
    (acked,) = s.receive(p.encode(p.ItemAck("id1", "stored", "", {})), 2.0)
    assert isinstance(acked, Acked) and s.room() == 1


def test_reconnect_resends_everything_unacknowledged() -> None:
    s = ready_session()
    s.offer([up(1), up(2)], 0.0)
    s.disconnected(1.0)
    assert s.inflight == {}
    s.connected(2.0)
    s.receive(welcome(0), 2.0)
    assert len(s.offer([up(1), up(2)], 2.0)) == 2


def test_downstream_in_order_is_stored_then_acknowledged() -> None:
    s = ready_session()
    (store,) = s.receive(down(1), 0.0)
    assert isinstance(store, Store) and store.items[0].seq == 1
    (ack,) = s.stored(EPOCH, 1)
    assert isinstance(ack, Send) and json.loads(ack.text) == {"type": "ack", "cursor": 1}
    assert s.cursor == 1


def test_replayed_sequence_is_ignored_and_reacknowledged() -> None:
    s = ready_session(cursor=5)
    (resend,) = s.receive(down(3), 0.0)
    assert isinstance(resend, Send) and json.loads(resend.text)["cursor"] == 3
    assert s.counters["duplicates"] == 1


def test_out_of_order_sequence_closes_for_replay() -> None:
    s = ready_session(cursor=5)
    actions = s.receive(down(9), 0.0)
    assert isinstance(actions[0], Problem) and "out of order" in actions[0].reason
    assert isinstance(actions[1], Close) and actions[1].code == p.CLOSE_PROTOCOL_ERROR
    assert s.cursor == 5


def test_gap_moves_the_cursor_past_pruned_items() -> None:
    s = ready_session(cursor=2)
    (skip,) = s.receive(p.encode(p.Gap(3, 10)), 0.0)
    assert isinstance(skip, SkipGap) and (skip.first, skip.last) == (3, 10)
    s.stored(EPOCH, 10)
    (store,) = s.receive(down(11), 0.0)
    assert isinstance(store, Store)


def test_new_server_epoch_restarts_the_cursor() -> None:
    s = ClientSession(cursor=40, epoch="old")
    s.connected(0.0)
    (ready,) = s.receive(welcome(0, epoch="new"), 0.0)
    assert isinstance(ready, Ready) and ready.reset and s.cursor == 0 and s.epoch == "new"


def test_welcome_cursor_ahead_of_ours_is_a_protocol_error() -> None:
    s = ClientSession(cursor=3, epoch=EPOCH)
    s.connected(0.0)
    assert isinstance(s.receive(welcome(9), 0.0)[-1], Close)


def test_garbage_is_counted_and_eventually_disconnects() -> None:
    s = ready_session()
    closes = []
    for _ in range(60):
        closes += [a for a in s.receive("nonsense", 0.0) if isinstance(a, Close)]
    assert closes and s.counters["problems"] >= 50


def test_ack_for_unknown_item_is_a_problem_not_a_crash() -> None:
    s = ready_session()
    (problem,) = s.receive(p.encode(p.ItemAck("never-sent", "stored", "", {})), 0.0)
    assert isinstance(problem, Problem)


def test_item_before_welcome_closes() -> None:
    s = ClientSession(cursor=0, epoch=None)
    s.connected(0.0)
    assert isinstance(s.receive(down(1), 0.0)[-1], Close)


def test_silent_server_is_detected_by_tick() -> None:
    s = ready_session()
    s.offer([up(1)], 0.0)
    assert s.tick(ACK_TIMEOUT_S - 1) == []
    (close,) = s.tick(ACK_TIMEOUT_S + 1)
    assert isinstance(close, Close)


def test_backoff_grows_with_jitter_caps_and_resets_after_healthy_period() -> None:
    b = Backoff(initial_s=1.0, factor=2.0, max_s=30.0, healthy_after_s=30.0,
                rng=random.Random(1))
    delays = [b.next_delay(0.0) for _ in range(10)]
    for i, d in enumerate(delays):
        ceiling = min(30.0, 2.0 ** i)
        assert ceiling * 0.5 <= d <= ceiling
    assert max(delays) <= 30.0
    b.connected(100.0)
    assert b.next_delay(105.0) > 10  # died after 5 s: still backing off
    b.connected(200.0)
    assert b.next_delay(240.0) <= 1.0  # healthy for 40 s: start again
    # A server-imposed minimum is kept and spread upwards (by at most minimum_spread).
    floors = [b.next_delay(0.0, minimum=99.0) for _ in range(20)]
    assert all(99.0 <= d <= 99.0 * (1 + b.minimum_spread) for d in floors)
    assert len(set(floors)) == len(floors)  # a fleet told the same minimum does not return as one


def test_close_classification() -> None:
    assert classify_close(None, 401) is CloseKind.UNAUTHORIZED
    assert classify_close(p.CLOSE_AUTH_FAILED) is CloseKind.UNAUTHORIZED
    assert classify_close(p.CLOSE_UNSUPPORTED_VERSION) is CloseKind.INCOMPATIBLE
    assert classify_close(None, 503) is CloseKind.OVERLOADED
    assert classify_close(p.CLOSE_TRY_AGAIN_LATER) is CloseKind.OVERLOADED
    assert classify_close(1006) is CloseKind.NETWORK
    assert classify_close(None, 403) is CloseKind.UNAUTHORIZED
    assert classify_close(None, 426) is CloseKind.INCOMPATIBLE
    assert retry_minimum(CloseKind.UNAUTHORIZED, None, 900.0, 3600.0) == 900.0
    assert retry_minimum(CloseKind.INCOMPATIBLE, 5.0, 900.0, 3600.0) == 3600.0
    assert retry_minimum(CloseKind.OVERLOADED, 7.0, 900.0, 3600.0) == 7.0
    assert retry_minimum(CloseKind.NETWORK, None, 900.0, 3600.0) == 0.0
    assert p.retry_after("too busy; retry-after=7") == 7.0
    assert p.retry_after("retry-after=nan") is None
