"""The error root shared by the daemon and the backend, and the errors of this package.

::

    CarlinkError                       root of every error carlinkd or carlink_cloud raises
    ├── ProtocolError (ValueError)     a peer sent a message that breaks docs/protocol.md
    └── RecordsError                   a service-record chain cannot be read, written or verified

The daemon's tree (carlinkd.errors) and the backend's (carlink_cloud.errors) grow from
:class:`CarlinkError`.
"""

from __future__ import annotations


class CarlinkError(Exception):
    """Root of every error carlinkd and carlink_cloud raise on purpose."""


class ProtocolError(CarlinkError, ValueError):
    """A peer sent a message that does not follow docs/protocol.md; the reason says which rule."""


class RecordsError(CarlinkError):
    """The service history could not be read, written or verified."""
