"""The demo's view: what each car's hub says, as a screen (terminal) or as plain lines.

Plain lines start with who is speaking: the car (``car1``), the backend (``cloud``) or the demo
itself (``demo``), then the seconds since the start, so a run can be read and grepped afterwards.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import IO, Any

from carlinkd.events import (AlertAcknowledged, AlertCleared, AlertRaised, BookingOptions,
                     BookingUpdated, BusState, BusStats, CloudState, Command, DtcCleared, DtcSet,
                     Event, HelpCancelled, HelpDetail, HelpRequest, HelpResponse, HelpStatus,
                     IntentRecognized, MessageReceived, MilState, SignalsUpdated,
                     SignalValue, Spoken, SyncRejected, VehicleIdentified, VoiceState)
from carlink_protocol.geo import great_circle_km

# How often the view redraws (terminal) or prints a status line per car (pipe or file).
TTY_REFRESH_S = 0.5
PLAIN_REFRESH_S = 2.0
IGNITION = "Vehicle.LowVoltageSystemState"
LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
# Voice states shown as lines: the car waits for the driver's answer.
WAITING_STATES = ("confirming", "filling")

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


def _slots(slots: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in dict(slots).items())


def describe(event: Event) -> str | None:
    """One line for an event worth showing on its own (None: it only updates the rows)."""
    if isinstance(event, Spoken):
        return f'says: "{event.text}"'
    if isinstance(event, BusState):
        return f"CAN bus {event.state}" + (f" ({event.detail})" if event.detail else "")
    if isinstance(event, AlertRaised):
        return f"ALERT {event.severity}: {event.spoken}" + ("" if event.announce else " (silent)")
    if isinstance(event, AlertAcknowledged):
        return f"acknowledged: {event.key}"
    if isinstance(event, VehicleIdentified):
        return f"VIN {event.vin} (ECU 0x{event.ecu:X})"
    if isinstance(event, DtcSet):
        return f"DTC {event.code}: {event.description} (ECU 0x{event.ecu:X})"
    if isinstance(event, DtcCleared):
        return f"DTC {event.code} cleared"
    if isinstance(event, MilState):
        return f"check-engine lamp {'on' if event.on else 'off'}"
    return _describe_cloud(event) or _describe_voice(event)


def _describe_cloud(event: Event) -> str | None:
    if isinstance(event, CloudState):
        return f"cloud {event.state}" + (f" ({event.detail})" if event.detail else "")
    if isinstance(event, MessageReceived):
        return f'message from {event.sender} in {event.group}: "{event.text}"'
    if isinstance(event, HelpRequest):
        note = f' "{event.note}"' if event.note else ""
        return f"help request from {event.sender}, {event.distance_km:.1f} km away{note}"
    if isinstance(event, HelpResponse):
        return f'help response from {event.responder}: "{event.text}"'
    if isinstance(event, BookingUpdated):
        where = f" at {event.shop}" if event.shop else ""
        why = f" ({event.reason})" if event.reason else ""
        return f"booking {event.status}: {event.service}{where}, {event.day} {event.time}{why}"
    if isinstance(event, SyncRejected):
        return f"refused {event.what}: {event.reason}"
    return _describe_consent(event)


def _describe_consent(event: Event) -> str | None:
    """Protocol 2: what the help life cycle and the booking choice look like."""
    if isinstance(event, HelpDetail):
        return f"help detail from the cloud: {event.sender} is at {event.latitude:.5f}," \
               f"{event.longitude:.5f} (sent only to this car, which said yes)"
    if isinstance(event, HelpCancelled):
        return f"help request from {event.sender} cancelled"
    if isinstance(event, HelpStatus):
        return f"own help request {event.state}" + (f" ({event.detail})" if event.detail else "")
    if isinstance(event, BookingOptions):
        shops = ", ".join(o.shop + ("" if o.distance_km is None else f" {o.distance_km:g} km")
                          for o in event.options)
        return f"booking options: {shops or 'none'}"
    return None


def _describe_voice(event: Event) -> str | None:
    if isinstance(event, IntentRecognized):
        what = event.intent or "not understood"
        slots = f" ({_slots(event.slots)})" if event.slots else ""
        return f'heard: "{event.text}" -> {what}{slots}'
    if isinstance(event, Command) and event.origin in ("voice", "hmi", "dbus"):
        return f"command {event.name}" + (f" ({_slots(event.args)})" if event.args else "")
    return None


class CarView:
    """The latest signals, alerts and connection states of one car."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[str, SignalValue] = {}
        self.counters: dict[str, int] = {}
        self.alerts: dict[str, AlertRaised] = {}
        self.vin = ""
        self.frame_rate = 0.0
        self.cloud = "-"
        self.voice = "-"
        self.stats_seen = 0
        self._stats_at: float | None = None

    @property
    def position(self) -> tuple[float, float] | None:
        """(lat, lon) once the navigation unit has reported it."""
        lat, lon = self.values.get(LATITUDE), self.values.get(LONGITUDE)
        if lat is None or lon is None:
            return None
        return float(lat.value), float(lon.value)

    def awake(self) -> bool:
        """A second of bus traffic seen (every catalogued message has arrived once) and, when
        the ignition is on, the position."""
        ignition = self.values.get(IGNITION)
        parked = ignition is not None and ignition.value == "Off"
        return self.stats_seen >= 2 and (parked or self.position is not None)

    def feed(self, event: Event) -> list[str]:
        """Take one hub event; returns the lines it is worth (usually none)."""
        if isinstance(event, SignalsUpdated):
            lines = [f"{label}: {sv.value}" for name, sv in event.values.items()
                     if (label := EVENT_SIGNALS.get(name)) is not None and name in self.values]
            self.values.update(event.values)
            return lines
        if isinstance(event, BusStats):
            if self._stats_at is not None and event.timestamp > self._stats_at:
                delta = event.counters.get("frames", 0) - self.counters.get("frames", 0)
                self.frame_rate = delta / (event.timestamp - self._stats_at)
            self._stats_at = event.timestamp
            self.stats_seen += event.counters.get("frames", 0) > 0
            self.counters = dict(event.counters)
            return []
        if isinstance(event, VoiceState):
            changed, self.voice = event.state != self.voice, event.state
            if not changed or event.state not in WAITING_STATES:
                return []  # the lines of what is heard and said tell the rest
            return [f"voice {event.state}" + (f" ({event.detail})" if event.detail else "")]
        if isinstance(event, AlertRaised):
            self.alerts[event.key] = event
        elif isinstance(event, AlertCleared):
            gone = self.alerts.pop(event.key, None)
            return [f"cleared: {gone.spoken if gone else event.key}"]
        elif isinstance(event, VehicleIdentified):
            self.vin = event.vin
        elif isinstance(event, CloudState):
            self.cloud = event.state
        line = describe(event)
        return [line] if line else []

    def get(self, name: str, pattern: str) -> str:
        """A signal formatted, or '-' when not seen yet."""
        sv = self.values.get(name)
        return "-" if sv is None else _fmt(sv.value, pattern)

    def where(self) -> str:
        """The position as text."""
        pos = self.position
        return "-" if pos is None else f"{pos[0]:.5f},{pos[1]:.5f}"

    def detail_lines(self) -> list[str]:
        """The signal rows, tyres and bus counters (the one-car screen)."""
        rows = [f"{label:>10}: {self.get(name, fmt)}" for label, name, fmt in ROWS]
        tires = "  ".join(
            f"{pos} {self.get(_W.format(r, s, 'Pressure'), '{:.0f}')} kPa "
            f"{self.get(_W.format(r, s, 'Temperature'), '{:.0f}')}°C" for pos, r, s in _TIRES)
        rows.append(f"{'tyres':>10}: {tires}")
        rows.append(f"{'position':>10}: {self.where()}")
        rows.append(f"{'VIN':>10}: {self.vin or '-'} (OBD-II)")
        rows.append(f"{'cloud':>10}: {self.cloud}    voice: {self.voice}")
        c = self.counters
        rows.append(f"{'bus':>10}: {c.get('frames', 0)} frames ({self.frame_rate:.0f}/s): "
                    f"{c.get('decoded', 0)} decoded, {c.get('unchanged', 0)} unchanged, "
                    f"{c.get('ignored', 0)} not catalogued, {c.get('unknown_id', 0)} unknown id, "
                    f"{c.get('short', 0) + c.get('long', 0)} odd length, "
                    f"{c.get('decode_errors', 0)} errors")
        return rows

    def compact(self) -> str:
        """One status line (plain output)."""
        text = ", ".join(f"{label}={self.get(name, fmt)}" for label, name, fmt in ROWS[:9])
        text += ", tyres=" + "/".join(self.get(_W.format(r, s, "Pressure"), "{:.0f}")
                                      for _pos, r, s in _TIRES) + " kPa"
        return text + f", pos={self.where()}, cloud={self.cloud}, voice={self.voice}"


class DemoView:
    """Every car's view plus one shared list of events, rendered together."""

    def __init__(self, out: IO[str], tty: bool, started: float, cars: list[str],
                 clock: Callable[[], float]) -> None:
        self.out = out
        self.tty = tty
        self.started = started
        self.clock = clock
        self.cars = {name: CarView(name) for name in cars}
        self.events: deque[str] = deque(maxlen=12 if len(cars) == 1 else 18)
        self.title = "carlinkd demo"

    def feed(self, car: str, event: Event) -> None:
        """One hub event from a car."""
        for line in self.cars[car].feed(event):
            self.line(car, line)

    def line(self, who: str, text: str) -> None:
        """An event line: printed at once (plain) or kept for the next screen (TTY)."""
        stamp = f"[{self.clock() - self.started:6.1f}s]"
        if self.tty:
            self.events.append(f"{stamp} {who:5} {text}")
        else:
            print(f"{who} {stamp} {text}", file=self.out, flush=True)

    def render(self) -> None:
        """Redraw the screen (TTY) or print one status line per car."""
        if not self.tty:
            stamp = f"[{self.clock() - self.started:6.1f}s]"
            for name, car in self.cars.items():
                self.out.write(f"{name} {stamp} {car.compact()}\n")
            self.out.flush()
            return
        screen = [f"{self.title}  (Ctrl-C to stop)", ""]
        if len(self.cars) == 1:
            (car,) = self.cars.values()
            screen += car.detail_lines() + ["", "active alerts:"]
            screen += [f"  {a.severity:8} {a.text}" for a in car.alerts.values()] or ["  none"]
        else:
            screen += self._table()
        screen += ["", "events:", *self.events]
        self.out.write("\x1b[H\x1b[2J" + "\n".join(screen) + "\n")
        self.out.flush()

    def _table(self) -> list[str]:
        rows = [(f"{'car':5} {'speed':>8} {'ignition':9} {'fuel':>5} {'position':21} "
                 f"{'from car1':>9} {'cloud':10} {'voice':11} alerts")]
        first = next(iter(self.cars.values())).position
        for name, car in self.cars.items():
            pos = car.position
            dist = f"{great_circle_km(*first, *pos):.1f} km" if first and pos and name != "car1" \
                else "-"
            rows.append(f"{name:5} {car.get('Vehicle.Speed', '{:.0f} km/h'):>8} "
                        f"{car.get('Vehicle.LowVoltageSystemState', '{}'):9} "
                        f"{car.get('Vehicle.Powertrain.FuelSystem.RelativeLevel', '{:.0f}%'):>5} "
                        f"{car.where():21} {dist:>9} {car.cloud:10} {car.voice:11} "
                        f"{len(car.alerts)}")
        return rows
