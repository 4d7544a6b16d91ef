"""Exceptions raised by the OBD-II codec, one tree rooted at :class:`ObdError`.

::

    ObdError                                 (to be re-parented under CanError)
    ├── ObdRequestError (ValueError)         a request cannot be built (bad PID, unconfirmed clear)
    ├── ObdAddressError (ValueError)         a CAN id or ECU address is outside the OBD-II ranges
    ├── ObdEncodeError (ValueError)          a value cannot be encoded (unknown PID, out of range)
    ├── DtcFormatError (ValueError)          a text DTC is not like P0420 / C0035 / B1234 / U0100
    ├── ObdDecodeError (ValueError)          a response payload is malformed
    │   ├── ObdTruncatedError                the payload is shorter than its content requires
    │   └── ObdServiceMismatch               the payload does not answer the request sent
    ├── ObdTransportError                    a request could not be sent (bus down, send failed)
    └── ObdTimeout (TimeoutError)            no ECU answered a request in time

A negative response (``0x7F``) is a valid answer, not an error: it decodes to
:class:`carlinkd.can.obd.codec.NegativeResponse`.
"""

from __future__ import annotations

from ...errors import CanError


class ObdError(CanError):
    """Root of every error the OBD-II codec raises on purpose."""


class ObdRequestError(ObdError, ValueError):
    """A diagnostic request cannot be built from the given arguments."""


class ObdAddressError(ObdError, ValueError):
    """A CAN id or ECU address is outside the ISO 15765-4 OBD-II ranges."""


class ObdEncodeError(ObdError, ValueError):
    """A value cannot be encoded into J1979 bytes."""


class DtcFormatError(ObdError, ValueError):
    """A diagnostic trouble code string is malformed."""


class ObdDecodeError(ObdError, ValueError):
    """A response payload is malformed; the message names the service, source and problem."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)


class ObdTruncatedError(ObdDecodeError):
    """A response payload ends before its content does."""


class ObdServiceMismatch(ObdDecodeError):
    """A response does not answer the request it was paired with."""


class ObdTransportError(ObdError):
    """An OBD-II request could not be transmitted (the bus is down or the send failed)."""


class ObdTimeout(ObdError, TimeoutError):
    """No ECU answered an OBD-II request within the response timeout."""
