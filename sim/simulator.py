"""The in-process simulator API: a scenario-driven vehicle model producing CAN frames.

Two clocks matter. *Bus time* is what frame timestamps show and what the frame schedule
follows: a 10 ms message appears 100 times per bus second, always. *Model time* is how far the
car's physics has advanced. ``time_scale`` links them: model time = bus time x time_scale. With
``time_scale=60`` a 30-minute scenario plays in 30 bus seconds (30 s of wall clock in
:meth:`Simulator.run`) at a normal bus load; signals simply change 60 times faster. The physics
steps every 20 ms of model time, or every 100 ms above ``time_scale`` 5 (where one 10 ms bus tick
already spans half a second of driving), so a given seed and time scale always give the same frames.

``flood`` mode ignores the scenario's pacing: it repeats a pool of pre-encoded demo frames
(2 s of the scenario, captured two minutes in) at exactly ``flood`` frames per bus second, for
benchmarks. Counters and checksums inside the pool are valid, but restart each time the pool
wraps.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import can
from cantools.database.can import Database

from carlink_sim.navigation import on_earth
from carlink_sim.paths import load_can_dbc, load_demo_dbc
from carlink_sim.scenarios import Scenario, get_scenario
from carlink_sim.traffic import TrafficGenerator
from carlink_sim.vehicle import VehicleModel

logger = logging.getLogger(__name__)

MODEL_DT = 0.02  # physics step in model seconds; results never depend on how time is chunked
COARSE_MODEL_DT = 0.1  # above COARSE_SCALE a 10 ms bus tick spans many model steps anyway
COARSE_SCALE = 5.0
TICK_S = 0.01  # run(): how often due frames are handed to the sink
FLOOD_WARMUP_S = 120.0  # model seconds into the scenario where the flood pool is captured
FLOOD_POOL_S = 2.0

Sink = Callable[[list[can.Message]], None | Awaitable[None]]
DbcSource = str | Path | Database | None


def load_dbc(dbc: DbcSource) -> Database:
    """A cantools database from a path, an already loaded database, or None for the demo DBC."""
    if dbc is None:
        return load_demo_dbc()
    if isinstance(dbc, Database):
        return dbc
    return load_can_dbc(os.fspath(dbc))


class FloodTraffic:
    """Cycles through pre-encoded frames at a fixed rate (cheap, for benchmarks)."""

    def __init__(self, pool: list[can.Message], fps: float) -> None:
        if not pool:
            raise ValueError("flood pool is empty: the scenario sends nothing to repeat")
        self._pool = [(m.arbitration_id, m.is_extended_id, bytes(m.data)) for m in pool]
        self.fps = fps
        self._next = 0

    def frames_until(self, end: float) -> list[can.Message]:
        """Frames with timestamps k / fps below ``end`` not yet produced."""
        last = math.ceil(end * self.fps - 1e-9)
        out = []
        pool, n = self._pool, len(self._pool)
        for k in range(self._next, last):
            frame_id, extended, data = pool[k % n]
            out.append(can.Message(timestamp=k / self.fps, arbitration_id=frame_id,
                                   is_extended_id=extended, data=data, dlc=len(data)))
        self._next = max(self._next, last)
        return out


class Simulator:
    """A simulated car on a CAN bus: deterministic frames for tests, real-time pacing for demos."""

    def __init__(self, scenario: str = "city-drive", seed: int = 0, time_scale: float = 1.0,
                 flood: float | None = None, dbc: DbcSource = None, obd: bool | str = False,
                 start: tuple[float, float] | None = None) -> None:
        """``obd``: also simulate OBD-II ECUs ("11bit" or True, "29bit"); outputs that carry
        frames both ways (socketcand, a python-can bus) then answer requests (sim/obd_bus.py).
        ``start``: where the car sets off, (latitude, longitude) in degrees; its initial course
        comes from ``seed`` (sim/navigation.py)."""
        if obd not in (False, True, "11bit", "29bit"):
            raise ValueError(f"obd must be False, True, '11bit' or '29bit', got {obd!r}")
        self.obd: str | None = None if obd is False else ("29bit" if obd == "29bit" else "11bit")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale!r}")
        if flood is not None and not flood > 0:
            raise ValueError(f"flood must be a positive frame rate, got {flood!r}")
        try:
            self.scenario: Scenario = get_scenario(scenario)
        except KeyError as err:
            raise ValueError(err.args[0]) from None
        if start is not None and not on_earth(*start):
            raise ValueError(f"start must be (latitude -90..90, longitude -180..180), got {start!r}")
        self.seed = seed
        self.start = start
        self.time_scale = float(time_scale)
        self.db = load_dbc(dbc)
        self.model = VehicleModel(seed=seed, start=start)
        self._script = self.scenario.start(self.model, seed)
        self.model_dt = MODEL_DT if self.time_scale <= COARSE_SCALE else COARSE_MODEL_DT
        self._steps = 0
        self.time = 0.0
        self.flood = flood
        self._traffic = TrafficGenerator(self.db, self.model, seed, self._advance_bus)
        self._flood = FloodTraffic(self._flood_pool(), flood) if flood else None

    @property
    def model_time(self) -> float:
        """How far the vehicle model has advanced, in model seconds."""
        return self._steps * self.model_dt

    @property
    def scenario_length(self) -> float:
        """The scenario's natural length in bus seconds at this time scale."""
        return self.scenario.duration_s / self.time_scale

    def advance_model_to(self, model_time: float) -> None:
        """Step the model (and its scenario script) up to ``model_time``."""
        dt = self.model_dt
        target = math.floor(model_time / dt + 1e-9)
        script, model = self._script, self.model
        while self._steps < target:
            script.update(model, dt)
            model.step(dt)
            self._steps += 1

    def _advance_bus(self, bus_time: float) -> None:
        self.advance_model_to(bus_time * self.time_scale)

    def _flood_pool(self) -> list[can.Message]:
        warmup = min(FLOOD_WARMUP_S, self.scenario.duration_s / 2)
        model = VehicleModel(seed=self.seed, start=self.start)
        script = self.scenario.start(model, self.seed)
        steps = 0

        def advance(bus_time: float) -> None:
            """Step the private warm-up model; the flood pool never touches ``self.model``."""
            nonlocal steps
            while steps < math.floor((warmup + bus_time) / MODEL_DT + 1e-9):
                script.update(model, MODEL_DT)
                model.step(MODEL_DT)
                steps += 1

        advance(0.0)
        return TrafficGenerator(self.db, model, self.seed, advance).frames_until(FLOOD_POOL_S)

    def _generate_until(self, end: float) -> list[can.Message]:
        source = self._flood if self._flood is not None else self._traffic
        frames = source.frames_until(end)
        self._advance_bus(end)  # s.model reflects the end of the window (in flood mode too)
        self.time = max(self.time, end)
        return frames

    def frames(self, duration: float) -> list[can.Message]:
        """The next ``duration`` bus seconds of frames, with simulated timestamps (first call starts at 0)."""
        if duration < 0:
            raise ValueError(f"duration must not be negative, got {duration!r}")
        return self._generate_until(self.time + duration)

    def press_button(self, name: str, hold: float = 0.5) -> None:
        """Hold a steering wheel button (e.g. "PushToTalk") for ``hold`` bus seconds from now."""
        self.model.press_button(name, hold * self.time_scale)

    async def run(self, sink: Sink, duration: float | None = None) -> int:
        """Hand due frames to ``sink`` every ~10 ms in real time, stamped with wall-clock time.

        Runs for ``duration`` seconds, or until cancelled when it is None. ``sink`` may be a
        plain function or return an awaitable. Returns the number of frames delivered.
        """
        loop = asyncio.get_running_loop()
        start, wall0, bus0 = loop.time(), time.time(), self.time
        sent = 0
        while True:
            elapsed = loop.time() - start
            if duration is not None:
                elapsed = min(elapsed, duration)
            batch = self._generate_until(bus0 + elapsed)
            for message in batch:
                message.timestamp = wall0 + (message.timestamp - bus0)
            if batch:
                result = sink(batch)
                if inspect.isawaitable(result):
                    await result
                sent += len(batch)
            if duration is not None and elapsed >= duration:
                return sent
            next_tick = (math.floor(elapsed / TICK_S) + 1) * TICK_S
            await asyncio.sleep(max(0.0, start + next_tick - loop.time()))
