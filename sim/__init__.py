"""Simulated outside world: a vehicle on CAN, (later) OBD-II ECUs and the cloud.

Start here::

    from carlink_sim import Simulator
    s = Simulator(scenario="city-drive", seed=1)
    frames = s.frames(duration=2.0)   # deterministic, simulated timestamps from 0
"""

from __future__ import annotations

import importlib
from typing import Any

# Names load on first use, so that ``carlinkd --help`` (which loads carlink_sim.command) does
# not import cantools.
_EXPORTS = {
    "SCENARIOS": "carlink_sim.scenarios",
    "Scenario": "carlink_sim.scenarios",
    "Simulator": "carlink_sim.simulator",
    "SocketcandServer": "carlink_sim.socketcand",
    "VehicleModel": "carlink_sim.vehicle",
    "demo_dbc_path": "carlink_sim.paths",
    "load_demo_dbc": "carlink_sim.paths",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module behind an exported name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'carlink_sim' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
