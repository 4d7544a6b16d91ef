"""The simulated ECU (sim/obd_ecu.py) against carlinkd's decoder: round trips and J1979 behaviour."""

from __future__ import annotations

import random

import pytest

from carlinkd.can.obd import (
    PIDS, CalibrationIdsResponse, ClearDtcsResponse, CurrentDataResponse, DtcFormatError, DtcResponse,
    InfoTypesSupportedResponse, MonitorStatus, NegativeResponse, ObdEncodeError, PidKind, VinResponse,
    current_data_requests, decode_ecu_responses, decode_response, request_clear_dtcs,
    request_current_data, request_supported,
)
from carlinkd.can.obd.pids import SUPPORTED_PID_BASES
from carlink_sim.obd_ecu import ObdEcu

H = bytes.fromhex
VIN = "1M8GDM9AXKP042788"
ENGINE_VALUES: dict[int, float | bytes] = {
    0x04: 35.3, 0x05: 88.0, 0x06: -3.1, 0x07: 4.7, 0x08: 1.6, 0x09: -0.8, 0x0B: 41.0, 0x0C: 2215.25,
    0x0D: 87.0, 0x0E: 12.5, 0x0F: 31.0, 0x10: 12.34, 0x11: 18.0, 0x1C: 6, 0x1F: 1234.0, 0x21: 0.0,
    0x2F: 62.5, 0x31: 4321.0, 0x33: 99.0, 0x42: 14.123, 0x46: 21.0, 0x5C: 97.0, 0x5E: 6.45,
    0xA6: 123456.7, 0x9F: H("0102"),
}


def engine(**kwargs: object) -> ObdEcu:
    options: dict[str, object] = {
        "supported_pids": [0x01, *ENGINE_VALUES], "vin": VIN, "values": ENGINE_VALUES,
        "calibration_ids": ["CAL-ENGINE-0042"], **kwargs}
    return ObdEcu("ECM", 0x7E0, 0x7E8, **options)  # type: ignore[arg-type]


def decoded(ecu: ObdEcu, request: bytes, functional: bool = True) -> object:
    answer = ecu.respond(request, functional=functional)
    assert answer is not None
    return decode_response(answer, request=request, source=ecu.tx_id)


def test_round_trip_every_scalar_pid_within_resolution() -> None:
    ecu = engine()
    scalars = [pid for pid in ENGINE_VALUES if PIDS.get(pid) and PIDS[pid].kind is PidKind.SCALAR]
    for request in current_data_requests(scalars):
        answer = decoded(ecu, request)
        assert isinstance(answer, CurrentDataResponse) and len(answer.values) == len(request) - 1
        for item in answer.values:
            resolution = item.spec.resolution if item.spec else None
            assert resolution is not None and isinstance(item.value, float)
            assert abs(item.value - float(ENGINE_VALUES[item.pid])) <= resolution / 2 + 1e-9, item.name


def test_structured_and_raw_pids() -> None:
    ecu = engine(dtcs=["P0420", "P0301"])
    answer = decoded(ecu, request_current_data([0x01, 0x1C, 0x9F]))
    assert isinstance(answer, CurrentDataResponse)
    status, standard, raw = (v.value for v in answer.values)
    assert status == MonitorStatus(mil_on=True, dtc_count=2)
    assert standard.name == "EOBD" and raw == H("0102")


def test_supported_bitmaps_are_consistent_with_the_pids() -> None:
    ecu = engine()
    found: set[int] = set()
    base: int | None = 0x00
    while base is not None:  # the poller's discovery walk: follow the chain bit base+0x20
        answer = decoded(ecu, request_supported(base))
        assert isinstance(answer, CurrentDataResponse)
        marked = answer.supported_pids
        assert all(base < pid <= base + 0x20 for pid in marked)
        found |= marked
        base = base + 0x20 if base + 0x20 in marked else None
    assert found - set(SUPPORTED_PID_BASES) == {0x01, *ENGINE_VALUES}
    assert found & set(SUPPORTED_PID_BASES) == ecu.supported_pids & set(SUPPORTED_PID_BASES) - {0x00}


def test_several_bitmaps_in_one_request() -> None:
    answer = decoded(engine(), request_supported(0x00, 0x20, 0x40, 0x60, 0x80, 0xA0))
    assert isinstance(answer, CurrentDataResponse)
    assert [v.pid for v in answer.values] == [0x00, 0x20, 0x40, 0x60, 0x80, 0xA0]


def test_unsupported_pid_silent_to_functional_refused_to_physical() -> None:
    ecu = ObdEcu("TCM", 0x7E1, 0x7E9, [0x0D], values={0x0D: 50.0})
    assert ecu.respond(H("010C")) is None
    assert ecu.respond(H("010C"), functional=False) == H("7F0131")
    answer = decoded(ecu, H("010C0D"))
    assert isinstance(answer, CurrentDataResponse) and [v.pid for v in answer.values] == [0x0D]
    assert ecu.respond(H("0120")) is None  # no PID above 0x20, so no 0x20 bitmap either


def test_unsupported_service_and_malformed_requests() -> None:
    ecu = engine()
    assert ecu.respond(H("0801")) == H("7F0811")
    assert ecu.respond(H("22F190")) == H("7F2211")
    assert ecu.respond(b"") is None
    assert ecu.respond(H("01"), functional=False) == H("7F0113")
    assert ecu.respond(H("01") + bytes(range(1, 8))) is None


def test_functional_request_to_several_ecus() -> None:
    ecus = [engine(), ObdEcu("TCM", 0x7E1, 0x7E9, [0x0D], values={0x0D: 50.0})]
    request = request_current_data([0x0C, 0x0D])
    answers = {ecu.tx_id: a for ecu in ecus if (a := ecu.respond(request)) is not None}
    results = decode_ecu_responses(answers, request=request)
    engine_answer, tcm_answer = results[0x7E8], results[0x7E9]
    assert isinstance(engine_answer, CurrentDataResponse)
    assert [v.pid for v in engine_answer.values] == [0x0C, 0x0D]
    assert isinstance(tcm_answer, CurrentDataResponse) and [v.value for v in tcm_answer.values] == [50.0]


def test_values_callable_is_read_once_per_request() -> None:
    calls = []

    def values() -> dict[int, float | bytes]:
        calls.append(1)
        return {0x0D: float(10 * len(calls))}

    ecu = ObdEcu("ECM", 0x7E0, 0x7E8, [0x0D], values=values)
    speeds = []
    for _ in range(3):
        answer = decoded(ecu, H("010D"))
        assert isinstance(answer, CurrentDataResponse)
        speeds.append(answer.values[0].value)
    assert speeds == [10.0, 20.0, 30.0] and len(calls) == 3


def test_missing_value_is_left_out_and_out_of_range_clamped() -> None:
    ecu = ObdEcu("ECM", 0x7E0, 0x7E8, [0x0C, 0x0D], values={0x0D: 300.0})
    answer = decoded(ecu, H("010C0D"))
    assert isinstance(answer, CurrentDataResponse)
    assert [(v.pid, v.value) for v in answer.values] == [(0x0D, 255.0)]


def test_unknown_pid_needs_raw_bytes() -> None:
    ecu = ObdEcu("ECM", 0x7E0, 0x7E8, [0x9F], values={0x9F: 1.0})
    with pytest.raises(ObdEncodeError, match="ECM: PID 0x9F is not in the table"):
        ecu.respond(H("019F"))


def test_dtc_lists_and_clear() -> None:
    ecu = engine(dtcs=["P0420", "u0100"], pending_dtcs=["P0171"], permanent_dtcs=["P0420"])
    assert decoded(ecu, H("03")) == DtcResponse(0x03, ("P0420", "U0100"), 2)
    assert decoded(ecu, H("07")) == DtcResponse(0x07, ("P0171",), 1)
    assert decoded(ecu, H("0A")) == DtcResponse(0x0A, ("P0420",), 1)
    ecu.set_dtcs(stored=["P0301", "P0302", "P0303"])
    answer = decoded(ecu, H("0101"))
    assert isinstance(answer, CurrentDataResponse)
    assert answer.values[0].value == MonitorStatus(mil_on=True, dtc_count=3)
    assert decoded(ecu, request_clear_dtcs(confirmed=True)) == ClearDtcsResponse()
    assert decoded(ecu, H("03")) == DtcResponse(0x03, (), 0)
    assert decoded(ecu, H("07")) == DtcResponse(0x07, (), 0)
    assert decoded(ecu, H("0A")) == DtcResponse(0x0A, ("P0420",), 1)  # permanent codes survive a clear
    answer = decoded(ecu, H("0101"))
    assert isinstance(answer, CurrentDataResponse) and answer.values[0].value == MonitorStatus(False, 0)


def test_mil_can_be_forced() -> None:
    answer = decoded(engine(mil_on=True), H("0101"))
    assert isinstance(answer, CurrentDataResponse) and answer.values[0].value == MonitorStatus(True, 0)


def test_vehicle_info() -> None:
    ecu = engine()
    assert decoded(ecu, H("0900")) == InfoTypesSupportedResponse(0x00, frozenset({0x02, 0x04}))
    assert decoded(ecu, H("0902")) == VinResponse(VIN, True)
    assert decoded(ecu, H("0904")) == CalibrationIdsResponse(("CAL-ENGINE-0042",), 1)
    tcm = ObdEcu("TCM", 0x7E1, 0x7E9, [0x0D])
    assert decoded(tcm, H("0900")) == InfoTypesSupportedResponse(0x00, frozenset())
    assert tcm.respond(H("0902")) is None
    answer = decoded(tcm, H("0902"), functional=False)
    assert isinstance(answer, NegativeResponse) and answer.nrc_name == "requestOutOfRange"


def test_bad_construction() -> None:
    with pytest.raises(ObdEncodeError, match="VIN must be 17"):
        ObdEcu("ECM", 0x7E0, 0x7E8, [], vin="TOO-SHORT")
    with pytest.raises(DtcFormatError):
        ObdEcu("ECM", 0x7E0, 0x7E8, [], dtcs=["P99999"])
    with pytest.raises(ObdEncodeError, match="P0000 cannot be reported"):
        ObdEcu("ECM", 0x7E0, 0x7E8, [], dtcs=["P0000"])
    with pytest.raises(ObdEncodeError, match="calibration id"):
        ObdEcu("ECM", 0x7E0, 0x7E8, [], calibration_ids=["X" * 17])


@pytest.mark.parametrize("seed", range(20))
def test_property_random_ecu_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    scalars = [pid for pid, spec in PIDS.items() if spec.kind is PidKind.SCALAR]
    chosen = rng.sample(scalars, rng.randrange(1, 15))
    values: dict[int, float | bytes] = {}
    for pid in chosen:
        spec = PIDS[pid]
        assert spec.scaling is not None
        values[pid] = rng.uniform(*spec.scaling.limits(spec.size))
    codes = [f"{rng.choice('PCBU')}{rng.randrange(4)}{rng.randrange(1, 0x1000):03X}"
             for _ in range(rng.randrange(6))]
    ecu = ObdEcu(f"ECU{seed}", 0x7E0, 0x7E8, chosen, values=values, dtcs=codes)
    for request in current_data_requests(chosen):
        answer = decoded(ecu, request)
        assert isinstance(answer, CurrentDataResponse)
        for item in answer.values:
            assert item.spec is not None and item.spec.resolution is not None
            assert isinstance(item.value, float)
            assert abs(item.value - float(values[item.pid])) <= item.spec.resolution / 2 + 1e-9
    assert decoded(ecu, H("03")) == DtcResponse(0x03, tuple(c for c in codes), len(codes))
