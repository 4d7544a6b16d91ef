"""Diagnostic trouble codes: the J1979 2-byte encoding and the mode 03/07/0A responses carrying them.

Two bytes A B encode one code: A bits 7-6 pick the letter (00 P, 01 C, 10 B, 11 U), A bits 5-4 the
first digit (0-3), A bits 3-0 the second digit, B the last two hex digits: 0x04 0x20 is P0420.
On CAN (ISO 15765-4) the positive response carries a count byte first: ``43 <n> A1 B1 A2 B2 ...``;
``00 00`` pairs are padding, not codes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from carlinkd.can.obd.errors import DtcFormatError, ObdDecodeError, ObdEncodeError, ObdTruncatedError
from carlinkd.can.obd.services import POSITIVE_RESPONSE_OFFSET, Service, response_context

DTC_LETTERS = "PCBU"
_DTC_PATTERN = re.compile(r"[PCBU][0-3][0-9A-F]{3}")
_KINDS: dict[int, str] = {
    Service.STORED_DTCS: "stored", Service.PENDING_DTCS: "pending", Service.PERMANENT_DTCS: "permanent",
}


def decode_dtc(data: bytes) -> str:
    """Return the five-character code (``P0420``) for two bytes A B."""
    if len(data) != 2:
        raise ObdDecodeError("", f"a DTC is 2 bytes, got {len(data)}")
    a, b = data[0], data[1]
    return f"{DTC_LETTERS[a >> 6]}{(a >> 4) & 0x3}{a & 0xF:X}{b:02X}"


def normalize_dtc(code: str) -> str:
    """Return ``code`` upper-cased and stripped, or raise :class:`DtcFormatError` if malformed."""
    text = code.strip().upper()
    if not _DTC_PATTERN.fullmatch(text):
        raise DtcFormatError(
            f"{code!r} is not a DTC (expected a letter P/C/B/U, a digit 0-3, three hex digits)")
    return text


def encode_dtc(code: str) -> bytes:
    """Return the two bytes for a code such as ``P0420`` (the inverse of :func:`decode_dtc`)."""
    text = normalize_dtc(code)
    a = (DTC_LETTERS.index(text[0]) << 6) | (int(text[1]) << 4) | int(text[2], 16)
    return bytes((a, int(text[3:], 16)))


@dataclass(frozen=True, slots=True)
class DtcResponse:
    """A mode 03 (stored), 07 (pending) or 0A (permanent) answer: the codes and the declared count."""

    service: int
    codes: tuple[str, ...]
    declared_count: int

    @property
    def kind(self) -> str:
        """Return ``stored``, ``pending`` or ``permanent``."""
        return _KINDS.get(self.service, "unknown")

    @property
    def count_matches(self) -> bool:
        """True when the count byte agrees with the number of codes actually sent."""
        return self.declared_count == len(self.codes)


def decode_dtc_response(payload: bytes, *, source: int | None = None) -> DtcResponse:
    """Decode ``43|47|4A <count> A1 B1 ...``: skip 00 00 padding, reject an odd code area."""
    service = payload[0] - POSITIVE_RESPONSE_OFFSET
    where = response_context(service, source)
    if len(payload) < 2:
        raise ObdTruncatedError(where, "missing the DTC count byte")
    body = payload[2:]
    if len(body) % 2:
        problem = f"DTC data after the count byte has odd length {len(body)} (2 bytes per code)"
        raise ObdDecodeError(where, problem)
    pairs = (body[i:i + 2] for i in range(0, len(body), 2))
    codes = tuple(decode_dtc(pair) for pair in pairs if pair != b"\x00\x00")
    return DtcResponse(service, codes, payload[1])


def encode_dtc_response(service: int, codes: Iterable[str]) -> bytes:
    """Return the positive response payload for a DTC service: ``<service+40> <count> A1 B1 ...``."""
    encoded = [encode_dtc(code) for code in codes]
    if b"\x00\x00" in encoded:
        raise ObdEncodeError("P0000 cannot be reported: 00 00 is the padding pair, not a code")
    if len(encoded) > 0xFF:
        raise ObdEncodeError(f"{len(encoded)} DTCs do not fit the one-byte count")
    return bytes((service + POSITIVE_RESPONSE_OFFSET, len(encoded))) + b"".join(encoded)
