"""OBD-II CAN identifiers per ISO 15765-4: functional and physical requests, and their responses.

11-bit: functional requests go to 0x7DF, physical ones to 0x7E0-0x7E7, and ECU n answers on
0x7E8 + n (response = request + 8). 29-bit (normal fixed addressing, priority 6): functional
requests go to 0x18DB33F1, physical ones to 0x18DA<ecu>F1, and the ECU answers on 0x18DAF1<ecu>.
"""

from __future__ import annotations

from dataclasses import dataclass

from carlinkd.can.obd.errors import ObdAddressError

FUNCTIONAL_REQUEST_ID_11 = 0x7DF
PHYSICAL_REQUEST_BASE_11 = 0x7E0
RESPONSE_BASE_11 = 0x7E8
# ISO 15765-4 allows at most eight emission-related ECUs on an 11-bit bus.
MAX_ECUS_11 = 8

TESTER_ADDRESS = 0xF1
FUNCTIONAL_REQUEST_ID_29 = 0x18DB33F1
_PHYSICAL_PREFIX_29 = 0x18DA0000
_MAX_STANDARD_ID = 0x7FF


@dataclass(frozen=True, slots=True)
class ResponseAddress:
    """Where an OBD-II response came from and how to reach that ECU physically."""

    response_id: int
    request_id: int
    ecu: int
    extended: bool

    def __str__(self) -> str:
        """Return the response id as written in logs (0x7E8, 0x18DAF110)."""
        return format_can_id(self.response_id, self.extended)


def format_can_id(can_id: int, extended: bool | None = None) -> str:
    """Return ``0x7E8`` or ``0x18DAF110``, as used in messages and logs."""
    wide = can_id > _MAX_STANDARD_ID if extended is None else extended
    return f"0x{can_id:08X}" if wide else f"0x{can_id:03X}"


def functional_request_id(extended: bool = False) -> int:
    """Return the functional (broadcast) request id: 0x7DF or 0x18DB33F1."""
    return FUNCTIONAL_REQUEST_ID_29 if extended else FUNCTIONAL_REQUEST_ID_11


def physical_request_id(ecu: int, extended: bool = False) -> int:
    """Return the physical request id for ECU index 0-7 (11-bit) or ECU address 0x00-0xFF (29-bit)."""
    if extended:
        _check_range("29-bit ECU address", ecu, 0xFF)
        return _PHYSICAL_PREFIX_29 | (ecu << 8) | TESTER_ADDRESS
    _check_range("11-bit ECU index", ecu, MAX_ECUS_11 - 1)
    return PHYSICAL_REQUEST_BASE_11 + ecu


def response_id_for(request_id: int, extended: bool | None = None) -> int:
    """Return the response id paired with a physical request id (0x7E0 -> 0x7E8)."""
    wide = request_id > _MAX_STANDARD_ID if extended is None else extended
    if not wide and PHYSICAL_REQUEST_BASE_11 <= request_id < RESPONSE_BASE_11:
        return request_id + (RESPONSE_BASE_11 - PHYSICAL_REQUEST_BASE_11)
    if wide and request_id & 0xFFFF00FF == _PHYSICAL_PREFIX_29 | TESTER_ADDRESS:
        ecu = (request_id >> 8) & 0xFF
        return _PHYSICAL_PREFIX_29 | (TESTER_ADDRESS << 8) | ecu
    raise ObdAddressError(f"{format_can_id(request_id, wide)} is not an OBD-II physical request id")


def request_id_for(response_id: int, extended: bool | None = None) -> int:
    """Return the physical request id that reaches the ECU answering on ``response_id``."""
    address = parse_response_id(response_id, extended)
    if address is None:
        raise ObdAddressError(f"{format_can_id(response_id, extended)} is not an OBD-II response id")
    return address.request_id


def parse_response_id(can_id: int, extended: bool | None = None) -> ResponseAddress | None:
    """Say whether ``can_id`` is an OBD-II response id; if so, which ECU and request id it pairs with.

    ``extended`` is the frame's IDE flag; ``None`` infers it from the value (ids above 0x7FF are 29-bit).
    """
    wide = can_id > _MAX_STANDARD_ID if extended is None else extended
    if not wide:
        if RESPONSE_BASE_11 <= can_id < RESPONSE_BASE_11 + MAX_ECUS_11:
            ecu = can_id - RESPONSE_BASE_11
            return ResponseAddress(can_id, PHYSICAL_REQUEST_BASE_11 + ecu, ecu, False)
        return None
    if can_id & 0xFFFFFF00 == _PHYSICAL_PREFIX_29 | (TESTER_ADDRESS << 8):
        ecu = can_id & 0xFF
        return ResponseAddress(can_id, _PHYSICAL_PREFIX_29 | (ecu << 8) | TESTER_ADDRESS, ecu, True)
    return None


def is_request_id(can_id: int, extended: bool | None = None) -> bool:
    """Say whether ``can_id`` carries OBD-II requests (functional or physical)."""
    wide = can_id > _MAX_STANDARD_ID if extended is None else extended
    if not wide:
        physical = PHYSICAL_REQUEST_BASE_11 <= can_id < RESPONSE_BASE_11
        return can_id == FUNCTIONAL_REQUEST_ID_11 or physical
    physical = can_id & 0xFFFF00FF == _PHYSICAL_PREFIX_29 | TESTER_ADDRESS
    return can_id == FUNCTIONAL_REQUEST_ID_29 or physical


def is_functional_request_id(can_id: int) -> bool:
    """Say whether ``can_id`` is one of the two functional (broadcast) request ids."""
    return can_id in (FUNCTIONAL_REQUEST_ID_11, FUNCTIONAL_REQUEST_ID_29)


def _check_range(what: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ObdAddressError(f"{what} must be 0..{maximum}, got {value}")
