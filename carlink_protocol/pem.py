"""PEM file checks shared by the car's TLS settings and the backend's."""

from __future__ import annotations

from pathlib import Path


def pem_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable PEM file, or None when it is one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "file not found"
    except IsADirectoryError:
        return "is a directory, not a file"
    except OSError as err:
        return f"cannot read: {err.strerror}"
    if b"-----BEGIN " not in data:
        return "not a PEM file (no '-----BEGIN' line)"
    return None
