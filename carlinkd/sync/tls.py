"""TLS for the cloud connection: the client context from ``[sync]``, and what a failed handshake
means, in one line.

Every certificate and key file is checked on its own before OpenSSL sees it, so that a missing,
unreadable or non-PEM file is a :class:`~carlinkd.errors.ConfigError` naming the file and its
config key at start-up, not an OpenSSL error code on the first connection attempt.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from carlink_protocol.pem import pem_problem

from ..errors import ConfigError

if TYPE_CHECKING:
    from .settings import SyncConfig

log = logging.getLogger(__name__)

# OpenSSL alert reasons with which a server refuses the client certificate during the handshake
# (a TLS 1.2 server; under TLS 1.3 the refusal arrives after the client's handshake finished and
# reaches the client as a closed connection).
CLIENT_CERT_REFUSED = frozenset({
    "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "TLSV1_ALERT_UNKNOWN_CA", "TLSV1_ALERT_ACCESS_DENIED", "TLSV13_ALERT_CERTIFICATE_REQUIRED"})


def _checked(path: Path, key: str) -> str:
    problem = pem_problem(path)
    if problem is not None:
        raise ConfigError(str(path), key, problem)
    return str(path)


def client_context(cfg: SyncConfig) -> ssl.SSLContext | None:
    """The TLS context for a wss:// ``sync.url`` (None for ws://): server verification on
    unless ``verify_tls = false``, ``ca_file`` instead of the system CAs, optional client
    certificate. Raises ConfigError naming the file and key when one is unusable."""
    if cfg.url is None or not cfg.url.startswith("wss://"):
        if cfg.client_cert is not None or cfg.ca_file is not None:
            log.warning("sync.url %s is not wss://: sync.ca_file and sync.client_cert are not "
                        "used", cfg.url)
        return None
    if cfg.client_key is not None and cfg.client_cert is None:
        raise ConfigError(str(cfg.client_key), "sync.client_key",
                          "set without sync.client_cert (the certificate it belongs to)")
    ctx = ssl.create_default_context()
    if cfg.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=_checked(cfg.ca_file, "sync.ca_file"))
        except ssl.SSLError as err:
            raise ConfigError(str(cfg.ca_file), "sync.ca_file",
                              f"no usable CA certificate in it ({err.reason or err})") from err
    if cfg.client_cert is not None:
        cert = _checked(cfg.client_cert, "sync.client_cert")
        key = _checked(cfg.client_key, "sync.client_key") if cfg.client_key else None
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as err:
            where = f" with key {cfg.client_key}" if cfg.client_key else \
                " (no sync.client_key: the key must be in the same file)"
            raise ConfigError(str(cfg.client_cert), "sync.client_cert",
                              f"unusable as client certificate{where}: {err.reason or err}"
                              ) from err
    if not cfg.verify_tls:
        log.warning("TLS verification of %s is OFF (sync.verify_tls = false): anyone on the "
                    "network path can pose as the cloud", cfg.url)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def verification_failure(err: ssl.SSLCertVerificationError, cfg: SyncConfig) -> str:
    """One line for a server certificate the client refused (untrusted, wrong name, expired)."""
    why = str(err.verify_message or err.reason or err).rstrip(".")
    trust = f"sync.ca_file {cfg.ca_file}" if cfg.ca_file else "the system trust store"
    return f"TLS: server certificate refused: {why} (trusted: {trust})"


def handshake_failure(err: ssl.SSLError, cfg: SyncConfig) -> tuple[bool, str]:
    """(the server refused our client certificate, one line) for another TLS error."""
    reason = str(err.reason or "")
    if reason in CLIENT_CERT_REFUSED:
        mine = str(cfg.client_cert) if cfg.client_cert else "none configured (sync.client_cert)"
        return True, f"TLS: the server refused the client certificate ({reason}); ours: {mine}"
    return False, f"TLS handshake failed: {reason or err}"


def closed_in_handshake(cfg: SyncConfig) -> str:
    """One line for a wss:// server that hung up before answering the HTTP upgrade."""
    if cfg.client_cert is not None:
        return ("the server closed the connection during the TLS/HTTP handshake; it may have "
                f"refused the client certificate {cfg.client_cert}")
    return ("the server closed the connection during the TLS/HTTP handshake; if it requires "
            "client certificates, set sync.client_cert and sync.client_key")
