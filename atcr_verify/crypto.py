"""atproto public keys and ECDSA signature verification (K-256 and P-256).

atproto signatures are 64-byte compact ``r||s`` over SHA-256, low-S on both curves. Libraries
differ on what they accept (OpenSSL takes high-S, both take DER), so every rule is checked here
before a library sees the signature.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import coincurve
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import KeyFormatError, SignatureInvalid

Curve = Literal["k256", "p256"]

_ORDER: dict[str, int] = {
    "k256": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    "p256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
}
_HALF_ORDER = {curve: n // 2 for curve, n in _ORDER.items()}

# Multicodec varints of the two key types, as they prefix a Multikey.
_K256_CODEC = b"\xe7\x01"  # secp256k1-pub 0xe7
_P256_CODEC = b"\x80\x24"  # p256-pub 0x1200

_LEGACY_TYPES: dict[str, Curve] = {
    "EcdsaSecp256k1VerificationKey2019": "k256",
    "EcdsaSecp256r1VerificationKey2019": "p256",
}

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
# A 65-byte key is ~89 base58 characters; anything far longer is garbage (and big-int work).
_MAX_MULTIBASE_CHARS = 128

_LibKey = coincurve.PublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A K-256 or P-256 public key as a 33-byte SEC1 compressed point (validated on creation)."""

    curve: Curve
    compressed: bytes

    def __post_init__(self) -> None:
        if self.curve not in _ORDER:
            raise KeyFormatError(f"unsupported curve {self.curve!r}")
        if type(self.compressed) is not bytes or len(self.compressed) != 33:
            raise KeyFormatError("public key must be a 33-byte compressed point")
        if self.compressed[0] not in (2, 3):
            raise KeyFormatError("public key is not a compressed point")
        _load_key(self.curve, self.compressed)

    def __repr__(self) -> str:
        return f"PublicKey({self.did_key()!r})"

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`SignatureInvalid` unless ``signature`` is a valid atproto signature."""
        if not isinstance(signature, bytes) or len(signature) != 64:
            raise SignatureInvalid("signature must be 64 bytes (compact r||s, not DER)")
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        order = _ORDER[self.curve]
        if not 0 < r < order or not 0 < s < order:
            raise SignatureInvalid("signature r or s out of range")
        if s > _HALF_ORDER[self.curve]:
            raise SignatureInvalid("high-S signature")
        digest = hashlib.sha256(message).digest()
        der = encode_dss_signature(r, s)
        key = _load_key(self.curve, self.compressed)
        if isinstance(key, coincurve.PublicKey):
            try:
                ok = bool(key.verify(der, digest, hasher=None))
            except ValueError:
                ok = False
        else:
            try:
                key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
                ok = True
            except InvalidSignature:
                ok = False
        if not ok:
            raise SignatureInvalid("signature does not verify")

    def multikey(self) -> str:
        """``z`` + base58btc(multicodec + compressed point): the DID document ``Multikey`` form."""
        codec = _K256_CODEC if self.curve == "k256" else _P256_CODEC
        return "z" + _b58encode(codec + self.compressed)

    def did_key(self) -> str:
        return "did:key:" + self.multikey()


@lru_cache(maxsize=256)
def _load_key(curve: Curve, compressed: bytes) -> _LibKey:
    """Parse (and so validate) a point once; verifications of the same key reuse it."""
    try:
        if curve == "k256":
            return coincurve.PublicKey(compressed)
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), compressed)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"{curve} public key is not a point on the curve") from exc


def _compress(curve: Curve, point: bytes) -> bytes:
    """Compress a 65-byte uncompressed SEC1 point, validating it on the way."""
    try:
        if curve == "k256":
            return bytes(coincurve.PublicKey(point).format(compressed=True))
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        return key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"{curve} public key is not a point on the curve") from exc


def _b58encode(data: bytes) -> str:
    value = int.from_bytes(data, "big")
    out = []
    while value:
        value, rem = divmod(value, 58)
        out.append(_B58_ALPHABET[rem])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(out))


def _b58decode(text: str) -> bytes:
    value = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise KeyFormatError("invalid base58btc character")
        value = value * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return b"\x00" * zeros + body


def _decode_multibase(value: object) -> bytes:
    """Strict ``z`` (base58btc) multibase: the only base atproto keys use."""
    if not isinstance(value, str):
        raise KeyFormatError("multibase key must be a string")
    if len(value) < 2 or value[0] != "z":
        raise KeyFormatError("key must be multibase base58btc ('z' prefix)")
    if len(value) > _MAX_MULTIBASE_CHARS:
        raise KeyFormatError("multibase key is too long")
    return _b58decode(value[1:])


def parse_multikey(value: str) -> PublicKey:
    """Parse a ``Multikey`` ``publicKeyMultibase`` (compressed point with a multicodec prefix)."""
    raw = _decode_multibase(value)
    prefix, key = raw[:2], raw[2:]
    curve: Curve
    if prefix == _K256_CODEC:
        curve = "k256"
    elif prefix == _P256_CODEC:
        curve = "p256"
    else:
        raise KeyFormatError("unsupported multikey codec (want secp256k1-pub or p256-pub)")
    if len(key) != 33:
        raise KeyFormatError(f"multikey must hold a 33-byte compressed point, got {len(key)}")
    return PublicKey(curve, key)


def parse_did_key(value: str) -> PublicKey:
    """Parse ``did:key:z...`` into a key."""
    if not isinstance(value, str) or not value.startswith("did:key:"):
        raise KeyFormatError("not a did:key")
    return parse_multikey(value[len("did:key:") :])


def parse_legacy_key(method_type: str, public_key_multibase: str) -> PublicKey:
    """Parse a legacy ``EcdsaSecp256{k,r}1VerificationKey2019`` key (no codec prefix).

    The published form is the 65-byte uncompressed point; 33-byte compressed is accepted too.
    """
    curve = _LEGACY_TYPES.get(method_type) if isinstance(method_type, str) else None
    if curve is None:
        raise KeyFormatError(f"unsupported legacy key type {str(method_type)[:60]!r}")
    raw = _decode_multibase(public_key_multibase)
    if len(raw) == 65 and raw[0] == 4:
        return PublicKey(curve, _compress(curve, raw))
    if len(raw) == 33:
        return PublicKey(curve, raw)
    raise KeyFormatError(f"legacy key must be a 65- or 33-byte SEC1 point, got {len(raw)} bytes")
