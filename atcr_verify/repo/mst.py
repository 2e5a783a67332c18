"""Merkle Search Tree lookup that proves inclusion or absence of one key.

Only the nodes on the search path are read. Each one is validated structurally (shape, key
syntax, order, canonical prefix compression, heights, bounds inherited from the parent) so a
walk over a malformed tree fails instead of answering. A node missing from the block map makes
the proof incomplete, which is an error, never a proof of absence.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import CborError, LimitExceeded, MstError
from . import dagcbor
from .cid import DAG_CBOR, Cid

_KEY = re.compile(rb"[A-Za-z0-9_~.:-]+/[A-Za-z0-9_~.:-]+")
_ENTRY_FIELDS = frozenset({"k", "p", "t", "v"})

_Entry = tuple[bytes, Cid, "Cid | None"]  # full key, value, right subtree


@dataclass(frozen=True)
class MstLimits:
    """Bounds against key-mined or hostile trees."""

    max_depth: int = 32
    max_entries_per_node: int = 1024
    max_key_bytes: int = 1024


def key_height(key: bytes | str) -> int:
    """MST layer of a key: leading zero bits of sha256(key), two per layer (fanout 4)."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    digest = hashlib.sha256(key).digest()
    return (256 - int.from_bytes(digest, "big").bit_length()) // 2


def common_prefix_len(left: bytes, right: bytes) -> int:
    """Length of the shared prefix of two keys (the ``p`` of prefix compression)."""
    limit = min(len(left), len(right))
    index = 0
    while index < limit and left[index] == right[index]:
        index += 1
    return index


def find(
    blocks: Mapping[Cid, bytes],
    root: Cid,
    key: str,
    limits: MstLimits = MstLimits(),
) -> Cid | None:
    """Return the value CID stored under ``key``, or None if the tree proves it absent."""
    target = _lookup_key(key, limits)
    cid: Cid = root
    expected: int | None = None  # height the next node must have; unknown for the root
    low: bytes | None = None  # exclusive key bounds inherited from the parent entries
    high: bytes | None = None
    for _ in range(limits.max_depth):
        left, entries = _load_node(blocks, cid, limits)
        if entries:
            height = key_height(entries[0][0])
            for entry in entries[1:]:
                if key_height(entry[0]) != height:
                    raise MstError(f"MST node {cid} mixes keys of different heights")
            if expected is not None and height != expected:
                raise MstError(f"MST node {cid} is at height {height}, expected {expected}")
        elif expected is None:
            if left is not None:
                raise MstError("MST root is an empty node pointing to a subtree")
            return None  # the empty repository
        elif left is None:
            raise MstError(f"MST node {cid} is empty and has no subtree")
        else:
            height = expected
        if height == 0 and (left is not None or any(entry[2] is not None for entry in entries)):
            raise MstError(f"MST node {cid} at height 0 has subtrees")
        if entries and (
            (low is not None and entries[0][0] <= low)
            or (high is not None and entries[-1][0] >= high)
        ):
            raise MstError(f"MST node {cid} holds keys outside its parent's range")

        next_cid = left
        next_low, next_high = low, high
        for entry_key, value, right in entries:
            if entry_key == target:
                return value
            if entry_key > target:
                next_high = entry_key
                break
            next_cid, next_low = right, entry_key
        if next_cid is None:
            return None
        cid, low, high, expected = next_cid, next_low, next_high, height - 1
    raise LimitExceeded(f"MST deeper than {limits.max_depth} levels")


def _lookup_key(key: str, limits: MstLimits) -> bytes:
    if not isinstance(key, str):
        raise MstError("MST key must be a string")
    raw = key.encode("utf-8", "surrogatepass")
    if len(raw) > limits.max_key_bytes or not _KEY.fullmatch(raw):
        raise MstError(f"invalid MST key {key[:80]!r} (want collection/rkey)")
    return raw


def _load_node(
    blocks: Mapping[Cid, bytes], cid: Cid, limits: MstLimits
) -> tuple[Cid | None, list[_Entry]]:
    """Fetch, decode and validate one node; return its left link and (full key, v, t) entries."""
    raw = blocks.get(cid)
    if raw is None:
        raise MstError(f"proof incomplete: MST node {cid} is missing from the CAR")
    if cid.codec != DAG_CBOR:
        raise MstError(f"MST node link {cid} is not dag-cbor")
    try:
        node = dagcbor.decode(raw, max_depth=3)
    except CborError as exc:
        raise MstError(f"MST node {cid} is not strict DAG-CBOR: {exc.reason}") from None
    if type(node) is not dict or len(node) != 2 or "e" not in node or "l" not in node:
        raise MstError(f"MST node {cid} must be a map of exactly e and l")
    raw_entries = node["e"]
    left = node["l"]
    if type(raw_entries) is not list:
        raise MstError(f"MST node {cid}: e must be an array")
    if len(raw_entries) > limits.max_entries_per_node:
        raise LimitExceeded(
            f"MST node {cid} has {len(raw_entries)} entries, limit {limits.max_entries_per_node}"
        )
    _check_link(left, cid, "l")

    entries: list[_Entry] = []
    previous = b""
    for raw_entry in raw_entries:
        if type(raw_entry) is not dict or raw_entry.keys() != _ENTRY_FIELDS:
            raise MstError(f"MST node {cid}: entries must be maps of exactly k, p, t, v")
        suffix = raw_entry["k"]
        prefix_len = raw_entry["p"]
        right = raw_entry["t"]
        value = raw_entry["v"]
        if type(suffix) is not bytes:
            raise MstError(f"MST node {cid}: k must be bytes")
        if type(prefix_len) is not int or not 0 <= prefix_len <= len(previous):
            raise MstError(f"MST node {cid}: p must be an integer within the previous key")
        if type(value) is not Cid:
            raise MstError(f"MST node {cid}: v must be a CID")
        _check_link(right, cid, "t")
        if prefix_len < len(previous) and suffix and suffix[0] == previous[prefix_len]:
            raise MstError(f"MST node {cid}: key prefix compression is not maximal")
        full = previous[:prefix_len] + suffix
        if len(full) > limits.max_key_bytes or not _KEY.fullmatch(full):
            raise MstError(f"MST node {cid}: invalid key {full[:80]!r}")
        if entries and full <= previous:
            raise MstError(f"MST node {cid}: keys are not strictly ascending")
        entries.append((full, value, right))
        previous = full
    return left, entries


def _check_link(link: object, cid: Cid, field: str) -> None:
    if link is None:
        return
    if type(link) is not Cid:
        raise MstError(f"MST node {cid}: {field} must be a CID or null")
    if link.codec != DAG_CBOR:
        raise MstError(f"MST node {cid}: {field} must link a dag-cbor node")
