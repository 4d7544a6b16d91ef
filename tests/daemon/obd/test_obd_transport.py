"""ObdTransport over a python-can `virtual` bus, through the daemon's CanSource, against the
simulated ECUs (can-isotp on both sides): addressing, multi-ECU answers, NRCs, 0x78, bad frames."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import can
import pytest

from carlinkd.can.obd import (
    CurrentDataResponse, NegativeResponse, ObdRequestError, VinResponse, decode_response,
)
from carlinkd.can.obd.errors import ObdTransportError
from carlinkd.can.obd.transport import ObdTransport
from carlinkd.can.source import CanSource, SourceState
from carlinkd.can.settings import CanConfig
from carlink_sim.obd_bus import DEMO_VIN, BusEcus, demo_ecus, model_options
from carlink_sim.vehicle import VehicleModel

E11, T11 = 0x7E8, 0x7E9
E29, T29 = 0x18DAF110, 0x18DAF118


@dataclass
class Rig:
    """A CanSource + ObdTransport (the daemon side) and the simulated ECUs on one virtual channel."""

    source: CanSource
    transport: ObdTransport
    ecus: BusEcus
    injector: can.BusABC
    model: VehicleModel
    sent: list[can.Message] = field(default_factory=list)

    def inject(self, can_id: int, hex_data: str, extended: bool = False) -> None:
        """Put a raw frame on the bus, as a misbehaving ECU would."""
        data = bytes.fromhex(hex_data)
        self.injector.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=extended))


async def make_rig(extended: bool = False, **ecu_options: object) -> AsyncIterator[Rig]:
    channel = f"obd-transport-{os.getpid()}-{time.monotonic_ns()}"
    source = CanSource(CanConfig(interface="virtual", channel=channel), lambda _batch: None)
    rig_sent: list[can.Message] = []

    def send(msg: can.Message) -> None:
        rig_sent.append(msg)
        source.send(msg)

    transport = ObdTransport(send, extended=extended, response_timeout=0.3, pending_timeout=2.0,
                             frame_timeout=0.3)
    source.add_consumer(transport.feed)
    source.start()
    deadline = time.monotonic() + 5
    while source.state is not SourceState.UP:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    model = VehicleModel(seed=2)
    model.warm_start(72.0)
    ecu_bus = can.Bus(interface="virtual", channel=channel)
    injector = can.Bus(interface="virtual", channel=channel)
    options = {**model_options(model), **ecu_options}
    ecus = BusEcus(ecu_bus, demo_ecus(model, extended=extended), extended=extended, **options)
    ecus.start()
    try:
        yield Rig(source, transport, ecus, injector, model, rig_sent)
    finally:
        ecus.stop()
        ecu_bus.shutdown()
        injector.shutdown()
        await source.stop()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async for made in make_rig():
        yield made


@pytest.fixture
async def rig29() -> AsyncIterator[Rig]:
    async for made in make_rig(extended=True):
        yield made


async def test_functional_request_collects_every_ecu(rig: Rig) -> None:
    exchange = await rig.transport.request(bytes.fromhex("0100"))
    assert set(exchange.answers) == {E11, T11} and exchange.functional
    assert rig.sent[0].arbitration_id == 0x7DF and not rig.sent[0].is_extended_id
    assert len(rig.sent[0].data) == 8  # ISO 15765-4: padded to DLC 8
    answers = {rid: decode_response(p, request=b"\x01\x00") for rid, p in exchange.answers.items()}
    assert all(isinstance(a, CurrentDataResponse) for a in answers.values())
    assert 0x0C in answers[E11].supported_pids  # type: ignore[union-attr]


async def test_expected_ecus_end_the_wait_early(rig: Rig) -> None:
    exchange = await rig.transport.request(bytes.fromhex("03"), expect={E11, T11})
    assert set(exchange.answers) == {E11, T11} and exchange.elapsed < 0.3


async def test_physical_multi_frame_vin_with_flow_control(rig: Rig) -> None:
    exchange = await rig.transport.request(bytes.fromhex("0902"), target=E11)
    vin = decode_response(exchange.answers[E11], request=b"\x09\x02")
    assert isinstance(vin, VinResponse) and vin.vin == DEMO_VIN and vin.check_digit_valid
    request, flow_control = rig.sent
    assert request.arbitration_id == 0x7E0 and bytes(request.data[:3]) == bytes.fromhex("020902")
    assert flow_control.arbitration_id == 0x7E0 and bytes(flow_control.data[:3]) == b"\x30\x00\x00"
    assert rig.transport.counters["flow_control_sent"] == 1


async def test_functional_vin_flow_control_goes_to_the_physical_id(rig: Rig) -> None:
    exchange = await rig.transport.request(bytes.fromhex("0902"))
    assert set(exchange.answers) == {E11}  # the gearbox has no VIN and stays silent
    assert [m.arbitration_id for m in rig.sent] == [0x7DF, 0x7E0]


async def test_live_values_and_negative_answer(rig: Rig) -> None:
    exchange = await rig.transport.request(bytes.fromhex("010C0D"), target=E11)
    values = decode_response(exchange.answers[E11], request=b"\x01\x0c\x0d")
    assert isinstance(values, CurrentDataResponse)
    assert abs(values.get(0x0D).value - 72.0) <= 1.0  # type: ignore[union-attr,operator]
    refused = await rig.transport.request(bytes.fromhex("010C"), target=T11)
    answer = decode_response(refused.answers[T11], request=b"\x01\x0c")
    assert isinstance(answer, NegativeResponse) and answer.nrc_name == "requestOutOfRange"


async def test_29_bit_addressing(rig29: Rig) -> None:
    exchange = await rig29.transport.request(bytes.fromhex("0100"))
    assert set(exchange.answers) == {E29, T29}
    assert rig29.sent[0].arbitration_id == 0x18DB33F1 and rig29.sent[0].is_extended_id
    vin = await rig29.transport.request(bytes.fromhex("0902"), target=E29)
    assert decode_response(vin.answers[E29]) == VinResponse(DEMO_VIN, True)
    assert [hex(m.arbitration_id) for m in rig29.sent[1:]] == ["0x18da10f1", "0x18da10f1"]
    assert rig29.transport.responders == (E29, T29)


async def test_29_bit_transport_ignores_11_bit_traffic(rig29: Rig) -> None:
    rig29.inject(0x7E8, "0641000000000000")
    exchange = await rig29.transport.request(bytes.fromhex("03"), expect={E29, T29})
    assert set(exchange.answers) == {E29, T29} and rig29.transport.counters["unsolicited"] == 0


async def test_response_pending_extends_the_wait() -> None:
    async for rig in make_rig(slow_services={0x09: 0.6}):
        exchange = await rig.transport.request(bytes.fromhex("0902"), target=E11)
        assert exchange.elapsed >= 0.6 and exchange.pending == frozenset()
        assert decode_response(exchange.answers[E11]) == VinResponse(DEMO_VIN, True)
        assert rig.transport.counters["pending"] == 1


async def test_pending_without_answer_gives_up_after_p2_star() -> None:
    async for rig in make_rig(slow_services={0x09: 5.0}):
        rig.transport.pending_timeout = 0.5
        exchange = await rig.transport.request(bytes.fromhex("0902"), target=E11)
        assert exchange.answers == {} and exchange.pending == {E11}
        assert 0.5 <= exchange.elapsed < 2.0


async def test_stray_flow_control_and_garbage_do_not_break_anything(rig: Rig) -> None:
    rig.inject(0x7E8, "3000000000000000")  # flow control nobody asked for
    rig.inject(0x7E9, "4F")                 # invalid PCI
    rig.inject(0x7E8, "0F41")               # single frame longer than its CAN frame
    rig.inject(0x7E9, "2100000000000000")   # consecutive frame out of the blue
    await asyncio.sleep(0.1)
    exchange = await rig.transport.request(bytes.fromhex("0100"))
    assert set(exchange.answers) == {E11, T11}
    counters = rig.transport.counters
    assert counters["stray_flow_control"] == 1 and counters["isotp_errors"] >= 2


async def test_truncated_answer_is_reported_not_raised(rig: Rig) -> None:
    rig.ecus.responder.silent.add("engine")
    task = asyncio.create_task(rig.transport.request(bytes.fromhex("0902"), target=E11))
    await asyncio.sleep(0.05)
    rig.inject(0x7E8, "1014490201574341")  # first frame of a 20-byte VIN, then nothing
    exchange = await task
    assert exchange.answers == {} and exchange.incomplete == {E11}
    assert [m.arbitration_id for m in rig.sent] == [0x7E0, 0x7E0]  # request, flow control
    rig.ecus.responder.silent.clear()
    again = await rig.transport.request(bytes.fromhex("0902"), target=E11)
    assert decode_response(again.answers[E11]) == VinResponse(DEMO_VIN, True)


async def test_silent_bus_times_out_with_no_answers(rig: Rig) -> None:
    rig.ecus.responder.silent.update({"engine", "transmission"})
    exchange = await rig.transport.request(bytes.fromhex("0100"))
    assert exchange.answers == {} and rig.transport.counters["no_answer"] == 1


async def test_asleep_ecus_ignore_requests(rig: Rig) -> None:
    from carlink_sim.vehicle import Ignition

    rig.model.ignition = Ignition.OFF
    exchange = await rig.transport.request(bytes.fromhex("0100"))
    assert exchange.answers == {} and rig.ecus.responder.counters["ignored_asleep"] == 2


async def test_mode_04_and_bad_targets_are_refused(rig: Rig) -> None:
    with pytest.raises(ObdRequestError):
        await rig.transport.request(bytes.fromhex("04"))
    with pytest.raises(ObdRequestError):
        await rig.transport.request(bytes.fromhex("0100"), target=0x123)
    with pytest.raises(ObdRequestError):
        await rig.transport.clear_dtcs(bytes.fromhex("0100"))
    assert rig.sent == []


async def test_send_failure_is_a_transport_error() -> None:
    def broken(_msg: can.Message) -> None:
        from carlinkd.errors import BusUnavailable

        raise BusUnavailable("CAN bus is not up; frame not sent")

    transport = ObdTransport(broken)
    with pytest.raises(ObdTransportError, match="not up"):
        await transport.request(bytes.fromhex("0100"))
