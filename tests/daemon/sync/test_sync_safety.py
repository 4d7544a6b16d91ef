"""Nothing from the cloud can make the daemon transmit on the vehicle bus or clear DTCs."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path

import can
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

import carlinkd.sync
from carlinkd.config import build_config
from carlinkd.events import Command, Event
from carlinkd.hub import Hub
from carlink_protocol import wire as p
from carlinkd.sync.inbound import KINDS, interpret
from carlinkd.sync.service import SyncService

ATTACKS = [
    ("can_send", {"arbitration_id": 0x7DF, "data": "0214000000000000"}),
    ("clear_dtc", {"all": True}),
    ("obd_request", {"service": 4}),
    ("command", {"name": "clear_dtcs", "args": {}}),
    ("Command", {"name": "can_transmit", "args": {"id": "0x7E0", "data": "04"}}),
    ("chat", {"group": "g", "from": "cloud", "text": "clear all DTCs", "name": "clear_dtcs"}),
    ("booking", {"status": "confirmed", "command": "clear_dtcs"}),
]


def test_no_downstream_kind_maps_to_a_command() -> None:
    samples = {
        "chat": {"group": "g", "from": "a", "text": "t"},
        "booking": {"status": "confirmed"},
        "help_request": {"request_id": "r", "from": "a", "lat": 1, "lon": 2, "distance_km": 3},
        "help_response": {"request_id": "r", "from": "a", "text": "on my way"},
        "groups": {"joined": [], "available": []},
        "help_detail": {"request_id": "r", "from": "a", "lat": 1, "lon": 2, "note": "",
                        "vehicle": {"Vehicle.Speed": 0}},
        "help_cancel": {"request_id": "r", "from": "a"},
        "group_join_request": {"group": "g", "from": "a"},
        "booking_options": {"request_id": "b", "service": "car_wash", "day": "2026-01-02",
                            "time": "09:00", "options": [{"shop": "S", "distance_km": 2,
                                                          "day": "2026-01-02", "time": "09:00"}]},
    }
    # service_record_offer needs a shop-signed body: tests/cloud/test_shop_offers.py covers it
    assert set(samples) | {"service_record_offer"} == set(KINDS)
    for kind, body in samples.items():
        event, verdict = interpret(p.DownItem(1, kind, body, 0.0))
        assert verdict == "ok" and isinstance(event, Event) and not isinstance(event, Command)


def test_sync_package_never_imports_can_or_obd() -> None:
    for path in Path(carlinkd.sync.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{'.' * node.level}{node.module or ''}"]
            for name in names:
                assert not name.startswith(("can", "isotp", "..can", "carlinkd.can")), \
                    f"{path.name} imports {name}"


async def test_cloud_attack_items_transmit_nothing_and_publish_no_command(tmp_path: Path) -> None:
    async def rogue(ws: ServerConnection) -> None:
        hello = json.loads(await ws.recv())
        await ws.send(p.encode(p.Welcome(p.PROTOCOL_VERSION, "car", "E", hello["cursor"], 0)))
        for seq, (kind, body) in enumerate(ATTACKS, start=1):
            await ws.send(p.encode(p.DownItem(seq, kind, body, 0.0)))
        try:
            await ws.wait_closed()
        except ConnectionClosed:
            pass

    observer = can.Bus(interface="virtual", channel="carlinkd-safety", receive_own_messages=True)
    try:
        async with serve(rogue, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            cfg = build_config([("t", {"sync": {"url": f"ws://127.0.0.1:{port}/",
                                                "token": "t"}})])
            hub = Hub()
            everything = hub.subscribe(Event, name="all")
            svc = SyncService(cfg, hub, tmp_path)
            await svc.start()
            try:
                while svc.inbound is None or svc.inbound.cursor < len(ATTACKS):
                    await asyncio.sleep(0.02)
            finally:
                await svc.stop()
            events = []
            while (e := everything.get_nowait()) is not None:
                events.append(e)
            hub.close()
        assert not [e for e in events if isinstance(e, Command)]
        assert observer.recv(timeout=0.2) is None
        stored = await _verdicts(tmp_path)
        assert all(v.startswith("rejected") for v in stored[:5])
    finally:
        observer.shutdown()


async def _verdicts(state_dir: Path) -> list[str]:
    import sqlite3
    conn = sqlite3.connect(state_dir / "sync.db")
    try:
        return [r[0] for r in conn.execute("SELECT verdict FROM sync_inbound ORDER BY seq")]
    finally:
        conn.close()
