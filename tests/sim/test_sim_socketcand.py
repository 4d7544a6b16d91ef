"""The socketcand server against python-can's stock client (blocking, so it runs in a thread)."""

from __future__ import annotations

import asyncio
import socket
import time

import can
import pytest

from carlink_sim import Simulator, SocketcandServer, load_demo_dbc
from carlink_sim.socketcand import format_frame, parse_send

DB = load_demo_dbc()


def _client(port: int) -> can.BusABC:
    return can.Bus(interface="socketcand", host="127.0.0.1", port=port, channel="vcan0")


def _collect(port: int, count: int, timeout: float = 5.0) -> list[can.Message]:
    """Connect with the stock client and receive ``count`` frames."""
    bus = _client(port)
    frames: list[can.Message] = []
    try:
        deadline = time.monotonic() + timeout
        while len(frames) < count and time.monotonic() < deadline:
            message = bus.recv(0.2)
            if message is not None:
                frames.append(message)
    finally:
        bus.shutdown()
    return frames


async def _collect_while_simulating(server: SocketcandServer, count: int) -> list[can.Message]:
    runner = asyncio.create_task(Simulator("city-drive", seed=1, time_scale=30).run(server.broadcast))
    try:
        return await asyncio.to_thread(_collect, server.port, count)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


def test_frame_format_round_trip() -> None:
    std = can.Message(timestamp=1700000000.5, arbitration_id=0x1A0, data=bytes([1, 2, 0xAB]), is_extended_id=False)
    ext = can.Message(timestamp=12.0000004, arbitration_id=0x18FF10A0, data=b"\x00\x10", is_extended_id=True)
    assert format_frame(std) == "< frame 1A0 1700000000.500000 0102AB >"
    assert format_frame(ext) == "< frame 18FF10A0 12.000000 0010 >"
    parsed = parse_send(["7DF", "8", "2", "1", "c", "0", "0", "0", "0", "0"])
    assert (parsed.arbitration_id, parsed.is_extended_id, bytes(parsed.data)) == (0x7DF, False, b"\x02\x01\x0c" + bytes(5))
    assert parse_send(["18DB33F1", "2", "2", "1"]).is_extended_id
    for bad in ("7DF 3 1 2", "7DF 9 1 2 3 4 5 6 7 8 9", "XYZ 1 1", "7DF"):
        with pytest.raises(ValueError):
            parse_send(bad.split())


async def test_handshake_is_exact_and_streaming_waits() -> None:
    async with SocketcandServer(port=0, stream_delay=0.2) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            assert await reader.readexactly(6) == b"< hi >"
            writer.write(b"< open can9 >")
            assert (await reader.read(100)).startswith(b"< error")
            writer.write(b"< open vcan0 >")
            assert await reader.read(100) == b"< ok >"
            writer.write(b"< rawmode >")
            assert await reader.read(100) == b"< ok >"
            await server.wait_for_clients(1)
            server.broadcast([can.Message(timestamp=1.0, arbitration_id=0x123, data=b"\x01", is_extended_id=False)])
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(100), 0.1)  # nothing may follow "< ok >" at once
            assert (await asyncio.wait_for(reader.read(100), 1.0)).strip() == b"< frame 123 1.000000 01 >"
        finally:
            writer.close()
            await writer.wait_closed()


async def test_stock_client_receives_decodable_frames() -> None:
    async with SocketcandServer(port=0) as server:
        before = time.time()
        frames = await _collect_while_simulating(server, 1000)
    assert len(frames) == 1000
    for frame in frames:
        DB.decode_message(frame.arbitration_id, frame.data)
        assert before - 1.0 < frame.timestamp < time.time() + 1.0
    extended = [f for f in frames if f.arbitration_id == 0x18FF10A0]
    assert extended and all(f.is_extended_id for f in extended)
    assert server.dropped_frames == 0


async def test_send_reaches_other_clients_and_callback_not_sender() -> None:
    hooked: list[can.Message] = []

    def exchange(port: int) -> tuple[list[can.Message], can.Message | None]:
        sender, listener = _client(port), _client(port)
        try:
            sender.send(can.Message(arbitration_id=0x7DF, data=[2, 1, 0x0C, 0, 0, 0, 0, 0], is_extended_id=False))
            sender.send(can.Message(arbitration_id=0x18DB33F1, data=[2, 1, 0x0D], is_extended_id=True))
            got: list[can.Message] = []
            deadline = time.monotonic() + 3.0
            while len(got) < 2 and time.monotonic() < deadline:
                if (message := listener.recv(0.2)) is not None:
                    got.append(message)
            return got, sender.recv(0.3)
        finally:
            sender.shutdown()
            listener.shutdown()

    async with SocketcandServer(port=0, on_frame=hooked.append) as server:
        got, echoed = await asyncio.to_thread(exchange, server.port)
    assert [(m.arbitration_id, m.is_extended_id, bytes(m.data)) for m in got] == [
        (0x7DF, False, bytes([2, 1, 0x0C, 0, 0, 0, 0, 0])), (0x18DB33F1, True, bytes([2, 1, 0x0D]))]
    assert [m.arbitration_id for m in hooked] == [0x7DF, 0x18DB33F1]
    assert echoed is None


async def test_restart_on_the_same_port() -> None:
    server = SocketcandServer(port=0)
    await server.start()
    port = server.port
    try:
        assert len(await _collect_while_simulating(server, 50)) == 50
    finally:
        await server.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    async with SocketcandServer(port=port) as again:
        assert again.port == port
        assert len(await _collect_while_simulating(again, 50)) == 50


async def test_slow_client_loses_frames_without_stalling_others() -> None:
    async with SocketcandServer(port=0, max_buffered_frames=500, stream_delay=0.0) as server:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.setblocking(False)
        await asyncio.get_running_loop().sock_connect(slow, ("127.0.0.1", server.port))
        slow_reader, slow_writer = await asyncio.open_connection(sock=slow)
        fast_reader, fast_writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            for reader, writer in ((slow_reader, slow_writer), (fast_reader, fast_writer)):
                await reader.readexactly(6)
                writer.write(b"< open vcan0 >")
                await reader.readexactly(6)
                writer.write(b"< rawmode >")
                await reader.readexactly(6)
            await server.wait_for_clients(2)
            frame = can.Message(timestamp=1.0, arbitration_id=0x100, data=bytes(8), is_extended_id=False)
            received = 0
            for _ in range(300):  # 300 x 400 frames, read only by the fast client
                server.broadcast([frame] * 400)
                await asyncio.sleep(0)
                received += (await fast_reader.read(1 << 20)).count(b"< frame")
            server.broadcast([can.Message(timestamp=2.0, arbitration_id=0x7FF, data=b"\xff", is_extended_id=False)])
            tail = b""
            while b"7FF" not in tail:
                tail = await asyncio.wait_for(fast_reader.read(1 << 20), 2.0)
        finally:
            for writer in (slow_writer, fast_writer):
                writer.close()
                await writer.wait_closed()
    assert server.dropped_frames > 10_000  # all of them the slow client's
    assert received > 100_000
