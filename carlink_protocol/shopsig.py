"""Shop co-signatures on service records (pure): shop key certificates and the shop's signature.

A shop has its own Ed25519 key. The backend's *registry key* certifies it::

    cert = {"shop": "Demo Garage", "shop_id": 1, "public_key": <hex>, "issued": "YYYY-MM-DD",
            "signature": Ed25519(registry, CERT_DOMAIN + canonical(cert without signature))}

When a shop completes a booking it signs what it did for which car::

    content = {"record": <ServiceRecord JSON>, "booking_id": n, "device": <car's cloud name>}
    shop_sig = {"cert": cert, "registry_key": <hex>, "booking_id": n, "device": ...,
                "signature": Ed25519(shop key, SHOP_DOMAIN + canonical(content))}

The car puts ``shop_sig`` inside the chain entry's body beside ``record``, so the device's
signature covers it too; a verifier checks the shop's signature over the record, the
certificate under the registry key, and (when it has a trusted copy of the registry key, e.g.
``carlink-cloud registry-key``) that the registry key is the real one.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .chain import canonical, fingerprint

CERT_DOMAIN = b"carlink shop key v1\x00"
SHOP_DOMAIN = b"carlink shop service record v1\x00"

SHOP_SIGNED = "shop-signed"
OWNER_ENTERED = "owner-entered"
BAD_SHOP_SIGNATURE = "shop-signature"   # the shop's signature does not match the record
FORGED_SHOP_KEY = "forged-shop-key"     # the shop key is not certified by the trusted registry


def _hex(public: Ed25519PublicKey) -> str:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def _sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()


def _valid(public: Ed25519PublicKey, signature: object, message: bytes) -> bool:
    try:
        public.verify(base64.b64decode(str(signature), validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def public_from_hex(text: object) -> Ed25519PublicKey:
    """A public key from 64 hex digits (ValueError otherwise)."""
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(text)))


def make_cert(registry: Ed25519PrivateKey, shop: str, shop_id: int,
              shop_public: Ed25519PublicKey, issued: str) -> dict[str, Any]:
    """A shop key certificate signed by the registry key."""
    fields = {"shop": shop, "shop_id": int(shop_id), "public_key": _hex(shop_public),
              "issued": issued}
    return {**fields, "signature": _sign(registry, CERT_DOMAIN + canonical(fields))}


def content(record: Mapping[str, Any], booking_id: int, device: str) -> bytes:
    """The bytes a shop signs: the record, the booking it completes, the car it was for."""
    return SHOP_DOMAIN + canonical({"record": dict(record), "booking_id": int(booking_id),
                                    "device": device})


def sign_record(shop_key: Ed25519PrivateKey, cert: Mapping[str, Any],
                registry_public: Ed25519PublicKey, record: Mapping[str, Any], booking_id: int,
                device: str) -> dict[str, Any]:
    """The ``shop_sig`` object a shop attaches to the record of a completed booking."""
    return {"cert": dict(cert), "registry_key": _hex(registry_public),
            "booking_id": int(booking_id), "device": device,
            "signature": _sign(shop_key, content(record, booking_id, device))}


@dataclass(frozen=True)
class ShopCheck:
    """Who vouches for one service record: shop-signed, owner-entered, or a named problem."""

    status: str
    shop: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True unless a shop signature is present and wrong."""
        return self.status in (SHOP_SIGNED, OWNER_ENTERED)

    def label(self) -> str:
        """A short label for people."""
        if self.status == SHOP_SIGNED:
            return f"signed by {self.shop} ({self.detail})"
        if self.status == OWNER_ENTERED:
            return "owner-entered (no shop signature)"
        return f"{self.status}: {self.detail}"


def check(body: Mapping[str, Any], registry: Ed25519PublicKey | None) -> ShopCheck:
    """Check the shop signature in an entry body (``registry``: a trusted registry key, or None
    to accept the registry key the entry names, which is then only self-consistent)."""
    sig = body.get("shop_sig")
    if sig is None:
        return ShopCheck(OWNER_ENTERED)
    if not isinstance(sig, Mapping) or not isinstance(sig.get("cert"), Mapping):
        return ShopCheck(BAD_SHOP_SIGNATURE, detail="the shop signature block is malformed")
    cert = sig["cert"]
    record = body.get("record")
    try:
        named_registry = public_from_hex(sig.get("registry_key"))
        shop_public = public_from_hex(cert.get("public_key"))
        message = content(record if isinstance(record, Mapping) else {},
                          int(sig.get("booking_id", -1)), str(sig.get("device", "")))
    except (TypeError, ValueError):
        return ShopCheck(FORGED_SHOP_KEY, detail="the shop or registry key is not a valid key")
    shop = str(cert.get("shop", ""))
    if registry is not None and _hex(registry) != _hex(named_registry):
        return ShopCheck(FORGED_SHOP_KEY, shop, f"the key of {shop!r} is certified by "
                         f"{fingerprint(named_registry)}, not the trusted registry key "
                         f"{fingerprint(registry)}")
    fields = {k: v for k, v in cert.items() if k != "signature"}
    if not _valid(named_registry, cert.get("signature"), CERT_DOMAIN + canonical(fields)):
        return ShopCheck(FORGED_SHOP_KEY, shop, f"the key certificate of {shop!r} is not "
                         "signed by the registry key")
    if not isinstance(record, Mapping) or record.get("shop") != shop:
        return ShopCheck(FORGED_SHOP_KEY, shop, f"the record names shop "
                         f"{(record or {}).get('shop') if isinstance(record, Mapping) else None!r}"
                         f" but the key belongs to {shop!r}")
    if not _valid(shop_public, sig.get("signature"), message):
        return ShopCheck(BAD_SHOP_SIGNATURE, shop, f"the signature of {shop!r} does not match "
                         "the record (altered after the shop signed it)")
    return ShopCheck(SHOP_SIGNED, shop, f"shop key {fingerprint(shop_public)[:19]}")
