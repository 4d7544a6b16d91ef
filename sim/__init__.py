"""Simulated outside world: a vehicle on CAN, (later) OBD-II ECUs and the cloud.

Start here::

    from sim import Simulator
    s = Simulator(scenario="city-drive", seed=1)
    frames = s.frames(duration=2.0)   # deterministic, simulated timestamps from 0
"""

from sim.paths import demo_dbc_path, load_demo_dbc
from sim.scenarios import SCENARIOS, Scenario
from sim.simulator import Simulator
from sim.socketcand import SocketcandServer
from sim.vehicle import VehicleModel

__all__ = [
    "SCENARIOS",
    "Scenario",
    "Simulator",
    "SocketcandServer",
    "VehicleModel",
    "demo_dbc_path",
    "load_demo_dbc",
]
