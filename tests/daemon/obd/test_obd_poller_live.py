"""ObdService (poller core + transport) against the simulated ECUs over a `virtual` bus, can-isotp on
both sides: discovery, only supported PIDs, per-PID rates, the request budget, ignition and silence."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

import can
import pytest

from carlinkd.can.obd.poller import PollerState
from carlinkd.can.obd.service import IGNITION, ObdService
from carlinkd.can.source import CanSource
from carlinkd.can.settings import CanConfig
from carlinkd.config import Config
from carlinkd.can.obd.settings import ObdConfig
from carlinkd.events import BusState, SignalsUpdated, SignalValue
from carlinkd.hub import Hub
from carlink_sim.obd_bus import ENGINE_PIDS, TRANSMISSION_PIDS, BusEcus, demo_ecus, model_options
from carlink_sim.vehicle import VehicleModel


@dataclass
class Live:
    service: ObdService
    hub: Hub
    ecus: BusEcus
    sent: list[tuple[float, can.Message]]

    def requests(self) -> list[tuple[float, bytes, int]]:
        """(time, payload, CAN id) of every single-frame request sent (flow control left out)."""
        return [(t, bytes(m.data[1:1 + m.data[0]]), m.arbitration_id) for t, m in self.sent
                if m.data[0] >> 4 == 0]

    def pids_asked(self, can_id: int) -> Counter[int]:
        return Counter(pid for _, payload, i in self.requests() if i == can_id and payload[0] == 1
                       for pid in payload[1:])

    def ignition(self, state: str) -> None:
        value = SignalValue(IGNITION, state, None, time.time())
        self.hub.publish(SignalsUpdated({IGNITION: value}))


async def start_live(obd: ObdConfig) -> AsyncIterator[Live]:
    channel = f"obd-live-{os.getpid()}-{time.monotonic_ns()}"
    cfg = Config(can=CanConfig(interface="virtual", channel=channel), obd=obd)
    hub = Hub()
    source = CanSource(cfg.can, lambda _b: None, lambda s, d: hub.publish(BusState(s.value, d)))
    sent: list[tuple[float, can.Message]] = []

    def send(msg: can.Message) -> None:
        sent.append((time.monotonic(), msg))
        CanSource.send(source, msg)

    source.send = send  # type: ignore[method-assign]
    model = VehicleModel(seed=4)
    model.warm_start(55.0)
    bus = can.Bus(interface="virtual", channel=channel)
    ecus = BusEcus(bus, demo_ecus(model), **model_options(model))
    ecus.start()
    service = ObdService(cfg, hub, source)
    source.start()
    await service.start()
    try:
        yield Live(service, hub, ecus, sent)
    finally:
        await service.stop()
        await source.stop()
        ecus.stop()
        bus.shutdown()
        hub.close()


FAST = replace(ObdConfig(), startup_delay_s=0.0, fast_period_s=0.5, normal_period_s=2.0,
               slow_period_s=30.0, response_timeout_s=0.3)


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    async for made in start_live(FAST):
        yield made


async def settle(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def test_discovery_and_only_supported_pids_at_their_rates(live: Live) -> None:
    await asyncio.sleep(4.2)
    core = live.service.core
    assert core.state is PollerState.POLLING
    assert core.ecus[0x7E8].supported == set(ENGINE_PIDS) | {0x20, 0x40, 0x60, 0x80, 0xA0}
    assert core.ecus[0x7E9].supported == set(TRANSMISSION_PIDS)
    engine, gearbox = live.pids_asked(0x7E0), live.pids_asked(0x7E1)
    polled = {p for p in engine if p not in (0x20, 0x40, 0x60, 0x80, 0xA0)}
    assert polled <= set(ENGINE_PIDS) and {0x0C, 0x0D, 0x05, 0xA6} <= polled
    assert set(gearbox) == {0x01}  # speed comes from the engine; PID 1C is not a number
    # Lanes: fast every 0.5 s, normal every 2 s, slow every 30 s (ratios, not wall-clock timing).
    assert engine[0x0C] == engine[0x0D] >= 2 * engine[0x05] >= 4
    assert engine[0xA6] == 1
    first = live.requests()[0]
    assert first[1:] == (b"\x01\x00", 0x7DF)


async def test_request_budget_holds_on_the_bus() -> None:
    async for live in start_live(replace(FAST, budget_per_s=4.0, fast_period_s=0.05)):
        await asyncio.sleep(3.0)
        times = [t for t, _, _ in live.requests()]
        assert len(times) >= 10
        worst = max(sum(1 for u in times if t <= u < t + 0.999) for t in times)
        assert worst <= 4


async def test_ignition_off_silences_and_on_rediscovers(live: Live) -> None:
    await settle(lambda: live.service.state is PollerState.POLLING, 3.0)
    live.ignition("Off")
    await settle(lambda: live.service.state is PollerState.ASLEEP, 2.0)
    await asyncio.sleep(0.4)  # an exchange in flight may finish
    count = len(live.sent)
    await asyncio.sleep(1.5)
    assert live.service.state is PollerState.ASLEEP and len(live.sent) == count
    live.ignition("Run")
    await settle(lambda: len(live.requests()) > 0 and live.service.state is PollerState.POLLING, 3.0)
    after = [payload for t, payload, _ in live.requests()[-40:]]
    assert b"\x01\x00" in after and b"\x03" in after  # discovery, and DTCs at ignition on


async def test_nobody_answering_backs_off(live: Live) -> None:
    live.ecus.responder.silent.update({"engine", "transmission"})
    await asyncio.sleep(2.0)
    assert live.service.state is PollerState.BACKOFF
    assert [payload for _, payload, _ in live.requests()] == [b"\x01\x00"]
