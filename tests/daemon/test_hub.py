"""Event hub: routing by type, per-type overflow policies, drop accounting."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from carlinkd.errors import HubError
from carlinkd.events import BusState, BusStats, Command, SignalsUpdated, SignalValue
from carlinkd.hub import Hub

ROOT = Path(__file__).resolve().parents[2]


def sig(name: str, value: float, ts: float = 0.0) -> SignalsUpdated:
    return SignalsUpdated({name: SignalValue(name, value, "km/h", ts)})


async def test_routes_by_type_and_subclass() -> None:
    hub = Hub()
    signals = hub.subscribe(SignalsUpdated)
    everything = hub.subscribe(SignalsUpdated, BusState, Command)
    hub.publish(sig("Vehicle.Speed", 10))
    hub.publish(BusState("up"))
    assert len(signals) == 1 and len(everything) == 2
    got = await everything.get()
    assert isinstance(got, SignalsUpdated)
    assert isinstance(await everything.get(), BusState)
    hub.close()


async def test_telemetry_coalesces_to_latest_per_signal() -> None:
    hub = Hub()
    sub = hub.subscribe(SignalsUpdated, maxsize=4)
    for v in range(100):
        hub.publish(sig("Vehicle.Speed", v))
    hub.publish(sig("Vehicle.TraveledDistance", 5.0))
    assert len(sub) == 1  # merged into one queued event
    event = sub.get_nowait()
    assert isinstance(event, SignalsUpdated)
    assert event.values["Vehicle.Speed"].value == 99
    assert event.values["Vehicle.TraveledDistance"].value == 5.0
    assert sub.dropped == {}
    hub.close()


async def test_commands_are_never_dropped_and_droppable_events_are_counted() -> None:
    hub = Hub()
    sub = hub.subscribe(Command, BusStats, maxsize=3)
    hub.publish(BusStats({"frames": 1}, 0.0))  # coalescing: occupies one slot
    for i in range(10):
        hub.publish(Command("send_message", {"n": str(i)}, "test"))
    assert len(sub) == 11
    assert sub.over_bound["Command"] == 8
    hub.publish(BusStats({"frames": 2}, 1.0))  # merges into the queued one, no drop
    assert sub.dropped == {}
    first = sub.get_nowait()
    assert isinstance(first, BusStats) and first.counters["frames"] == 2
    names = [sub.get_nowait().args["n"] for _ in range(10)]  # type: ignore[union-attr]
    assert names == [str(i) for i in range(10)]  # order kept
    assert sub.get_nowait() is None
    hub.close()


async def test_full_queue_drops_new_coalescing_keys_and_counts_them() -> None:
    hub = Hub()
    sub = hub.subscribe(BusState, BusStats, maxsize=2)
    hub.publish(BusState("connecting"))
    hub.publish(BusState("up"))
    hub.publish(BusStats({"frames": 1}, 0.0))  # new key, queue full -> dropped
    assert sub.dropped["BusStats"] == 1
    assert sub.stats()["dropped"] == {"BusStats": 1}
    hub.close()


async def test_get_waits_and_close_ends_iteration() -> None:
    hub = Hub()
    sub = hub.subscribe(BusState)
    received: list[str] = []

    async def consume() -> None:
        async for event in sub:
            assert isinstance(event, BusState)
            received.append(event.state)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    hub.publish(BusState("up"))
    await asyncio.sleep(0)
    hub.publish(BusState("down"))
    await asyncio.sleep(0)
    hub.close()
    await asyncio.wait_for(task, 1)
    assert received == ["up", "down"]
    with pytest.raises(HubError, match="closed"):
        hub.publish(BusState("up"))


async def test_unsubscribed_types_are_not_queued() -> None:
    hub = Hub()
    sub = hub.subscribe(Command)
    hub.publish(sig("Vehicle.Speed", 1))
    assert len(sub) == 0
    assert hub.published["SignalsUpdated"] == 1
    sub.close()
    hub.publish(Command("x", {}, "t"))
    assert len(sub) == 0
    with pytest.raises(HubError):
        hub.subscribe()
    hub.close()


def test_subscriptions_are_typed_by_what_they_subscribe_to(tmp_path: Path) -> None:
    """mypy sees subscribe(A, B) as a Subscription[A | B]: consumers need no isinstance checks."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from carlinkd.hub import Hub\n"
        "from carlinkd.events import AlertRaised, BusState\n"
        "async def f(hub: Hub) -> None:\n"
        "    one = hub.subscribe(AlertRaised)\n"
        "    reveal_type(await one.get())\n"
        "    two = hub.subscribe(AlertRaised, BusState)\n"
        "    async for event in two:\n"
        "        reveal_type(event)\n"
        "    event = await one.get()\n"
        "    event.state\n")
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(probe)],
                         capture_output=True, text=True, cwd=ROOT).stdout
    assert 'Revealed type is "carlinkd.events.AlertRaised"' in out, out
    assert 'Revealed type is "carlinkd.events.AlertRaised | carlinkd.events.BusState"' in out, out
    assert '"AlertRaised" has no attribute "state"' in out, out  # the type is checked, not Any
