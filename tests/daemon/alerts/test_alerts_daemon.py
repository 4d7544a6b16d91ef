"""Scenarios through the whole daemon and the real store: the simulator (with its OBD-II ECUs)
drives the bus, alerts are raised at the right moment and land in the SQLite file."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import can
import pytest

from carlinkd.can.settings import CanConfig
from carlinkd.config import Config
from carlinkd.settings import DaemonConfig
from carlinkd.hmi.settings import HmiConfig
from carlinkd.voice.settings import VoiceConfig
from carlinkd.daemon import Daemon
from carlinkd.events import AlertRaised, DtcSet
from carlinkd.store.db import Store
from carlink_sim import Simulator
from carlink_sim.obd_bus import attach_bus


async def drive(tmp_path: Path, scenario: str, time_scale: float, wall_s: float,
                until: set[str]) -> tuple[list[AlertRaised], list[DtcSet], Simulator]:
    channel = f"alerts-{os.getpid()}-{time.monotonic_ns()}"
    cfg = Config(daemon=DaemonConfig(state_dir=tmp_path), hmi=HmiConfig(enabled=False),
                 voice=VoiceConfig(enabled=False),
                 can=CanConfig(interface="virtual", channel=channel))
    sim = Simulator(scenario=scenario, seed=4, time_scale=time_scale, obd=True)
    epoch = time.time()
    raised: list[AlertRaised] = []
    dtcs: list[DtcSet] = []
    tx = can.Bus(interface="virtual", channel=channel)
    ecus = attach_bus(sim, tx)
    try:
        async with Daemon(cfg, clock=lambda: epoch + sim.model_time) as daemon:
            sub = daemon.hub.subscribe(AlertRaised, DtcSet)
            task = asyncio.create_task(sim.run(lambda fs: [tx.send(f) for f in fs], wall_s))
            while not task.done() and not until <= {a.key for a in raised}:
                try:
                    event = await asyncio.wait_for(sub.get(), 0.2)
                except TimeoutError:
                    continue
                (raised if isinstance(event, AlertRaised) else dtcs).append(event)  # type: ignore[arg-type]
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        ecus.stop()
        tx.shutdown()
    return raised, dtcs, sim


async def stored_alert_keys(tmp_path: Path) -> set[str]:
    store = await Store.open(Config().store.db_path(tmp_path))
    try:
        return {str(row[1]) for row in await store.alert_history(1000)}  # (at, key, ...)
    finally:
        await store.close()


@pytest.mark.slow
async def test_dtc_scenario_raises_trouble_code_and_mil_alerts_and_stores_them(
        tmp_path: Path) -> None:
    raised, dtcs, sim = await drive(tmp_path, "dtc", 30.0, 30.0, {"dtc:P0301", "mil"})
    keys = {a.key for a in raised}
    assert {"dtc:P0301", "mil"} <= keys, keys
    p0301 = next(a for a in raised if a.key == "dtc:P0301")
    assert "P0301" in p0301.spoken and "misfire" in p0301.text.lower()
    assert any(d.code == "P0301" and "misfire" in d.description for d in dtcs)
    assert sim.model_time >= 90  # the code is stored (not just pending) at 90 s in the scenario
    assert "dtc:P0301" in await stored_alert_keys(tmp_path)


@pytest.mark.slow
async def test_tire_leak_is_reported_above_the_low_threshold_and_stored(tmp_path: Path) -> None:
    raised, _dtcs, sim = await drive(tmp_path, "tire-leak", 60.0, 30.0,
                                     {"slow_leak:rear_left"})
    leak = next((a for a in raised if a.key == "slow_leak:rear_left"), None)
    assert leak is not None, [a.key for a in raised]
    pressure = sim.model.tire_pressure_kpa("RL")
    assert pressure > 200  # well above the 180 kPa low-pressure threshold when reported
    assert not any(a.key.startswith("tire_low") for a in raised)
    assert "slow_leak:rear_left" in await stored_alert_keys(tmp_path)
