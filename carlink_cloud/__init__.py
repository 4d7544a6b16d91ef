"""The reference cloud backend (docs/protocol.md): ``CloudServer`` on a ``CloudStore``."""

from carlink_cloud.server import CloudServer
from carlink_cloud.store import CloudStore, Device

__all__ = ["CloudServer", "CloudStore", "Device"]
