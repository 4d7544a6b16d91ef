"""``carlinkd demo``: the simulator and the daemon in one process, with a live terminal view."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import can

from .config import Config
from .daemon import Daemon
from .events import (AlertAcknowledged, AlertCleared, AlertRaised, BusState, BusStats,
                     DtcCleared, DtcSet, Event, MilState, SignalsUpdated, SignalValue,
                     VehicleIdentified)

# How often the view redraws (terminal) or prints a status line (pipe or file).
TTY_REFRESH_S = 0.5
PLAIN_REFRESH_S = 2.0

_W = "Vehicle.Chassis.Axle.{}.Wheel.{}.Tire.{}"
_TIRES = [("FL", "Row1", "Left"), ("FR", "Row1", "Right"), ("RL", "Row2", "Left"),
          ("RR", "Row2", "Right")]
# (label, canonical name, format) for the rows of the view.
ROWS: list[tuple[str, str, str]] = [
    ("speed", "Vehicle.Speed", "{:.0f} km/h"),
    ("engine", "Vehicle.Powertrain.CombustionEngine.Speed", "{:.0f} rpm"),
    ("gear", "Vehicle.Powertrain.Transmission.SelectedGear", "{}"),
    ("ignition", "Vehicle.LowVoltageSystemState", "{}"),
    ("coolant", "Vehicle.Powertrain.CombustionEngine.ECT", "{:.0f} °C"),
    ("oil temp", "Vehicle.Powertrain.CombustionEngine.EOT", "{:.0f} °C"),
    ("fuel", "Vehicle.Powertrain.FuelSystem.RelativeLevel", "{:.0f} %"),
    ("range", "Vehicle.Powertrain.FuelSystem.Range", "{:.0f} km"),
    ("battery", "Vehicle.LowVoltageBattery.CurrentVoltage", "{:.2f} V"),
    ("odometer", "Vehicle.TraveledDistance", "{:.1f} km"),
    ("oil life", "Vehicle.Service.EngineOilLife", "{:.0f} %"),
    ("service in", "Vehicle.Service.DistanceToService", "{:.0f} km"),
]
# Signals whose changes are shown as events rather than rows.
EVENT_SIGNALS = {
    "Vehicle.Cabin.SteeringWheel.Switches.PushToTalk": "push-to-talk",
    "Vehicle.Cabin.Door.Row1.DriverSide.IsOpen": "driver door",
    "Vehicle.Cabin.Door.Row1.PassengerSide.IsOpen": "passenger door",
    "Vehicle.Cabin.Door.Row2.DriverSide.IsOpen": "rear left door",
    "Vehicle.Cabin.Door.Row2.PassengerSide.IsOpen": "rear right door",
    "Vehicle.Body.Trunk.Rear.IsOpen": "trunk",
    "Vehicle.Body.Hood.IsOpen": "hood",
    "Vehicle.LowVoltageSystemState": "ignition",
}


def _fmt(value: Any, pattern: str) -> str:
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


class LiveView:
    """Renders the latest signals and recent events, as a screen (TTY) or as plain lines."""

    def __init__(self, out: IO[str], tty: bool, started: float) -> None:
        self.out = out
        self.tty = tty
        self.started = started
        self.values: dict[str, SignalValue] = {}
        self.events: deque[str] = deque(maxlen=8)
        self.counters: dict[str, int] = {}
        self.alerts: dict[str, AlertRaised] = {}
        self.vin = ""
        self.frame_rate = 0.0
        self._stats_at: float | None = None

    def feed(self, event: Event, now: float) -> None:
        """Take one hub event into the view."""
        if isinstance(event, SignalsUpdated):
            for name, sv in event.values.items():
                label = EVENT_SIGNALS.get(name)
                if label is not None and name in self.values:
                    self._event(now, f"{label}: {sv.value}")
            self.values.update(event.values)
        elif isinstance(event, BusState):
            self._event(now, f"CAN bus {event.state}" + (f" ({event.detail})" if event.detail else ""))
        elif isinstance(event, BusStats):
            if self._stats_at is not None and event.timestamp > self._stats_at:
                delta = event.counters.get("frames", 0) - self.counters.get("frames", 0)
                self.frame_rate = delta / (event.timestamp - self._stats_at)
            self._stats_at = event.timestamp
            self.counters = dict(event.counters)
        elif isinstance(event, AlertRaised):
            self.alerts[event.key] = event
            self._event(now, f"ALERT {event.severity}: {event.spoken}"
                        + ("" if event.announce else " (silent)"))
        elif isinstance(event, AlertCleared):
            gone = self.alerts.pop(event.key, None)
            self._event(now, f"cleared: {gone.spoken if gone else event.key}")
        elif isinstance(event, AlertAcknowledged):
            self._event(now, f"acknowledged: {event.key}")
        elif isinstance(event, VehicleIdentified):
            self.vin = event.vin
            self._event(now, f"VIN {event.vin} (ECU 0x{event.ecu:X})")
        elif isinstance(event, DtcSet):
            self._event(now, f"DTC {event.code}: {event.description} (ECU 0x{event.ecu:X})")
        elif isinstance(event, DtcCleared):
            self._event(now, f"DTC {event.code} cleared")
        elif isinstance(event, MilState):
            self._event(now, f"check-engine lamp {'on' if event.on else 'off'}")

    def _event(self, now: float, text: str) -> None:
        line = f"[{now - self.started:6.1f}s] {text}"
        self.events.append(line)
        if not self.tty:
            print(line, file=self.out, flush=True)

    def _get(self, name: str, pattern: str) -> str:
        sv = self.values.get(name)
        return "-" if sv is None else _fmt(sv.value, pattern)

    def status_lines(self, now: float) -> list[str]:
        """The signal rows, tyres and bus counters as text lines."""
        rows = [f"{label:>10}: {self._get(name, fmt)}" for label, name, fmt in ROWS]
        tires = "  ".join(
            f"{pos} {self._get(_W.format(r, s, 'Pressure'), '{:.0f}')} kPa "
            f"{self._get(_W.format(r, s, 'Temperature'), '{:.0f}')}°C" for pos, r, s in _TIRES)
        rows.append(f"{'tyres':>10}: {tires}")
        rows.append(f"{'VIN':>10}: {self.vin or '-'} (OBD-II)")
        c = self.counters
        rows.append(f"{'bus':>10}: {c.get('frames', 0)} frames ({self.frame_rate:.0f}/s): "
                    f"{c.get('decoded', 0)} decoded, {c.get('unchanged', 0)} unchanged, "
                    f"{c.get('ignored', 0)} not catalogued, {c.get('unknown_id', 0)} unknown id, "
                    f"{c.get('short', 0) + c.get('long', 0)} odd length, "
                    f"{c.get('decode_errors', 0)} errors")
        return rows

    def render(self, now: float) -> None:
        """Redraw the screen (TTY) or print one compact status line."""
        lines = self.status_lines(now)
        if self.tty:
            screen = ["carlinkd demo  (Ctrl-C to stop)", ""] + lines + ["", "active alerts:"]
            screen += [f"  {a.severity:8} {a.text}" for a in self.alerts.values()] or ["  none"]
            screen += ["", "events:"]
            screen += list(self.events)
            self.out.write("\x1b[H\x1b[2J" + "\n".join(screen) + "\n")
        else:
            compact = ", ".join(f"{label}={self._get(name, fmt)}" for label, name, fmt in ROWS[:9])
            compact += ", tyres=" + "/".join(self._get(_W.format(r, s, "Pressure"), "{:.0f}")
                                             for _pos, r, s in _TIRES) + " kPa"
            self.out.write(f"[{now - self.started:6.1f}s] {compact}\n")
        self.out.flush()


@contextlib.asynccontextmanager
async def _sim_link(cfg: Config, bus: str, simulator: Any
                    ) -> AsyncIterator[tuple[Config, Callable[[list[can.Message]], None]]]:
    """Connect simulator and daemon: a python-can virtual channel or a socketcand server; the
    simulated OBD-II ECUs answer on the same bus."""
    from sim.obd_bus import attach_bus, attach_socketcand

    if bus == "virtual":
        channel = f"carlinkd-demo-{os.getpid()}"
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
    from sim.socketcand import SocketcandServer

    async with SocketcandServer(host="127.0.0.1", port=0, channel="vcan0") as server:
        ecus2 = attach_socketcand(simulator, server)
        options: dict[str, str | int | float | bool] = {"host": "127.0.0.1", "port": server.port}
        try:
            yield replace(cfg, can=replace(cfg.can, interface="socketcand", channel="vcan0",
                                           options=options)), server.broadcast
        finally:
            ecus2.close()


async def run_demo(cfg: Config, args: argparse.Namespace) -> int:
    """Run simulator, daemon and view until the duration ends or Ctrl-C."""
    from sim import Simulator

    from .cli import stop_event

    simulator = Simulator(scenario=args.scenario, seed=args.seed, time_scale=args.time_scale,
                          obd=True)
    stop = stop_event()
    with tempfile.TemporaryDirectory(prefix="carlinkd-demo-") as scratch:
        state_dir = args.state_dir or Path(scratch)
        # The demo serves its D-Bus API on the developer's session bus, if there is one.
        session = bool(os.environ.get("DBUS_SESSION_BUS_ADDRESS"))
        hmi = replace(cfg.hmi, bus="session") if session else replace(cfg.hmi, enabled=False)
        demo_cfg = replace(cfg, daemon=replace(cfg.daemon, state_dir=state_dir), hmi=hmi)
        await _demo(demo_cfg, args, simulator, stop)
    return 0


async def _demo(cfg: Config, args: argparse.Namespace, simulator: Any, stop: asyncio.Event) -> None:
    """The demo proper, with its state directory chosen."""
    async with _sim_link(cfg, args.bus, simulator) as (demo_cfg, sink):
        # Alert hold times and leak windows run on the car's clock, which --time-scale speeds up.
        epoch = time.time()
        daemon = Daemon(demo_cfg, clock=lambda: epoch + simulator.model_time)
        view = LiveView(sys.stdout, sys.stdout.isatty(), time.monotonic())
        sub = daemon.hub.subscribe(SignalsUpdated, BusState, BusStats, AlertRaised, AlertCleared,
                                   AlertAcknowledged, VehicleIdentified, DtcSet, DtcCleared,
                                   MilState, name="demo-view")
        async with daemon:
            await asyncio.sleep(0.2)  # let the daemon's bus open before the car starts talking
            sim_task = asyncio.create_task(simulator.run(sink, duration=args.duration))
            sim_task.add_done_callback(lambda _t: stop.set())
            await _view_loop(view, sub, stop)
            sim_task.cancel()
            await asyncio.gather(sim_task, return_exceptions=True)
        view.render(time.monotonic())


async def _view_loop(view: LiveView, sub: Any, stop: asyncio.Event) -> None:
    refresh = TTY_REFRESH_S if view.tty else PLAIN_REFRESH_S
    next_render = time.monotonic() + refresh
    while not stop.is_set():
        timeout = max(0.0, next_render - time.monotonic())
        with contextlib.suppress(asyncio.TimeoutError):
            event = await asyncio.wait_for(sub.get(), timeout)
            view.feed(event, time.monotonic())
        if time.monotonic() >= next_render:
            view.render(time.monotonic())
            next_render += refresh
