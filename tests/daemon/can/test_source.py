"""The CAN source against real python-can buses: batching, counters, reconnect, python-can config."""

from __future__ import annotations

import asyncio
import time

import can
import pytest

from carlinkd.can.source import CanSource, SourceState, bus_kwargs, open_bus
from carlinkd.can.settings import CanConfig, CanFilter
from carlinkd.errors import BusUnavailable


def test_bus_kwargs_pass_only_what_is_set() -> None:
    assert bus_kwargs(CanConfig()) == {}
    cfg = CanConfig(interface="socketcand", channel="vcan0", bitrate=500000, fd=True,
                    filters=(CanFilter(0x7E8, 0x7F8),), options={"host": "h", "port": 1})
    assert bus_kwargs(cfg) == {
        "interface": "socketcand", "channel": "vcan0", "bitrate": 500000, "fd": True,
        "can_filters": [{"can_id": 0x7E8, "can_mask": 0x7F8, "extended": False}],
        "host": "h", "port": 1}


def test_python_can_environment_applies_when_config_is_silent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAN_INTERFACE", "virtual")
    monkeypatch.setenv("CAN_CHANNEL", "from-env")
    bus = open_bus(bus_kwargs(CanConfig()))
    try:
        assert bus.channel_info.startswith("Virtual bus channel from-env") or \
            "from-env" in str(bus.channel_info)
    finally:
        bus.shutdown()


def test_unknown_interface_is_one_clear_error() -> None:
    with pytest.raises(BusUnavailable, match="cannot open CAN bus nosuchbus"):
        open_bus({"interface": "nosuchbus", "channel": "x"})


async def test_reads_virtual_bus_in_batches_with_counters() -> None:
    channel = f"src-{time.monotonic_ns()}"
    received: list[can.Message] = []
    states: list[SourceState] = []
    source = CanSource(CanConfig(interface="virtual", channel=channel),
                       received.extend, lambda s, _d: states.append(s))
    source.start()
    for _ in range(100):
        if source.state is SourceState.UP:
            break
        await asyncio.sleep(0.02)
    tx = can.Bus(interface="virtual", channel=channel)
    try:
        for i in range(500):
            tx.send(can.Message(arbitration_id=0x100 + i % 5, data=bytes([i % 256])))
        for _ in range(100):
            if len(received) == 500:
                break
            await asyncio.sleep(0.02)
    finally:
        tx.shutdown()
        await source.stop()
    assert [m.data[0] for m in received] == [i % 256 for i in range(500)]
    assert source.counters["frames"] == 500
    assert source.counters["batches"] < 500  # frames arrive in batches, not one callback each
    assert states == [SourceState.CONNECTING, SourceState.UP, SourceState.STOPPED]


async def test_unreachable_socketcand_retries_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    states: list[tuple[SourceState, str]] = []
    cfg = CanConfig(interface="socketcand", channel="vcan0",
                    options={"host": "127.0.0.1", "port": 9}, reconnect_initial_s=0.05,
                    reconnect_max_s=0.1)
    source = CanSource(cfg, lambda _b: None, lambda s, d: states.append((s, d)))
    source.start()
    await asyncio.sleep(0.6)
    await source.stop()
    assert source.counters["reconnects"] >= 3
    downs = [d for s, d in states if s is SourceState.DOWN]
    assert downs and "unreachable" in downs[0]
    # Logged once per state change, not once per attempt.
    assert sum("down" in r.getMessage() for r in caplog.records) == 1
