"""Verify a ``com.atproto.sync.getRecord`` CAR: the DID's signed commit includes the record.

Order matters: the CAR reader has hash-checked every block, the commit is checked against the
DID and its current key before the MST is walked, and only then is the record decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..crypto import PublicKey
from ..errors import CarError, IdentityMismatch, MalformedData, MstError, RecordNotFound
from . import dagcbor
from .car import CarLimits, read_car
from .cid import DAG_CBOR, Cid
from .commit import Commit, is_valid_did, parse_commit, verify_commit
from .mst import MstLimits, find

# atproto NSID: reversed domain (>= 2 segments) + name (letters/digits, starting with a letter).
_NSID = re.compile(
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+"
    r"\.[a-zA-Z][a-zA-Z0-9]{0,62}"
)
_MAX_NSID_LENGTH = 317
_RKEY = re.compile(r"[A-Za-z0-9._:~-]{1,512}")
_MAX_AT_URI_LENGTH = 8 * 1024


@dataclass(frozen=True)
class RecordProof:
    """What a verified proof establishes: this commit by the DID holds this exact record."""

    commit_cid: Cid
    commit: Commit
    record_cid: Cid
    record: dict[str, Any]
    record_bytes: bytes


def is_valid_nsid(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) <= _MAX_NSID_LENGTH and bool(_NSID.fullmatch(value))
    )


def is_valid_rkey(value: object) -> bool:
    return isinstance(value, str) and value not in (".", "..") and bool(_RKEY.fullmatch(value))


def parse_at_uri(uri: str) -> tuple[str, str, str]:
    """Split ``at://did/collection/rkey`` into (did, collection, rkey), validating each part.

    Only DID authorities are accepted (a handle would need resolving and proves nothing), and
    the URI must name one record: no query, fragment or trailing path.
    """
    if not isinstance(uri, str) or len(uri) > _MAX_AT_URI_LENGTH:
        raise MalformedData("at-uri must be a string of at most 8 KiB")
    if not uri.startswith("at://"):
        raise MalformedData(f"not an at:// URI: {uri[:80]!r}")
    parts = uri[len("at://") :].split("/")
    if len(parts) != 3:
        raise MalformedData(f"at-uri must be at://did/collection/rkey: {uri[:80]!r}")
    authority, collection, rkey = parts
    if not is_valid_did(authority):
        raise MalformedData(f"at-uri authority must be a DID: {authority[:80]!r}")
    if not is_valid_nsid(collection):
        raise MalformedData(f"at-uri collection is not an NSID: {collection[:80]!r}")
    if not is_valid_rkey(rkey):
        raise MalformedData(f"at-uri record key is invalid: {rkey[:80]!r}")
    return authority, collection, rkey


def verify_record_proof(
    car_bytes: bytes,
    *,
    did: str,
    collection: str,
    rkey: str,
    key: PublicKey,
    car_limits: CarLimits = CarLimits(),  # noqa: B008
    mst_limits: MstLimits = MstLimits(),  # noqa: B008
) -> RecordProof:
    """Prove that ``did``'s current signed commit holds ``collection/rkey``; return the record.

    Raises :class:`RecordNotFound` when the tree proves the record absent (deleted = revoked),
    :class:`IdentityMismatch` for another DID's commit, :class:`SignatureInvalid` when ``key``
    did not sign it, and a :class:`MalformedData` subclass for any broken or incomplete proof.
    """
    if not is_valid_nsid(collection):
        raise MalformedData(f"collection is not an NSID: {str(collection)[:80]!r}")
    if not is_valid_rkey(rkey):
        raise MalformedData(f"invalid record key: {str(rkey)[:80]!r}")
    car = read_car(car_bytes, car_limits)
    commit_block = car.blocks.get(car.root)
    if commit_block is None:
        raise CarError(f"CAR does not contain its root commit block {car.root}")
    commit = parse_commit(commit_block)
    if commit.did != did:
        raise IdentityMismatch(f"commit belongs to {commit.did[:80]}, expected {did[:80]}")
    verify_commit(commit, key)

    record_cid = find(car.blocks, commit.data, f"{collection}/{rkey}", mst_limits)
    if record_cid is None:
        raise RecordNotFound(
            f"record {collection}/{rkey} is not in the repository at commit {car.root} "
            "(deleted or never existed)"
        )
    record_bytes = car.blocks.get(record_cid)
    if record_bytes is None:
        raise MstError(f"proof incomplete: record block {record_cid} is missing from the CAR")
    if record_cid.codec != DAG_CBOR:
        raise MalformedData(f"record {record_cid} is not dag-cbor")
    record = dagcbor.decode(record_bytes)
    if type(record) is not dict:
        raise MalformedData("record must be a DAG-CBOR map")
    return RecordProof(
        commit_cid=car.root,
        commit=commit,
        record_cid=record_cid,
        record=record,
        record_bytes=record_bytes,
    )
