"""Simulated OBD-II ECUs on a CAN bus: :class:`ObdEcu` answers carried by can-isotp.

The demo car has an engine ECU (answers on 0x7E8, or 0x18DAF110 with 29-bit ids) and a
transmission ECU (0x7E9 / 0x18DAF118), with values from the :class:`VehicleModel`, a VIN on the
engine ECU, and trouble codes from ``model.stored_dtcs`` / ``model.pending_dtcs`` (scenarios set
them). ECUs answer only with the ignition in Run or Start, like real ones.

:class:`EcuResponder` is the ISO-TP side of every ECU (can-isotp's ``TransportLayerLogic``, one
physical and one functional link per ECU), fed frames and told the time; it never blocks. Two
drivers move frames: :class:`BusEcus` (one thread on a python-can bus, e.g. ``virtual``) and
:class:`SocketcandEcus` (on the loop, as a :class:`SocketcandServer` ``on_frame`` hook).

Test knobs: ``slow_services`` answers "response pending" (NRC 0x78) first and the real answer
after a delay; ``silent`` mutes ECUs by name.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

import can
import isotp

from carlinkd.can.obd.addressing import functional_request_id
from carlinkd.can.obd.services import Nrc, encode_negative_response
from carlink_sim.obd_ecu import ObdEcu
from carlink_sim.vehicle import Ignition, VehicleModel, clamp

if TYPE_CHECKING:
    from carlink_sim.simulator import Simulator

logger = logging.getLogger(__name__)

DEMO_VIN = "WCL0D3M06S1000427"  # check digit (position 9) valid per ISO 3779
ENGINE, TRANSMISSION = "engine", "transmission"
# Physical addresses: 11-bit ECU index (0x7E0 + n) and 29-bit ECU address (0x18DA<ecu>F1).
ADDRESSES = {ENGINE: (0, 0x10), TRANSMISSION: (1, 0x18)}
ENGINE_PIDS = (0x01, 0x04, 0x05, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x1C, 0x1F, 0x21,
               0x2F, 0x31, 0x33, 0x42, 0x46, 0x5C, 0x5E, 0xA6)
TRANSMISSION_PIDS = (0x01, 0x0D, 0x1C)
ECU_PADDING = 0x55
RECV_TIMEOUT_S = 0.1  # BusEcus: longest blocking read, bounds how fast stop() is noticed
EURO_6 = 6.0  # PID 1C: EOBD


def engine_values(model: VehicleModel) -> Callable[[], dict[int, float | bytes]]:
    """A callable returning the engine ECU's current mode 01 values from ``model``."""
    odometer_at_start = model.odometer_km
    started: list[float | None] = [None]

    def values() -> dict[int, float | bytes]:
        pt, th = model.powertrain, model.thermal
        if model.engine_running and started[0] is None:
            started[0] = model.time
        elif not model.engine_running:
            started[0] = None
        run_time = model.time - started[0] if started[0] is not None else 0.0
        load = clamp(pt.torque_net / pt.torque_max * 100.0, 0.0, 100.0) if pt.torque_max else 0.0
        since_clear = model.odometer_km - odometer_at_start
        return {
            0x04: load, 0x05: th.coolant_c, 0x0B: pt.manifold_kpa(), 0x0C: model.engine_rpm,
            0x0D: model.speed_kmh, 0x0E: pt.ignition_advance_deg(), 0x0F: th.intake_c,
            0x10: pt.mass_air_flow_gps(), 0x11: pt.throttle_plate_pct(), 0x1C: EURO_6,
            0x1F: run_time, 0x21: since_clear if model.stored_dtcs.get(ENGINE) else 0.0,
            0x2F: model.fuel_l / model.chassis.tank_l * 100.0, 0x31: since_clear, 0x33: 101.0,
            0x42: model.battery_voltage, 0x46: model.ambient_c, 0x5C: th.oil_c,
            0x5E: model.fuel_rate_lph, 0xA6: model.odometer_km,
        }
    return values


def demo_ecus(model: VehicleModel, *, extended: bool = False, vin: str = DEMO_VIN) -> list[ObdEcu]:
    """The demo car's engine and transmission ECUs, reading ``model``."""
    def ids(name: str) -> tuple[int, int]:
        index, address = ADDRESSES[name]
        if extended:
            return 0x18DA00F1 | address << 8, 0x18DAF100 | address
        return 0x7E0 + index, 0x7E8 + index

    engine = ObdEcu(ENGINE, *ids(ENGINE), ENGINE_PIDS, vin=vin, values=engine_values(model),
                    calibration_ids=["CLD-ECM-4.2.1"])
    gearbox = ObdEcu(TRANSMISSION, *ids(TRANSMISSION), TRANSMISSION_PIDS,
                     values=lambda: {0x0D: model.speed_kmh, 0x1C: EURO_6},
                     calibration_ids=["CLD-TCM-1.9.0"])
    return [engine, gearbox]


def model_awake(model: VehicleModel) -> Callable[[], bool]:
    """ECUs answer with the ignition in Run or Start."""
    return lambda: model.ignition in (Ignition.RUN, Ignition.START)


def model_dtcs(model: VehicleModel) -> Callable[[ObdEcu], None]:
    """Copy the model's trouble codes into an ECU before it answers."""
    def sync(ecu: ObdEcu) -> None:
        ecu.set_dtcs(stored=model.stored_dtcs.get(ecu.name, ()),
                     pending=model.pending_dtcs.get(ecu.name, ()))
    return sync


def model_options(model: VehicleModel) -> dict[str, object]:
    """EcuResponder options tying the ECUs to ``model``: awake with the ignition, its DTCs."""
    return {"awake": model_awake(model), "before_answer": model_dtcs(model)}


@dataclass
class _Port:
    """One ECU's two ISO-TP links: physical (requests, answers, flow control) and functional."""

    ecu: ObdEcu
    physical: isotp.TransportLayerLogic
    functional: isotp.TransportLayerLogic
    inbox: deque[isotp.CanMessage] = field(default_factory=deque)
    functional_inbox: deque[isotp.CanMessage] = field(default_factory=deque)


class EcuResponder:
    """Every simulated ECU's ISO-TP endpoint: frames in (:meth:`feed`), frames out via ``send``."""

    def __init__(self, ecus: Sequence[ObdEcu], send: Callable[[can.Message], None], *,
                 extended: bool = False, awake: Callable[[], bool] = lambda: True,
                 before_answer: Callable[[ObdEcu], None] | None = None,
                 slow_services: Mapping[int, float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``slow_services`` maps a service to the delay before its answer (0x78 sent first)."""
        self._send = send
        self.extended = extended
        self.awake = awake
        self.before_answer = before_answer
        self.slow_services = dict(slow_services or {})
        self.silent: set[str] = set()
        self.clock = clock
        self.functional_id = functional_request_id(extended)
        self._ports = {ecu.rx_id: self._port(ecu) for ecu in ecus}
        self._delayed: list[tuple[float, int, _Port, bytes]] = []
        self._seq = itertools.count()
        self.counters = {"requests": 0, "answers": 0, "ignored_asleep": 0, "frames_sent": 0}

    def _port(self, ecu: ObdEcu) -> _Port:
        mode = isotp.AddressingMode.Normal_29bits if self.extended else isotp.AddressingMode.Normal_11bits
        params = {"tx_padding": ECU_PADDING, "blocksize": 0, "stmin": 0, "wait_func": lambda _s: None}
        port = _Port(ecu, None, None)  # type: ignore[arg-type]
        port.physical = isotp.TransportLayerLogic(
            rxfn=lambda _t: port.inbox.popleft() if port.inbox else None, txfn=self._tx,
            address=isotp.Address(mode, txid=ecu.tx_id, rxid=ecu.rx_id), params=params)
        # Functional requests are single frames (ISO 15765-4); answers go out on the physical link.
        port.functional = isotp.TransportLayerLogic(
            rxfn=lambda _t: port.functional_inbox.popleft() if port.functional_inbox else None,
            txfn=self._tx, address=isotp.Address(mode, txid=ecu.tx_id, rxid=self.functional_id),
            params=params)
        return port

    def _tx(self, frame: isotp.CanMessage) -> None:
        data = bytes(frame.data)
        self.counters["frames_sent"] += 1
        self._send(can.Message(timestamp=time.time(), arbitration_id=frame.arbitration_id, data=data,
                               dlc=len(data), is_extended_id=frame.is_extended_id))

    def feed(self, msg: can.Message) -> None:
        """Take one frame from the bus (requests and the tester's flow control)."""
        if msg.is_extended_id != self.extended or msg.is_error_frame or msg.is_remote_frame:
            return
        frame = isotp.CanMessage(msg.arbitration_id, len(msg.data), bytes(msg.data), msg.is_extended_id)
        if msg.arbitration_id == self.functional_id:
            for port in self._ports.values():
                port.functional_inbox.append(frame)
                port.functional.process()
                self._take_requests(port, port.functional, functional=True)
            return
        target = self._ports.get(msg.arbitration_id)
        if target is not None:
            target.inbox.append(frame)
            target.physical.process()
            self._take_requests(target, target.physical, functional=False)

    def _take_requests(self, port: _Port, link: isotp.TransportLayerLogic, functional: bool) -> None:
        while (request := link.recv()) is not None:
            self.counters["requests"] += 1
            if not self.awake() or port.ecu.name in self.silent:
                self.counters["ignored_asleep"] += 1
                continue
            if self.before_answer is not None:
                self.before_answer(port.ecu)
            answer = port.ecu.respond(bytes(request), functional=functional)
            if answer is None:
                continue
            delay = self.slow_services.get(request[0])
            if delay is not None:
                self._answer(port, encode_negative_response(request[0], Nrc.RESPONSE_PENDING))
                heapq.heappush(self._delayed, (self.clock() + delay, next(self._seq), port, answer))
            else:
                self._answer(port, answer)

    def _answer(self, port: _Port, payload: bytes) -> None:
        self.counters["answers"] += 1
        port.physical.send(payload)
        port.physical.process()

    def poll(self) -> None:
        """Send delayed answers that are due and let the links advance their timers."""
        now = self.clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, port, answer = heapq.heappop(self._delayed)
            self._answer(port, answer)
        for port in self._ports.values():
            if port.physical.transmitting():
                port.physical.process()

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has something to do next (clock time), or None."""
        times = [self._delayed[0][0]] if self._delayed else []
        for port in self._ports.values():
            delay = port.physical.next_cf_delay()
            if delay is not None:
                times.append(self.clock() + delay)
        return min(times, default=None)


class BusEcus:
    """Runs an :class:`EcuResponder` on a python-can bus with one thread (the bus is not owned)."""

    def __init__(self, bus: can.BusABC, ecus: Sequence[ObdEcu], **options: object) -> None:
        """``options`` go to :class:`EcuResponder` (extended, awake, slow_services, ...)."""
        self.bus = bus
        self.responder = EcuResponder(ecus, bus.send, **options)  # type: ignore[arg-type]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start answering."""
        self._thread = threading.Thread(target=self._run, name="sim-obd-ecus", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * RECV_TIMEOUT_S + 1.0)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        responder = self.responder
        while not self._stop.is_set():
            deadline = responder.next_deadline()
            wait = RECV_TIMEOUT_S if deadline is None else clamp(deadline - responder.clock(), 0.0,
                                                                   RECV_TIMEOUT_S)
            try:
                msg = self.bus.recv(wait)
            except (can.CanError, OSError) as err:
                logger.warning("simulated ECUs stop: bus read failed: %s", err)
                return
            try:
                if msg is not None:
                    responder.feed(msg)
                responder.poll()
            except (can.CanError, OSError) as err:  # a full transmit queue costs one answer
                logger.warning("simulated ECU could not send: %s", err)


class SocketcandEcus:
    """Runs an :class:`EcuResponder` on the loop as a :class:`SocketcandServer` ``on_frame`` hook."""

    def __init__(self, server: object, ecus: Sequence[ObdEcu], **options: object) -> None:
        """Attach to ``server`` (sets its ``on_frame``); answers go out with ``server.broadcast``."""
        import asyncio

        self._server = server
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self.responder = EcuResponder(ecus, self._broadcast, clock=self._loop.time,
                                      **options)  # type: ignore[arg-type]
        server.on_frame = self.on_frame  # type: ignore[attr-defined]

    def _broadcast(self, msg: can.Message) -> None:
        self._server.broadcast([msg])  # type: ignore[attr-defined]

    def on_frame(self, msg: can.Message) -> None:
        """A client sent a frame (on the loop)."""
        self.responder.feed(msg)
        self._tick()

    def _tick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.responder.poll()
        deadline = self.responder.next_deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._tick)

    def close(self) -> None:
        """Detach from the server and cancel the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server.on_frame = None  # type: ignore[attr-defined]


def set_dtcs(model: VehicleModel, ecu: str, stored: Iterable[str] = (), pending: Iterable[str] = ()) -> None:
    """Set an ECU's trouble codes on the model (what a scenario event does)."""
    model.stored_dtcs = {**model.stored_dtcs, ecu: tuple(stored)}
    model.pending_dtcs = {**model.pending_dtcs, ecu: tuple(pending)}


def attach_bus(sim: Simulator, bus: can.BusABC) -> BusEcus:
    """Start the simulator's OBD-II ECUs answering on ``bus`` (the caller owns the bus)."""
    extended = sim.obd == "29bit"
    ecus = BusEcus(bus, demo_ecus(sim.model, extended=extended), extended=extended,
                   **model_options(sim.model))
    ecus.start()
    return ecus


def attach_socketcand(sim: Simulator, server: object) -> SocketcandEcus:
    """Make the simulator's OBD-II ECUs answer on a running :class:`SocketcandServer` (on the loop)."""
    extended = sim.obd == "29bit"
    return SocketcandEcus(server, demo_ecus(sim.model, extended=extended), extended=extended,
                          **model_options(sim.model))
