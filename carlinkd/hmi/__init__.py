"""carlinkd.hmi: the head-unit D-Bus API ``org.carlinkd.Daemon1`` (dbus-fast, asyncio).

:mod:`.api` is the part without I/O (names, argument checks, property state, signal throttle),
:mod:`.interface` the dbus-fast ServiceInterface, :mod:`.dbus` the adapter between the hub and
the bus (:class:`HmiService`). docs: see the module docstrings and ``busctl introspect``.
"""

from .api import API_VERSION, BUS_NAME, INTERFACE, OBJECT_PATH
from .dbus import HmiService

__all__ = ["API_VERSION", "BUS_NAME", "INTERFACE", "OBJECT_PATH", "HmiService"]
