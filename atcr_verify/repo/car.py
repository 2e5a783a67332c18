"""CAR v1 reader for atproto proofs: one root, blessed CIDs, every block hash-checked on read.

Everything downstream (commit, MST, record) trusts a block only because its bytes hash to the
CID it is stored under, so that check happens here, once, for every block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import CarError, CborError, LimitExceeded
from . import dagcbor
from .cid import _CID_LEN, DAG_CBOR, Cid

_MAX_VARINT_BYTES = 9  # multiformats unsigned-varint limit
_MAX_HEADER_BYTES = 1024  # one root CID and a version: ~60 bytes


@dataclass(frozen=True)
class CarLimits:
    """Hard bounds on an untrusted CAR (a getRecord proof is a few KB)."""

    max_bytes: int = 4 * 1024 * 1024
    max_blocks: int = 512
    max_block_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class Car:
    """A parsed CAR: its single root and its hash-verified blocks."""

    root: Cid
    blocks: Mapping[Cid, bytes]


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Strict unsigned varint: at most 9 bytes, minimally encoded."""
    value = 0
    shift = 0
    n = len(data)
    for index in range(_MAX_VARINT_BYTES):
        if pos >= n:
            raise CarError("truncated CAR (inside a length varint)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and index > 0:
                raise CarError("non-minimal varint in CAR")
            return value, pos
        shift += 7
    raise CarError("CAR varint longer than 9 bytes")


def read_car(data: bytes, limits: CarLimits = CarLimits()) -> Car:
    """Parse a CAR v1 stream, verifying every block against its CID.

    Duplicate blocks are tolerated (their content is identical by construction: same hash),
    block order is free, and blocks unrelated to the root are kept but harmless.
    """
    if not isinstance(data, bytes):
        if not isinstance(data, bytearray | memoryview):
            raise CarError("CAR input must be bytes")
        data = bytes(data)
    n = len(data)
    if n > limits.max_bytes:
        raise LimitExceeded(f"CAR is {n} bytes, limit {limits.max_bytes}")
    if n == 0:
        raise CarError("empty CAR")

    header_len, pos = _read_varint(data, 0)
    if header_len == 0:
        raise CarError("zero-length CAR header")
    if header_len > _MAX_HEADER_BYTES:
        raise CarError(f"CAR header of {header_len} bytes is implausibly large")
    if pos + header_len > n:
        raise CarError("truncated CAR header")
    root = _parse_header(data[pos : pos + header_len])
    pos += header_len

    blocks: dict[Cid, bytes] = {}
    sections = 0
    while pos < n:
        section_len, pos = _read_varint(data, pos)
        if section_len == 0:
            raise CarError("zero-length CAR section")
        if section_len > limits.max_block_bytes + _CID_LEN:
            raise LimitExceeded(f"CAR block of {section_len} bytes, limit {limits.max_block_bytes}")
        end = pos + section_len
        if end > n:
            raise CarError("truncated CAR block")
        sections += 1
        if sections > limits.max_blocks:
            raise LimitExceeded(f"CAR has more than {limits.max_blocks} blocks")
        if section_len < _CID_LEN:
            Cid.decode(data[pos:end])  # raises the precise CidError for this short section
            raise CarError("CAR section too short to hold a CID")
        cid, start = Cid.decode_prefix(data, pos)
        block = data[start:end]
        cid.verify_block(block)
        blocks.setdefault(cid, block)
        pos = end
    return Car(root=root, blocks=MappingProxyType(blocks))


def _parse_header(raw: bytes) -> Cid:
    try:
        header = dagcbor.decode(raw, max_depth=2)
    except CborError as exc:
        raise CarError(f"CAR header is not strict DAG-CBOR: {exc.reason}") from None
    if not isinstance(header, dict) or set(header) != {"roots", "version"}:
        raise CarError("CAR header must be exactly {roots, version}")
    version = header["version"]
    if type(version) is not int or version != 1:
        raise CarError(f"unsupported CAR version {str(version)[:20]!r} (want 1)")
    roots = header["roots"]
    if not isinstance(roots, list) or len(roots) != 1:
        raise CarError("atproto CAR must have exactly one root")
    root = roots[0]
    if not isinstance(root, Cid) or root.codec != DAG_CBOR:
        raise CarError("CAR root must be a dag-cbor CID")
    return root
