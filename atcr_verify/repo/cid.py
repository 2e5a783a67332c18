"""Blessed atproto CIDs: CIDv1, sha2-256, 32-byte digest, dag-cbor or raw codec.

Only this one shape is accepted anywhere in a proof, so binary CIDs are parsed by comparing a
fixed 4-byte prefix instead of decoding general multiformats varints.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from ..errors import CidError

DAG_CBOR = 0x71
RAW = 0x55
SHA2_256 = 0x12

_CID_LEN = 36
_DIGEST_LEN = 32
_PREFIXES = {
    DAG_CBOR: bytes([0x01, DAG_CBOR, SHA2_256, _DIGEST_LEN]),
    RAW: bytes([0x01, RAW, SHA2_256, _DIGEST_LEN]),
}
_CODECS = {prefix: codec for codec, prefix in _PREFIXES.items()}
_B32_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_STR_LEN = 1 + 58  # 'b' + ceil(36 * 8 / 5)


@dataclass(frozen=True, slots=True)
class Cid:
    """A content identifier in blessed form. Hashable and cheap: used as block-map keys."""

    codec: int
    digest: bytes

    def __post_init__(self) -> None:
        if self.codec not in _PREFIXES:
            raise CidError(f"unsupported CID codec 0x{self.codec:x} (want dag-cbor or raw)")
        if type(self.digest) is not bytes or len(self.digest) != _DIGEST_LEN:
            raise CidError("CID digest must be 32 bytes of sha2-256")

    @classmethod
    def decode(cls, data: bytes) -> Cid:
        """Parse a binary CID that must span ``data`` exactly."""
        if len(data) != _CID_LEN:
            if bytes(data[:4]) not in _CODECS:
                raise _explain(bytes(data[:4]))
            raise CidError(f"binary CID must be {_CID_LEN} bytes, got {len(data)}")
        cid, _ = cls.decode_prefix(data, 0)
        return cid

    @classmethod
    def decode_prefix(cls, data: bytes, offset: int = 0) -> tuple[Cid, int]:
        """Parse a binary CID at ``offset``; return it and the offset just past it."""
        end = offset + _CID_LEN
        codec = _CODECS.get(bytes(data[offset : offset + 4]))
        if codec is None:
            raise _explain(bytes(data[offset : offset + 4]))
        if end > len(data):
            raise CidError("truncated CID")
        return _make(codec, bytes(data[offset + 4 : end])), end

    @classmethod
    def parse(cls, text: str) -> Cid:
        """Parse the string form: ``b`` + lowercase base32 without padding."""
        if not isinstance(text, str) or len(text) != _STR_LEN or text[0] != "b":
            raise CidError("CID string must be 'b' + 58 lowercase base32 characters")
        body = text[1:]
        if not _B32_CHARS.issuperset(body):
            raise CidError("CID string has characters outside lowercase base32")
        raw = base64.b32decode(body.upper() + "======")
        cid = cls.decode(raw)
        if str(cid) != text:  # non-zero trailing bits: a second spelling of the same CID
            raise CidError("CID string is not canonical base32")
        return cid

    @classmethod
    def for_block(cls, data: bytes, codec: int = DAG_CBOR) -> Cid:
        """The CID of ``data`` hashed with sha2-256."""
        return cls(codec, hashlib.sha256(data).digest())

    def encode(self) -> bytes:
        return _PREFIXES[self.codec] + self.digest

    def verify_block(self, data: bytes) -> None:
        """Raise :class:`CidError` unless ``data`` hashes to this CID."""
        if hashlib.sha256(data).digest() != self.digest:
            raise CidError(f"block does not hash to its CID {self}")

    def __str__(self) -> str:
        return "b" + base64.b32encode(self.encode()).decode("ascii").lower().rstrip("=")

    def __repr__(self) -> str:
        return f"Cid({self})"


_new = object.__new__
_set = object.__setattr__


def _make(codec: int, digest: bytes) -> Cid:
    """Build an already-validated Cid without ``__post_init__`` (hot path of every decoder)."""
    cid = _new(Cid)
    _set(cid, "codec", codec)
    _set(cid, "digest", digest)
    return cid


def _explain(prefix: bytes) -> CidError:
    """A precise error for a 4-byte prefix that is not a blessed CID's."""
    if not prefix:
        return CidError("empty or truncated CID")
    if prefix[0] == 0x12:
        return CidError("CIDv0 is not accepted")
    if prefix[0] != 0x01:
        return CidError(f"unsupported CID version byte 0x{prefix[0]:02x}")
    if len(prefix) < 2:
        return CidError("truncated CID")
    if prefix[1] not in (DAG_CBOR, RAW):
        return CidError("unsupported CID codec (want dag-cbor or raw)")
    if len(prefix) < 3:
        return CidError("truncated CID")
    if prefix[2] != SHA2_256:
        return CidError("unsupported CID hash (want sha2-256)")
    if len(prefix) < 4:
        return CidError("truncated CID")
    return CidError("CID digest must be 32 bytes of sha2-256")
