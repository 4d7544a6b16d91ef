"""``carlinkd demo``: simulated cars, their daemons and the cloud backend in one process.

Each car is a simulator on its own bus (a python-can virtual channel or a socketcand server) and a
:class:`~carlinkd.daemon.Daemon` with its own state directory; the reference backend
(carlink_cloud) runs on 127.0.0.1 with every car enrolled and in one group, so alerts, status,
messages and help requests really travel over WebSockets. Voice steps (``--say``/``--ptt``, or the
built-in script for two or more cars, :mod:`carlink_demo.script`) run through each car's real
voice service. The view is :mod:`carlink_demo.view`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import can

from carlink_sim import Simulator
from carlink_sim.navigation import DEFAULT_START, offset_position

from carlinkd.config import Config
from carlinkd.daemon import Daemon
from .args import Step
from .cloud import DemoCloud
from .script import Journal, ScriptStep, builtin_script, run_steps, spoken_script
from .view import PLAIN_REFRESH_S, TTY_REFRESH_S, DemoView
from carlinkd.errors import CarlinkError
from carlinkd.events import (AlertAcknowledged, AlertCleared, AlertRaised, BookingOptions,
                     BookingUpdated, BusState, BusStats, CloudState, Command, DtcCleared, DtcSet,
                     Event, GroupsListed, HelpCancelled, HelpDetail, HelpRequest, HelpResponse,
                     HelpStatus, IntentRecognized, MessageReceived, MilState,
                     SignalsUpdated, Spoken, SyncRejected, VehicleIdentified, VoiceState)
from carlinkd.hub import Subscription
from carlinkd.voice.service import VoiceService
from carlink_protocol.geo import great_circle_km

# Where the other cars start: near ones within a few km of car1, with three or more cars the last
# one beyond the backend's help radius (25 km), so "nearby" shows.
NEAR_KM = (0.8, 3.0)
FAR_KM = 60.0
# Each car reports its status (with its position, which help requests are routed by) this often.
STATUS_INTERVAL_S = 2.0
READY_TIMEOUT_S = 30.0
VIEW_EVENTS: tuple[type[Event], ...] = (
    SignalsUpdated, BusState, BusStats, AlertRaised, AlertCleared, AlertAcknowledged,
    VehicleIdentified, DtcSet, DtcCleared, MilState, CloudState, MessageReceived, BookingUpdated,
    HelpRequest, HelpResponse, SyncRejected, IntentRecognized, VoiceState, Command, GroupsListed,
    Spoken, HelpDetail, HelpCancelled, HelpStatus, BookingOptions)

Sink = Callable[[list[can.Message]], None]


@dataclass
class Car:
    """One simulated car: its simulator, its daemon and its state directory."""

    name: str
    simulator: Simulator
    state_dir: Path
    daemon: Daemon | None = None
    sub: Subscription | None = None


def start_positions(first: tuple[float, float], count: int, seed: int) -> list[tuple[float, float]]:
    """car1 at ``first``; the others a few km away, and with three or more cars the last far off."""
    rng = random.Random(f"fleet:{seed}")
    out = [first]
    for i in range(1, count):
        far = count >= 3 and i == count - 1
        km = FAR_KM if far else rng.uniform(*NEAR_KM)
        out.append(offset_position(*first, km * 1000.0, rng.uniform(0.0, 360.0)))
    return out


class Demo:
    """The running demo: cars, backend, view, journal; see :func:`run_demo`."""

    def __init__(self, cfg: Config, args: argparse.Namespace, steps: list[Step], base: Path,
                 scratch: Path) -> None:
        self.cfg, self.args, self.steps = cfg, args, steps
        self.base, self.scratch = base, scratch
        names = [f"car{i}" for i in range(1, args.cars + 1)]
        self.starts = start_positions(args.start or DEFAULT_START, len(names), args.seed)
        self.cars = {name: Car(name, Simulator(scenario=args.scenario, seed=args.seed + i,
                                               time_scale=args.time_scale, obd=True,
                                               start=self.starts[i]), base / name)
                     for i, name in enumerate(names)}
        self.far = names[-1] if len(names) >= 3 else None
        self.helpers = names[1:]  # opted in as helpers (see car_config)
        self.view = DemoView(sys.stdout, sys.stdout.isatty(), time.monotonic(), names,
                             time.monotonic)
        self.journal = Journal()
        self.cloud: DemoCloud | None = None
        self.stop = asyncio.Event()
        self.missed: list[str] = []
        self.failure: BaseException | None = None

    # --- the Fleet protocol of demo_script -------------------------------------------------

    def voice(self, car: str) -> VoiceService:
        """The voice service of a car (voice is always on in the demo)."""
        daemon = self.cars[car].daemon
        assert daemon is not None and daemon.voice is not None
        return daemon.voice

    def voices(self) -> list[VoiceService]:
        """Every car's voice service."""
        return [self.voice(name) for name in self.cars]

    def line(self, who: str, text: str) -> None:
        """An output line."""
        self.view.line(who, text)

    # --- set-up ------------------------------------------------------------------------------

    def car_config(self, car: Car, index: int, link: Config) -> Config:
        """One car's configuration: its own state, speech directory, cloud identity, bus."""
        cfg = self.cfg
        # The demo serves car1's D-Bus API on the developer's session bus, if there is one.
        session = index == 0 and bool(os.environ.get("DBUS_SESSION_BUS_ADDRESS"))
        hmi = replace(cfg.hmi, bus="session") if session else replace(cfg.hmi, enabled=False)
        speech = self.args.speech_dir / car.name if self.args.speech_dir else cfg.voice.reply_dir
        sync = replace(cfg.sync, db=None, url=None)  # --no-cloud: offline, whatever the file says
        if self.cloud is not None:
            sync = replace(sync, url=self.cloud.url, token=self.cloud.tokens[car.name],
                           token_file=None, status_interval_s=STATUS_INTERVAL_S)
        # Consent: the demo opts every car but car1 in as a helper (only a ~5 km cell leaves
        # them); car1 shares its position only with its confirmed help request.
        social = replace(cfg.social, helper=car.name in self.helpers)
        return replace(cfg, can=link.can, hmi=hmi, sync=sync, social=social,
                       daemon=replace(cfg.daemon, state_dir=car.state_dir),
                       store=replace(cfg.store, path=None, device_key=None),
                       voice=replace(cfg.voice, enabled=True, reply_dir=speech))

    async def run(self) -> int:
        """Everything, from the backend to the last line: 0, or CarlinkError when an expected
        reaction did not come (or whatever made a simulator or a step fail)."""
        async with contextlib.AsyncExitStack() as stack:
            if not self.args.no_cloud:
                db = self.base / "cloud.db"
                self.cloud = DemoCloud(db, [(c.name, c.state_dir) for c in self.cars.values()],
                                       self.cfg.voice.groups.get(self.cfg.voice.language, ()),
                                       self.starts[0])
                await stack.enter_async_context(self.cloud)
                self.line("cloud", f"backend listening on {self.cloud.url} (db {db}); devices "
                                   f"{', '.join(self.cars)} in {', '.join(self.cloud.groups)}")
            self._consent_line()
            sinks = []
            for i, car in enumerate(self.cars.values()):
                self._where(car)
                link, sink = await stack.enter_async_context(
                    _sim_link(self.cfg, self.args.bus, car.simulator, f"{os.getpid()}-{i + 1}"))
                car.daemon = Daemon(self.car_config(car, i, link),
                                    clock=_model_clock(car.simulator))
                car.sub = car.daemon.hub.subscribe(*VIEW_EVENTS, name="demo-view")
                stack.push_async_callback(car.daemon.stop)
                sinks.append(sink)
            pumps = [asyncio.create_task(self._pump(car), name=f"demo-{car.name}")
                     for car in self.cars.values()]
            stack.push_async_callback(_cancel, pumps)
            await self._start_daemons()
            await self._play(sinks)
        self.view.render()
        if self.failure is not None:
            raise self.failure
        if self.missed:
            raise CarlinkError(f"demo: {len(self.missed)} expected reaction(s) missing: "
                               + "; ".join(self.missed))
        return 0

    async def _start_daemons(self) -> None:
        results = await asyncio.gather(*(c.daemon.start() for c in self.cars.values()
                                         if c.daemon is not None), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if self.steps or len(self.cars) > 1:
            # The steps are the drivers' voices; several cars must not share one microphone.
            for voice in self.voices():
                if voice.microphone is not None:
                    voice.microphone.stop()
                    voice.microphone = None

    def _consent_line(self) -> None:
        """Say what leaves each car ([sync] location, [social] helper)."""
        where = self.cfg.sync.location
        self.line("demo", f"location = {where}: " + {
            "help": "no car sends its position, except with a help request its driver "
                    "confirmed",
            "off": "no car sends its position, not even with a help request",
            "always": "every car sends its position in each status"}[where])
        if self.helpers:
            self.line("demo", f"{', '.join(self.helpers)} opted in as helpers for this demo "
                              "([social] helper = true): the backend learns only their ~5 km "
                              "cell")

    def _where(self, car: Car) -> None:
        lat, lon = car.simulator.model.nav.latitude, car.simulator.model.nav.longitude
        text = f"starts at {lat:.5f},{lon:.5f}"
        if car.name != "car1":
            text += f", {great_circle_km(*self.starts[0], lat, lon):.1f} km from car1"
        self.line(car.name, text)

    async def _pump(self, car: Car) -> None:
        assert car.sub is not None
        async for event in car.sub:
            self.view.feed(car.name, event)
            self.journal.add(car.name, event)

    async def _play(self, sinks: list[Sink]) -> None:
        """Cars driving, script running, view refreshing, until the end."""
        up = await self.journal.until(lambda: all(
            self.journal.find(c, lambda e: isinstance(e, BusState) and e.state == "up")
            for c in self.cars), 5.0)
        if not up:
            self.line("demo", "a CAN bus did not come up within 5 s; driving anyway")
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(c.simulator.run(sink, duration=self.args.duration),
                                name=f"sim-{c.name}")
            for c, sink in zip(self.cars.values(), sinks, strict=True)]
        script = await self._script()
        if script is not None:
            tasks.append(asyncio.create_task(self._run_script(script), name="demo-script"))
        for task in tasks:
            task.add_done_callback(self._ended)
        try:
            await self._view_loop()
        finally:
            if script is not None and not tasks[-1].done():
                self.line("demo", "stopped before the voice steps were done")
            await _cancel(tasks)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        """A simulator's duration is over, the steps are done, or either failed: stop."""
        if task.cancelled():
            return
        if task.exception() is not None and self.failure is None:
            self.failure = task.exception()
        if task.get_name() != "demo-script" or self.args.duration is None \
                or self.failure is not None:
            self.stop.set()

    async def _script(self) -> list[ScriptStep] | None:
        steps = [ScriptStep(s) for s in self.steps]
        if steps:
            return steps
        if len(self.cars) < 2:
            return None
        if self.cloud is None or self.cfg.voice.language != "en":
            why = "--no-cloud" if self.cloud is None else f"language {self.cfg.voice.language}"
            self.line("demo", f"no built-in voice script ({why}); it needs the backend and "
                              "English")
            return None
        script, how = await spoken_script(builtin_script(list(self.cars), self.far),
                                          self.scratch / "script", dict(self.cfg.voice.tts_voices),
                                          "en")
        self.line("demo", f"built-in script with {len(script)} steps, as {how}")
        return script

    async def _run_script(self, script: list[ScriptStep]) -> None:
        await self._ready()
        mark = self.journal.mark()
        outcome = await run_steps(self, script)
        self.missed += outcome.missed
        if self.far is not None and not self.steps:
            self._far_car_check(mark)
        expected = sum(len(s.expect) for s in script)
        verdict = (f", {len(self.missed)} expectation(s) missed" if self.missed
                   else ", all as expected" if expected else "")
        self.line("demo", f"voice steps done ({outcome.done}/{len(script)}{verdict})")

    def _far_car_check(self, since: int) -> None:
        assert self.far is not None
        pos, first = self.view.cars[self.far].position, self.view.cars["car1"].position
        dist = f"{great_circle_km(*first, *pos):.1f} km from car1" if pos and first else "far away"
        got = self.journal.find(self.far, lambda e: isinstance(e, HelpRequest), since)
        if got is None:
            self.line("demo", f"ok: {self.far} ({dist}) got no help request")
        else:
            self.line("demo", f"MISSED: {self.far} ({dist}) got a help request")
            self.missed.append(f"{self.far} got a help request")

    async def _ready(self) -> None:
        """Before the first step: every car awake on its bus and, with the backend, online with
        its position known there (help requests are routed by it)."""
        def ready() -> bool:
            return all(v.awake() and (self.cloud is None or v.cloud == "online")
                       for v in self.view.cars.values())
        ok = await self.journal.until(ready, READY_TIMEOUT_S)
        # With consent, the backend knows only the helpers' cells (and positions sent on purpose).
        located = {n for n, v in self.view.cars.items() if v.position is not None
                   and (n in self.helpers or self.cfg.sync.location == "always")}
        if ok and self.cloud is not None and located:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + READY_TIMEOUT_S
            while not located <= await self.cloud.located():
                if loop.time() > deadline:
                    ok = False
                    break
                await asyncio.sleep(STATUS_INTERVAL_S / 4)  # the backend has no event for this
        if not ok:
            self.line("demo", f"not every car was ready within {READY_TIMEOUT_S:.0f} s; going on")
        elif self.cloud is not None:
            self.line("cloud", f"{', '.join(self.cars)} online; the backend knows roughly where "
                               f"{', '.join(sorted(located)) or 'none of them'} "
                               f"{'is' if len(located) == 1 else 'are'}")

    async def _view_loop(self) -> None:
        refresh = TTY_REFRESH_S if self.view.tty else PLAIN_REFRESH_S
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), refresh)
            if not self.stop.is_set():
                self.view.render()


def _model_clock(simulator: Simulator) -> Callable[[], float]:
    # Alert hold times and leak windows run on the car's clock, which --time-scale speeds up.
    epoch = time.time()
    return lambda: epoch + simulator.model_time


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def _sim_link(cfg: Config, bus: str, simulator: Simulator, tag: str
                    ) -> AsyncIterator[tuple[Config, Sink]]:
    """Connect a simulator and a daemon: a python-can virtual channel or a socketcand server;
    the simulated OBD-II ECUs answer on the same bus."""
    from carlink_sim.obd_bus import attach_bus, attach_socketcand

    if bus == "virtual":
        channel = f"carlinkd-demo-{tag}"
        tx = can.Bus(interface="virtual", channel=channel)
        ecus = attach_bus(simulator, tx)

        def send(frames: list[can.Message]) -> None:
            for frame in frames:
                tx.send(frame)
        try:
            yield replace(cfg, can=replace(cfg.can, interface="virtual", channel=channel)), send
        finally:
            ecus.stop()
            tx.shutdown()
        return
    from carlink_sim.socketcand import SocketcandServer

    async with SocketcandServer(host="127.0.0.1", port=0, channel="vcan0") as server:
        ecus2 = attach_socketcand(simulator, server)
        options: dict[str, str | int | float | bool] = {"host": "127.0.0.1", "port": server.port}
        try:
            yield replace(cfg, can=replace(cfg.can, interface="socketcand", channel="vcan0",
                                           options=options)), server.broadcast
        finally:
            ecus2.close()


async def run_demo(cfg: Config, args: argparse.Namespace, steps: list[Step] | None = None) -> int:
    """Run backend, simulators, daemons, voice steps and view until the end or Ctrl-C."""
    from carlinkd.cli import stop_event

    stop = stop_event()
    with tempfile.TemporaryDirectory(prefix="carlinkd-demo-") as scratch:
        base = args.state_dir or Path(scratch)
        if args.speech_dir is not None:
            try:
                args.speech_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise CarlinkError(f"cannot create --speech-dir {args.speech_dir}: "
                                   f"{err.strerror}") from err
        demo = Demo(cfg, args, list(steps or []), base, Path(scratch))
        stop_task = asyncio.create_task(stop.wait(), name="demo-interrupt")
        stop_task.add_done_callback(lambda _t: demo.stop.set())
        try:
            code = await demo.run()
        finally:
            await _cancel([stop_task])
        if args.report is not None:
            await _report(demo, args.report)
        return code


async def _report(demo: Demo, out: Path) -> None:
    """car1's condition report after the run (its daemon has stopped and closed its store)."""
    from carlinkd.report.cli import export_report

    car = next(iter(demo.cars.values()))
    cfg = replace(demo.cfg, daemon=replace(demo.cfg.daemon, state_dir=car.state_dir))
    for path in await export_report(cfg, out):
        demo.line("report", f"wrote {path} ({path.stat().st_size:,} bytes)")
