"""The reference cloud backend (docs/protocol.md): ``CloudServer`` on a ``CloudStore``."""

from sim.cloud.server import CloudServer
from sim.cloud.store import CloudStore, Device

__all__ = ["CloudServer", "CloudStore", "Device"]
