"""Tamper-evident service history: SHA-256 hash chain, Ed25519 signatures, offline bundles.

``chain`` is the pure core (canonical encoding, hashing, signing, verification), ``keys`` the
device key on disk, ``history`` the store adapter and ``cli`` the ``carlinkd records`` commands.
"""
