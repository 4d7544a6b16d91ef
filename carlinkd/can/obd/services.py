"""OBD-II service (mode) numbers, negative response codes, and the negative response itself.

Service ids and positive-response offset per SAE J1979 / ISO 15031-5; negative response codes per
ISO 15031-5 and ISO 14229-1 (the subset an emissions ECU may send).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

from carlinkd.can.obd.addressing import format_can_id

POSITIVE_RESPONSE_OFFSET = 0x40
NEGATIVE_RESPONSE = 0x7F


class Service(IntEnum):
    """SAE J1979 diagnostic services ("modes")."""

    CURRENT_DATA = 0x01
    FREEZE_FRAME = 0x02
    STORED_DTCS = 0x03
    CLEAR_DTCS = 0x04
    OXYGEN_SENSOR_TESTS = 0x05
    MONITOR_TESTS = 0x06
    PENDING_DTCS = 0x07
    CONTROL_OPERATION = 0x08
    VEHICLE_INFO = 0x09
    PERMANENT_DTCS = 0x0A


DESTRUCTIVE_SERVICES = frozenset({Service.CLEAR_DTCS})
"""Services that change ECU state; the poller must never send these on its own."""

DTC_SERVICES = frozenset({Service.STORED_DTCS, Service.PENDING_DTCS, Service.PERMANENT_DTCS})
"""Services whose positive response is a DTC list."""


class Nrc(IntEnum):
    """Negative response codes an OBD-II ECU may send after 0x7F."""

    GENERAL_REJECT = 0x10
    SERVICE_NOT_SUPPORTED = 0x11
    SUB_FUNCTION_NOT_SUPPORTED = 0x12
    INCORRECT_MESSAGE_LENGTH_OR_INVALID_FORMAT = 0x13
    RESPONSE_TOO_LONG = 0x14
    BUSY_REPEAT_REQUEST = 0x21
    CONDITIONS_NOT_CORRECT = 0x22
    REQUEST_SEQUENCE_ERROR = 0x24
    REQUEST_OUT_OF_RANGE = 0x31
    SECURITY_ACCESS_DENIED = 0x33
    GENERAL_PROGRAMMING_FAILURE = 0x72
    RESPONSE_PENDING = 0x78
    SUB_FUNCTION_NOT_SUPPORTED_IN_ACTIVE_SESSION = 0x7E
    SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION = 0x7F


NRC_NAMES: Mapping[int, str] = MappingProxyType({
    Nrc.GENERAL_REJECT: "generalReject",
    Nrc.SERVICE_NOT_SUPPORTED: "serviceNotSupported",
    Nrc.SUB_FUNCTION_NOT_SUPPORTED: "subFunctionNotSupported",
    Nrc.INCORRECT_MESSAGE_LENGTH_OR_INVALID_FORMAT: "incorrectMessageLengthOrInvalidFormat",
    Nrc.RESPONSE_TOO_LONG: "responseTooLong",
    Nrc.BUSY_REPEAT_REQUEST: "busyRepeatRequest",
    Nrc.CONDITIONS_NOT_CORRECT: "conditionsNotCorrect",
    Nrc.REQUEST_SEQUENCE_ERROR: "requestSequenceError",
    Nrc.REQUEST_OUT_OF_RANGE: "requestOutOfRange",
    Nrc.SECURITY_ACCESS_DENIED: "securityAccessDenied",
    Nrc.GENERAL_PROGRAMMING_FAILURE: "generalProgrammingFailure",
    Nrc.RESPONSE_PENDING: "requestCorrectlyReceived-ResponsePending",
    Nrc.SUB_FUNCTION_NOT_SUPPORTED_IN_ACTIVE_SESSION: "subFunctionNotSupportedInActiveSession",
    Nrc.SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION: "serviceNotSupportedInActiveSession",
})
"""ISO names of the negative response codes, as printed in logs."""


def nrc_name(nrc: int) -> str:
    """Return the ISO name of a negative response code, or ``unknownNrc0xNN``."""
    return NRC_NAMES.get(nrc, f"unknownNrc0x{nrc:02X}")


@dataclass(frozen=True, slots=True)
class NegativeResponse:
    """An ECU's ``0x7F <service> <nrc>`` answer."""

    service: int
    nrc: int

    @property
    def nrc_name(self) -> str:
        """Return the ISO name of the code (``requestOutOfRange``)."""
        return nrc_name(self.nrc)

    @property
    def pending(self) -> bool:
        """True for 0x78: the ECU got the request and will answer later; keep waiting."""
        return self.nrc == Nrc.RESPONSE_PENDING

    @property
    def retry(self) -> bool:
        """True for 0x21: the ECU is busy; the request may be repeated."""
        return self.nrc == Nrc.BUSY_REPEAT_REQUEST

    def __str__(self) -> str:
        """Return e.g. ``mode 01 refused: requestOutOfRange (0x31)``."""
        return f"mode {self.service:02X} refused: {self.nrc_name} (0x{self.nrc:02X})"


def encode_negative_response(service: int, nrc: int) -> bytes:
    """Return the 3-byte negative response payload ``7F <service> <nrc>``."""
    return bytes((NEGATIVE_RESPONSE, service & 0xFF, nrc & 0xFF))


def response_context(service: int | None, source: int | None) -> str:
    """Return the 'where' part of an error message: ``mode 01 response from 0x7E8``."""
    what = "response" if service is None else f"mode {service:02X} response"
    return what if source is None else f"{what} from {format_can_id(source)}"
