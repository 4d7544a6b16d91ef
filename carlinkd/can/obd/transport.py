"""OBD-II requests over ISO-TP (ISO 15765-2/-4) on the daemon's one CAN bus, driven from the loop.

can-isotp's :class:`isotp.TransportLayerLogic` is the ISO-TP state machine: it is fed the frames
``CanSource`` hands to its consumers (:meth:`ObdTransport.feed`) and transmits through
``CanSource.send``, the daemon's only transmit path. Its reads never block (the frames are already
queued), so it runs on the event loop: no reader thread of its own, nothing that blocks the loop.
(can-isotp's threaded stacks would each read the bus themselves and need two threads per ECU.)

Addressing (ISO 15765-4): physical requests go to 0x7E0+n / 0x18DA<ecu>F1 and ECU n answers on
0x7E8+n / 0x18DAF1<ecu>; functional requests go to 0x7DF / 0x18DB33F1 and every ECU answers on its
own response id. One ISO-TP link per response id sends the flow control for multi-frame answers to
that ECU's physical request id, also for answers to functional requests.

One request is in flight at a time. It ends when every expected ECU has answered, or at the
deadline: P2 (``response_timeout``) after sending, extended to P2* (``pending_timeout``) for an
ECU that sent "response pending" (NRC 0x78) and by N_Cr (``frame_timeout``) while a multi-frame
answer is arriving. Stray flow control, malformed frames and answers cut short are counted and
logged (rate-limited), never raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

import can
import isotp

from ...errors import BusUnavailable
from ...logutil import RateLimitedLogger
from .addressing import functional_request_id, parse_response_id
from .errors import ObdRequestError, ObdTransportError
from .services import (
    DESTRUCTIVE_SERVICES, NEGATIVE_RESPONSE, POSITIVE_RESPONSE_OFFSET, Nrc, Service,
)

log = logging.getLogger(__name__)
_warn = RateLimitedLogger(log, interval=30.0)

ISOTP_LOGGER = f"{__name__}.isotp"
# Tester padding byte for the unused bytes of 8-byte frames (ISO 15765-4 requires DLC 8).
PADDING = 0x00
_FLOW_CONTROL = 0x3
RESPONSE_FIRST_11, RESPONSE_LAST_11 = 0x7E8, 0x7EF
RESPONSE_PREFIX_29 = 0x18DAF100  # 0x18DAF1<ecu>: answers addressed to the tester (0xF1)
# can-isotp errors, by class name, that mean "this answer was cut short".
_CUT_SHORT = frozenset({"ConsecutiveFrameTimeoutError", "WrongSequenceNumberError",
                        "ReceptionInterruptedWithSingleFrameError",
                        "ReceptionInterruptedWithFirstFrameError"})


class _RateLimitFilter(logging.Filter):
    """can-isotp logs a warning for every protocol error; keep one per kind per minute."""

    def __init__(self) -> None:
        super().__init__()
        self._limiter = RateLimitedLogger(log, interval=60.0)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        self._limiter.log(logging.DEBUG if "FlowControl" in text else logging.INFO,
                          ("isotp", text.split(".")[0]), "ISO-TP: %s", text)
        return False


logging.getLogger(ISOTP_LOGGER).addFilter(_RateLimitFilter())


@dataclass(frozen=True, slots=True)
class Exchange:
    """The outcome of one request: final answers by response id, and what went missing."""

    request: bytes
    target: int | None
    answers: Mapping[int, bytes]
    pending: frozenset[int] = frozenset()
    incomplete: frozenset[int] = frozenset()
    elapsed: float = 0.0

    @property
    def functional(self) -> bool:
        """True when the request went to all ECUs (0x7DF / 0x18DB33F1)."""
        return self.target is None


@dataclass(slots=True)
class _InFlight:
    """Bookkeeping for the request being answered."""

    service: int
    expect: frozenset[int]
    deadline: float
    answers: dict[int, bytes] = field(default_factory=dict)
    pending: dict[int, float] = field(default_factory=dict)
    receiving: dict[int, float] = field(default_factory=dict)
    incomplete: set[int] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def complete(self) -> bool:
        """True when every expected ECU gave a final answer."""
        return bool(self.expect) and self.expect <= self.answers.keys()

    def until(self) -> float:
        """The deadline, extended for ECUs still pending or mid-answer."""
        open_ends = [t for rid, t in (*self.pending.items(), *self.receiving.items())
                     if rid not in self.answers]
        return max([self.deadline, *open_ends])


def _params(frame_timeout: float) -> dict[str, object]:
    """can-isotp parameters shared by every link."""
    return {
        # ISO 15765-4: the tester answers a first frame with BS=0, STmin=0 ("send everything").
        "blocksize": 0, "stmin": 0, "tx_padding": PADDING, "tx_data_length": 8,
        "rx_consecutive_frame_timeout": int(frame_timeout * 1000),
        "rx_flowcontrol_timeout": int(frame_timeout * 1000),
        "max_frame_size": 4095, "logger_name": ISOTP_LOGGER,
        "wait_func": lambda _s: None,  # only the threaded stacks wait; never sleep on the loop
    }


class _Link:
    """One ISO-TP link: answers from one ECU's response id, requests and flow control to it."""

    def __init__(self, logic_factory: Callable[[_Link], isotp.TransportLayerLogic],
                 response_id: int) -> None:
        self.response_id = response_id
        self.inbox: deque[isotp.CanMessage] = deque()
        self.errors: list[str] = []
        self.logic = logic_factory(self)

    def rx(self, _timeout: float) -> isotp.CanMessage | None:
        """can-isotp's receive function: the next queued frame, never waiting."""
        return self.inbox.popleft() if self.inbox else None

    def on_error(self, error: Exception) -> None:
        """can-isotp's error handler: remember the kind; the transport counts it."""
        self.errors.append(type(error).__name__)


class ObdTransport:
    """Sends OBD-II requests and collects each ECU's reassembled answer, on the event loop."""

    def __init__(self, send: Callable[[can.Message], None], *, extended: bool = False,
                 response_timeout: float = 0.15, pending_timeout: float = 5.0,
                 frame_timeout: float = 1.0) -> None:
        """``send`` transmits one frame (``CanSource.send``); timeouts are P2, P2* and N_Cr."""
        self._send = send
        self.extended = extended
        self.response_timeout = response_timeout
        self.pending_timeout = pending_timeout
        self.frame_timeout = frame_timeout
        self._params = _params(frame_timeout)
        self._links: dict[int, _Link] = {}
        self._functional = self._functional_logic()
        self._lock = asyncio.Lock()
        self._current: _InFlight | None = None
        self._send_error: Exception | None = None
        self.counters: Counter[str] = Counter()

    def _is_response(self, can_id: int) -> bool:
        """Cheap test on the hot path (every frame of the bus passes here)."""
        if self.extended:
            return can_id & 0x1FFFFF00 == RESPONSE_PREFIX_29
        return RESPONSE_FIRST_11 <= can_id <= RESPONSE_LAST_11

    @property
    def responders(self) -> tuple[int, ...]:
        """Response ids of every ECU heard from so far, sorted."""
        return tuple(sorted(self._links))

    # ---- receive path (CanSource consumer, on the loop) ---------------------------------------

    def feed(self, frames: Iterable[can.Message]) -> None:
        """Take a batch from the CAN source; only OBD-II response frames are looked at."""
        touched: dict[int, _Link] = {}
        extended = self.extended
        for msg in frames:
            if msg.is_extended_id != extended or msg.is_error_frame or msg.is_remote_frame:
                continue
            rid = msg.arbitration_id
            link = self._links.get(rid)
            if link is None:
                if not self._is_response(rid):
                    continue
                link = self._link(rid)
            link.inbox.append(isotp.CanMessage(rid, len(msg.data), bytes(msg.data), extended))
            touched[rid] = link
        for link in touched.values():
            self._pump(link, fresh=True)

    def _pump(self, link: _Link, fresh: bool = False) -> None:
        """Run the link's state machine over its queued frames and collect finished answers."""
        self._send_error = None
        link.logic.process()
        if self._send_error is not None:
            _warn.warning("fc-send", "cannot send ISO-TP flow control to %s: %s",
                          _hex(link.response_id), self._send_error)
        self._note_errors(link)
        current = self._current
        if current is not None and fresh and link.logic.is_rx_active():
            loop_now = asyncio.get_running_loop().time()
            current.receiving[link.response_id] = loop_now + self.frame_timeout
            current.wake.set()
        while (payload := link.logic.recv()) is not None:
            self._on_payload(link.response_id, bytes(payload))

    def _note_errors(self, link: _Link) -> None:
        for kind in link.errors:
            if kind == "UnexpectedFlowControlError":
                self.counters["stray_flow_control"] += 1
            elif kind in _CUT_SHORT:
                self.counters["incomplete"] += 1
                if self._current is not None:
                    self._current.incomplete.add(link.response_id)
                    self._current.receiving.pop(link.response_id, None)
                    self._current.wake.set()
            else:
                self.counters["isotp_errors"] += 1
        link.errors.clear()

    def _on_payload(self, rid: int, payload: bytes) -> None:
        current = self._current
        if current is None or not _answers(payload, current.service):
            self.counters["unsolicited"] += 1
            return
        current.receiving.pop(rid, None)
        current.incomplete.discard(rid)
        if payload[0] == NEGATIVE_RESPONSE and payload[2:3] == bytes((Nrc.RESPONSE_PENDING,)):
            # ISO 14229-1 / J1979: 0x78 restarts the wait with P2*; the real answer follows.
            self.counters["pending"] += 1
            current.pending[rid] = asyncio.get_running_loop().time() + self.pending_timeout
        elif rid in current.answers:
            self.counters["duplicate_answers"] += 1
        else:
            self.counters["answers"] += 1
            current.answers[rid] = payload
        current.wake.set()

    # ---- transmit path ------------------------------------------------------------------------

    async def request(self, payload: bytes, *, target: int | None = None,
                      expect: Collection[int] | None = None) -> Exchange:
        """Send ``payload`` to one ECU (``target`` = its response id) or to all (None).

        Returns early once every ECU in ``expect`` (default: the target) has answered, else at
        the deadline. Raises ObdTransportError when the request cannot be sent and
        ObdRequestError for a destructive service (mode 04 goes through :meth:`clear_dtcs`).
        """
        if payload and payload[0] in DESTRUCTIVE_SERVICES:
            raise ObdRequestError("mode 04 is never sent by request(); only `obd clear --confirm`")
        return await self._exchange(payload, target, expect)

    async def clear_dtcs(self, request: bytes, *, target: int | None = None) -> Exchange:
        """Send mode 04 (clear DTCs): only ``carlinkd obd clear --confirm`` calls this, with the
        bytes the codec's confirmed mode 04 builder returned; the poller never does."""
        if request != bytes((Service.CLEAR_DTCS,)):
            raise ObdRequestError(f"not a mode 04 request: {request.hex(' ')}")
        return await self._exchange(request, target, None)

    async def _exchange(self, payload: bytes, target: int | None,
                        expect: Collection[int] | None) -> Exchange:
        if not 1 <= len(payload) <= 7:
            raise ObdRequestError(f"an OBD-II request is 1-7 bytes, got {len(payload)}")
        async with self._lock:
            loop = asyncio.get_running_loop()
            started = loop.time()
            wanted = frozenset(expect if expect is not None else
                               () if target is None else (target,))
            current = _InFlight(payload[0], wanted, started + self.response_timeout)
            self._current = current
            try:
                self._transmit(payload, target)
                await self._wait(current)
            finally:
                self._current = None
                self._settle_links()
            return self._finish(payload, target, current, loop.time() - started)

    async def _wait(self, current: _InFlight) -> None:
        loop = asyncio.get_running_loop()
        while not current.complete():
            remaining = current.until() - loop.time()
            if remaining <= 0:
                return
            current.wake.clear()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that lands as the wait completes, and the daemon's stop() then waits forever.
                async with asyncio.timeout(remaining):
                    await current.wake.wait()
            except TimeoutError:
                for rid, link in self._links.items():
                    if rid in current.receiving:
                        self._pump(link)  # lets can-isotp notice N_Cr expiry

    def _finish(self, payload: bytes, target: int | None, current: _InFlight,
                elapsed: float) -> Exchange:
        if not current.answers:
            self.counters["no_answer"] += 1
        pending = frozenset(current.pending) - current.answers.keys()
        incomplete = (frozenset(current.incomplete) | frozenset(current.receiving)) \
            - current.answers.keys()
        return Exchange(payload, target, dict(current.answers), pending, incomplete, elapsed)

    def _transmit(self, payload: bytes, target: int | None) -> None:
        self._send_error = None
        if target is None:
            self._functional.send(payload, isotp.TargetAddressType.Functional)
            self._functional.process(do_rx=False)
            self.counters["functional_requests"] += 1
        else:
            link = self._links.get(target) or self._link_checked(target)
            link.logic.send(payload)
            self._pump(link)
            self.counters["physical_requests"] += 1
        if self._send_error is not None:
            raise ObdTransportError(f"cannot send OBD-II request {payload.hex(' ')}: "
                                    f"{self._send_error}") from self._send_error

    def _tx(self, frame: isotp.CanMessage) -> None:
        """can-isotp's transmit function: one frame through the CAN source."""
        data = bytes(frame.data)
        msg = can.Message(arbitration_id=frame.arbitration_id, data=data,
                          is_extended_id=frame.is_extended_id, dlc=len(data))
        try:
            self._send(msg)
        except (BusUnavailable, can.CanError, OSError) as err:
            self._send_error = err
            self.counters["send_errors"] += 1
            return
        self.counters["frames_sent"] += 1
        if data and data[0] >> 4 == _FLOW_CONTROL:
            self.counters["flow_control_sent"] += 1

    def _settle_links(self) -> None:
        """After a request: let links mid-answer time out, drop what arrived too late."""
        for link in self._links.values():
            if link.inbox or link.logic.is_rx_active():
                self._pump(link)

    # ---- links --------------------------------------------------------------------------------

    def _link_checked(self, response_id: int) -> _Link:
        if parse_response_id(response_id, self.extended) is None:
            bits = 29 if self.extended else 11
            raise ObdRequestError(f"{_hex(response_id)} is not an OBD-II {bits}-bit response id")
        return self._link(response_id)

    def _link(self, response_id: int) -> _Link:
        address = parse_response_id(response_id, self.extended)
        assert address is not None
        mode = (isotp.AddressingMode.Normal_29bits if self.extended
                else isotp.AddressingMode.Normal_11bits)

        def make(link: _Link) -> isotp.TransportLayerLogic:
            addr = isotp.Address(mode, txid=address.request_id, rxid=response_id)
            return isotp.TransportLayerLogic(rxfn=link.rx, txfn=self._tx, address=addr,
                                             error_handler=link.on_error, params=self._params)

        link = _Link(make, response_id)
        self._links[response_id] = link
        log.debug("ISO-TP link to ECU %s", _hex(response_id))
        return link

    def _functional_logic(self) -> isotp.TransportLayerLogic:
        mode = (isotp.AddressingMode.Normal_29bits if self.extended
                else isotp.AddressingMode.Normal_11bits)
        functional = functional_request_id(self.extended)
        # Transmit-only in practice: answers arrive on the ECUs' own links, never fed here.
        address = isotp.AsymmetricAddress(
            tx_addr=isotp.Address(mode, txid=functional, tx_only=True),
            rx_addr=isotp.Address(mode, rxid=functional, rx_only=True))
        # can-isotp's annotation says Address; set_address() accepts AsymmetricAddress as well.
        return isotp.TransportLayerLogic(rxfn=lambda _t: None, txfn=self._tx,
                                         address=address,  # type: ignore[arg-type]
                                         params=self._params)


def _answers(payload: bytes, service: int) -> bool:
    """True when ``payload`` is a positive or negative answer to ``service``."""
    if not payload:
        return False
    if payload[0] == NEGATIVE_RESPONSE:
        return len(payload) >= 3 and payload[1] == service
    return payload[0] == service + POSITIVE_RESPONSE_OFFSET


def _hex(can_id: int) -> str:
    return f"0x{can_id:X}"
