"""A scripted year in a car's life, played into a real store through the daemon's own services.

For the condition report's tests and ``carlinkd demo --report``: drives every few days
(ignition cycles and odometer, battery and tyre values as SignalsUpdated events), an oil
change and a brake service signed by a shop, one owner-entered record, a trouble code set
and cleared two weeks later and another still set at the end, a slow leak in the front-left
tyre that ends in an alert, and an odometer rollback (a swapped instrument cluster). The
events go through the real :class:`EvidenceService` and :class:`AlertService` with a scripted
clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carlink_protocol import shopsig
from carlink_protocol.chain import ServiceRecord
from carlinkd.alerts.service import AlertService
from carlinkd.config import Config
from carlinkd.events import DtcCleared, DtcSet, SignalsUpdated, SignalValue
from carlinkd.hub import Hub
from carlinkd.records.evidence import BATTERY, IGNITION, ODOMETER, TYRES, EvidenceService
from carlinkd.records.history import REGISTRY_META_KEY, ServiceHistory
from carlinkd.records.keys import load_or_create_device_key
from carlinkd.store.db import Store

DAY = 86_400.0
START = datetime(2025, 1, 6, 8, 0, tzinfo=UTC).timestamp()
VIN = "WDD2050041F123456"
SHOP = "Demo Garage"
LEAK_FROM_DAY, LEAK_KPA_PER_DAY = 250, 0.9
ROLLBACK_DAY, ROLLBACK_TO_KM = 330, 21_300


@dataclass
class Life:
    """What the script produced, for assertions."""

    days: int
    drives: int
    final_km: int
    registry_fingerprint: str


def _signals(now: float, values: dict[str, float]) -> SignalsUpdated:
    return SignalsUpdated({n: SignalValue(n, v, None, now, "dbc") for n, v in values.items()})


def _tyres(day: int) -> dict[str, float]:
    season = 6.0 * math.cos(2 * math.pi * (day - 200) / 365)  # colder months, lower pressure
    out = {name: 238.0 + season + i * 0.8 for i, name in enumerate(TYRES)}
    if day >= LEAK_FROM_DAY:
        out[TYRES[0]] -= LEAK_KPA_PER_DAY * (day - LEAK_FROM_DAY)
    return out


class _Script:
    def __init__(self, store: Store, history: ServiceHistory, cfg: Config) -> None:
        self.now = START
        self.hub = Hub(1024)
        self.evidence = EvidenceService(self.hub, store, history, lambda: self.now)
        self.alerts = AlertService(cfg, self.hub, store, clock=lambda: self.now)
        self.history = history
        self.registry = Ed25519PrivateKey.generate()
        self.shop_key = Ed25519PrivateKey.generate()
        self.cert = shopsig.make_cert(self.registry, SHOP, 1, self.shop_key.public_key(),
                                      "2024-12-01")

    async def feed(self, event: Any) -> None:
        await self.evidence.handle(event)
        self.alerts.handle(event)

    async def drive(self, day: int, km: float) -> None:
        self.now = START + day * DAY
        battery = 12.55 - (0.35 if day > 300 else 0.0) - 0.002 * (day % 40)
        await self.feed(_signals(self.now, {IGNITION: 0}))
        for step in range(2):  # two readings a minute apart: threshold rules hold for 10 s
            self.now += 60 * step
            await self.feed(_signals(self.now, {IGNITION: 2, ODOMETER: km + step,
                                                BATTERY: battery, **_tyres(day)}))

    async def service(self, day: int, km: int, items: tuple[str, ...], parts: tuple[str, ...],
                      booking: int | None) -> None:
        self.now = START + day * DAY + 3600
        when = datetime.fromtimestamp(self.now, UTC).strftime("%Y-%m-%d")
        shop = SHOP if booking is not None else "owner (self)"
        rec = ServiceRecord(when, km, shop, items, parts, "89.00" if booking else None,
                            "EUR" if booking else None)
        extra = None
        if booking is not None:
            extra = {"shop_sig": shopsig.sign_record(self.shop_key, self.cert,
                                                     self.registry.public_key(), rec.to_json(),
                                                     booking, "car1")}
        await self.history.add(rec, self.now, extra)


async def play(state_dir: Path, cfg: Config | None = None, days: int = 365) -> Life:
    """Play the scripted year into ``state_dir``'s store (as the daemon keeps it)."""
    cfg = cfg or Config()
    key = load_or_create_device_key(cfg.store.key_path(state_dir))
    store = await Store.open(cfg.store.db_path(state_dir), cfg.store, background=False)
    try:
        await store.set_meta("vin", VIN)
        script = _Script(store, ServiceHistory(store, key), cfg)
        await store.set_meta(REGISTRY_META_KEY,
                             script.registry.public_key().public_bytes_raw().hex())
        await script.evidence.start()
        drives, km = await _year(script, days)
        await script.evidence.stop()
        script.hub.close()
        await store.flush()
    finally:
        await store.close()
    return Life(days, drives, int(km),
                shopsig.fingerprint(script.registry.public_key()))


async def _year(script: _Script, days: int) -> tuple[int, float]:
    km, drives = 41_870.0, 0
    for day in range(0, days, 3):
        km = km + 58 + (day % 7) * 9 if day != ROLLBACK_DAY else float(ROLLBACK_TO_KM)
        await script.drive(day, km)
        drives += 1
        if day == 30:
            await script.service(day, int(km), ("oil",), ("oil filter", "5W-30 4.5 l"), 101)
        elif day == 120:
            await script.feed(DtcSet(0x7E8, "P0171", "System too lean (bank 1)", script.now))
        elif day == 135:
            await script.feed(DtcCleared(0x7E8, "P0171", script.now))
        elif day == 342:
            await script.feed(DtcSet(0x7E8, "P0420", "Catalyst efficiency below threshold "
                                     "(bank 1)", script.now))
        elif day == 180:
            await script.service(day, int(km), ("wiper_blades",), ("Bosch AR601S",), None)
        elif day == 210:
            await script.service(day, int(km), ("brake_fluid", "tire_rotation"),
                                 ("DOT 4 1 l",), 102)
    return drives, km
