"""Requests, addressing, response decoding (modes 01, 04, 09, negative answers), multi-ECU answers."""

from __future__ import annotations

import pathlib
import re

import pytest

from carlinkd.can.obd import (
    CalibrationIdsResponse, ClearDtcsResponse, CurrentDataResponse, CvnResponse, DtcResponse,
    EcuNameResponse, InfoTypesSupportedResponse, NegativeResponse, Nrc, ObdAddressError, ObdDecodeError,
    ObdError, ObdRequest, ObdRequestError, ObdServiceMismatch, ObdTruncatedError, RawResponse,
    VehicleInfoRaw, VinResponse, current_data_requests, decode_ecu_responses, decode_response,
    format_can_id, functional_request_id, is_functional_request_id, is_request_id, parse_request,
    parse_response_id, physical_request_id, request_calibration_ids, request_clear_dtcs,
    request_current_data, request_id_for, request_pending_dtcs, request_permanent_dtcs,
    request_stored_dtcs, request_supported, request_vehicle_info, request_vin, response_id_for,
    vin_check_digit,
)

H = bytes.fromhex


# --- addressing -------------------------------------------------------------------------------

def test_11bit_addressing() -> None:
    assert functional_request_id() == 0x7DF
    assert [physical_request_id(n) for n in (0, 7)] == [0x7E0, 0x7E7]
    assert response_id_for(0x7E0) == 0x7E8 and response_id_for(0x7E7) == 0x7EF
    assert request_id_for(0x7EB) == 0x7E3
    address = parse_response_id(0x7E9)
    assert address is not None
    assert (address.ecu, address.request_id, address.extended) == (1, 0x7E1, False)
    assert str(address) == "0x7E9"
    assert parse_response_id(0x7DF) is None and parse_response_id(0x7F0) is None
    assert parse_response_id(0x7E8, extended=True) is None  # 29-bit id 0x000007E8 is not OBD


def test_29bit_addressing() -> None:
    assert functional_request_id(extended=True) == 0x18DB33F1
    assert physical_request_id(0x10, extended=True) == 0x18DA10F1
    assert response_id_for(0x18DA10F1) == 0x18DAF110
    address = parse_response_id(0x18DAF118)
    assert address is not None
    assert (address.ecu, address.request_id, address.extended) == (0x18, 0x18DA18F1, True)
    assert str(address) == "0x18DAF118"
    assert parse_response_id(0x18DA10F1) is None  # a request, not a response
    assert parse_response_id(0x1CDAF110) is None  # ISO 15765-4 fixes priority 6 (0x18)


def test_request_ids() -> None:
    assert all(is_request_id(i) for i in (0x7DF, 0x7E0, 0x7E7, 0x18DB33F1, 0x18DA10F1))
    assert not any(is_request_id(i) for i in (0x7E8, 0x18DAF110, 0x123))
    assert is_functional_request_id(0x7DF) and is_functional_request_id(0x18DB33F1)
    assert not is_functional_request_id(0x7E0)
    assert format_can_id(0x7E8) == "0x7E8" and format_can_id(0x18DAF110) == "0x18DAF110"


def test_bad_addresses() -> None:
    with pytest.raises(ObdAddressError, match="11-bit ECU index must be 0..7, got 8"):
        physical_request_id(8)
    with pytest.raises(ObdAddressError):
        physical_request_id(0x100, extended=True)
    with pytest.raises(ObdAddressError, match="0x7DF is not an OBD-II physical request id"):
        response_id_for(0x7DF)
    with pytest.raises(ObdAddressError, match="0x123 is not an OBD-II response id"):
        request_id_for(0x123)


# --- requests ---------------------------------------------------------------------------------

def test_request_builders() -> None:
    assert request_current_data([0x0C, 0x0D]) == H("010C0D")
    assert request_current_data(range(0x04, 0x0A)) == H("01040506070809")
    assert request_supported() == H("0100")
    assert request_supported(0x00, 0x20, 0x40) == H("01002040")
    assert request_supported(service=0x09) == H("0900")
    assert request_stored_dtcs() == H("03") and request_pending_dtcs() == H("07")
    assert request_permanent_dtcs() == H("0A")
    assert request_vin() == H("0902") and request_calibration_ids() == H("0904")
    assert request_vehicle_info(0x0A) == H("090A")


@pytest.mark.parametrize(("pids", "message"), [
    ([], "needs 1-6 PIDs, got 0"),
    (list(range(1, 8)), "needs 1-6 PIDs, got 7"),
    ([0x100], "is not a byte"),
    ([0x0C, 0x0C], "repeats a PID"),
    ([0x00, 0x0C], "mixes supported-PID bitmaps"),
])
def test_bad_current_data_requests(pids: list[int], message: str) -> None:
    with pytest.raises(ObdRequestError, match=message):
        request_current_data(pids)


def test_bad_supported_requests() -> None:
    with pytest.raises(ObdRequestError, match="not a supported-PID bitmap"):
        request_supported(0x10)
    with pytest.raises(ObdRequestError):
        request_supported(service=0x03)


def test_current_data_requests_chunks_by_six_and_separates_bitmaps() -> None:
    requests = current_data_requests([0x00, 0x20, *range(0x04, 0x11), 0x0C])
    assert requests == [H("010020"), H("01040506070809"), H("010A0B0C0D0E0F"), H("0110")]


def test_clear_dtcs_needs_explicit_confirmation() -> None:
    with pytest.raises(ObdRequestError, match="confirmed=True"):
        request_clear_dtcs(confirmed=False)
    assert request_clear_dtcs(confirmed=True) == H("04")


def test_nothing_in_the_codec_calls_the_clear_builder() -> None:
    package = pathlib.Path(__file__).parents[3] / "carlinkd" / "can" / "obd"
    call = re.compile(r"request_clear_dtcs\(\s*confirmed")
    calls = [p.name for p in package.glob("*.py") if call.search(p.read_text())]
    assert calls == ["cli.py"]  # only `carlinkd obd clear --confirm`; never the poller


def test_parse_request() -> None:
    assert parse_request(H("010C0D")) == ObdRequest(0x01, (0x0C, 0x0D))
    assert parse_request(H("03")) == ObdRequest(0x03)
    assert bytes(parse_request(H("0902"))) == H("0902")
    with pytest.raises(ObdDecodeError, match="service byte 0x22 is not an OBD-II service"):
        parse_request(H("22F190"))
    with pytest.raises(ObdTruncatedError):
        parse_request(H("01"))


# --- mode 01 answers --------------------------------------------------------------------------

def test_single_pid_answer() -> None:
    answer = decode_response(H("410C1AF8"), request=H("010C"), source=0x7E8)
    assert isinstance(answer, CurrentDataResponse)
    rpm = answer.get(0x0C)
    assert rpm is not None and rpm.value == 1726.0 and rpm.name == "engine_speed" and rpm.unit == "rpm"


def test_six_pid_answer() -> None:
    # 0C 1A F8 -> 1726 rpm, 0D 32 -> 50 km/h, 05 7B -> 83 C, 2F CC -> 80 %, 11 33 -> 20 %, 46 37 -> 15 C
    answer = decode_response(H("410C1AF80D32057B2FCC11334637"), request=H("010C0D052F1146"))
    assert isinstance(answer, CurrentDataResponse)
    assert [(v.pid, v.value) for v in answer.values] == [
        (0x0C, 1726.0), (0x0D, 50.0), (0x05, 83.0), (0x2F, 80.0), (0x11, 20.0), (0x46, 15.0)]
    assert answer.vss_values() == {
        "Vehicle.Powertrain.CombustionEngine.Speed": 1726.0, "Vehicle.Speed": 50.0,
        "Vehicle.Powertrain.CombustionEngine.ECT": 83.0,
        "Vehicle.Powertrain.FuelSystem.RelativeLevel": 80.0,
        "Vehicle.Exterior.AirTemperature": 15.0}


def test_answer_with_fewer_pids_than_requested() -> None:
    answer = decode_response(H("410D32"), request=H("010C0D"))
    assert isinstance(answer, CurrentDataResponse) and [v.pid for v in answer.values] == [0x0D]


def test_supported_bitmaps_in_one_answer() -> None:
    answer = decode_response(H("4100BE1FA81320 80000001"), request=H("01002040"))
    assert isinstance(answer, CurrentDataResponse)
    assert {0x01, 0x0C, 0x20, 0x21, 0x40}.issubset(answer.supported_pids)
    assert 0x02 not in answer.supported_pids


def test_unknown_pid_last_keeps_raw_bytes() -> None:
    answer = decode_response(H("410C1AF89F010203"))
    assert isinstance(answer, CurrentDataResponse)
    unknown = answer.get(0x9F)
    assert unknown is not None and unknown.raw == H("010203") and unknown.value == H("010203")
    assert unknown.spec is None and unknown.name == "pid_0x9F" and unknown.unit is None


def test_unknown_pid_in_the_middle_split_by_the_request() -> None:
    answer = decode_response(H("419F01020C1AF8"), request=H("019F0C"))
    assert isinstance(answer, CurrentDataResponse)
    assert [(v.pid, v.raw) for v in answer.values] == [(0x9F, H("0102")), (0x0C, H("1AF8"))]


def test_unknown_pids_split_using_the_most_requested_pids() -> None:
    # 9F 9E 01 9E 02: "9F=9E01, 9E=02" uses both requested PIDs; "9F=9E019E02" only one.
    answer = decode_response(H("419F9E019E02"), request=H("019F9E"))
    assert isinstance(answer, CurrentDataResponse)
    assert [(v.pid, v.raw) for v in answer.values] == [(0x9F, H("9E01")), (0x9E, H("02"))]


def test_unknown_pid_ambiguous_split_keeps_everything_raw() -> None:
    # 9F 01 9E 9E 02: "9F=01, 9E=9E02" and "9F=019E, 9E=02" both use two PIDs: keep it all raw.
    answer = decode_response(H("419F019E9E02"), request=H("019F9E"))
    assert isinstance(answer, CurrentDataResponse)
    assert [(v.pid, v.raw) for v in answer.values] == [(0x9F, H("019E9E02"))]


def test_truncated_pid_names_pid_and_source() -> None:
    with pytest.raises(ObdTruncatedError) as caught:
        decode_response(H("410C1A"), source=0x7E8)
    assert str(caught.value) == "mode 01 response from 0x7E8: PID 0x0C needs 2 data bytes, got 1"
    assert isinstance(caught.value, ObdError) and isinstance(caught.value, ValueError)


def test_pid_not_requested() -> None:
    message = r"from 0x7E8: PID 0x0D was not requested \(asked for 0C\)"
    with pytest.raises(ObdServiceMismatch, match=message):
        decode_response(H("410D32"), request=H("010C"), source=0x7E8)


def test_wrong_service_echo() -> None:
    with pytest.raises(ObdServiceMismatch, match="answers mode 01, but mode 09 was requested"):
        decode_response(H("410C1AF8"), request=H("0902"))
    with pytest.raises(ObdServiceMismatch, match="InfoType 0x04 was not requested"):
        decode_response(H("490401") + b"A" * 16, request=H("0902"))


@pytest.mark.parametrize(("payload", "message"), [
    (b"", "response: empty payload"),
    (H("41"), "mode 01 response: no PID in the answer"),
    (H("620102"), "service byte 0x62 is not an OBD-II response"),
    (H("010C"), "service byte 0x01 is a request, not a response"),
    (H("FF00FF00"), "not an OBD-II response"),
])
def test_garbage_is_a_typed_error(payload: bytes, message: str) -> None:
    with pytest.raises(ObdDecodeError, match=message):
        decode_response(payload)


# --- negative answers -------------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "name", "pending"), [
    (H("7F0111"), "serviceNotSupported", False),
    (H("7F0112"), "subFunctionNotSupported", False),
    (H("7F0122"), "conditionsNotCorrect", False),
    (H("7F0131"), "requestOutOfRange", False),
    (H("7F0178"), "requestCorrectlyReceived-ResponsePending", True),
    (H("7F0193"), "unknownNrc0x93", False),
])
def test_negative_answers(payload: bytes, name: str, pending: bool) -> None:
    answer = decode_response(payload, request=H("010C"))
    assert isinstance(answer, NegativeResponse)
    assert (answer.service, answer.nrc_name, answer.pending) == (0x01, name, pending)


def test_pending_then_busy() -> None:
    pending = decode_response(H("7F0978"), request=H("0902"))
    assert isinstance(pending, NegativeResponse) and pending.pending
    assert pending.nrc == Nrc.RESPONSE_PENDING
    assert str(pending) == "mode 09 refused: requestCorrectlyReceived-ResponsePending (0x78)"
    busy = decode_response(H("7F0321"))
    assert isinstance(busy, NegativeResponse) and busy.retry and not busy.pending


def test_negative_answer_problems() -> None:
    with pytest.raises(ObdTruncatedError, match="negative response from 0x7E8: needs 3 bytes"):
        decode_response(H("7F01"), source=0x7E8)
    with pytest.raises(ObdServiceMismatch, match="refuses mode 09, but mode 01 was requested"):
        decode_response(H("7F0978"), request=H("010C"))


# --- mode 04 and other services ---------------------------------------------------------------

def test_clear_and_raw_services() -> None:
    assert decode_response(H("44"), request=H("04")) == ClearDtcsResponse()
    assert decode_response(H("4202000100")) == RawResponse(0x02, H("02000100"))


# --- mode 09 ----------------------------------------------------------------------------------

VIN = "1M8GDM9AXKP042788"


def test_vin_check_digit_by_hand() -> None:
    # transliterated 1 4 8 7 4 4 9 1 X 2 7 0 4 2 7 8 8, weights 8 7 6 5 4 3 2 10 0 9 8 7 6 5 4 3 2:
    # 8+28+48+35+16+12+18+10+0+18+56+0+24+10+28+24+16 = 351; 351 mod 11 = 10 -> 'X'
    assert vin_check_digit(VIN) == "X"
    assert vin_check_digit("11111111111111111") == "1"  # 89 mod 11 = 1
    assert vin_check_digit("1M8GDM9AXKP04278O") is None  # O is not a VIN character


@pytest.mark.parametrize("prefix", [H("490201"), H("490201000000"), H("4902")])
def test_vin_answer_shapes(prefix: bytes) -> None:
    answer = decode_response(prefix + VIN.encode() + H("0000"), request=H("0902"))
    assert answer == VinResponse(VIN, True)


def test_vin_bad_check_digit_is_reported_not_rejected() -> None:
    answer = decode_response(H("490201") + b"WVWZZZ1JZ3W386752")
    assert isinstance(answer, VinResponse) and answer.vin == "WVWZZZ1JZ3W386752"
    assert answer.check_digit_valid is (vin_check_digit(answer.vin) == answer.vin[8])
    assert decode_response(H("490201") + b"1M8GDM9A1KP042788") == VinResponse("1M8GDM9A1KP042788", False)


def test_vin_wrong_length_or_bytes() -> None:
    message = r"from 0x7E8, InfoType 0x02: VIN '1M8GDM9AXKP04278' has 16 characters"
    with pytest.raises(ObdDecodeError, match=message):
        decode_response(H("490201") + VIN[:-1].encode(), source=0x7E8)
    with pytest.raises(ObdDecodeError, match="VIN contains byte 0x2D"):
        decode_response(H("490201") + b"1M8GDM9AX-P042788")


def test_calibration_ids_two_blocks() -> None:
    payload = H("490402") + b"JMB*36761500".ljust(16, b"\0") + b"JMB*47872611".ljust(16, b"\0")
    answer = decode_response(payload, request=H("0904"))
    assert answer == CalibrationIdsResponse(("JMB*36761500", "JMB*47872611"), 2)


def test_calibration_ids_partial_block_is_an_error() -> None:
    with pytest.raises(ObdDecodeError, match="17 data bytes is not a whole number of 16-byte items"):
        decode_response(H("490401") + b"A" * 17)


def test_cvns_ecu_name_supported_and_unknown_infotypes() -> None:
    assert decode_response(H("490602 1791BC82 16E062BE")) == CvnResponse(("1791BC82", "16E062BE"), 2)
    name = decode_response(H("490A01") + b"ECM\0-EngineControl\0\0")
    assert name == EcuNameResponse("ECM-EngineControl")
    # 54 = 0101 0100 -> 02 04 06; 40 = 0100 0000 -> 0A
    supported = InfoTypesSupportedResponse(0x00, frozenset({2, 4, 6, 0x0A}))
    assert decode_response(H("490054400000")) == supported
    assert decode_response(H("49080112")) == VehicleInfoRaw(0x08, H("0112"))
    with pytest.raises(ObdTruncatedError):
        decode_response(H("49005440"))


# --- several ECUs answering one functional request --------------------------------------------

def test_decode_ecu_responses_keeps_each_ecu_apart() -> None:
    results = decode_ecu_responses({
        0x7E9: H("410D32"),
        0x7E8: H("410C1AF80D32"),
        0x7EA: H("7F0178"),
        0x7EB: H("410C1A"),
    }, request=H("010C0D"))
    assert list(results) == [0x7E8, 0x7E9, 0x7EA, 0x7EB]
    engine, transmission, pending, broken = results.values()
    assert isinstance(engine, CurrentDataResponse) and [v.value for v in engine.values] == [1726.0, 50.0]
    assert isinstance(transmission, CurrentDataResponse) and transmission.values[0].value == 50.0
    assert isinstance(pending, NegativeResponse) and pending.pending
    assert isinstance(broken, ObdTruncatedError)
    assert str(broken) == "mode 01 response from 0x7EB: PID 0x0C needs 2 data bytes, got 1"


def test_decode_ecu_responses_29bit_dtcs() -> None:
    results = decode_ecu_responses({0x18DAF110: H("43010420"), 0x18DAF118: H("4300")}, request=H("03"))
    assert results[0x18DAF110] == DtcResponse(0x03, ("P0420",), 1)
    assert results[0x18DAF118] == DtcResponse(0x03, (), 0)
