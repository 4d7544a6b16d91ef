"""Exceptions raised by carlinkd, one tree rooted at :class:`CarlinkError`.

::

    CarlinkError
    ├── ConfigError (ValueError)        invalid configuration file, key, type or value
    ├── HubError                        event hub misuse (closed hub, unknown subscriber)
    ├── CanError                        vehicle bus
    │   ├── BusUnavailable (ConnectionError)   interface cannot be opened or went away
    │   ├── DatabaseLoadError (ValueError)     a DBC/KCD/SYM/ARXML file cannot be loaded
    │   └── LogFileError (ValueError)          a CAN log file cannot be read
    └── (later issues add OBD, voice, sync and store branches)

Third-party exceptions are translated at the boundary with ``raise ... from err``;
only :func:`carlinkd.cli.main` turns an error into an exit code and a one-line message.
"""

from __future__ import annotations


class CarlinkError(Exception):
    """Root of every error carlinkd raises on purpose."""


class ConfigError(CarlinkError, ValueError):
    """The configuration is invalid; the message names file, key path and expectation."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class HubError(CarlinkError):
    """The event hub was used wrongly (e.g. publishing after close)."""


class CanError(CarlinkError):
    """Anything that went wrong on the vehicle-bus side."""


class BusUnavailable(CanError, ConnectionError):
    """A CAN interface could not be opened, or it went away."""


class DatabaseLoadError(CanError, ValueError):
    """A CAN database file could not be loaded, strictly or leniently."""


class LogFileError(CanError, ValueError):
    """A CAN log file could not be opened or read."""
