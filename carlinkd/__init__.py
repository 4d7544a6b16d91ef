"""carlinkd: the in-car half of a connected-car platform."""

__version__ = "0.1.0"
