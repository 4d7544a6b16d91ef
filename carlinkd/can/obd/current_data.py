"""Mode 01 responses: split a (multi-PID) answer into PIDs and decode each through the PID table.

A mode 01 answer is ``41 PID data [PID data ...]`` with up to six PIDs (SAE J1979); each PID's data
size comes from the table. A PID the table does not know keeps its raw bytes: when it is the last
one, or no request is known, it takes the rest of the payload; otherwise, of the splits into
requested PIDs, the single one accounting for the most PIDs is used, and on a tie it takes the rest.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice

from carlinkd.can.obd.errors import ObdDecodeError, ObdEncodeError, ObdServiceMismatch, ObdTruncatedError
from carlinkd.can.obd.pids import PIDS, PidData, PidSpec
from carlinkd.can.obd.services import POSITIVE_RESPONSE_OFFSET, Service, response_context

_POSITIVE = Service.CURRENT_DATA + POSITIVE_RESPONSE_OFFSET
# Bound on the splits tried around unknown PIDs (each unknown PID may have any length).
_MAX_CANDIDATES = 256


@dataclass(frozen=True, slots=True)
class PidValue:
    """One PID out of a mode 01 answer: number, raw data bytes, decoded value and table entry."""

    pid: int
    raw: bytes
    value: PidData
    spec: PidSpec | None

    @property
    def name(self) -> str:
        """Return the canonical name, or ``pid_0xNN`` for a PID the table does not know."""
        return self.spec.name if self.spec is not None else f"pid_0x{self.pid:02X}"

    @property
    def unit(self) -> str | None:
        """Return the unit of a scalar value (catalog spelling: ``%``, ``degC``), else None."""
        return self.spec.unit if self.spec is not None else None

    @property
    def vss(self) -> str | None:
        """Return the VSS path this PID feeds, if any."""
        return self.spec.vss if self.spec is not None else None


@dataclass(frozen=True, slots=True)
class CurrentDataResponse:
    """A decoded mode 01 answer: the PIDs in the order the ECU sent them."""

    values: tuple[PidValue, ...]

    def get(self, pid: int) -> PidValue | None:
        """Return the entry for ``pid``, or None if the ECU did not send it."""
        return next((v for v in self.values if v.pid == pid), None)

    @property
    def supported_pids(self) -> frozenset[int]:
        """Return every PID marked supported by the bitmaps in this answer."""
        sets = [v.value for v in self.values if isinstance(v.value, frozenset)]
        return frozenset().union(*sets)

    def vss_values(self) -> dict[str, float]:
        """Return the scalar values that feed VSS signals, by VSS path."""
        return {v.vss: v.value for v in self.values if v.vss and isinstance(v.value, float)}


def decode_current_data_response(
    payload: bytes, *, requested: Collection[int] | None = None, source: int | None = None,
) -> CurrentDataResponse:
    """Decode ``41 PID data ...``; ``requested`` (the PIDs asked for) rejects mismatched answers."""
    where = response_context(Service.CURRENT_DATA, source)
    body = payload[1:]
    if not body:
        raise ObdTruncatedError(where, "no PID in the answer")
    expected = frozenset(requested) if requested is not None else None
    values = []
    for pid, data in _split(body, expected, where):
        spec = PIDS.get(pid)
        values.append(PidValue(pid, data, spec.decode(data) if spec else data, spec))
    return CurrentDataResponse(tuple(values))


def _split(body: bytes, expected: frozenset[int] | None, where: str) -> list[tuple[int, bytes]]:
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(body):
        pid = body[pos]
        _check_requested(pid, expected, {p for p, _ in items}, where)
        spec = PIDS.get(pid)
        if spec is None:
            return items + _split_unknown(body, pos, expected, {p for p, _ in items})
        data = body[pos + 1:pos + 1 + spec.size]
        if len(data) < spec.size:
            problem = f"PID 0x{pid:02X} needs {spec.size} data bytes, got {len(data)}"
            raise ObdTruncatedError(where, problem)
        items.append((pid, bytes(data)))
        pos += 1 + spec.size
    return items


def _check_requested(pid: int, expected: frozenset[int] | None, seen: set[int], where: str) -> None:
    if expected is None:
        return
    if pid not in expected:
        asked = " ".join(f"{p:02X}" for p in sorted(expected))
        raise ObdServiceMismatch(where, f"PID 0x{pid:02X} was not requested (asked for {asked})")
    if pid in seen:
        raise ObdDecodeError(where, f"PID 0x{pid:02X} appears twice")


def _split_unknown(
    body: bytes, pos: int, expected: frozenset[int] | None, seen: set[int],
) -> list[tuple[int, bytes]]:
    """Split from an unknown PID at ``pos``: the one split using most requested PIDs, else the rest."""
    rest = [(body[pos], bytes(body[pos + 1:]))]
    if expected is None or len(expected - seen) <= 1:
        return rest
    candidates = list(islice(_candidate_splits(body, pos, expected - seen), _MAX_CANDIDATES))
    if not candidates:
        return rest
    most = max(len(c) for c in candidates)
    best = [c for c in candidates if len(c) == most]
    return best[0] if len(best) == 1 and len(candidates) < _MAX_CANDIDATES else rest


def _candidate_splits(
    body: bytes, pos: int, allowed: frozenset[int],
) -> Iterator[list[tuple[int, bytes]]]:
    """Yield every way to split ``body[pos:]`` into distinct PIDs from ``allowed``."""
    if pos == len(body):
        yield []
        return
    pid = body[pos]
    if pid not in allowed:
        return
    spec = PIDS.get(pid)
    remaining = len(body) - pos - 1
    sizes: Iterable[int] = (spec.size,) if spec is not None else range(1, remaining + 1)
    for size in sizes:
        if size > remaining:
            continue
        for tail in _candidate_splits(body, pos + 1 + size, allowed - {pid}):
            yield [(pid, bytes(body[pos + 1:pos + 1 + size])), *tail]


def encode_current_data_response(items: Iterable[tuple[int, bytes]]) -> bytes:
    """Return ``41 PID data [PID data ...]`` from already-encoded (pid, data) pairs."""
    return bytes((_POSITIVE,)) + b"".join(bytes((pid,)) + data for pid, data in items)


def encode_pid_values(values: Mapping[int, PidData | int], *, clamp: bool = False) -> bytes:
    """Return a mode 01 answer for physical values of known PIDs (the inverse of decoding)."""
    items = []
    for pid, value in values.items():
        spec = PIDS.get(pid)
        if spec is None:
            raise ObdEncodeError(f"PID 0x{pid:02X} is not in the table; pass raw bytes instead")
        items.append((pid, spec.encode(value, clamp=clamp)))
    return encode_current_data_response(items)
