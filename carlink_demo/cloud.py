"""The demo's backend: the reference cloud (carlink_cloud) on 127.0.0.1 with the demo cars enrolled.

Each car is a device named after it ("car1", ...), so a message read out in another car says who
sent it; every car is a member of "car club" and of the configured voice groups; one service shop
takes bookings every day. The database lives in the demo's state directory; a car's token is kept
beside its state (``<car>/cloud-token``) so a kept state directory can be used again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from carlink_cloud.server import CloudServer
from carlink_cloud.store import CloudStore
from carlink_sim.navigation import offset_position

from carlink_cloud.errors import CloudError

DEMO_GROUP = "car club"
SHOP = "Demo Garage"
SHOP_OFFSET_KM = 2.0  # north-east of car1's start
TOKEN_FILE = "cloud-token"


class DemoCloud:
    """``async with DemoCloud(db, cars, groups, near) as cloud``: enrolled, listening, stopped."""

    def __init__(self, db_path: Path, cars: Sequence[tuple[str, Path]], groups: Sequence[str],
                 shop_at: tuple[float, float]) -> None:
        self.db_path = db_path
        self.cars = list(cars)
        self.groups = [DEMO_GROUP, *(g for g in groups if g != DEMO_GROUP)]
        self.shop_at = shop_at
        self.tokens: dict[str, str] = {}
        self.server: CloudServer | None = None
        self._reader: CloudStore | None = None

    @property
    def url(self) -> str:
        """The ws:// URL the cars use."""
        assert self.server is not None, "start() first"
        return self.server.url

    async def start(self) -> None:
        """Enrol the cars, create groups and the shop, start listening on a free port."""
        self.tokens = await asyncio.to_thread(self._enrol)
        server = CloudServer(self.db_path, "127.0.0.1", 0)
        try:
            await server.start()
        except OSError as err:
            await server.stop()
            raise CloudError(f"cannot start the demo backend: {err}") from err
        except BaseException:
            await server.stop()
            raise
        self.server = server

    async def stop(self) -> None:
        """Stop the server (closing every connection) and the reader."""
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self._reader is not None:
            await asyncio.to_thread(self._reader.close)
            self._reader = None

    async def __aenter__(self) -> DemoCloud:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _enrol(self) -> dict[str, str]:
        store = CloudStore(self.db_path)
        try:
            tokens = {name: self._token(store, name, state) for name, state in self.cars}
            names = [name for name, _ in self.cars]
            for group in self.groups:
                store.add_group(group, members=names)
            lat, lon = offset_position(*self.shop_at, SHOP_OFFSET_KM * 1000.0, 45.0)
            store.add_shop(SHOP, lat, lon, days="daily", opens="08:00", closes="18:00",
                           slot_minutes=30, capacity=2)
        finally:
            store.close()
        return tokens

    @staticmethod
    def _token(store: CloudStore, name: str, state_dir: Path) -> str:
        """A new device and token, or the kept token of a device enrolled by an earlier run."""
        path = state_dir / TOKEN_FILE
        if path.is_file():
            token = path.read_text().strip()
            device = store.authenticate(token)
            if device is not None and device.name == name:
                return token
        token = store.add_device(name)  # CloudError when an earlier run's token is lost
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(token + "\n")
        path.chmod(0o600)
        return token

    async def located(self) -> set[str]:
        """Cars whose latest status, as the backend holds it, has a position (what help
        requests are routed by)."""
        return await asyncio.to_thread(self._located)

    def _located(self) -> set[str]:
        # The status table is what help_request routes by (carlink_cloud/handlers.py): one query,
        # rather than every car's whole status log on each poll.
        if self._reader is None:
            self._reader = CloudStore(self.db_path)
        # Protocol 2: a helper is located by its coarse cell, a car sharing its position by it.
        rows = self._reader.conn.execute(
            "SELECT d.name FROM status s JOIN devices d ON d.id = s.device_id "
            "WHERE (s.lat IS NOT NULL AND s.lon IS NOT NULL) OR (s.helper = 1 AND "
            "s.cell IS NOT NULL)").fetchall()
        return {name for (name,) in rows}
