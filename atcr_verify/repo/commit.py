"""Signed repository commits (repo format v3, and v2 for old data).

The signature covers the canonical DAG-CBOR encoding of the commit map without ``sig``. Commits
with fields this module does not know are rejected rather than preserved: we could only
re-encode them blindly, and nothing in atproto defines extra commit fields today.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..crypto import PublicKey
from ..errors import MalformedData
from . import dagcbor
from .cid import DAG_CBOR, Cid

# atproto DID syntax (method lowercase letters; no trailing ':' or '%'), at most 2 KiB.
_DID = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
_MAX_DID_LENGTH = 2048
# TID: 13 base32-sortable characters, top bit of the first one clear.
_TID = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")

_V3_FIELDS = frozenset({"did", "version", "data", "rev", "prev", "sig"})
_V2_FIELDS = frozenset({"did", "version", "data", "prev", "sig"})


@dataclass(frozen=True, slots=True)
class Commit:
    """A parsed commit. ``rev`` is None only for version 2 commits, which have no rev."""

    did: str
    version: int
    data: Cid
    rev: str | None
    prev: Cid | None
    sig: bytes

    def unsigned_bytes(self) -> bytes:
        """The exact bytes that were signed: the commit map without ``sig``.

        ``prev`` is kept even when null (it is a required, nullable field); ``rev`` exists only
        in version 3.
        """
        unsigned: dict[str, Any] = {
            "did": self.did,
            "version": self.version,
            "data": self.data,
            "prev": self.prev,
        }
        if self.version == 3:
            unsigned["rev"] = self.rev
        return dagcbor.encode(unsigned)


def is_valid_did(value: object) -> bool:
    """atproto DID syntax (generic: any method)."""
    return isinstance(value, str) and len(value) <= _MAX_DID_LENGTH and bool(_DID.fullmatch(value))


def parse_commit(block: bytes) -> Commit:
    """Decode and validate a commit block strictly (shape, types, DID and TID syntax).

    Raises :class:`CborError` for bad encoding, :class:`MalformedData` for a bad commit shape.
    """
    raw = dagcbor.decode(block, max_depth=2)
    if type(raw) is not dict:
        raise MalformedData("commit must be a DAG-CBOR map")
    version = raw.get("version")
    if type(version) is not int or version not in (2, 3):
        raise MalformedData(f"unsupported commit version {str(version)[:20]!r} (want 3 or 2)")
    fields = _V3_FIELDS if version == 3 else _V2_FIELDS
    if raw.keys() != fields:
        missing = sorted(fields - raw.keys())
        extra = [name[:40] for name in sorted(raw.keys() - fields)[:5]]
        raise MalformedData(f"commit v{version} fields: missing {missing}, unexpected {extra}")
    did = raw["did"]
    if not is_valid_did(did):
        raise MalformedData(f"commit did is not a valid DID: {str(did)[:80]!r}")
    data = raw["data"]
    if type(data) is not Cid or data.codec != DAG_CBOR:
        raise MalformedData("commit data must be a dag-cbor CID")
    prev = raw["prev"]
    if prev is not None and type(prev) is not Cid:
        raise MalformedData("commit prev must be a CID or null")
    rev = raw.get("rev")
    if version == 3 and (type(rev) is not str or not _TID.fullmatch(rev)):
        raise MalformedData(f"commit rev is not a TID: {str(rev)[:40]!r}")
    sig = raw["sig"]
    if type(sig) is not bytes:
        raise MalformedData("commit sig must be bytes")
    return Commit(did=did, version=version, data=data, rev=rev, prev=prev, sig=sig)


def verify_commit(commit: Commit, key: PublicKey) -> None:
    """Raise :class:`SignatureInvalid` unless ``key`` signed this commit."""
    key.verify(commit.unsigned_bytes(), commit.sig)
