"""DTCs: J1979 2-byte encoding, mode 03/07/0A answers, descriptions and severity hints."""

from __future__ import annotations

import random
import re

import pytest

from carlinkd.can.obd import (
    DtcFormatError, DtcResponse, ObdDecodeError, ObdTruncatedError, Severity, decode_dtc,
    decode_response, describe, encode_dtc, normalize_dtc, severity_family,
)
from carlinkd.can.obd.dtc import encode_dtc_response
from carlinkd.can.obd.dtc_descriptions import DESCRIPTIONS

H = bytes.fromhex


@pytest.mark.parametrize(("data", "code", "why"), [
    ("0420", "P0420", "A=0000 0100: letter 00=P, digit 00=0, nibble 4; B=20"),
    ("0133", "P0133", "A=0000 0001"),
    ("4035", "C0035", "A=0100 0000: letter 01=C"),
    ("9234", "B1234", "A=1001 0010: letter 10=B, digit 01=1, nibble 2"),
    ("C100", "U0100", "A=1100 0001: letter 11=U"),
    ("E29A", "U229A", "A=1110 0010: U, digit 10=2, nibble 2; B=9A"),
    ("3FFF", "P3FFF", "A=0011 1111: P, digit 11=3, nibble F"),
])
def test_dtc_two_byte_encoding(data: str, code: str, why: str) -> None:
    assert decode_dtc(H(data)) == code, why
    assert encode_dtc(code) == H(data)


def test_dtc_property_every_two_byte_value_round_trips() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        raw = bytes((rng.randrange(256), rng.randrange(256)))
        assert encode_dtc(decode_dtc(raw)) == raw


@pytest.mark.parametrize("bad", ["P420", "X0420", "P4420", "P04G0", "", "P04200"])
def test_malformed_dtc_strings(bad: str) -> None:
    with pytest.raises(DtcFormatError):
        encode_dtc(bad)


def test_normalize_dtc() -> None:
    assert normalize_dtc(" p0420 ") == "P0420"


def test_stored_dtcs_with_count_byte() -> None:
    answer = decode_response(H("43 03 0133 0420 C100"), request=H("03"), source=0x7E8)
    assert answer == DtcResponse(0x03, ("P0133", "P0420", "U0100"), 3)
    assert isinstance(answer, DtcResponse) and answer.kind == "stored" and answer.count_matches


def test_padding_pairs_are_not_codes() -> None:
    answer = decode_response(H("47 02 0420 0000 0171 0000"), request=H("07"))
    assert answer == DtcResponse(0x07, ("P0420", "P0171"), 2)
    assert isinstance(answer, DtcResponse) and answer.kind == "pending"


def test_all_four_letters_in_permanent_list() -> None:
    answer = decode_response(H("4A 04 0301 4035 9234 C100"))
    assert isinstance(answer, DtcResponse) and answer.kind == "permanent"
    assert [code[0] for code in answer.codes] == ["P", "C", "B", "U"]


def test_no_dtcs() -> None:
    assert decode_response(H("4300")) == DtcResponse(0x03, (), 0)


def test_count_mismatch_is_reported_not_fatal() -> None:
    answer = decode_response(H("43 05 0420"))
    assert isinstance(answer, DtcResponse) and answer.codes == ("P0420",) and not answer.count_matches


def test_odd_length_is_an_error() -> None:
    with pytest.raises(ObdDecodeError) as caught:
        decode_response(H("43 01 0420 01"), source=0x7E8)
    assert str(caught.value) == (
        "mode 03 response from 0x7E8: DTC data after the count byte has odd length 3 (2 bytes per code)")


def test_missing_count_byte() -> None:
    with pytest.raises(ObdTruncatedError, match="missing the DTC count byte"):
        decode_response(H("43"))


def test_encode_dtc_response() -> None:
    assert encode_dtc_response(0x03, ["P0420", "U0100"]) == H("43 02 0420 C100")


# --- descriptions -----------------------------------------------------------------------------

def test_description_table_size_and_shape() -> None:
    assert len(DESCRIPTIONS) >= 200
    for code, text in DESCRIPTIONS.items():
        assert re.fullmatch(r"P0[0-7][0-9]{2}", code), code
        assert text == text.strip() and text[0].islower() and not text.endswith("."), code
        assert len(text) <= 80, code


@pytest.mark.parametrize(("code", "text"), [
    ("P0420", "catalyst efficiency below threshold, bank 1"),
    ("P0430", "catalyst efficiency below threshold, bank 2"),
    ("P0300", "random or multiple cylinder misfire"),
    ("P0301", "cylinder 1 misfire"),
    ("P0312", "cylinder 12 misfire"),
    ("P0171", "engine running too lean, bank 1"),
    ("P0217", "engine overheating"),
    ("P0457", "evaporative system leak, fuel cap loose or missing"),
    ("P0142", "oxygen sensor circuit fault, bank 1 sensor 3"),
    ("P0161", "oxygen sensor heater circuit fault, bank 2 sensor 2"),
    ("P0756", "shift solenoid B stuck off or not performing"),
    ("p0101", "mass air flow sensor reading out of range"),
])
def test_known_descriptions(code: str, text: str) -> None:
    assert describe(code) == text


def test_misfires_and_ranges_are_complete() -> None:
    for cylinder in range(1, 13):
        assert f"cylinder {cylinder} misfire" == describe(f"P03{cylinder:02d}")
    assert all(f"P0{n}" in DESCRIPTIONS for n in range(100, 105))


@pytest.mark.parametrize(("code", "text"), [
    ("P0199", "fuel and air metering fault"),
    ("P0398", "ignition system or misfire fault"),
    ("P0799", "transmission fault"),
    ("P0A80", "hybrid propulsion fault"),
    ("P1234", "powertrain fault, manufacturer-specific"),
    ("P3000", "powertrain fault, manufacturer-specific"),
    ("P2096", "powertrain fault"),
    ("C0035", "chassis fault"),
    ("C1234", "chassis fault, manufacturer-specific"),
    ("B2AAA", "body fault, manufacturer-specific"),
    ("U0100", "network communication fault"),
    ("U1000", "network communication fault, manufacturer-specific"),
])
def test_family_fallbacks(code: str, text: str) -> None:
    assert describe(code) == text


@pytest.mark.parametrize(("code", "severity"), [
    ("P0217", Severity.CRITICAL), ("P0524", Severity.CRITICAL), ("P0218", Severity.CRITICAL),
    ("P0300", Severity.WARNING), ("P0304", Severity.WARNING), ("P0420", Severity.WARNING),
    ("P0171", Severity.WARNING), ("P0700", Severity.WARNING), ("U0100", Severity.WARNING),
    ("P1234", Severity.WARNING), ("P0457", Severity.INFO), ("P0135", Severity.INFO),
    ("P0128", Severity.INFO), ("B1234", Severity.INFO),
])
def test_severity_hints(code: str, severity: Severity) -> None:
    assert severity_family(code) is severity


def test_describe_rejects_garbage() -> None:
    with pytest.raises(DtcFormatError):
        describe("hello")
    with pytest.raises(DtcFormatError):
        severity_family("P04")
