"""Mode 09 vehicle information (SAE J1979): supported InfoTypes, VIN, calibration ids, CVNs, ECU name.

On CAN every data InfoType answer is ``49 <infotype> <NODI> <data>``, NODI being the number of data
items; the supported-InfoType bitmaps (00, 20, 40, ...) carry no NODI.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from carlinkd.can.obd.errors import ObdDecodeError, ObdEncodeError, ObdTruncatedError
from carlinkd.can.obd.pids import SUPPORTED_PID_BASES, decode_supported_bitmap, encode_supported_bitmap
from carlinkd.can.obd.services import POSITIVE_RESPONSE_OFFSET, Service, response_context

VIN_LENGTH = 17
CALIBRATION_ID_SIZE = 16
CVN_SIZE = 4
ECU_NAME_SIZE = 20
_VEHICLE_INFO_POSITIVE = Service.VEHICLE_INFO + POSITIVE_RESPONSE_OFFSET
_VIN_POSITIVE = bytes((_VEHICLE_INFO_POSITIVE, 0x02, 0x01))
# ISO 3779 check digit: letter values and position weights (position 9 is the check digit itself).
_VIN_VALUES = {**{str(d): d for d in range(10)}, **dict(zip("ABCDEFGH", range(1, 9))),
               **dict(zip("JKLMN", range(1, 6))), "P": 7, "R": 9, **dict(zip("STUVWXYZ", range(2, 10)))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_PADDING = b"\x00\xff "


class InfoType(IntEnum):
    """Mode 09 InfoTypes the codec decodes."""

    SUPPORTED_01_20 = 0x00
    VIN = 0x02
    CALIBRATION_IDS = 0x04
    CALIBRATION_VERIFICATION_NUMBERS = 0x06
    ECU_NAME = 0x0A


@dataclass(frozen=True, slots=True)
class InfoTypesSupportedResponse:
    """Mode 09 bitmap answer: which InfoTypes base+1..base+0x20 the ECU supports."""

    base: int
    infotypes: frozenset[int]


@dataclass(frozen=True, slots=True)
class VinResponse:
    """Mode 09 InfoType 02: the 17-character VIN; a wrong check digit is reported, not rejected."""

    vin: str
    check_digit_valid: bool


@dataclass(frozen=True, slots=True)
class CalibrationIdsResponse:
    """Mode 09 InfoType 04: one calibration id per 16-byte block, NUL padding removed."""

    ids: tuple[str, ...]
    declared_count: int


@dataclass(frozen=True, slots=True)
class CvnResponse:
    """Mode 09 InfoType 06: calibration verification numbers as 8 hex digits each."""

    cvns: tuple[str, ...]
    declared_count: int


@dataclass(frozen=True, slots=True)
class EcuNameResponse:
    """Mode 09 InfoType 0A: the ECU's acronym and text name (``ECM-EngineControl``)."""

    name: str


@dataclass(frozen=True, slots=True)
class VehicleInfoRaw:
    """A mode 09 answer for an InfoType the codec does not decode: its number and data bytes."""

    infotype: int
    data: bytes


VehicleInfoResponse = (InfoTypesSupportedResponse | VinResponse | CalibrationIdsResponse | CvnResponse
                       | EcuNameResponse | VehicleInfoRaw)
"""Any decoded mode 09 answer."""


def vin_check_digit(vin: str) -> str | None:
    """Return the ISO 3779 check digit ('0'-'9' or 'X') for a 17-character VIN, None if uncomputable."""
    if len(vin) != VIN_LENGTH or any(c not in _VIN_VALUES for c in vin.upper()):
        return None
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin.upper(), _VIN_WEIGHTS))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def decode_vin(data: bytes, where: str = "") -> VinResponse:
    """Decode the bytes after ``49 02``: optional NODI 01, padding (NUL, FF, space) stripped."""
    if data[:1] == b"\x01":
        data = data[1:]
    text = data.strip(_VIN_PADDING)
    bad = next((b for b in text if not (bytes((b,)).isalnum() and b < 0x80)), None)
    if bad is not None:
        raise ObdDecodeError(where, f"VIN contains byte 0x{bad:02X}, expected letters and digits only")
    vin = text.decode("ascii").upper()
    if len(vin) != VIN_LENGTH:
        raise ObdDecodeError(where, f"VIN {vin!r} has {len(vin)} characters, expected {VIN_LENGTH}")
    return VinResponse(vin, vin_check_digit(vin) == vin[8])


def decode_vehicle_info_response(payload: bytes, *, source: int | None = None) -> VehicleInfoResponse:
    """Decode a ``49 <infotype> ...`` payload."""
    where = response_context(Service.VEHICLE_INFO, source)
    if len(payload) < 2:
        raise ObdTruncatedError(where, "missing the InfoType byte")
    infotype, data = payload[1], payload[2:]
    if infotype in SUPPORTED_PID_BASES:
        if len(data) < 4:
            problem = f"InfoType 0x{infotype:02X} needs 4 data bytes, got {len(data)}"
            raise ObdTruncatedError(where, problem)
        return InfoTypesSupportedResponse(infotype, decode_supported_bitmap(infotype, data))
    where = f"{where}, InfoType 0x{infotype:02X}"
    if infotype == InfoType.VIN:
        return decode_vin(data, where)
    if infotype == InfoType.CALIBRATION_IDS:
        blocks = _blocks(data, CALIBRATION_ID_SIZE, where)
        return CalibrationIdsResponse(tuple(_ascii_field(b) for b in blocks), data[0])
    if infotype == InfoType.CALIBRATION_VERIFICATION_NUMBERS:
        blocks = _blocks(data, CVN_SIZE, where)
        return CvnResponse(tuple(b.hex().upper() for b in blocks), data[0])
    if infotype == InfoType.ECU_NAME:
        return EcuNameResponse(_ascii_field(data[1:]))
    return VehicleInfoRaw(infotype, bytes(data))


def _blocks(data: bytes, size: int, where: str) -> list[bytes]:
    """Split ``NODI block block ...`` into fixed-size blocks."""
    if not data:
        raise ObdTruncatedError(where, "missing the item count byte")
    body = data[1:]
    if len(body) % size:
        raise ObdDecodeError(where, f"{len(body)} data bytes is not a whole number of {size}-byte items")
    return [body[i:i + size] for i in range(0, len(body), size)]


def _ascii_field(block: bytes) -> str:
    """Return printable ASCII text with NUL padding removed (other bytes become '?')."""
    kept = bytes(b if 0x20 <= b < 0x7F else 0x3F for b in block.replace(b"\x00", b""))
    return kept.decode("ascii").strip()


def encode_vin_response(vin: str) -> bytes:
    """Return ``49 02 01`` + the 17 VIN characters."""
    text = vin.strip().upper()
    if len(text) != VIN_LENGTH or not text.isascii() or not text.isalnum():
        raise ObdEncodeError(f"VIN must be {VIN_LENGTH} letters and digits, got {vin!r}")
    return _VIN_POSITIVE + text.encode("ascii")


def encode_calibration_ids_response(ids: Sequence[str]) -> bytes:
    """Return ``49 04 <n>`` + each id NUL-padded to 16 bytes."""
    blocks = []
    for cal_id in ids:
        raw = cal_id.encode("ascii", errors="strict") if cal_id.isascii() else b""
        if not raw or len(raw) > CALIBRATION_ID_SIZE:
            raise ObdEncodeError(f"calibration id must be 1-16 ASCII characters, got {cal_id!r}")
        blocks.append(raw.ljust(CALIBRATION_ID_SIZE, b"\x00"))
    header = (_VEHICLE_INFO_POSITIVE, InfoType.CALIBRATION_IDS, len(blocks))
    return bytes(header) + b"".join(blocks)


def encode_infotypes_supported_response(base: int, infotypes: Iterable[int]) -> bytes:
    """Return ``49 <base>`` + the 4-byte bitmap of supported InfoTypes."""
    return bytes((_VEHICLE_INFO_POSITIVE, base)) + encode_supported_bitmap(base, infotypes)
