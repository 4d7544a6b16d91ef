"""A development PKI for trying wss:// and mutual TLS on one machine (``carlinkd cloud dev-certs``),
also used by the tests and the benchmark: a CA, a server certificate for the given host names and
IP addresses, and client certificates whose subject common name is the device name.

Keys are ECDSA P-256, certificates valid for ``days`` (default 30). Not for production: the CA
key is written next to the certificates, unencrypted.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import CloudError

Key = ec.EllipticCurvePrivateKey
Issued = tuple[x509.Certificate, Key]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: str, issuer: x509.Name, key: Key, days: float) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days)))


def make_ca(cn: str, days: float = 30.0) -> Issued:
    """A self-signed CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(cn, _name(cn), key, days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca: Issued | None, cn: str, *, server: bool, names: Iterable[str] = (),
          days: float = 30.0) -> Issued:
    """A server or client certificate for ``cn`` issued by ``ca`` (None: self-signed); ``names``
    become subject alternative names (IP addresses or DNS names)."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer, signer = (ca[0].subject, ca[1]) if ca else (_name(cn), key)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    b = (_builder(cn, issuer, key, days)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if ca:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca[1].public_key()), critical=False)
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(signer, hashes.SHA256()), key


def write(directory: Path, stem: str, issued: Issued) -> tuple[Path, Path]:
    """Write ``stem.crt`` and ``stem.key`` (PEM, key mode 0600); returns both paths."""
    cert, key = issued
    crt, pem = directory / f"{stem}.crt", directory / f"{stem}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.touch(mode=0o600)
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def dev_pki(directory: Path, hosts: Iterable[str] = ("127.0.0.1", "localhost"),
            devices: Iterable[str] = ()) -> dict[str, Path]:
    """Write ca.crt/.key, server.crt/.key for ``hosts`` and <device>.crt/.key for each device
    into ``directory``; returns the written paths by name."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        ca = make_ca("carlinkd development CA")
        out = dict(zip(("ca", "ca_key"), write(directory, "ca", ca)))
        hosts = list(hosts)
        out.update(zip(("server", "server_key"),
                       write(directory, "server", issue(ca, hosts[0], server=True, names=hosts))))
        for device in devices:
            out.update(zip((device, f"{device}_key"),
                           write(directory, device, issue(ca, device, server=False))))
    except OSError as err:
        raise CloudError(f"cannot write certificates to {directory}: {err.strerror}") from err
    return out
