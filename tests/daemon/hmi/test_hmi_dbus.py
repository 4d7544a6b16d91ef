"""The D-Bus API end to end: a private dbus-daemon, a real Daemon fed by the simulator over a
virtual CAN bus, and busctl / gdbus run as they are (subprocesses) as the external clients.

Events that only the cloud or the OBD poller produce (MessageReceived, BookingUpdated,
HelpRequest, SyncRejected, CloudState "online", VehicleIdentified) are published on the daemon's
hub: the hub is the API's input boundary and neither producer runs here. Alerts, the outbox and
the voice dialog (IntentRecognized, VoiceState, Spoken) are the daemon's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from carlinkd.alerts.settings import AlertsConfig, CoolantHigh
from carlinkd.can.settings import CanConfig
from carlinkd.config import Config
from carlinkd.settings import DaemonConfig
from carlinkd.hmi.settings import HmiConfig
from carlinkd.sync.settings import SyncConfig
from carlinkd.daemon import Daemon
from carlinkd.events import (BookingUpdated, CloudState, Command, HelpRequest, MessageReceived,
                             SignalsUpdated, SignalValue, SyncRejected, VehicleIdentified)
from carlinkd.hmi import HmiService
from carlink_sim import Simulator
from support.wait import eventually

ROOT = Path(__file__).resolve().parents[3]
POLICY = ROOT / "systemd" / "org.carlinkd.Daemon1.conf"
DEST = IFACE = "org.carlinkd.Daemon1"
OBJ = "/org/carlinkd/Daemon1"
ECT = "Vehicle.Powertrain.CombustionEngine.ECT"
ERR = "org.carlinkd.Daemon1.Error."

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not all(shutil.which(t) for t in ("dbus-daemon", "busctl", "gdbus")),
                       reason="needs dbus-daemon, busctl and gdbus"),
]


# -- a private bus and external clients --


class PrivateBus:
    """A dbus-daemon of our own; ``address`` is what it printed."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(["dbus-daemon", *args, "--print-address", "--nofork"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        self.address = self.proc.stdout.readline().strip()
        assert self.address.startswith("unix:"), self.address

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def session_bus() -> Iterator[PrivateBus]:
    bus = PrivateBus("--session")
    yield bus
    bus.close()


async def run(*argv: str, user: str | None = None) -> tuple[int, str, str]:
    """Run a client to completion: (exit code, stdout, stderr)."""
    if user is not None:
        group = "nogroup" if user == "nobody" else user
        argv = ("setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups", *argv)
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def busctl(address: str, verb: str, *args: str) -> tuple[str, ...]:
    if verb in ("call", "get-property"):
        return ("busctl", f"--address={address}", verb, DEST, OBJ, IFACE, *args)
    return ("busctl", f"--address={address}", verb, DEST, OBJ, *args)


def gdbus(address: str, method: str, *args: str) -> tuple[str, ...]:
    return ("gdbus", "call", "--address", address, "--dest", DEST, "--object-path", OBJ,
            "--method", method, *args)


async def ok(*argv: str, user: str | None = None) -> str:
    code, out, err = await run(*argv, user=user)
    assert code == 0, f"{argv[:6]} failed: {err.strip()}"
    return out


@dataclass
class Listener:
    """A dbus-fast client collecting every signal the daemon's object sends."""

    bus: MessageBus
    got: list[Message] = field(default_factory=list)

    def members(self) -> list[str]:
        return [m.member for m in self.got]

    def bodies(self, member: str) -> list[list[Any]]:
        return [m.body for m in self.got if m.member == member]

    def changed(self, prop: str) -> list[Any]:
        return [m.body[1][prop].value for m in self.got
                if m.member == "PropertiesChanged" and prop in m.body[1]]


@contextlib.asynccontextmanager
async def listening(address: str) -> AsyncIterator[Listener]:
    bus = await MessageBus(bus_address=address).connect()
    listener = Listener(bus)

    def collect(msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL and msg.path == OBJ:
            listener.got.append(msg)

    bus.add_message_handler(collect)
    await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                           interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                           body=[f"type='signal',sender='{DEST}',path='{OBJ}'"]))
    try:
        yield listener
    finally:
        bus.disconnect()
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()


# -- a real daemon on the simulated car --


@dataclass
class Car:
    daemon: Daemon
    hmi: HmiService
    channel: str
    commands: Any
    drives: list[asyncio.Task[int]] = field(default_factory=list)

    def drive(self, seconds: float) -> asyncio.Task[int]:
        """Play the highway scenario onto the daemon's virtual bus for a while."""
        async def play() -> int:
            tx = can.Bus(interface="virtual", channel=self.channel)
            try:
                sim = Simulator(scenario="highway", seed=3, time_scale=20.0)
                return await sim.run(lambda frames: [tx.send(f) for f in frames], seconds)
            finally:
                tx.shutdown()
        self.drives.append(asyncio.create_task(play(), name="sim-drive"))
        return self.drives[-1]

    def drained(self) -> list[tuple[str, dict[str, str], str]]:
        out = []
        while (event := self.commands.get_nowait()) is not None:
            out.append((event.name, dict(event.args), event.origin))
        return out


def car_config(tmp_path: Path, address: str) -> Config:
    # Coolant above 0 degC raises coolant_high at once and below -10 clears it: a real alert
    # from the real engine within the test's time.
    coolant = CoolantHigh(above=0.0, clear_at=-10.0, hold_s=0.0, clear_hold_s=0.0)
    return Config(daemon=DaemonConfig(state_dir=tmp_path),
                  can=CanConfig(interface="virtual",
                                channel=f"hmi-{os.getpid()}-{time.monotonic_ns()}"),
                  alerts=AlertsConfig(coolant_high=coolant, tick_s=0.2),
                  sync=SyncConfig(status_interval_s=0.5),
                  hmi=HmiConfig(bus=address, signals_interval_s=0.5))


@contextlib.asynccontextmanager
async def running_car(tmp_path: Path, address: str) -> AsyncIterator[Car]:
    cfg = car_config(tmp_path, address)
    async with Daemon(cfg) as daemon:  # the daemon starts its own D-Bus service
        commands = daemon.hub.subscribe(Command, name="test-commands")
        hmi = daemon.hmi
        assert hmi is not None
        assert await hmi.wait_ready(10.0)
        assert cfg.can.channel is not None
        car = Car(daemon, hmi, cfg.can.channel, commands)
        try:
            yield car
        finally:
            for task in car.drives:  # a failed assertion must not leak the simulator
                task.cancel()
            await asyncio.gather(*car.drives, return_exceptions=True)
            commands.close()


# -- the tests --


async def test_introspect_properties_and_every_method_from_busctl_and_gdbus(
        tmp_path: Path, session_bus: PrivateBus) -> None:
    addr = session_bus.address
    async with running_car(tmp_path, addr) as car:
        assert car.hmi.ready
        text = await ok(*busctl(addr, "introspect"))
        for member, sig in [("PushToTalk", "-"), ("SubmitText", "s"), ("Say", "s"),
                            ("AcknowledgeAlert", "s"), ("GetSignals", "as"),
                            ("SendMessage", "ss"), ("BookService", "sss"),
                            ("Version", "s"), ("CloudState", "s"), ("BusState", "s"),
                            ("Vin", "s"), ("ActiveAlerts", "a(ssss)"), ("VoiceState", "s"),
                            ("OutboxDepth", "u"), ("OldestOutboxAgeSeconds", "d"),
                            ("AlertRaised", "ssss"), ("AlertCleared", "s"),
                            ("MessageReceived", "sssx"), ("BookingUpdated", "ssssss"),
                            ("IntentRecognized", "sss"), ("Spoken", "ss"),
                            ("SignalsChanged", "a{s(vsd)}"),
                            # API 1.2 (protocol 2)
                            ("RequestHelp", "s"), ("RespondHelp", "sss"), ("CancelHelp", "-"),
                            ("SetHelper", "b"), ("JoinGroup", "s"), ("LeaveGroup", "s"),
                            ("ApproveGroup", "ss"), ("ListGroups", "-"),
                            ("SetGroupReadOut", "ss"), ("BookingOptions", "sss"),
                            ("Book", "ssss"), ("CancelBooking", "x"), ("ListMessages", "u"),
                            ("AlertHistory", "u"), ("ServiceHistory", "u"), ("Helper", "b"),
                            ("Location", "s"), ("HelpDetail", "ssdds"),
                            ("HelpCancelled", "ss"), ("HelpStatus", "sss"),
                            ("GroupsChanged", "asasasas"), ("GroupJoinRequested", "ss")]:
            assert re.search(rf"^\.{member}\s+\w+\s+{re.escape(sig)}\s", text, re.MULTILINE), member
        xml = await ok("gdbus", "introspect", "--address", addr, "--dest", DEST,
                       "--object-path", OBJ)
        assert "AlertRaised(s key," in xml and "GetSignals(in  as names," in xml
        assert "Spoken(s text," in xml and "s priority);" in xml

        drive = car.drive(2.0)
        await eventually(lambda: car.daemon.signals.get(ECT), "first coolant value")
        await eventually(lambda: car.hmi.state.ActiveAlerts, "coolant_high raised")
        props = await ok(*busctl(addr, "get-property", "Version", "CloudState", "BusState",
                                 "Vin", "ActiveAlerts", "VoiceState", "OutboxDepth",
                                 "OldestOutboxAgeSeconds"))
        assert props.splitlines()[:4] == ['s "1.2"', 's "offline"', 's "up"', 's ""']
        assert re.match(r'a\(ssss\) \d+ .*"coolant_high" "warning" "Engine is running hot',
                        props.splitlines()[4])
        # The coolant alert is announced, so the car may be saying it right now.
        assert props.splitlines()[5] in ('s "idle"', 's "speaking"')
        assert re.fullmatch(r"u \d+", props.splitlines()[6])
        assert re.fullmatch(r"d [\d.e+]+", props.splitlines()[7])
        everything = await ok(*gdbus(addr, "org.freedesktop.DBus.Properties.GetAll", IFACE))
        assert "'Version': <'1.2'>" in everything and "'OutboxDepth': <uint32" in everything

        # every method, as a root client (the session bus has no policy)
        await ok(*busctl(addr, "call", "PushToTalk"))
        await ok(*busctl(addr, "call", "SubmitText", "s", "what is my fuel level"))
        await ok(*busctl(addr, "call", "Say", "s", "Hello driver"))
        await ok(*busctl(addr, "call", "AcknowledgeAlert", "s", "coolant_high"))
        await ok(*busctl(addr, "call", "SendMessage", "ss", "Family", "running late"))
        await ok(*busctl(addr, "call", "BookService", "sss", "oil_change", "tomorrow", "09:30"))
        assert car.drained() == [
            ("push_to_talk", {}, "dbus"),
            ("submit_text", {"text": "what is my fuel level"}, "dbus"),
            ("say", {"text": "Hello driver"}, "dbus"),
            ("alert.acknowledge", {"key": "coolant_high"}, "dbus"),
            ("send_message", {"group": "family", "text": "running late"}, "dbus"),
            ("book_service", {"service": "oil_change", "day": "tomorrow", "time": "09:30"},
             "dbus"),
        ]
        one = await ok(*busctl(addr, "call", "GetSignals", "as", "2", "Vehicle.Speed", ECT))
        assert re.fullmatch(r'a\{s\(vsd\)\} 2 "Vehicle\.Speed" d [\d.e+]+ "km/h" [\d.e+]+ '
                            rf'"{re.escape(ECT)}" [dx] -?[\d.e+]+ "[^"]+" [\d.e+]+\n', one), one
        await drive  # the set of signals seen so far stops growing
        everything = await ok(*busctl(addr, "call", "GetSignals", "as", "0"))
        names = set(re.findall(r'"(Vehicle\.[^"]+)" [bdxs] ', everything))
        assert int(everything.split()[1]) == len(names) == len(car.daemon.signals) > 20
        assert names == set(car.daemon.signals)
        # the acknowledgement reached the real alert service
        alerts = car.daemon.alerts
        assert alerts is not None
        await eventually(lambda: [a.state.value for a in alerts.active()
                                if a.key == "coolant_high"] == ["acknowledged"], "acknowledged")


BAD_CALLS = [
    (("SubmitText", "''"), "InvalidArgs", "text must not be empty"),
    (("Say", "'" + "x" * 501 + "'"), "InvalidArgs", "text is 501 characters; at most 500 allowed"),
    (("SendMessage", "bowling", "hi"), "InvalidArgs", "unknown group 'bowling'; known groups:"),
    (("SendMessage", "family", "' '"), "InvalidArgs", "text must not be empty"),
    (("BookService", "oil", "monday", "09:00"), "InvalidArgs", "unknown service 'oil'"),
    (("BookService", "repair", "someday", "09:00"), "InvalidArgs", "unknown day 'someday'"),
    (("BookService", "repair", "monday", "'25:00'"), "InvalidArgs",
     "time '25:00' is not HH:MM on a 24-hour clock"),
    (("AcknowledgeAlert", "no_such_alert"), "UnknownAlert", "no active alert 'no_such_alert'"),
    (("GetSignals", "['Vehicle.Speed', 'Vehicle.Warp']"), "UnknownSignal",
     "unknown signal 'Vehicle.Warp'"),
]


async def test_bad_arguments_get_named_dbus_errors_and_the_service_stays_up(
        tmp_path: Path, session_bus: PrivateBus) -> None:
    addr = session_bus.address
    async with running_car(tmp_path, addr) as car:
        for (method, *args), kind, message in BAD_CALLS:
            code, _, err = await run(*gdbus(addr, f"{IFACE}.{method}", *args))
            assert code != 0, method
            # gdbus prints "Error: GDBus.Error:<name>: <message>" on one line
            assert f"GDBus.Error:{ERR}{kind}: {message}" in err, err
            assert len(err.strip().splitlines()) == 1, err
        # wrong argument types are refused by D-Bus itself, not by a crash
        code, _, err = await run(*busctl(addr, "call", "SubmitText", "u", "5"))
        assert code != 0 and 'SubmitText with signature "u" could not be found' in err, err
        assert car.drained() == []  # nothing refused reached the hub
        # alerts off: acknowledging is unavailable, not a crash
        alerts, car.daemon.alerts = car.daemon.alerts, None
        code, _, err = await run(*gdbus(addr, f"{IFACE}.AcknowledgeAlert", "coolant_high"))
        car.daemon.alerts = alerts
        assert code != 0 and f"{ERR}Unavailable: alerts are disabled" in err, err
        assert await ok(*busctl(addr, "get-property", "Version")) == 's "1.2"\n'
        assert car.hmi.ready


async def test_signals_reach_gdbus_monitor_and_a_dbus_fast_client(
        tmp_path: Path, session_bus: PrivateBus) -> None:
    addr = session_bus.address
    monitor = await asyncio.create_subprocess_exec(
        "gdbus", "monitor", "--address", addr, "--dest", DEST, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL)
    lines: list[str] = []

    async def read_monitor() -> None:
        assert monitor.stdout is not None
        async for raw in monitor.stdout:
            lines.append(raw.decode())

    reader = asyncio.create_task(read_monitor())
    try:
        async with running_car(tmp_path, addr) as car, listening(addr) as heard:
            await eventually(lambda: any("is owned by" in ln for ln in lines), "gdbus monitor")
            hub = car.daemon.hub
            started = time.monotonic()
            await car.drive(2.0)
            await eventually(lambda: "AlertRaised" in heard.members(), "AlertRaised")
            hub.publish(CloudState("online"))
            hub.publish(VehicleIdentified("WVWZZZ1KZ6W000001", 0x7E8, time.time()))
            # typed text runs through the real voice dialog: IntentRecognized and VoiceState
            await ok(*busctl(addr, "call", "SubmitText", "s", "book an oil change tomorrow"))
            hub.publish(MessageReceived("family", "mum", "dinner at 7", 42))
            hub.publish(BookingUpdated("confirmed", "Garage Mueller", "oil_change", "tomorrow",
                                       "09:30"))
            hub.publish(HelpRequest("h1", "car-77", 48.1, 11.5, 2.5, "flat tyre"))
            hub.publish(SyncRejected("send_message", "outbox full", "dbus"))
            await ok(*busctl(addr, "call", "SendMessage", "ss", "friends", "on my way"))
            # the car cools below -10 degC: the real alert engine clears coolant_high
            cold = SignalValue(ECT, -20.0, "degC", time.time())
            await eventually(lambda: hub.publish(SignalsUpdated({ECT: cold}))
                           or "AlertCleared" in heard.members(), "AlertCleared")
            await eventually(lambda: any(v >= 1 for v in heard.changed("OutboxDepth")), "OutboxDepth from the sync outbox")
            await eventually(lambda: any("AlertCleared" in ln for ln in lines), "monitor output")
            await eventually(lambda: any("OutboxDepth" in ln for ln in lines), "monitor output")
        elapsed = time.monotonic() - started  # SignalsChanged went out only inside this window
    finally:
        monitor.terminate()
        await monitor.wait()
        await reader

    # the dbus-fast client saw typed values
    assert heard.bodies("AlertRaised")[0][:2] == ["coolant_high", "warning"]
    assert heard.bodies("AlertCleared") == [["coolant_high"]]
    assert heard.bodies("MessageReceived") == [["family", "mum", "dinner at 7", 42]]
    assert heard.bodies("BookingUpdated") == [["confirmed", "Garage Mueller", "oil_change",
                                               "tomorrow", "09:30", ""]]
    (intent, slots, said), = heard.bodies("IntentRecognized")
    assert intent == "book_service" and said == "book an oil change tomorrow"
    assert json.loads(slots)["service"] == "oil_change"
    assert heard.bodies("HelpRequested") == [["h1", "car-77", 48.1, 11.5, 2.5, "flat tyre"]]
    assert heard.bodies("CommandRejected") == [["send_message", "outbox full", "dbus"]]
    assert heard.changed("CloudState")[-1] == "online"
    # the voice service worked out the typed text ("thinking"), then asked for the time
    assert "thinking" in heard.changed("VoiceState"), heard.changed("VoiceState")
    assert heard.changed("Vin") == ["WVWZZZ1KZ6W000001"]
    assert "coolant_high" in [row[0] for row in heard.changed("ActiveAlerts")[0]]
    assert "coolant_high" not in [row[0] for row in heard.changed("ActiveAlerts")[-1]]
    # SignalsChanged: coalesced batches, at most one per 0.5 s interval
    batches = heard.bodies("SignalsChanged")
    assert 1 <= len(batches) <= elapsed / 0.5 + 1, (len(batches), elapsed)
    speed = next(b[0]["Vehicle.Speed"] for b in batches if "Vehicle.Speed" in b[0])
    assert speed[0].signature == "d" and speed[1] == "km/h" and speed[2] > 1e9
    assert sum(len(b[0]) for b in batches) < car.daemon.decoder.counters["decoded"]
    # gdbus monitor, an external client, printed the same signals
    text = "".join(lines)
    for member in ("AlertRaised", "AlertCleared", "MessageReceived", "BookingUpdated",
                   "IntentRecognized", "HelpRequested", "SignalsChanged", "PropertiesChanged"):
        assert f"{OBJ}: {IFACE}.{member} (" in text or f"org.freedesktop.DBus.Properties." \
            f"{member} (" in text, member
    assert "'CloudState': <'online'>" in text and "'OutboxDepth': <uint32 " in text
    assert "('family', 'mum', 'dinner at 7', int64 42)" in text


def voice_seen(heard: Listener) -> list[tuple[str, str]]:
    """VoiceState changes and Spoken captions, in the order the client got them."""
    seen = []
    for msg in heard.got:
        if msg.member == "PropertiesChanged" and "VoiceState" in msg.body[1]:
            seen.append(("VoiceState", msg.body[1]["VoiceState"].value))
        elif msg.member == "Spoken":
            text, priority = msg.body
            seen.append((f"Spoken/{priority}", text))
    return seen


async def test_one_confirmed_exchange_voice_states_and_spoken_captions_over_dbus(
        tmp_path: Path, session_bus: PrivateBus) -> None:
    addr = session_bus.address
    read_back = "Book an oil change tomorrow at 9:30 AM? Yes or cancel?"
    async with running_car(tmp_path, addr) as car, listening(addr) as heard:
        # typed text needing confirmation: worked out, read back, then waiting for yes
        await ok(*busctl(addr, "call", "SubmitText", "s", "book an oil change tomorrow at 9:30"))
        await eventually(lambda: voice_seen(heard)[-1:] == [("VoiceState", "confirming")], "the read-back said")
        assert await ok(*busctl(addr, "get-property", "VoiceState")) == 's "confirming"\n'
        assert voice_seen(heard) == [
            ("VoiceState", "thinking"), ("VoiceState", "speaking"),
            ("Spoken/reply", read_back), ("VoiceState", "confirming")]
        # yes: worked out, the command goes, the acknowledgement is said, idle again
        await ok(*busctl(addr, "call", "SubmitText", "s", "yes"))
        await eventually(lambda: voice_seen(heard)[-1:] == [("VoiceState", "idle")], "idle again")
        assert voice_seen(heard)[4:] == [
            ("VoiceState", "thinking"), ("VoiceState", "speaking"),
            ("Spoken/reply", "Looking for shops with a free slot."), ("VoiceState", "idle")]
        # Say: a caption too
        await ok(*busctl(addr, "call", "Say", "s", "Mind the gap"))
        await eventually(lambda: len(heard.bodies("Spoken")) == 3, "the Say caption")
        assert heard.bodies("Spoken")[2] == ["Mind the gap", "reply"]
        assert car.drained() == [
            ("submit_text", {"text": "book an oil change tomorrow at 9:30"}, "dbus"),
            ("submit_text", {"text": "yes"}, "dbus"),
            ("booking_options", {"service": "oil_change", "day": "tomorrow", "time": "09:30"},
             "voice"),
            ("say", {"text": "Mind the gap"}, "dbus")]


async def test_bus_absent_name_taken_and_bus_lost_are_logged_and_survived(
        tmp_path: Path, session_bus: PrivateBus, caplog: pytest.LogCaptureFixture) -> None:
    # no bus at all: start() returns, the daemon runs on
    cfg = car_config(tmp_path, f"unix:path={tmp_path}/no-such-bus")
    async with Daemon(cfg) as daemon:
        hmi = daemon.hmi
        assert hmi is not None
        assert not hmi.ready and not await hmi.wait_ready(0.1)
    assert "D-Bus API unavailable: cannot serve org.carlinkd.Daemon1 on bus unix:path=" in \
        caplog.text
    # the name already owned: not ready; ready once the owner lets go (background retry)
    private = PrivateBus("--session")
    try:
        async with running_car(tmp_path / "a", private.address) as first:
            second = HmiService(first.daemon.cfg.hmi, first.daemon)
            await second.start()
            try:
                assert first.hmi.ready and not second.ready
                await first.hmi.stop()
                assert await second.wait_ready(15.0)
                await ok(*busctl(private.address, "get-property", "Version"))
                # the bus goes away: not ready any more, nothing crashes
                private.close()
                await eventually(lambda: not second.ready, "bus loss noticed")
            finally:
                await second.stop()
    finally:
        private.close()
    assert "is owned by another connection" in caplog.text
    assert "D-Bus API down: lost the connection" in caplog.text


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv")
                    or not (_user_exists("nobody") and _user_exists("daemon")),
                    reason="needs root, setpriv and the users nobody and daemon")
async def test_policy_lets_anyone_read_and_only_root_and_the_hmi_group_call(
        tmp_path: Path, fixtures: Path) -> None:
    # The shipped policy with the test's accounts: the daemon runs as root here (stands in for
    # the carlinkd user), nobody:nogroup stands in for a carlinkd-hmi member (nogroup is its
    # primary group), daemon:daemon is a non-member.
    listen = Path(tempfile.mkdtemp(prefix="carlinkd-hmi-"))
    listen.chmod(0o755)  # other users must reach the socket
    policy = listen / "org.carlinkd.Daemon1.conf"
    policy.write_text(POLICY.read_text().replace('user="carlinkd"', 'user="root"')
                      .replace('group="carlinkd-hmi"', 'group="nogroup"'))
    conf = listen / "bus.conf"
    conf.write_text((fixtures / "hmi" / "system-like-bus.conf").read_text()
                    .replace("@LISTEN_DIR@", str(listen)).replace("@POLICY@", str(policy)))
    bus = PrivateBus(f"--config-file={conf}")
    try:
        addr = bus.address
        async with running_car(tmp_path, addr) as car:
            assert car.hmi.ready
            for user in ("daemon", "nobody", None):
                text = await ok(*busctl(addr, "introspect"), user=user)
                assert ".SubmitText" in text
                assert await ok(*busctl(addr, "get-property", "Version"), user=user) == \
                    's "1.2"\n'
                assert "'Version': <'1.2'>" in await ok(
                    *gdbus(addr, "org.freedesktop.DBus.Properties.GetAll", IFACE), user=user)
            code, _, err = await run(*busctl(addr, "call", "Say", "s", "let me in"),
                                     user="daemon")
            assert code != 0 and "Access denied" in err, err
            code, _, err = await run(*gdbus(addr, f"{IFACE}.PushToTalk"), user="daemon")
            assert code != 0 and "org.freedesktop.DBus.Error.AccessDenied" in err, err
            assert car.drained() == []
            await ok(*busctl(addr, "call", "Say", "s", "member"), user="nobody")
            await ok(*busctl(addr, "call", "Say", "s", "root"))
            assert car.drained() == [("say", {"text": "member"}, "dbus"),
                                     ("say", {"text": "root"}, "dbus")]
    finally:
        bus.close()
        shutil.rmtree(listen)


async def test_api_1_2_every_voice_command_has_a_method(
        tmp_path: Path, session_bus: PrivateBus) -> None:
    """Help, respond, cancel, helper, groups, read-out, bookings, messages, histories."""
    addr = session_bus.address
    async with running_car(tmp_path, addr) as car:
        calls = [("RequestHelp", "s", "flat tyre"), ("RespondHelp", "sss", "r1", "car2", ""),
                 ("CancelHelp",), ("SetHelper", "b", "true"), ("JoinGroup", "s", "car club"),
                 ("LeaveGroup", "s", "friends"), ("ApproveGroup", "ss", "family", "car3"),
                 ("BookingOptions", "sss", "oil_change", "tomorrow", "09:30"),
                 ("Book", "ssss", "oil_change", "tomorrow", "09:30", "Demo Garage"),
                 ("CancelBooking", "x", "7")]
        for call in calls:
            await ok(*busctl(addr, "call", *call))
        assert await ok(*busctl(addr, "call", "ListGroups")) == "asasasas 0 0 0 0\n"
        await eventually(lambda: car.hmi.state.Helper, "Helper after SetHelper(true)")
        assert await ok(*busctl(addr, "get-property", "Helper", "Location")) == \
            'b true\ns "help"\n'
        assert [c for c in car.drained() if c[2] == "dbus"] == [
            ("emergency_help", {"note": "flat tyre"}, "dbus"),
            ("help_respond", {"request_id": "r1", "to": "car2", "text": "on my way"}, "dbus"),
            ("help_cancel", {}, "dbus"), ("set_helper", {"state": "on"}, "dbus"),
            ("join_group", {"group": "car club"}, "dbus"),
            ("leave_group", {"group": "friends"}, "dbus"),
            ("approve_group", {"group": "family", "device": "car3"}, "dbus"),
            ("booking_options", {"service": "oil_change", "day": "tomorrow", "time": "09:30"},
             "dbus"),
            ("book_service", {"service": "oil_change", "day": "tomorrow", "time": "09:30",
                              "shop": "Demo Garage"}, "dbus"),
            ("booking_cancel", {"booking_id": "7"}, "dbus"), ("list_groups", {}, "dbus")]
        # a muted group's message is not spoken but is listed
        await ok(*busctl(addr, "call", "SetGroupReadOut", "ss", "family", "off"))
        voice = car.daemon.voice
        assert voice is not None
        async with listening(addr) as heard:
            car.daemon.hub.publish(MessageReceived("family", "Mum", "Dinner at seven", 1))
            car.daemon.hub.publish(MessageReceived("friends", "Li", "Running late", 2))
            await eventually(lambda: heard.bodies("Spoken"), "the friends message announced")
            await voice.wait_quiet()
            assert [b[0] for b in heard.bodies("Spoken")] == [
                "New message from Li in friends. Say read to hear it."]
        listed = await ok(*busctl(addr, "call", "ListMessages", "u", "10"))
        assert re.fullmatch(r'a\(xsssdb\) 2 2 "friends" "Li" "Running late" [\d.e+]+ false '
                            r'1 "family" "Mum" "Dinner at seven" [\d.e+]+ false\n', listed), listed
        code, _, err = await run(*gdbus(addr, f"{IFACE}.SetGroupReadOut", "family", "loud"))
        assert code != 0 and f"{ERR}InvalidArgs: read-out 'loud' is not one of" in err, err
        code, _, err = await run(*gdbus(addr, f"{IFACE}.CancelBooking", "0"))
        assert code != 0 and f"{ERR}InvalidArgs: booking_id 0" in err, err
        # the histories come from the store
        car.drive(2.0)
        await eventually(lambda: car.hmi.state.ActiveAlerts, "coolant_high raised")
        assert car.daemon.store is not None
        await car.daemon.store.flush()
        alerts = await ok(*busctl(addr, "call", "AlertHistory", "u", "5"))
        assert alerts.startswith("a(dsssss) ") and '"coolant_high" "raised"' in alerts, alerts
        store = car.daemon.store
        await eventually(lambda: store.service_count(), "an odometer evidence entry")
        count = await store.service_count()
        records = await ok(*busctl(addr, "call", "ServiceHistory", "u", "5"))
        assert records.startswith(f"a(xss) {count} {count} ") and "odometer" in records, records
