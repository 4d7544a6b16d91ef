"""OBD-II request builders and the response decoder (SAE J1979 over ISO 15765-4), without I/O.

The poller sends the bytes these builders return (on 0x7DF / 0x18DB33F1 or a physical id), collects
one reassembled ISO-TP payload per responding ECU, and hands them to :func:`decode_response` or
:func:`decode_ecu_responses`. Mode 04 (clear DTCs) has a builder that refuses to work without an
explicit confirmation; nothing in this package calls it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from carlinkd.can.obd.current_data import CurrentDataResponse, decode_current_data_response
from carlinkd.can.obd.dtc import DtcResponse, decode_dtc_response
from carlinkd.can.obd.errors import (
    ObdDecodeError, ObdError, ObdRequestError, ObdServiceMismatch, ObdTruncatedError,
)
from carlinkd.can.obd.pids import SUPPORTED_PID_BASES
from carlinkd.can.obd.services import (
    DTC_SERVICES, NEGATIVE_RESPONSE, POSITIVE_RESPONSE_OFFSET, NegativeResponse, Service,
    response_context,
)
from carlinkd.can.obd.vehicle_info import InfoType, VehicleInfoResponse, decode_vehicle_info_response

# SAE J1979: one mode 01 / 09 request carries at most six PIDs (InfoTypes).
MAX_PIDS_PER_REQUEST = 6
_SERVICE_IDS = frozenset(int(s) for s in Service)
_SERVICES_WITH_PIDS = frozenset({Service.CURRENT_DATA, Service.FREEZE_FRAME, Service.VEHICLE_INFO})


@dataclass(frozen=True, slots=True)
class ObdRequest:
    """A request as sent on the bus: service and its PIDs (or InfoTypes); empty for DTC services."""

    service: int
    pids: tuple[int, ...] = ()

    def __bytes__(self) -> bytes:
        """Return the request payload."""
        return bytes((self.service, *self.pids))


@dataclass(frozen=True, slots=True)
class ClearDtcsResponse:
    """Mode 04 positive answer (``44``): the ECU cleared its emission-related diagnostic data."""


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A positive answer from a J1979 service this codec does not decode (02, 05, 06, 08)."""

    service: int
    data: bytes


ObdResponse = (NegativeResponse | CurrentDataResponse | DtcResponse | ClearDtcsResponse
               | VehicleInfoResponse | RawResponse)
"""Anything :func:`decode_response` returns."""


def request_current_data(pids: Iterable[int]) -> bytes:
    """Return a mode 01 request for 1-6 PIDs (bitmap PIDs 00, 20, ... are not mixed with data PIDs)."""
    pid_list = _checked_pids(pids, Service.CURRENT_DATA)
    bitmaps = [p for p in pid_list if p in SUPPORTED_PID_BASES]
    if bitmaps and len(bitmaps) != len(pid_list):
        raise ObdRequestError(
            "mode 01 request mixes supported-PID bitmaps with data PIDs (J1979 forbids it)")
    return bytes((Service.CURRENT_DATA, *pid_list))


def current_data_requests(pids: Iterable[int]) -> list[bytes]:
    """Return mode 01 requests covering ``pids``, six per request, bitmaps in their own requests."""
    unique = list(dict.fromkeys(pids))
    bitmaps = [p for p in unique if p in SUPPORTED_PID_BASES]
    data = [p for p in unique if p not in SUPPORTED_PID_BASES]
    step = MAX_PIDS_PER_REQUEST
    return [request_current_data(group[i:i + step])
            for group in (bitmaps, data) for i in range(0, len(group), step)]


def request_supported(*bases: int, service: int = Service.CURRENT_DATA) -> bytes:
    """Return a mode 01 (or 09) request for supported-PID bitmaps, PID 00 if no base is given."""
    chosen = bases or (0x00,)
    bad = [b for b in chosen if b not in SUPPORTED_PID_BASES]
    if bad:
        raise ObdRequestError(f"0x{bad[0]:02X} is not a supported-PID bitmap (00, 20, ... E0)")
    if service not in (Service.CURRENT_DATA, Service.VEHICLE_INFO):
        raise ObdRequestError(f"mode {service:02X} has no supported-PID bitmaps here (use 01 or 09)")
    return bytes((service, *_checked_pids(chosen, service)))


def request_stored_dtcs() -> bytes:
    """Return the mode 03 request (confirmed emission-related DTCs)."""
    return bytes((Service.STORED_DTCS,))


def request_pending_dtcs() -> bytes:
    """Return the mode 07 request (DTCs detected in the current or last drive cycle)."""
    return bytes((Service.PENDING_DTCS,))


def request_permanent_dtcs() -> bytes:
    """Return the mode 0A request (DTCs that clearing cannot erase)."""
    return bytes((Service.PERMANENT_DTCS,))


def request_vehicle_info(infotype: int) -> bytes:
    """Return a mode 09 request for one InfoType."""
    return bytes((Service.VEHICLE_INFO, *_checked_pids((infotype,), Service.VEHICLE_INFO)))


def request_vin() -> bytes:
    """Return the mode 09 InfoType 02 (VIN) request."""
    return request_vehicle_info(InfoType.VIN)


def request_calibration_ids() -> bytes:
    """Return the mode 09 InfoType 04 (calibration ids) request."""
    return request_vehicle_info(InfoType.CALIBRATION_IDS)


def request_clear_dtcs(*, confirmed: bool) -> bytes:
    """Return the mode 04 request: DESTRUCTIVE (DTCs, freeze frames, readiness), needs ``confirmed``."""
    if confirmed is not True:
        raise ObdRequestError(
            "mode 04 clears emission diagnostic data; pass confirmed=True only after the user confirmed")
    return bytes((Service.CLEAR_DTCS,))


def _checked_pids(pids: Iterable[int], service: int) -> tuple[int, ...]:
    pid_list = tuple(pids)
    if not 1 <= len(pid_list) <= MAX_PIDS_PER_REQUEST:
        raise ObdRequestError(
            f"mode {service:02X} request needs 1-{MAX_PIDS_PER_REQUEST} PIDs, got {len(pid_list)}")
    bad = [p for p in pid_list if not (isinstance(p, int) and 0 <= p <= 0xFF)]
    if bad:
        raise ObdRequestError(f"mode {service:02X} PID {bad[0]!r} is not a byte 0x00-0xFF")
    if len(set(pid_list)) != len(pid_list):
        listed = " ".join(f"{p:02X}" for p in pid_list)
        raise ObdRequestError(f"mode {service:02X} request repeats a PID: {listed}")
    return pid_list


def parse_request(payload: bytes) -> ObdRequest:
    """Parse request bytes (as the poller sent them or a log recorded them) into an ObdRequest."""
    if not payload:
        raise ObdTruncatedError("request", "empty payload")
    if payload[0] not in _SERVICE_IDS:
        raise ObdDecodeError("request", f"service byte 0x{payload[0]:02X} is not an OBD-II service")
    service = Service(payload[0])
    pids = tuple(payload[1:]) if service in _SERVICES_WITH_PIDS else ()
    if service in _SERVICES_WITH_PIDS and not pids:
        raise ObdTruncatedError(f"mode {service:02X} request", "no PID")
    return ObdRequest(service, pids)


def decode_response(
    payload: bytes, *, request: bytes | ObdRequest | None = None, source: int | None = None,
) -> ObdResponse:
    """Decode one ECU's reassembled answer; with ``request``, reject answers to something else.

    ``source`` is the response CAN id, used only in error messages.
    """
    if not payload:
        raise ObdTruncatedError(response_context(None, source), "empty payload")
    asked = parse_request(request) if isinstance(request, bytes | bytearray) else request
    if payload[0] == NEGATIVE_RESPONSE:
        return _decode_negative(payload, asked, source)
    service = payload[0] - POSITIVE_RESPONSE_OFFSET
    if service not in _SERVICE_IDS:
        hint = "a request, not a response" if payload[0] in _SERVICE_IDS else "not an OBD-II response"
        where = response_context(None, source)
        raise ObdDecodeError(where, f"service byte 0x{payload[0]:02X} is {hint}")
    where = response_context(service, source)
    if asked is not None and asked.service != service:
        problem = f"answers mode {service:02X}, but mode {asked.service:02X} was requested"
        raise ObdServiceMismatch(where, problem)
    return _decode_positive(Service(service), payload, asked, source)


def _decode_positive(
    service: Service, payload: bytes, asked: ObdRequest | None, source: int | None,
) -> ObdResponse:
    if service == Service.CURRENT_DATA:
        requested = asked.pids if asked is not None else None
        return decode_current_data_response(payload, requested=requested, source=source)
    if service in DTC_SERVICES:
        return decode_dtc_response(payload, source=source)
    if service == Service.VEHICLE_INFO:
        if asked is not None and len(payload) > 1 and payload[1] not in asked.pids:
            raise ObdServiceMismatch(response_context(service, source),
                                     f"InfoType 0x{payload[1]:02X} was not requested")
        return decode_vehicle_info_response(payload, source=source)
    if service == Service.CLEAR_DTCS:
        return ClearDtcsResponse()
    return RawResponse(service, bytes(payload[1:]))


def _decode_negative(payload: bytes, asked: ObdRequest | None, source: int | None) -> NegativeResponse:
    where = response_context(None, source).replace("response", "negative response", 1)
    if len(payload) < 3:
        raise ObdTruncatedError(where, f"needs 3 bytes (7F service code), got {len(payload)}")
    answer = NegativeResponse(payload[1], payload[2])
    if asked is not None and answer.service != asked.service:
        problem = f"refuses mode {answer.service:02X}, but mode {asked.service:02X} was requested"
        raise ObdServiceMismatch(where, problem)
    return answer


def decode_ecu_responses(
    responses: Mapping[int, bytes], *, request: bytes | ObdRequest | None = None,
) -> dict[int, ObdResponse | ObdError]:
    """Decode each ECU's answer to one (functional) request; a bad answer becomes its error value."""
    results: dict[int, ObdResponse | ObdError] = {}
    for response_id in sorted(responses):
        try:
            payload = responses[response_id]
            results[response_id] = decode_response(payload, request=request, source=response_id)
        except ObdError as err:
            results[response_id] = err
    return results
