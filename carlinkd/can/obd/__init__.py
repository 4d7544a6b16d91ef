"""OBD-II (SAE J1979 over ISO 15765-4) codec: requests, responses, DTCs, VIN, ISO-TP log reassembly.

Pure code: no sockets, threads or clocks. The live path sits beside it and is not imported here:
``transport`` (can-isotp on the daemon's CAN source), ``poller`` (the pure scheduling core),
``service`` (the poller's asyncio adapter) and ``cli`` (``carlinkd obd ...``).

Modules: ``addressing`` (CAN ids), ``services`` (modes, NRCs), ``pids`` (mode 01 table),
``current_data`` (mode 01 answers), ``dtc`` (modes 03/07/0A), ``vehicle_info`` (mode 09),
``codec`` (request builders, response dispatch), ``reassembly`` (ISO-TP from recorded frames),
``dtc_descriptions`` (spoken descriptions and severity hints), ``errors``.

The names below are imported on first use (PEP 562), so importing ``carlinkd.can.obd.settings``
(which the configuration does) does not load the codec.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the submodule that defines it.
_WHERE: dict[str, str] = {
    **dict.fromkeys((
        'FUNCTIONAL_REQUEST_ID_11', 'FUNCTIONAL_REQUEST_ID_29', 'ResponseAddress', 'format_can_id',
        'functional_request_id', 'is_functional_request_id', 'is_request_id', 'parse_response_id',
        'physical_request_id', 'request_id_for', 'response_id_for'
    ), 'addressing'),
    **dict.fromkeys((
        'MAX_PIDS_PER_REQUEST', 'ClearDtcsResponse', 'ObdRequest', 'ObdResponse', 'RawResponse',
        'current_data_requests', 'decode_ecu_responses', 'decode_response', 'parse_request',
        'request_calibration_ids', 'request_clear_dtcs', 'request_current_data',
        'request_pending_dtcs', 'request_permanent_dtcs', 'request_stored_dtcs',
        'request_supported', 'request_vehicle_info', 'request_vin'
    ), 'codec'),
    **dict.fromkeys((
        'CurrentDataResponse', 'PidValue'
    ), 'current_data'),
    **dict.fromkeys((
        'DtcResponse', 'decode_dtc', 'encode_dtc', 'normalize_dtc'
    ), 'dtc'),
    **dict.fromkeys((
        'Severity', 'describe', 'severity_family'
    ), 'dtc_descriptions'),
    **dict.fromkeys((
        'DtcFormatError', 'ObdAddressError', 'ObdDecodeError', 'ObdEncodeError', 'ObdError',
        'ObdRequestError', 'ObdServiceMismatch', 'ObdTruncatedError'
    ), 'errors'),
    **dict.fromkeys((
        'PIDS', 'MonitorStatus', 'ObdStandard', 'PidData', 'PidKind', 'PidSpec', 'pid_spec'
    ), 'pids'),
    **dict.fromkeys((
        'Payload', 'Reassembler', 'reassemble'
    ), 'reassembly'),
    **dict.fromkeys((
        'DESTRUCTIVE_SERVICES', 'NegativeResponse', 'Nrc', 'Service', 'nrc_name'
    ), 'services'),
    **dict.fromkeys((
        'CalibrationIdsResponse', 'CvnResponse', 'EcuNameResponse', 'InfoType',
        'InfoTypesSupportedResponse', 'VehicleInfoRaw', 'VinResponse', 'vin_check_digit'
    ), 'vehicle_info'),
}

__all__ = [
    "DESTRUCTIVE_SERVICES", "FUNCTIONAL_REQUEST_ID_11", "FUNCTIONAL_REQUEST_ID_29",
    "MAX_PIDS_PER_REQUEST",
    "PIDS", "CalibrationIdsResponse", "ClearDtcsResponse", "CurrentDataResponse", "CvnResponse",
    "DtcFormatError", "DtcResponse", "EcuNameResponse", "InfoType", "InfoTypesSupportedResponse",
    "MonitorStatus", "NegativeResponse", "Nrc", "ObdAddressError", "ObdDecodeError", "ObdEncodeError",
    "ObdError", "ObdRequest", "ObdRequestError", "ObdResponse", "ObdServiceMismatch", "ObdStandard",
    "ObdTruncatedError", "Payload", "PidData", "PidKind", "PidSpec", "PidValue", "RawResponse",
    "Reassembler", "ResponseAddress", "Service", "Severity", "VehicleInfoRaw", "VinResponse",
    "current_data_requests", "decode_dtc", "decode_ecu_responses", "decode_response", "describe",
    "encode_dtc", "format_can_id", "functional_request_id", "is_functional_request_id", "is_request_id",
    "normalize_dtc", "nrc_name", "parse_request", "parse_response_id", "physical_request_id", "pid_spec",
    "reassemble", "request_calibration_ids", "request_clear_dtcs", "request_current_data",
    "request_id_for", "request_pending_dtcs", "request_permanent_dtcs", "request_stored_dtcs",
    "request_supported", "request_vehicle_info", "request_vin", "response_id_for", "severity_family",
    "vin_check_digit",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # what type checkers and readers see
    from carlinkd.can.obd.addressing import (
        FUNCTIONAL_REQUEST_ID_11, FUNCTIONAL_REQUEST_ID_29, ResponseAddress, format_can_id,
        functional_request_id, is_functional_request_id, is_request_id, parse_response_id,
        physical_request_id, request_id_for, response_id_for,
    )
    from carlinkd.can.obd.codec import (
        MAX_PIDS_PER_REQUEST, ClearDtcsResponse, ObdRequest, ObdResponse, RawResponse,
        current_data_requests, decode_ecu_responses, decode_response, parse_request,
        request_calibration_ids, request_clear_dtcs, request_current_data, request_pending_dtcs,
        request_permanent_dtcs, request_stored_dtcs, request_supported, request_vehicle_info, request_vin,
    )
    from carlinkd.can.obd.current_data import CurrentDataResponse, PidValue
    from carlinkd.can.obd.dtc import DtcResponse, decode_dtc, encode_dtc, normalize_dtc
    from carlinkd.can.obd.dtc_descriptions import Severity, describe, severity_family
    from carlinkd.can.obd.errors import (
        DtcFormatError, ObdAddressError, ObdDecodeError, ObdEncodeError, ObdError, ObdRequestError,
        ObdServiceMismatch, ObdTruncatedError,
    )
    from carlinkd.can.obd.pids import PIDS, MonitorStatus, ObdStandard, PidData, PidKind, PidSpec, pid_spec
    from carlinkd.can.obd.reassembly import Payload, Reassembler, reassemble
    from carlinkd.can.obd.services import DESTRUCTIVE_SERVICES, NegativeResponse, Nrc, Service, nrc_name
    from carlinkd.can.obd.vehicle_info import (
        CalibrationIdsResponse, CvnResponse, EcuNameResponse, InfoType, InfoTypesSupportedResponse,
        VehicleInfoRaw, VinResponse, vin_check_digit,
    )
