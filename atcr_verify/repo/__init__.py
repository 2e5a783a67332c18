"""atproto repository proofs: strict DAG-CBOR, CIDs, CAR v1, MST lookup, signed commits."""

from .car import Car, CarLimits, read_car
from .cid import DAG_CBOR, RAW, SHA2_256, Cid
from .commit import Commit, parse_commit, verify_commit
from .mst import MstLimits, find, key_height
from .proof import RecordProof, parse_at_uri, verify_record_proof

__all__ = [
    "DAG_CBOR",
    "RAW",
    "SHA2_256",
    "Car",
    "CarLimits",
    "Cid",
    "Commit",
    "MstLimits",
    "RecordProof",
    "find",
    "key_height",
    "parse_at_uri",
    "parse_commit",
    "read_car",
    "verify_commit",
    "verify_record_proof",
]
