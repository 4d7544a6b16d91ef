"""ISO-TP reassembly of recorded frames: framing, real-world answers, can-isotp cross-check, logs."""

from __future__ import annotations

import json
import pathlib
import random
from collections import deque
from typing import Any

import can
import isotp
import pytest

from carlinkd.can.obd import (
    CalibrationIdsResponse, CurrentDataResponse, DtcResponse, NegativeResponse, Payload, Reassembler,
    VinResponse, decode_response, is_request_id, parse_response_id, reassemble,
)

H = bytes.fromhex
FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "obd"
REALWORLD = pathlib.Path(__file__).resolve().parents[4] / "shared" / "data" / "realworld" / "isotp"
VIN = b"1M8GDM9AXKP042788"


def segment(payload: bytes, pad: int | None = 0xAA, dlen: int = 8) -> list[bytes]:
    """Cut a payload into ISO-TP frames the way a sender would (classic 8-byte or CAN FD frames)."""
    def padded(frame: bytes) -> bytes:
        return frame if pad is None else frame.ljust(dlen, bytes((pad,)))
    if len(payload) <= 7 and dlen == 8 or len(payload) <= dlen - 2 and dlen > 8:
        header = bytes((len(payload),)) if dlen == 8 or len(payload) <= 7 else bytes((0, len(payload)))
        return [padded(header + payload)]
    if len(payload) <= 0xFFF:
        header = bytes((0x10 | len(payload) >> 8, len(payload) & 0xFF))
    else:
        header = H("1000") + len(payload).to_bytes(4, "big")
    frames = [header + payload[:dlen - len(header)]]
    rest, sequence = payload[dlen - len(header):], 1
    while rest:
        frames.append(padded(bytes((0x20 | sequence,)) + rest[:dlen - 1]))
        rest, sequence = rest[dlen - 1:], (sequence + 1) & 0xF
    return frames


def feed_all(
    reassembler: Reassembler, can_id: int, frames: list[bytes], start: float = 0.0,
) -> list[Payload]:
    out: list[Payload] = []
    for i, frame in enumerate(frames):
        out += reassembler.feed(can_id, frame, start + 0.001 * i)
    return out


# --- framing ----------------------------------------------------------------------------------

def test_single_frame_drops_padding() -> None:
    [payload] = Reassembler().feed(0x7E8, H("04410C1AF8AAAAAA"), 1.0)
    assert payload == Payload(0x7E8, H("410C1AF8"), 1.0, 1.0, 1, 4)


@pytest.mark.parametrize("pad", [0xAA, 0xCC, 0x55, 0x00, 0xFF])
def test_vin_multi_frame_with_each_padding(pad: int) -> None:
    answer = H("490201") + VIN
    frames = segment(answer, pad)
    assert [f[0] for f in frames] == [0x10, 0x21, 0x22]
    [payload] = feed_all(Reassembler(), 0x7E8, frames)
    assert payload.complete and payload.data == answer and payload.frames == 3
    assert decode_response(payload.data, request=H("0902")) == VinResponse(VIN.decode(), True)


def test_sequence_numbers_wrap_f_to_0() -> None:
    answer = bytes(range(200))
    frames = segment(answer)
    assert [f[0] & 0xF for f in frames[14:18]] == [0xE, 0xF, 0x0, 0x1]
    [payload] = feed_all(Reassembler(), 0x7E8, frames)
    assert payload.complete and payload.data == answer and payload.frames == len(frames)


def test_can_fd_escape_sequences() -> None:
    single = H("003C") + bytes(range(60)) + b"\xcc" * 2  # SF_DL 0 escape: length in byte 1
    [payload] = Reassembler().feed(0x7E8, single, 0.0)
    assert payload.complete and payload.data == bytes(range(60))
    answer = bytes(i & 0xFF for i in range(5000))
    frames = segment(answer, dlen=64)
    assert frames[0][:6] == H("100000001388")  # FF_DL 0 escape: 32-bit length 5000
    [payload] = feed_all(Reassembler(), 0x7E8, frames)
    assert payload.complete and payload.data == answer


def test_escape_single_frame_on_classic_can_is_ignored() -> None:
    reassembler = Reassembler()
    assert reassembler.feed(0x7E8, H("0004410C1AF8AAAA"), 0.0) == []
    assert reassembler.ignored["invalid_single_frame"] == 1


def test_stray_flow_control_and_orphan_consecutive_frames_are_ignored() -> None:
    reassembler = Reassembler()
    frames = segment(H("490201") + VIN)
    out = reassembler.feed(0x7E8, H("3000000000000000"), 0.0)
    out += reassembler.feed(0x7E8, H("2147444D3941584B"), 0.001)
    out += reassembler.feed(0x7E8, frames[0], 0.002)
    out += reassembler.feed(0x7E8, H("300A14AAAAAAAAAA"), 0.003)
    out += feed_all(reassembler, 0x7E8, frames[1:], 0.004)
    assert [p.data for p in out] == [H("490201") + VIN]
    assert reassembler.ignored == {"flow_control": 2, "unexpected_consecutive_frame": 1}


def test_truncated_answer_reported_at_end_of_log() -> None:
    reassembler = Reassembler()
    assert feed_all(reassembler, 0x7E8, segment(H("490201") + VIN)[:2]) == []
    assert reassembler.in_progress == (0x7E8,)
    [payload] = reassembler.flush()
    assert not payload.complete and payload.expected_length == 20
    assert payload.data == H("490201") + VIN[:10]
    assert payload.problem == "log ended before the last consecutive frame"
    assert not reassembler.in_progress


def test_sequence_gap_aborts() -> None:
    frames = segment(bytes(40))
    [payload] = feed_all(Reassembler(), 0x7E8, [frames[0], frames[1], frames[3]])
    assert not payload.complete and payload.problem == "consecutive frame 3 arrived where 2 was expected"


def test_new_first_or_single_frame_interrupts() -> None:
    reassembler = Reassembler()
    first = segment(bytes(30))
    out = feed_all(reassembler, 0x7E8, first[:2])
    out += reassembler.feed(0x7E8, H("03410D32"), 0.01)
    assert [(p.complete, p.problem) for p in out] == [
        (False, "interrupted by a new single frame"), (True, None)]
    out = feed_all(reassembler, 0x7E8, first[:2], 0.02) + feed_all(reassembler, 0x7E8, first, 0.03)
    assert [(p.complete, p.problem) for p in out] == [
        (False, "interrupted by a new first frame"), (True, None)]


def test_silence_longer_than_n_cr_times_out() -> None:
    reassembler = Reassembler(timeout=1.0)
    frames = segment(bytes(30))
    assert feed_all(reassembler, 0x7E8, frames[:2]) == []
    assert reassembler.feed(0x7E9, H("03410D32"), 0.5)[0].arbitration_id == 0x7E9
    late = reassembler.feed(0x7E9, H("03410D33"), 1.5)
    assert [(p.arbitration_id, p.complete) for p in late] == [(0x7E8, False), (0x7E9, True)]
    assert late[0].problem == "no consecutive frame within 1 s"
    assert Reassembler(timeout=None).expire(1e9) == []


def test_short_single_frame_is_incomplete() -> None:
    [payload] = Reassembler().feed(0x7E8, H("06410C1A"), 0.0)
    assert not payload.complete and payload.data == H("410C1A")
    assert payload.problem == "single frame announces 6 bytes, carries 3"


def test_garbage_frames_do_not_crash() -> None:
    reassembler = Reassembler()
    rng = random.Random(3)
    for i in range(3000):
        frame = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 9)))
        for payload in reassembler.feed(0x7E8 + rng.randrange(2), frame, i * 0.01):
            assert len(payload.data) <= payload.expected_length
    reassembler.flush()
    assert reassembler.ignored["invalid_pci"] > 0 and reassembler.ignored["empty_frame"] > 0


def test_interleaved_answers_from_several_ecus() -> None:
    answers = {0x7E8: H("490201") + VIN, 0x7E9: bytes(range(100)), 0x18DAF110: bytes(range(50, 90))}
    streams = {can_id: deque(segment(data, 0xCC)) for can_id, data in answers.items()}
    reassembler, out, clock = Reassembler(), [], 0.0
    rng = random.Random(11)
    while any(streams.values()):
        can_id = rng.choice([i for i, s in streams.items() if s])
        clock += 0.001
        out += reassembler.feed(can_id, streams[can_id].popleft(), clock)
    assert {p.arbitration_id: p.data for p in out} == answers and all(p.complete for p in out)


def test_id_filter() -> None:
    reassembler = Reassembler(ids=[0x7E8])
    assert reassembler.feed(0x123, H("03410D32"), 0.0) == []
    assert len(reassembler.feed(0x7E8, H("03410D32"), 0.0)) == 1


# --- cross-check against can-isotp as the sender ------------------------------------------------

NORMAL_11 = isotp.AddressingMode.Normal_11bits


def isotp_session(payload: bytes, params: dict[str, Any]) -> tuple[list[tuple[int, bytes]], bytes]:
    """Send ``payload`` ECU -> tester with can-isotp's own logic; return all frames and the delivery."""
    ecu_to_tester: deque[isotp.CanMessage] = deque()
    tester_to_ecu: deque[isotp.CanMessage] = deque()
    recorded: list[tuple[int, bytes]] = []

    def sender(queue: deque[isotp.CanMessage]) -> Any:
        def send(msg: isotp.CanMessage) -> None:
            queue.append(msg)
            recorded.append((msg.arbitration_id, bytes(msg.data)))
        return send

    settings = {"stmin": 0, "max_frame_size": 1 << 20, **params}
    ecu = isotp.TransportLayerLogic(
        rxfn=lambda _t: tester_to_ecu.popleft() if tester_to_ecu else None, txfn=sender(ecu_to_tester),
        address=isotp.Address(NORMAL_11, txid=0x7E8, rxid=0x7E0), params=settings)
    tester = isotp.TransportLayerLogic(
        rxfn=lambda _t: ecu_to_tester.popleft() if ecu_to_tester else None, txfn=sender(tester_to_ecu),
        address=isotp.Address(NORMAL_11, txid=0x7E0, rxid=0x7E8), params=settings)
    ecu.send(payload)
    for _ in range(20000):
        ecu.process()
        tester.process()
        if tester.available():
            received = tester.recv()
            assert received is not None
            return recorded, bytes(received)
    raise AssertionError("can-isotp did not deliver the payload")


def test_property_matches_can_isotp() -> None:
    rng = random.Random(2024)
    for _ in range(40):
        size = rng.choice([1, 6, 7, 8, 20, 62, 111, 112, 300, rng.randrange(1, 600)])
        payload = bytes(rng.randrange(256) for _ in range(size))
        params = {"tx_padding": rng.choice([0xAA, 0xCC, 0x55, 0x00, 0xFF]),
                  "blocksize": rng.choice([0, 1, 3, 8])}
        frames, delivered = isotp_session(payload, params)
        assert delivered == payload
        reassembler = Reassembler()
        out = [payload for i, (can_id, data) in enumerate(frames)
               for payload in reassembler.feed(can_id, data, i * 1e-4)]
        assert [(p.arbitration_id, p.data, p.complete) for p in out] == [(0x7E8, payload, True)]
        assert reassembler.ignored["flow_control"] == sum(1 for can_id, _ in frames if can_id == 0x7E0)


def test_can_fd_matches_can_isotp() -> None:
    payload = bytes(random.Random(5).randrange(256) for _ in range(5000))
    fd = {"can_fd": True, "tx_data_length": 64, "tx_padding": 0xCC}
    frames, delivered = isotp_session(payload, fd)
    assert delivered == payload
    out = reassemble([(can_id, data, i * 1e-4) for i, (can_id, data) in enumerate(frames)])
    assert [p.data for p in out if p.arbitration_id == 0x7E8] == [payload]


# --- real-world answers (third-party data, read in place, never copied) ------------------------

def realworld_vectors() -> list[Any]:
    if not REALWORLD.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{REALWORLD} not present"))]
    return [pytest.param(v, id=f"{path.stem}-{i}")
            for path in sorted(REALWORLD.glob("*.json"))
            for i, v in enumerate(json.loads(path.read_text())["vectors"])]


@pytest.mark.parametrize("vector", realworld_vectors())
def test_realworld_isotp_answer(vector: dict[str, Any]) -> None:
    response_id = int(vector["response_id"], 16)
    frames: list[tuple[int, bytes, float]] = []
    if vector["request_frame"]:
        request_id = int(vector["request_id"], 16)
        frames.append((request_id, H(vector["request_frame"]), vector["timestamp"] - 0.01))
    frames += [(response_id, H(f), vector["timestamp"] + 0.001 * i)
               for i, f in enumerate(vector["frames"])]
    payloads = reassemble(frames)
    answers = [p for p in payloads if p.arbitration_id == response_id]
    assert len(answers) == 1 and answers[0].complete
    assert answers[0].data == H(vector["payload"]) and len(answers[0].data) == vector["payload_len"]
    if vector["request_frame"]:
        request = H(vector["request_frame"])
        assert payloads[0].data == request[1:1 + request[0]]


def test_realworld_files_interleaved() -> None:
    if not REALWORLD.is_dir():
        pytest.skip(f"{REALWORLD} not present")
    for path in sorted(REALWORLD.glob("*.json")):
        vectors = json.loads(path.read_text())["vectors"]
        by_id: dict[int, list[bytes]] = {}
        for vector in vectors:
            by_id.setdefault(int(vector["response_id"], 16), []).append(H(vector["payload"]))
        # One stream per response id (answers back to back), the streams' frames alternating.
        streams = [deque(H(f) for v in vectors if int(v["response_id"], 16) == can_id
                         for f in v["frames"]) for can_id in by_id]
        frames, clock = [], 0.0
        while any(streams):
            for can_id, stream in zip(by_id, streams):
                if stream:
                    clock += 0.001
                    frames.append((can_id, stream.popleft(), clock))
        out = reassemble(frames)
        assert all(p.complete for p in out), path.name
        assert {i: [p.data for p in out if p.arbitration_id == i] for i in by_id} == by_id


# --- recorded sessions (candump logs read with python-can) -------------------------------------

def read_log(name: str) -> list[Payload]:
    reassembler = Reassembler()
    out: list[Payload] = []
    for message in can.LogReader(str(FIXTURES / name)):
        out += reassembler.feed(message.arbitration_id, bytes(message.data), message.timestamp)
    assert reassembler.ignored["flow_control"] == (4 if "11bit" in name else 1)
    return out + reassembler.flush()


def test_session_11bit_log() -> None:
    payloads = read_log("session_11bit.log")
    summary = [(hex(p.arbitration_id), p.data.hex(), p.complete) for p in payloads]
    assert summary == [
        ("0x7df", "0902", True),
        ("0x7e8", (H("490201") + VIN).hex(), True),
        ("0x7e9", (H("490201000000") + VIN).hex(), True),
        ("0x7df", "010c", True),
        ("0x7e8", "410c1af8", True),
        ("0x7df", "03", True),
        ("0x7e9", "430107000000", True),
        ("0x7e8", "430401330420", False),
        ("0x7df", "010d", True),
        ("0x7e8", "410d32", True),
    ]
    assert payloads[7].expected_length == 10 and payloads[7].problem == "no consecutive frame within 1 s"
    decoded = [decode_response(p.data, source=p.arbitration_id) for p in payloads
               if p.complete and not is_request_id(p.arbitration_id)]
    assert decoded[0] == decoded[1] == VinResponse(VIN.decode(), True)
    assert isinstance(decoded[2], CurrentDataResponse) and decoded[2].values[0].value == 1726.0
    assert decoded[3] == DtcResponse(0x03, ("P0700",), 1)


def test_session_29bit_log() -> None:
    payloads = [p for p in read_log("session_29bit.log")
                if parse_response_id(p.arbitration_id) is not None]
    assert all(p.complete for p in payloads)
    engine_bitmap, tcm_bitmap, calibration, refusal = (
        decode_response(p.data, source=p.arbitration_id) for p in payloads)
    assert isinstance(engine_bitmap, CurrentDataResponse) and 0x0C in engine_bitmap.supported_pids
    assert isinstance(tcm_bitmap, CurrentDataResponse) and tcm_bitmap.supported_pids == {0x01, 0x20}
    assert calibration == CalibrationIdsResponse(("CAL-1234",), 1)
    assert isinstance(refusal, NegativeResponse) and refusal.nrc_name == "requestOutOfRange"
    address = parse_response_id(payloads[1].arbitration_id)
    assert address is not None and address.ecu == 0x18 and address.request_id == 0x18DA18F1
