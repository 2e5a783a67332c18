"""Signing keys for tests: the verifier core only ever verifies, tests must also forge."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import coincurve
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from atcr_verify.crypto import Curve, PublicKey

ORDER = {
    "k256": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    "p256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
}


@dataclass(frozen=True)
class SigningKey:
    """A K-256 or P-256 private key that makes compact signatures, low-S or deliberately not."""

    curve: Curve
    secret: bytes

    @classmethod
    def from_secret(cls, curve: Curve, secret: bytes) -> SigningKey:
        value = int.from_bytes(secret, "big")
        if not 0 < value < ORDER[curve]:
            raise ValueError("secret out of range")
        return cls(curve, secret)

    @classmethod
    def from_seed(cls, curve: Curve, seed: str) -> SigningKey:
        """Deterministic key for reproducible tests."""
        value = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big") % ORDER[curve]
        return cls(curve, max(value, 1).to_bytes(32, "big"))

    @classmethod
    def generate(cls, curve: Curve) -> SigningKey:
        if curve == "k256":
            return cls(curve, coincurve.PrivateKey().secret)
        private = ec.generate_private_key(ec.SECP256R1())
        return cls(curve, private.private_numbers().private_value.to_bytes(32, "big"))

    def _p256(self) -> ec.EllipticCurvePrivateKey:
        return ec.derive_private_key(int.from_bytes(self.secret, "big"), ec.SECP256R1())

    @property
    def public(self) -> PublicKey:
        if self.curve == "k256":
            point = coincurve.PrivateKey(self.secret).public_key.format(compressed=True)
        else:
            point = (
                self._p256().public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
            )
        return PublicKey(self.curve, bytes(point))

    def uncompressed_public(self) -> bytes:
        """65-byte SEC1 point: the legacy DID-document key encoding."""
        if self.curve == "k256":
            return bytes(coincurve.PrivateKey(self.secret).public_key.format(compressed=False))
        return self._p256().public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def sign_rs(self, message: bytes) -> tuple[int, int]:
        """ECDSA over sha256(message), normalized to low-S."""
        if self.curve == "k256":
            der = coincurve.PrivateKey(self.secret).sign(message)
        else:
            der = self._p256().sign(message, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        order = ORDER[self.curve]
        if s > order // 2:
            s = order - s
        return r, s

    def sign(self, message: bytes, *, high_s: bool = False) -> bytes:
        """64-byte compact r||s; ``high_s`` flips s to n - s (valid ECDSA, invalid atproto)."""
        r, s = self.sign_rs(message)
        if high_s:
            s = ORDER[self.curve] - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def sign_der(self, message: bytes) -> bytes:
        """A low-S signature in DER: valid ECDSA, not an atproto signature."""
        r, s = self.sign_rs(message)
        return encode_dss_signature(r, s)
