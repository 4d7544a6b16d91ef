"""Errors of the reference backend.

::

    CarlinkError (carlink_protocol.errors)
    └── CloudError        the backend failed or was used wrongly (unknown device, bad admin input)
"""

from __future__ import annotations

from carlink_protocol.errors import CarlinkError


class CloudError(CarlinkError):
    """The reference backend failed or was used wrongly (unknown device, bad admin input)."""
