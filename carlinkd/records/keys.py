"""The per-device Ed25519 signing key: created once in the state directory, mode 0600."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding, NoEncryption, PrivateFormat, load_pem_private_key)

from ..errors import DeviceKeyError

log = logging.getLogger(__name__)


def load_device_key(path: Path) -> Ed25519PrivateKey:
    """Read the device key (DeviceKeyError when missing or not Ed25519); tightens loose modes."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise DeviceKeyError(f"{path}: device key not found (the daemon creates it on first "
                             "start)") from None
    except OSError as err:
        raise DeviceKeyError(f"{path}: cannot read device key: {err.strerror}") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("device key %s was readable by others (mode %o); set to 0600", path,
                    stat.S_IMODE(mode))
        try:
            path.chmod(0o600)
        except OSError as err:
            log.warning("cannot tighten %s: %s", path, err.strerror)
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise DeviceKeyError(f"{path}: not a readable private key: {err}") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise DeviceKeyError(f"{path}: not an Ed25519 key")
    return key


def load_or_create_device_key(path: Path) -> Ed25519PrivateKey:
    """The device key, created (0600, in a 0700 directory) when it does not exist yet."""
    if path.exists():
        return load_device_key(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic and exclusive: a concurrent creator's key wins
        except FileExistsError:
            return load_device_key(path)
        _fsync_dir(path.parent)
    except OSError as err:
        raise DeviceKeyError(f"{path}: cannot create device key: {err.strerror}") from err
    finally:
        tmp.unlink(missing_ok=True)
    log.info("created device signing key %s", path)
    return key


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
