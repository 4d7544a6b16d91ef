"""The poller's pure core with plain data: simulated ECUs answer in-process, time is a number."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace

from carlinkd.can.obd.poller import (
    PlannedRequest, PollerCore, PollerState, RequestKind, ignition_on, signal_name,
)
from carlinkd.can.obd.pids import PIDS
from carlinkd.can.obd.settings import ObdConfig
from carlinkd.events import DtcCleared, DtcSet, Event, MilState, SignalsUpdated, VehicleIdentified
from carlink_sim.obd_ecu import ObdEcu

VIN = "WCL0D3M06S1000427"
ENGINE_VALUES: dict[int, float | bytes] = {
    0x04: 30.0, 0x05: 90.0, 0x0C: 1500.0, 0x0D: 50.0, 0x0F: 25.0, 0x11: 20.0, 0x1F: 100.0,
    0x2F: 60.0, 0x31: 1200.0, 0x42: 14.1, 0x46: 19.0, 0x5C: 95.0, 0xA6: 42137.5,
}
Responder = Callable[[PlannedRequest], dict[int, bytes]]


def ecus(**engine_options: object) -> list[ObdEcu]:
    options: dict[str, object] = {"vin": VIN, "values": dict(ENGINE_VALUES), **engine_options}
    engine = ObdEcu("engine", 0x7E0, 0x7E8, [0x01, *ENGINE_VALUES], **options)  # type: ignore[arg-type]
    gearbox = ObdEcu("transmission", 0x7E1, 0x7E9, [0x01, 0x0D, 0x1C], values={0x0D: 50.0, 0x1C: 6})
    return [engine, gearbox]


def responder(units: Iterable[ObdEcu]) -> Responder:
    """What the bus would deliver: every ECU's answer to a functional request, or the target's."""
    units = list(units)

    def answer(request: PlannedRequest) -> dict[int, bytes]:
        out = {}
        for ecu in units:
            if request.target is not None and ecu.tx_id != request.target:
                continue
            reply = ecu.respond(request.payload, functional=request.target is None)
            if reply is not None:
                out[ecu.tx_id] = reply
        return out
    return answer


class Run:
    """Drives a core through simulated time, recording requests and events."""

    def __init__(self, core: PollerCore, answer: Responder) -> None:
        self.core, self.answer = core, answer
        self.now = 0.0
        self.sent: list[tuple[float, PlannedRequest]] = []
        self.events: list[Event] = []

    def until(self, end: float, step: float = 0.01) -> Run:
        while self.now < end:
            request = self.core.next_request(self.now)
            if request is not None:
                self.sent.append((self.now, request))
                self.events += self.core.handle(request, self.answer(request), self.now)
            self.now = round(self.now + step, 6)
        return self

    def pids_asked(self, target: int) -> Counter[int]:
        return Counter(pid for _, r in self.sent if r.kind is RequestKind.PIDS and r.target == target
                       for pid in r.payload[1:])

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def test_discovery_then_only_supported_pids_from_their_first_ecu() -> None:
    run = Run(PollerCore(ObdConfig()), responder(ecus())).until(15.0)
    kinds = [r.kind for _, r in run.sent[:8]]
    assert kinds[:6] == [RequestKind.DISCOVER] + [RequestKind.SUPPORTED] * 5
    assert run.sent[0][1].payload == b"\x01\x00" and run.sent[0][1].target is None
    # The engine ECU flags bitmaps up to A0 (it supports A6, the odometer); the gearbox none.
    bitmaps = [(r.payload, r.target) for _, r in run.sent[1:6]]
    assert bitmaps == [(bytes((1, base)), 0x7E8) for base in (0x20, 0x40, 0x60, 0x80, 0xA0)]
    assert kinds[6:8] == [RequestKind.DTCS, RequestKind.VIN]
    assert run.core.state is PollerState.POLLING
    assert set(run.core.ecus) == {0x7E8, 0x7E9}
    engine = run.pids_asked(0x7E8)
    assert set(engine) == {0x01, *ENGINE_VALUES}
    assert set(run.pids_asked(0x7E9)) == {0x01}  # speed comes from the engine ECU; 1C is no number
    assert all(len(r.payload) <= 7 for _, r in run.sent)  # at most six PIDs per request


def test_rates_fast_normal_slow_and_dtcs() -> None:
    cfg = ObdConfig(normal_period_s=10.0, slow_period_s=60.0, dtc_period_s=300.0)
    run = Run(PollerCore(cfg), responder(ecus())).until(120.0)
    asked = run.pids_asked(0x7E8)
    assert 115 <= asked[0x0C] <= 121 and 115 <= asked[0x0D] <= 121   # every second
    assert 11 <= asked[0x05] <= 13                                    # every 10 s
    assert asked[0x2F] == 2 and asked[0xA6] == 2                      # every minute
    dtc_reads = [t for t, r in run.sent if r.kind is RequestKind.DTCS]
    assert len(dtc_reads) == 1 and dtc_reads[0] < 2.0                 # at ignition on, then 5 min


def test_budget_caps_requests_per_second_and_stays_fair() -> None:
    cfg = ObdConfig(budget_per_s=3.0, fast_period_s=0.2, normal_period_s=0.5, slow_pids=())
    run = Run(PollerCore(cfg), responder(ecus())).until(30.0)
    times = [t for t, _ in run.sent]
    worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert worst <= 3
    assert len(times) >= 85  # the budget is used, not wasted
    asked = run.pids_asked(0x7E8)
    assert min(asked[p] for p in ENGINE_VALUES) >= 5  # slow-lane PIDs are not starved


def test_silent_while_ignition_off_then_rediscovers_and_reads_dtcs() -> None:
    core = PollerCore(ObdConfig())
    run = Run(core, responder(ecus(dtcs=["P0301"]))).until(5.0)
    core.set_ignition(False, run.now)
    before = len(run.sent)
    assert core.state is PollerState.ASLEEP and core.wakeup_at(run.now) is None
    run.until(600.0, step=0.1)
    assert len(run.sent) == before
    core.set_ignition(True, run.now)
    run.until(602.0)
    after = [r.kind for _, r in run.sent[before:]]
    assert after[0] is RequestKind.DISCOVER and RequestKind.DTCS in after
    assert len(run.of(DtcSet)) == 1  # the code is already known: no second event


def test_nobody_answers_backs_off_exponentially() -> None:
    cfg = ObdConfig(backoff_initial_s=5.0, backoff_max_s=40.0, startup_delay_s=0.0)
    run = Run(PollerCore(cfg), lambda _r: {}).until(200.0, step=0.05)
    times = [round(t) for t, _ in run.sent]
    assert times == [0, 5, 15, 35, 75, 115, 155, 195]
    assert all(r.kind is RequestKind.DISCOVER for _, r in run.sent)


def test_ecus_going_quiet_mid_poll_backs_off() -> None:
    units = ecus()
    answer = responder(units)
    quiet = {"on": False}
    run = Run(PollerCore(ObdConfig(max_misses=3)), lambda r: {} if quiet["on"] else answer(r))
    run.until(10.0)
    quiet["on"] = True
    count = len(run.sent)
    run.until(20.0)
    after = run.sent[count:]
    assert [r.kind for _, r in after[3:]] == [RequestKind.DISCOVER]  # three misses, then backoff
    assert after[3][0] - after[2][0] >= 5.0 and run.core.state is PollerState.BACKOFF


def test_dtc_diffs_mil_and_descriptions() -> None:
    units = ecus()
    engine = units[0]
    cfg = ObdConfig(dtc_period_s=30.0, normal_period_s=5.0)
    run = Run(PollerCore(cfg), responder(units)).until(10.0)
    assert not run.of(DtcSet) and [m.on for m in run.of(MilState)] == [False]  # type: ignore[attr-defined]
    engine.set_dtcs(stored=["P0301"])
    run.until(40.0)
    (misfire,) = run.of(DtcSet)
    assert isinstance(misfire, DtcSet) and misfire.ecu == 0x7E8 and misfire.code == "P0301"
    assert "misfire" in misfire.description.lower()
    assert misfire.timestamp < 16.0  # PID 01's code count changed: codes read at once
    mil = run.of(MilState)[-1]
    assert isinstance(mil, MilState) and mil.on and mil.ecu == 0x7E8 and mil.dtc_count == 1
    engine.set_dtcs(stored=["P0301", "P0420"])
    run.until(80.0)
    assert [e.code for e in run.of(DtcSet)] == ["P0301", "P0420"]  # type: ignore[attr-defined]
    assert "catalyst" in run.of(DtcSet)[1].description.lower()  # type: ignore[attr-defined]
    engine.set_dtcs(stored=[])
    run.until(120.0)
    cleared = run.of(DtcCleared)
    assert sorted(e.code for e in cleared) == ["P0301", "P0420"]  # type: ignore[attr-defined]
    assert all(isinstance(e, DtcCleared) and e.ecu == 0x7E8 for e in cleared)
    mil_states = [(m.on, m.dtc_count) for m in run.of(MilState)]  # type: ignore[attr-defined]
    assert mil_states == [(False, 0), (True, 1), (True, 2), (False, 0)]


def test_vin_once_per_connection() -> None:
    core = PollerCore(ObdConfig())
    run = Run(core, responder(ecus())).until(120.0)
    (vin,) = run.of(VehicleIdentified)
    assert isinstance(vin, VehicleIdentified) and vin.vin == VIN and vin.ecu == 0x7E8
    core.connection_lost(run.now)
    run.until(125.0)
    assert len(run.of(VehicleIdentified)) == 2


def test_signals_use_catalog_names_units_and_only_changes() -> None:
    run = Run(PollerCore(ObdConfig()), responder(ecus())).until(5.0)
    values = {}
    for event in run.of(SignalsUpdated):
        assert isinstance(event, SignalsUpdated)
        for name, sv in event.values.items():
            assert sv.source == "obd" and name not in values  # unchanged values are not repeated
            values[name] = sv
    assert values["Vehicle.Speed"].value == 50.0 and values["Vehicle.Speed"].unit == "km/h"
    assert values["Vehicle.Powertrain.CombustionEngine.Speed"].value == 1500.0
    assert values["Vehicle.TraveledDistance"].value == 42137.5
    assert values["Vehicle.OBD.EngineLoad"].unit == "%"
    assert signal_name(PIDS[0x5C]) == "Vehicle.Powertrain.CombustionEngine.EOT"


def test_pid_the_ecu_never_gives_is_dropped() -> None:
    values = dict(ENGINE_VALUES)
    del values[0x46]  # flagged in the bitmap, but left out of every answer
    units = ecus(values=values)
    run = Run(PollerCore(ObdConfig(normal_period_s=2.0)), responder(units)).until(30.0)
    assert run.pids_asked(0x7E8)[0x46] == 3
    late = [r for t, r in run.sent if t > 10.0 and r.kind is RequestKind.PIDS]
    assert late and all(0x46 not in r.payload[1:] for r in late)


def test_refused_group_is_split_and_a_refused_pid_dropped() -> None:
    core = PollerCore(ObdConfig())
    run = Run(core, responder(ecus())).until(2.0)
    refusal = bytes.fromhex("7F0131")
    request = next(r for _, r in run.sent if r.kind is RequestKind.PIDS and len(r.payload) > 3)
    core.handle(request, {0x7E8: refusal}, run.now)
    solo = PlannedRequest(RequestKind.PIDS, request.payload[:2], 0x7E8, frozenset({0x7E8}))
    core.handle(solo, {0x7E8: refusal}, run.now)
    run.until(40.0)
    asked = run.pids_asked(0x7E8)
    assert asked[request.payload[1]] <= 1
    assert all(asked[p] > 2 for p in request.payload[2:])


def test_only_configured_pids_and_never_mode_04() -> None:
    cfg = replace(ObdConfig(), pids=(0x0C, 0x0D))
    run = Run(PollerCore(cfg), responder(ecus())).until(20.0)
    assert set(run.pids_asked(0x7E8)) == {0x01, 0x0C, 0x0D}
    assert all(r.payload[0] in (0x01, 0x03, 0x09) for _, r in run.sent)


def test_ignition_values() -> None:
    assert ignition_on("Off") is False and ignition_on("Accessory") is False
    assert ignition_on("Run") is True and ignition_on("Start") is True
    assert ignition_on(0) is False and ignition_on(2) is True and ignition_on("?") is None


def test_first_request_waits_for_the_ignition_signal() -> None:
    core = PollerCore(ObdConfig(startup_delay_s=1.0), now=100.0)
    assert core.next_request(100.5) is None and core.wakeup_at(100.5) == 101.0
    core.set_ignition(False, 100.6)  # the DBC says the car is parked: nothing is ever sent
    assert core.next_request(101.0) is None and core.wakeup_at(101.0) is None


def test_bus_reopening_holds_the_first_request_again() -> None:
    core = PollerCore(ObdConfig(startup_delay_s=1.0), now=0.0)
    core.bus_up(50.0)
    assert core.next_request(50.9) is None
    request = core.next_request(51.0)
    assert request is not None and request.kind is RequestKind.DISCOVER
