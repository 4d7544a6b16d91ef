"""The OBD-II poller's pure core: what to ask which ECU when, and what the answers mean.

No I/O and no clock: :class:`PollerCore` is told the time (``now``, monotonic seconds) and the
ignition state, returns the next request to send (:meth:`PollerCore.next_request`), and turns
each ECU's raw answer bytes into hub events (:meth:`PollerCore.handle`). The asyncio adapter in
``carlinkd.can.obd.service`` moves the bytes with ``carlinkd.can.obd.transport``.

Life cycle (:class:`PollerState`, changed only in ``_set_state``)::

    ASLEEP ──ignition on──▶ DISCOVERING ──ECUs answered──▶ POLLING
       ▲                      │   ▲                          │
       └──ignition off── (any)│   └──backoff over── BACKOFF ◀┘ nobody answered

Discovery asks every ECU for PID 00 (functional), then each ECU physically for the next bitmap
(20, 40, ...) it flags. Polling asks each supported PID of interest from the first ECU that
supports it, at its rate (fast / normal / slow), several PIDs per request (up to six, J1979),
earliest due first, never faster than the request budget. Stored DTCs are read at the start
of every polling phase (ignition on) and every ``dtc_period_s``; the VIN once per connection.
Mode 04 never appears here: clearing codes is a command-line action only.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .settings import ObdConfig
from ...events import DtcCleared, DtcSet, Event, MilState, SignalsUpdated, SignalValue, VehicleIdentified
from .codec import (
    MAX_PIDS_PER_REQUEST, decode_response, request_current_data, request_stored_dtcs, request_vin,
)
from .current_data import CurrentDataResponse
from .dtc import DtcResponse
from .dtc_descriptions import describe
from .errors import ObdDecodeError
from .pids import PIDS, SUPPORTED_PID_BASES, MonitorStatus, PidKind, PidSpec
from .services import NegativeResponse
from .vehicle_info import VinResponse

log = logging.getLogger(__name__)

MONITOR_STATUS = 0x01
# A PID left out of this many answers in a row is dropped from the schedule until rediscovery.
MAX_ABSENT = 3
# VSS names (Vehicle.OBD branch) for PIDs whose meaning has no other catalog signal.
_OBD_BRANCH = {
    0x04: "EngineLoad", 0x06: "ShortTermFuelTrim1", 0x07: "LongTermFuelTrim1",
    0x08: "ShortTermFuelTrim2", 0x09: "LongTermFuelTrim2", 0x0A: "FuelPressure", 0x0B: "MAP",
    0x0E: "TimingAdvance", 0x10: "MAF", 0x11: "ThrottlePosition", 0x1F: "RunTime",
    0x21: "DistanceWithMIL", 0x2C: "CommandedEGR", 0x2D: "EGRError", 0x2E: "CommandedEVAP",
    0x30: "WarmupsSinceDTCClear", 0x31: "DistanceSinceDTCClear", 0x32: "EVAPVaporPressure",
    0x33: "BarometricPressure", 0x43: "AbsoluteLoad", 0x45: "RelativeThrottlePosition",
    0x4C: "ThrottleActuator", 0x4D: "RunTimeMIL", 0x4E: "TimeSinceDTCCleared",
    0x52: "EthanolPercent", 0x5E: "FuelRate",
}


def signal_name(spec: PidSpec) -> str:
    """The canonical name a PID's value travels under: the catalog's VSS path where one exists."""
    if spec.vss:
        return spec.vss
    branch = _OBD_BRANCH.get(spec.pid)
    if branch is None:
        branch = "".join(part.capitalize() for part in re.split(r"_+", spec.name))
    return f"Vehicle.OBD.{branch}"


def pollable(pid: int) -> bool:
    """PIDs the poller reads: numbers the codec scales, and PID 01 (MIL and DTC count)."""
    spec = PIDS.get(pid)
    if pid == MONITOR_STATUS:
        return True
    return spec is not None and spec.kind is PidKind.SCALAR and spec.scaling is not None


def ignition_on(value: object) -> bool | None:
    """Read ``Vehicle.LowVoltageSystemState``: False for Off/Lock/Accessory, None if unknown."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("off", "lock", "locked", "acc", "accessory"):
            return False
        return True if text in ("on", "run", "start", "ignition_on") else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value >= 2  # the DBC's IgnitionState: 0 Off, 1 Accessory, 2 Run, 3 Start
    return None


class PollerState(enum.Enum):
    """Where the poller is in its life cycle."""

    ASLEEP = "asleep"
    DISCOVERING = "discovering"
    POLLING = "polling"
    BACKOFF = "backoff"


class RequestKind(enum.Enum):
    """What a planned request is for."""

    DISCOVER = "discover"
    SUPPORTED = "supported"
    PIDS = "pids"
    DTCS = "dtcs"
    VIN = "vin"


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request to send: payload, target ECU (response id; None = functional), who answers."""

    kind: RequestKind
    payload: bytes
    target: int | None = None
    expect: frozenset[int] = frozenset()


@dataclass(slots=True)
class EcuInfo:
    """What the poller knows about one ECU, keyed by its response id."""

    response_id: int
    supported: set[int] = field(default_factory=set)
    bitmaps_to_ask: list[int] = field(default_factory=list)
    mil_on: bool | None = None
    dtc_count: int = 0


class PollerCore:
    """Plans OBD-II requests and interprets answers; feed it time, ignition and answers."""

    def __init__(self, cfg: ObdConfig, now: float = 0.0) -> None:
        """Start out discovering (the ignition state is unknown until told)."""
        self.cfg = cfg
        self.state = PollerState.DISCOVERING
        self.ecus: dict[int, EcuInfo] = {}
        self.vin: str | None = None
        self._vin_seen: str | None = None
        self.dtcs: dict[int, tuple[str, ...]] = {}
        self.counters: dict[str, int] = {"requests": 0, "answers": 0, "misses": 0,
                                         "decode_errors": 0, "negative": 0}
        self._ignition: bool | None = None
        self._next_send = now + cfg.startup_delay_s
        self._interval = 1.0 / cfg.budget_per_s
        self._misses = 0
        self._backoff = cfg.backoff_initial_s
        self._backoff_until = now
        self._discovered = False
        self._due: dict[tuple[int, int], float] = {}
        self._solo: set[tuple[int, int]] = set()
        self._absent: dict[tuple[int, int], int] = {}
        self._dtc_due = now
        self._vin_due = now
        self._mil: tuple[bool, int, int] | None = None
        self._last: dict[str, float] = {}

    # ---- inputs -------------------------------------------------------------------------------

    def set_ignition(self, on: bool | None, now: float) -> None:
        """The ignition changed (None: unknown, treated as on). Off silences the poller."""
        was, self._ignition = self._ignition, on
        if on is False and self.state is not PollerState.ASLEEP:
            self._set_state(PollerState.ASLEEP, "ignition off")
        elif on is not False and self.state is PollerState.ASLEEP:
            self._backoff = self.cfg.backoff_initial_s
            self._restart(now, "ignition on")
        elif on is True and was is False:
            self._restart(now, "ignition on")

    def bus_up(self, now: float) -> None:
        """The bus (re)opened: hold the first request ``startup_delay_s`` so the DBC's ignition
        signal can arrive first and a parked car is never woken."""
        self._next_send = max(self._next_send, now + self.cfg.startup_delay_s)

    def connection_lost(self, now: float) -> None:
        """The bus went away: forget the ECUs and the VIN; discover again when it is back."""
        self.vin = None
        if self.state is not PollerState.ASLEEP:
            self._restart(now, "bus connection lost")

    def _restart(self, now: float, why: str) -> None:
        self.ecus.clear()
        self._due.clear()
        self._solo.clear()
        self._absent.clear()
        self._discovered = False
        self._misses = 0
        self._set_state(PollerState.DISCOVERING, why)

    def _set_state(self, state: PollerState, why: str) -> None:
        if state is not self.state:
            log.info("OBD-II poller: %s -> %s (%s)", self.state.value, state.value, why)
            self.state = state

    # ---- planning -----------------------------------------------------------------------------

    def next_request(self, now: float) -> PlannedRequest | None:
        """The request to send now, or None (nothing due, budget spent, asleep, backing off)."""
        if self.state is PollerState.ASLEEP or now < self._next_send:
            return None
        if self.state is PollerState.BACKOFF:
            if now < self._backoff_until:
                return None
            self._set_state(PollerState.DISCOVERING, "backoff over")
        if self.state is PollerState.DISCOVERING:
            request = self._plan_discovery(now)
        else:
            request = self._plan_polling(now)
        if request is not None:
            self._next_send = now + self._interval
            self.counters["requests"] += 1
        return request

    def wakeup_at(self, now: float) -> float | None:
        """When :meth:`next_request` may next return a request (None: only after an input)."""
        if self.state is PollerState.ASLEEP:
            return None
        if self.state is PollerState.BACKOFF:
            return max(self._backoff_until, self._next_send)
        if self.state is PollerState.DISCOVERING:
            return self._next_send
        candidates = [self._dtc_due, *self._due.values()]
        if self.vin is None:
            candidates.append(self._vin_due)
        return max(min(candidates), self._next_send)

    def _plan_discovery(self, now: float) -> PlannedRequest | None:
        if not self._discovered:
            return PlannedRequest(RequestKind.DISCOVER, request_current_data([0x00]))
        for ecu in self.ecus.values():
            if ecu.bitmaps_to_ask:
                base = ecu.bitmaps_to_ask.pop(0)
                rid = ecu.response_id
                return PlannedRequest(RequestKind.SUPPORTED, request_current_data([base]), rid,
                                      frozenset({rid}))
        self._start_polling(now)
        return self._plan_polling(now)

    def _start_polling(self, now: float) -> None:
        wanted = set(self.cfg.pids)
        owner: dict[int, int] = {}
        for rid in sorted(self.ecus):
            for pid in sorted(self.ecus[rid].supported):
                if not pollable(pid) or (wanted and pid not in wanted and pid != MONITOR_STATUS):
                    continue
                if pid == MONITOR_STATUS or pid not in owner:
                    owner.setdefault(pid, rid)
                    self._due[(rid, pid)] = now
        self._dtc_due = now  # at ignition on (every polling phase starts with one)
        self._vin_due = now
        self._set_state(PollerState.POLLING,
                        f"{len(self.ecus)} ECU(s), {len(self._due)} PID(s) to poll")

    def period(self, pid: int) -> float:
        """How often ``pid`` is read."""
        if pid in self.cfg.fast_pids:
            return self.cfg.fast_period_s
        if pid in self.cfg.slow_pids:
            return self.cfg.slow_period_s
        return self.cfg.normal_period_s

    def _plan_polling(self, now: float) -> PlannedRequest | None:
        everyone = frozenset(self.ecus)
        if now >= self._dtc_due:
            self._dtc_due = now + self.cfg.dtc_period_s
            return PlannedRequest(RequestKind.DTCS, request_stored_dtcs(), None, everyone)
        if self.vin is None and now >= self._vin_due:
            self._vin_due = now + self.cfg.slow_period_s  # retried if nobody gives a VIN
            return PlannedRequest(RequestKind.VIN, request_vin(), None, frozenset())
        due = sorted((t, key) for key, t in self._due.items() if t <= now)
        if not due:
            return None
        rid = due[0][1][0]
        first = due[0][1]
        if first in self._solo:
            keys = [first]
        else:
            keys = [k for _, k in due if k[0] == rid and k not in self._solo][:MAX_PIDS_PER_REQUEST]
        for key in keys:
            self._due[key] = now + self.period(key[1])
        pids = [pid for _, pid in keys]
        return PlannedRequest(RequestKind.PIDS, request_current_data(pids), rid, frozenset({rid}))

    # ---- answers ------------------------------------------------------------------------------

    def handle(self, request: PlannedRequest, answers: Mapping[int, bytes], now: float,
               stamp: float | None = None) -> list[Event]:
        """Interpret the answers (response id -> payload) to ``request``; return hub events.

        ``stamp`` is the wall-clock time put on events (default ``now``).
        """
        stamp = now if stamp is None else stamp
        if not answers:
            self._missed(request, now)
            return []
        self._misses = 0
        self._backoff = self.cfg.backoff_initial_s
        decoded = {rid: r for rid, payload in answers.items()
                   if (r := self._decode(rid, payload, request)) is not None}
        self.counters["answers"] += len(decoded)
        if request.kind is RequestKind.DISCOVER:
            self._discover(decoded, now)
            return []
        if request.kind is RequestKind.SUPPORTED:
            self._supported(decoded)
            return []
        if request.kind is RequestKind.DTCS:
            return self._dtc_events(decoded, stamp)
        if request.kind is RequestKind.VIN:
            return self._vin_events(decoded, stamp)
        return self._pid_events(request, decoded, stamp)

    def _decode(self, rid: int, payload: bytes, request: PlannedRequest) -> object | None:
        try:
            answer = decode_response(payload, request=request.payload, source=rid)
        except ObdDecodeError as err:
            self.counters["decode_errors"] += 1
            log.debug("OBD-II answer not decoded: %s", err)
            return None
        if isinstance(answer, NegativeResponse):
            self.counters["negative"] += 1
        return answer

    def _missed(self, request: PlannedRequest, now: float) -> None:
        self.counters["misses"] += 1
        self._misses += 1
        if request.kind is RequestKind.DISCOVER or self._misses >= self.cfg.max_misses:
            self._backoff_until = now + self._backoff
            self._set_state(PollerState.BACKOFF,
                            f"no ECU answered; next try in {self._backoff:g} s")
            self._backoff = min(self._backoff * 2, self.cfg.backoff_max_s)
            self.ecus.clear()
            self._due.clear()
            self.vin = None
            self._discovered = False

    def _discover(self, decoded: Mapping[int, object], now: float) -> None:
        for rid, answer in decoded.items():
            if isinstance(answer, CurrentDataResponse) and answer.supported_pids:
                supported = set(answer.supported_pids)
                ecu = EcuInfo(rid, supported)
                if 0x20 in supported:
                    ecu.bitmaps_to_ask.append(0x20)
                self.ecus[rid] = ecu
        if not self.ecus:
            self._missed(PlannedRequest(RequestKind.DISCOVER, b""), now)
            return
        self._discovered = True

    def _supported(self, decoded: Mapping[int, object]) -> None:
        for rid, answer in decoded.items():
            ecu = self.ecus.get(rid)
            if ecu is None or not isinstance(answer, CurrentDataResponse):
                continue
            for item in answer.values:
                if isinstance(item.value, frozenset):
                    ecu.supported |= item.value
                    following = item.pid + 0x20
                    if following in item.value and following in SUPPORTED_PID_BASES:
                        ecu.bitmaps_to_ask.append(following)

    def _pid_events(self, request: PlannedRequest, decoded: Mapping[int, object],
                    stamp: float) -> list[Event]:
        rid = request.target
        answer = decoded.get(rid) if rid is not None else None
        if isinstance(answer, NegativeResponse) and rid is not None:
            self._refused(rid, request.payload[1:])
            return []
        if not isinstance(answer, CurrentDataResponse) or rid is None:
            return []
        self._note_absent(rid, request.payload[1:], answer)
        events: list[Event] = []
        changed: dict[str, SignalValue] = {}
        for item in answer.values:
            if isinstance(item.value, MonitorStatus):
                events += self._mil_events(rid, item.value, stamp)
            elif isinstance(item.value, float) and item.spec is not None:
                name = signal_name(item.spec)
                if self._last.get(name) != item.value:
                    self._last[name] = item.value
                    changed[name] = SignalValue(name, item.value, item.spec.unit, stamp, "obd")
        return ([SignalsUpdated(changed)] if changed else []) + events

    def _note_absent(self, rid: int, asked: bytes, answer: CurrentDataResponse) -> None:
        """J1979: an ECU leaves out PIDs it cannot give; stop asking after a few misses."""
        for pid in asked:
            key = (rid, pid)
            if answer.get(pid) is not None:
                self._absent.pop(key, None)
                continue
            self._absent[key] = self._absent.get(key, 0) + 1
            if self._absent[key] >= MAX_ABSENT and self._due.pop(key, None) is not None:
                log.info("OBD-II: ECU 0x%X never gives PID 0x%02X; no longer polled", rid, pid)

    def _refused(self, rid: int, pids: bytes) -> None:
        """A negative answer: ask each PID alone next time; one refused alone is dropped."""
        keys = [(rid, pid) for pid in pids]
        if len(keys) == 1:
            self._due.pop(keys[0], None)
            log.info("OBD-II: ECU 0x%X refuses PID 0x%02X; no longer polled", rid, pids[0])
        else:
            self._solo.update(keys)

    def _mil_events(self, rid: int, status: MonitorStatus, stamp: float) -> list[Event]:
        ecu = self.ecus.get(rid)
        if ecu is not None:
            if ecu.dtc_count != status.dtc_count and status.dtc_count != len(self.dtcs.get(rid, ())):
                self._dtc_due = 0.0  # the ECU's code count changed: read the codes now
            ecu.mil_on, ecu.dtc_count = status.mil_on, status.dtc_count
        lit = [e for e in self.ecus.values() if e.mil_on]
        summary = (bool(lit), lit[0].response_id if lit else 0,
                   sum(e.dtc_count for e in self.ecus.values()))
        if summary == self._mil:
            return []
        self._mil = summary
        return [MilState(summary[0], summary[1], summary[2], stamp)]

    def _dtc_events(self, decoded: Mapping[int, object], stamp: float) -> list[Event]:
        events: list[Event] = []
        for rid in sorted(decoded):
            answer = decoded[rid]
            if not isinstance(answer, DtcResponse):
                continue
            before = set(self.dtcs.get(rid, ()))
            now_set = tuple(dict.fromkeys(answer.codes))
            self.dtcs[rid] = now_set
            events += [DtcSet(rid, code, describe(code), stamp) for code in now_set
                       if code not in before]
            events += [DtcCleared(rid, code, stamp) for code in sorted(before - set(now_set))]
        return events

    def _vin_events(self, decoded: Mapping[int, object], stamp: float) -> list[Event]:
        for rid in sorted(decoded):
            answer = decoded[rid]
            if isinstance(answer, VinResponse):
                if self._vin_seen is not None and answer.vin != self._vin_seen:
                    self.dtcs.clear()  # another car: its codes are not the old car's
                    self._mil = None
                self.vin = self._vin_seen = answer.vin
                return [VehicleIdentified(answer.vin, rid, stamp)]
        return []
