"""Turns vehicle-model state into CAN frames on the DBC's schedule. Pure: simulated time only.

Every message with a ``GenMsgCycleTime`` is sent on a fixed grid (period = cycle time, phase
spread by frame id), each frame 0-0.2 ms late by seeded jitter as arbitration and ECU
scheduling make it on a real bus. A message whose only multiplexer
selects N sub-frames (TPMS: one tire per frame) is sent N times per cycle time, cycling through
the multiplexer values, so every tire repeats once per cycle time. Signals named ``*Counter``
count transmissions; 8-bit byte-aligned ``*Checksum``/``*CRC`` signals hold the sum of the other
payload bytes plus the low and high byte of the frame id, modulo 256. ECUs sleep by power mode:
with the ignition off only the body controller and the TPMS receiver transmit.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import can

from carlink_sim.signals import SIGNAL_GETTERS, SignalGetter
from carlink_sim.vehicle import Ignition, VehicleModel

if TYPE_CHECKING:
    from cantools.database.can import Database, Message, Signal

logger = logging.getLogger(__name__)

JITTER_S = 0.0002
# Lowest power mode in which each node transmits. Nodes not listed need the ignition in Run.
NODE_MIN_IGNITION: dict[str, Ignition] = {
    "BCM": Ignition.OFF,
    "TPMS": Ignition.OFF,
    "SWM": Ignition.ACCESSORY,
    "IPC": Ignition.ACCESSORY,
    "NAV": Ignition.ACCESSORY,
}

Encoded = tuple[str, SignalGetter, float, float]


def checksum(payload: bytes | bytearray, index: int, frame_id: int) -> int:
    """The demo DBC checksum: other payload bytes plus both low id bytes, modulo 256."""
    total = sum(payload) - payload[index] + (frame_id & 0xFF) + ((frame_id >> 8) & 0xFF)
    return total & 0xFF


def _raw_range(signal: Signal) -> tuple[float, float]:
    if signal.is_float:
        return -math.inf, math.inf
    bits = signal.length
    if signal.is_signed:
        raw_lo, raw_hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        raw_lo, raw_hi = 0, (1 << bits) - 1
    ends = (raw_lo * signal.scale + signal.offset, raw_hi * signal.scale + signal.offset)
    return min(ends), max(ends)


def physical_range(signal: Signal) -> tuple[float, float]:
    """Physical values a signal can carry: its raw range, narrowed by the DBC's [min|max]."""
    lo, hi = _raw_range(signal)
    if signal.minimum is not None:
        lo = max(lo, float(signal.minimum))
    if signal.maximum is not None and signal.maximum > lo:
        hi = min(hi, float(signal.maximum))
    return lo, hi


def _default_getter(signal: Signal) -> SignalGetter:
    value = float(signal.initial) if isinstance(signal.initial, (int, float)) else 0.0
    return lambda m: value


def _is_counter(signal: Signal) -> bool:
    return signal.name.lower().endswith("counter") and signal.name not in SIGNAL_GETTERS


def _checksum_byte(signal: Signal) -> int | None:
    name = signal.name.lower()
    if not name.endswith(("checksum", "crc")) or signal.length != 8:
        return None
    aligned = signal.start % 8 == (0 if signal.byte_order == "little_endian" else 7)
    return signal.start // 8 if aligned else None


@dataclass
class MessagePlan:
    """How and when one DBC message is built: its schedule, signal getters and state."""

    message: Message
    period: float
    min_ignition: Ignition
    signals: list[Encoded] = field(default_factory=list)
    mux_name: str | None = None
    mux_signals: dict[int, list[Encoded]] = field(default_factory=dict)
    counters: list[tuple[str, int]] = field(default_factory=list)
    checksums: list[tuple[str, int]] = field(default_factory=list)
    sent: int = 0
    slot: int = 0

    @classmethod
    def build(cls, message: Message) -> MessagePlan | None:
        """Plan for ``message``, or None when it has no cycle time or unsupported multiplexing."""
        if not message.cycle_time:
            logger.debug("%s has no cycle time; not sent", message.name)
            return None
        plan = cls(message, message.cycle_time / 1000.0, _min_ignition(message))
        for entry in message.signal_tree:
            if isinstance(entry, str):
                plan._add(message.get_signal_by_name(entry), plan.signals)
            elif plan.mux_name is not None or not plan._add_mux(message, entry):
                logger.warning("%s: nested or multiple multiplexers are not simulated", message.name)
                return None
        if plan.mux_signals:
            plan.period /= len(plan.mux_signals)
        return plan

    def _add(self, signal: Signal, target: list[Encoded]) -> bool:
        byte = _checksum_byte(signal)
        if byte is not None:
            self.checksums.append((signal.name, byte))
        elif _is_counter(signal):
            self.counters.append((signal.name, 1 << signal.length))
        else:
            getter = SIGNAL_GETTERS.get(signal.name) or _default_getter(signal)
            target.append((signal.name, getter, *physical_range(signal)))
        return True

    def _add_mux(self, message: Message, entry: Mapping[str, Mapping[int, Sequence[object]]]) -> bool:
        ((name, branches),) = entry.items()
        self.mux_name = name
        for value, names in sorted(branches.items()):
            encoded: list[Encoded] = []
            for sub in names:
                if not isinstance(sub, str):
                    return False
                self._add(message.get_signal_by_name(sub), encoded)
            self.mux_signals[value] = encoded
        return True

    def encode(self, model: VehicleModel) -> bytes:
        """Payload for the next transmission, from the model's current state."""
        data: dict[str, float] = {}
        for name, getter, lo, hi in self.signals:
            data[name] = min(hi, max(lo, getter(model)))
        if self.mux_name is not None:
            values = list(self.mux_signals)
            selector = values[self.slot % len(values)]
            data[self.mux_name] = selector
            for name, getter, lo, hi in self.mux_signals[selector]:
                data[name] = min(hi, max(lo, getter(model)))
        for name, modulo in self.counters:
            data[name] = self.sent % modulo
        for name, _ in self.checksums:
            data[name] = 0
        payload = bytearray(self.message.encode(data, strict=True))
        for _, index in self.checksums:
            payload[index] = checksum(payload, index, self.message.frame_id)
        return bytes(payload)


def _min_ignition(message: Message) -> Ignition:
    senders = message.senders or []
    levels = [NODE_MIN_IGNITION.get(node, Ignition.RUN) for node in senders]
    return min(levels) if levels else Ignition.RUN


def _phase(frame_id: int, period: float) -> float:
    """Deterministic start offset so messages do not all fire at once (golden-ratio spread)."""
    return (frame_id * 0.6180339887) % 1.0 * period


class TrafficGenerator:
    """Produces the frames due between its current position and a later simulated time."""

    def __init__(self, db: Database, model: VehicleModel, seed: int,
                 advance: Callable[[float], None], start: float = 0.0) -> None:
        self.model = model
        self.time = start
        self._start = start
        self._advance = advance
        self._rng = random.Random(f"traffic:{seed}")
        self.plans = [p for p in (MessagePlan.build(m) for m in db.messages) if p is not None]
        self._heap: list[tuple[float, int, int]] = []
        for index, plan in enumerate(self.plans):
            heapq.heappush(self._heap, (self._nominal(plan, 0) + self._jitter(), index, 1))

    def _jitter(self) -> float:
        return self._rng.uniform(0.0, JITTER_S)

    def frames_until(self, end: float) -> list[can.Message]:
        """All frames due from the current position up to (not including) ``end``, in time order."""
        out: list[can.Message] = []
        heap = self._heap
        while heap and heap[0][0] < end:
            due, index, k = heapq.heappop(heap)
            plan = self.plans[index]
            self._advance(due)
            if self.model.ignition >= plan.min_ignition:
                out.append(self._frame(plan, due))
            next_due = self._nominal(plan, k) + self._jitter()
            heapq.heappush(heap, (next_due, index, k + 1))
        self.time = max(self.time, end)
        return out

    def frames_between(self, t0: float, t1: float) -> list[can.Message]:
        """Frames due in [t0, t1); the generator is sequential, so t0 must be where it stands."""
        if abs(t0 - self.time) > 1e-9:
            raise ValueError(f"traffic is at t={self.time:.6f}; cannot start a window at t={t0:.6f}")
        return self.frames_until(t1)

    def _nominal(self, plan: MessagePlan, k: int) -> float:
        return self._start + _phase(plan.message.frame_id, plan.period) + k * plan.period

    def _frame(self, plan: MessagePlan, due: float) -> can.Message:
        payload = plan.encode(self.model)
        plan.sent += 1
        plan.slot += 1
        message = plan.message
        return can.Message(timestamp=due, arbitration_id=message.frame_id,
                           is_extended_id=message.is_extended_frame, data=payload, dlc=len(payload))
