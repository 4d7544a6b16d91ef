"""ISO-TP (ISO 15765-2) reassembly of recorded CAN frames, per CAN id, without a socket or a clock.

For decoding logs (``carlinkd obd decode LOGFILE``): feed every frame with its timestamp and get back
the payloads each CAN id carried. Single frames, first + consecutive frames (sequence numbers wrap
F -> 0), and the CAN FD escape sequences are understood; padding after the announced length is
dropped whatever its value; flow-control frames are counted and ignored. An answer that is cut
short (sequence gap, a new first/single frame, silence longer than ``timeout``, end of log) comes
back as a :class:`Payload` with ``complete=False`` and a ``problem`` saying why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

SINGLE_FRAME, FIRST_FRAME, CONSECUTIVE_FRAME, FLOW_CONTROL = 0, 1, 2, 3
# ISO 15765-2 N_Cr: a receiver gives up after 1000 ms without the next consecutive frame.
DEFAULT_TIMEOUT = 1.0
_CLASSIC_MAX_DLEN = 8


@dataclass(frozen=True, slots=True)
class Payload:
    """One reassembled ISO-TP message from one CAN id, complete or cut short."""

    arbitration_id: int
    data: bytes
    timestamp: float
    end_timestamp: float
    frames: int
    expected_length: int
    complete: bool = True
    problem: str | None = None


@dataclass(slots=True)
class _Partial:
    """A multi-frame message still being received."""

    expected_length: int
    data: bytearray
    next_sequence: int
    timestamp: float
    last_timestamp: float
    frames: int = 1

    def finish(self, arbitration_id: int, problem: str | None = None) -> Payload:
        """Return what was received so far as a payload (incomplete when ``problem`` is set)."""
        data = bytes(self.data[:self.expected_length])
        complete = problem is None and len(data) == self.expected_length
        return Payload(arbitration_id, data, self.timestamp, self.last_timestamp, self.frames,
                       self.expected_length, complete, problem)


class Reassembler:
    """Reassemble ISO-TP payloads from recorded frames, one reception in progress per CAN id."""

    def __init__(
        self, *, timeout: float | None = DEFAULT_TIMEOUT, ids: Iterable[int] | None = None,
    ) -> None:
        """Create a reassembler; ``timeout`` is N_Cr in seconds (None: never), ``ids`` limits CAN ids."""
        self._timeout = timeout
        self._ids = frozenset(ids) if ids is not None else None
        self._partials: dict[int, _Partial] = {}
        self.ignored: Counter[str] = Counter()
        """Frames that produced nothing, by reason (``flow_control``, ``invalid_pci``, ...)."""

    @property
    def in_progress(self) -> tuple[int, ...]:
        """Return the CAN ids with a multi-frame reception under way."""
        return tuple(self._partials)

    def feed(self, arbitration_id: int, data: bytes, timestamp: float) -> list[Payload]:
        """Take one frame; return the payloads it completed or cut short (often none)."""
        out = self.expire(timestamp)
        if self._ids is not None and arbitration_id not in self._ids:
            return out
        if not data:
            self.ignored["empty_frame"] += 1
            return out
        frame = bytes(data)
        kind = frame[0] >> 4
        if kind == SINGLE_FRAME:
            out += self._single(arbitration_id, frame, timestamp)
        elif kind == FIRST_FRAME:
            out += self._first(arbitration_id, frame, timestamp)
        elif kind == CONSECUTIVE_FRAME:
            out += self._consecutive(arbitration_id, frame, timestamp)
        elif kind == FLOW_CONTROL:
            self.ignored["flow_control"] += 1
        else:
            self.ignored["invalid_pci"] += 1
        return out

    def expire(self, now: float) -> list[Payload]:
        """Give up on receptions silent for longer than the timeout at time ``now``."""
        if self._timeout is None:
            return []
        stale = [i for i, p in self._partials.items() if now - p.last_timestamp > self._timeout]
        problem = f"no consecutive frame within {self._timeout:g} s"
        return [self._partials.pop(i).finish(i, problem) for i in stale]

    def flush(self) -> list[Payload]:
        """Return every reception still in progress as incomplete (call at the end of a log)."""
        problem = "log ended before the last consecutive frame"
        out = [p.finish(i, problem) for i, p in self._partials.items()]
        self._partials.clear()
        return out

    def _interrupt(self, arbitration_id: int, by: str) -> list[Payload]:
        partial = self._partials.pop(arbitration_id, None)
        return [] if partial is None else [partial.finish(arbitration_id, f"interrupted by a new {by}")]

    def _single(self, arbitration_id: int, frame: bytes, timestamp: float) -> list[Payload]:
        length, offset = frame[0] & 0x0F, 1
        if length == 0:
            # SF_DL 0 is the CAN FD escape (ISO 15765-2:2016): the length follows in byte 1.
            if len(frame) <= _CLASSIC_MAX_DLEN:
                self.ignored["invalid_single_frame"] += 1
                return []
            length, offset = frame[1], 2
        out = self._interrupt(arbitration_id, "single frame")
        body = frame[offset:offset + length]
        problem = None
        if len(body) != length:
            problem = f"single frame announces {length} bytes, carries {len(body)}"
        out.append(Payload(arbitration_id, body, timestamp, timestamp, 1, length,
                           complete=problem is None, problem=problem))
        return out

    def _first(self, arbitration_id: int, frame: bytes, timestamp: float) -> list[Payload]:
        if len(frame) < 2:
            self.ignored["invalid_first_frame"] += 1
            return []
        length, offset = ((frame[0] & 0x0F) << 8) | frame[1], 2
        if length == 0:
            # FF_DL 0 escapes to a 32-bit length for payloads above 4095 bytes.
            length, offset = int.from_bytes(frame[2:6], "big"), 6
        chunk = frame[offset:]
        if len(frame) < offset or length <= len(chunk):
            # A first frame must announce more than it carries, else it should have been a single frame.
            self.ignored["invalid_first_frame"] += 1
            return []
        out = self._interrupt(arbitration_id, "first frame")
        self._partials[arbitration_id] = _Partial(length, bytearray(chunk), 1, timestamp, timestamp)
        return out

    def _consecutive(self, arbitration_id: int, frame: bytes, timestamp: float) -> list[Payload]:
        partial = self._partials.get(arbitration_id)
        if partial is None:
            self.ignored["unexpected_consecutive_frame"] += 1
            return []
        sequence = frame[0] & 0x0F
        if sequence != partial.next_sequence:
            del self._partials[arbitration_id]
            expected = partial.next_sequence
            problem = f"consecutive frame {sequence:X} arrived where {expected:X} was expected"
            return [partial.finish(arbitration_id, problem)]
        partial.data += frame[1:1 + partial.expected_length - len(partial.data)]
        partial.next_sequence = (sequence + 1) & 0x0F
        partial.frames += 1
        partial.last_timestamp = timestamp
        if len(partial.data) < partial.expected_length:
            return []
        del self._partials[arbitration_id]
        return [partial.finish(arbitration_id)]


def reassemble(
    frames: Iterable[tuple[int, bytes, float]], *, timeout: float | None = DEFAULT_TIMEOUT,
) -> list[Payload]:
    """Reassemble a whole recording of ``(arbitration_id, data, timestamp)`` frames, then flush."""
    reassembler = Reassembler(timeout=timeout)
    out: list[Payload] = []
    for arbitration_id, data, timestamp in frames:
        out += reassembler.feed(arbitration_id, data, timestamp)
    return out + reassembler.flush()
