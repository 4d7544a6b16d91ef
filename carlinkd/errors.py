"""Exceptions raised by carlinkd, one tree rooted at :class:`CarlinkError`.

::

    CarlinkError                        (carlink_protocol.errors, shared with the backend)
    ├── ProtocolError (ValueError)      a peer broke docs/protocol.md (carlink_protocol.errors)
    ├── ConfigError (ValueError)        invalid configuration file, key, type or value
    ├── HubError                        event hub misuse (closed hub, unknown subscriber)
    ├── CanError                        vehicle bus
    │   ├── BusUnavailable (ConnectionError)   interface cannot be opened or went away
    │   ├── DatabaseLoadError (ValueError)     a DBC/KCD/SYM/ARXML file cannot be loaded
    │   ├── LogFileError (ValueError)          a CAN log file cannot be read
    │   └── ObdError                           OBD-II codec/transport (carlinkd.can.obd.errors)
    ├── VoiceError                      offline voice (audio in, ASR, intents, speech out)
    │   ├── AudioError (ValueError)            audio input cannot be opened, read or converted
    │   ├── RecognizerUnavailable              no ASR backend or model for the language
    │   ├── GrammarError (ValueError)          sentence templates invalid or unusable
    │   └── SpeechError                        speech synthesis or playback failed
    ├── StoreError                      local database (aiosqlite)
    │   ├── StoreCorrupt                       integrity check failed (file set aside)
    │   └── OutboxFull                         a lossless class of carlinkd/sync/outbox.py is full
    ├── RecordsError                    service history (carlink_protocol.errors)
    │   ├── DeviceKeyError                     the device signing key is missing or unusable
    │   └── BundleError (ValueError)           an exported bundle cannot be read
    ├── SyncError                       cloud sync (outbox, WebSocket session, backend)
    │   ├── SyncAuthError (PermissionError)    the cloud refused the device token or certificate
    │   └── SyncVersionError                   client and cloud share no protocol version
    ├── HmiError                        head-unit D-Bus API (carlinkd.hmi)
    │   ├── HmiInvalidArgs (ValueError)        a method argument is malformed or not allowed
    │   ├── HmiUnknownAlert (LookupError)      no active alert has that key
    │   ├── HmiUnknownSignal (LookupError)     no signal of that name is known
    │   └── HmiUnavailable                     the subsystem needed is off or shutting down
    └── (later issues add the OBD branch)

Third-party exceptions are translated at the boundary with ``raise ... from err``;
only :func:`carlinkd.cli.main` turns an error into an exit code and a one-line message.
"""

from __future__ import annotations

# The root and the two errors the shared protocol package raises, re-exported.
from carlink_protocol.errors import CarlinkError as CarlinkError
from carlink_protocol.errors import ProtocolError as ProtocolError
from carlink_protocol.errors import RecordsError as RecordsError


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


class VoiceError(CarlinkError):
    """Anything that went wrong in the offline voice subsystem."""


class AudioError(VoiceError, ValueError):
    """Audio input could not be opened, read or converted (bad WAV, no microphone)."""


class RecognizerUnavailable(VoiceError):
    """No speech recognizer backend or model is available for the requested language."""


class GrammarError(VoiceError, ValueError):
    """Sentence templates or the grammar built from them are invalid."""


class SpeechError(VoiceError):
    """Speech synthesis or playback failed (e.g. espeak-ng missing)."""


class StoreError(CarlinkError):
    """The local SQLite store failed (open, migrate, read or write)."""


class StoreCorrupt(StoreError):
    """The database failed its integrity check; it was set aside and a fresh one started."""


class OutboxFull(StoreError):
    """carlinkd/sync/outbox.py refused an item (lossless class full, item too big): not stored."""


class DeviceKeyError(RecordsError):
    """The per-device Ed25519 key is missing, unreadable or not an Ed25519 key."""


class BundleError(RecordsError, ValueError):
    """An exported service-history bundle is not readable JSON of the expected format."""


class SyncError(CarlinkError):
    """Anything that went wrong in cloud sync (outbox, session, backend)."""


class SyncAuthError(SyncError, PermissionError):
    """The cloud refused this device's token or client certificate."""


class SyncVersionError(SyncError):
    """The client and the cloud share no protocol version."""


class HmiError(CarlinkError):
    """The head-unit D-Bus API was used wrongly or cannot serve a request."""


class HmiInvalidArgs(HmiError, ValueError):
    """A D-Bus method argument is malformed or not one of the allowed values."""


class HmiUnknownAlert(HmiError, LookupError):
    """No active alert has the key a client named."""


class HmiUnknownSignal(HmiError, LookupError):
    """No signal of the name a client asked for is known to the daemon."""


class HmiUnavailable(HmiError):
    """The subsystem a request needs is disabled, not started yet, or shutting down."""
