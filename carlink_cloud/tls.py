"""The backend's TLS context and the client-certificate name (docs/protocol.md §2)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from carlink_protocol.pem import pem_problem

from .errors import CloudError


def tls_context(cert: Path, key: Path | None = None,
                client_ca: Path | None = None) -> ssl.SSLContext:
    """The server's TLS context; CloudError naming the option and file when one is unusable."""
    for option, path in (("--tls-cert", cert), ("--tls-key", key), ("--client-ca", client_ca)):
        problem = pem_problem(path) if path is not None else None
        if problem is not None:
            raise CloudError(f"{option} {path}: {problem}")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    except ssl.SSLError as err:
        raise CloudError(f"--tls-cert {cert}: unusable with --tls-key {key}: "
                         f"{err.reason or err}") from err
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(client_ca))
        except ssl.SSLError as err:
            raise CloudError(f"--client-ca {client_ca}: no usable CA certificate in it "
                             f"({err.reason or err})") from err
        # Requested and verified when presented; a missing one is refused in process_request.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def common_name(peercert: dict[str, Any] | None) -> str | None:
    """The subject common name of a peer certificate (as ssl's getpeercert() gives it)."""
    for rdn in (peercert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None
