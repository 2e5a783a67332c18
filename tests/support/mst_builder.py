"""A minimal, spec-following MST builder plus commit and CAR assembly, for tests only.

The builder is proven against the interop ``commit-proof-fixtures.json`` root CIDs, so proofs
built with it are real atproto proofs.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from atcr_verify.repo import dagcbor
from atcr_verify.repo.cid import Cid
from atcr_verify.repo.mst import common_prefix_len, key_height

from .keys import SigningKey

TID_CHARS = "234567abcdefghijklmnopqrstuvwxyz"


@dataclass
class MstBuild:
    root: Cid
    blocks: dict[Cid, bytes] = field(default_factory=dict)

    def node(self, cid: Cid) -> dict[str, Any]:
        value = dagcbor.decode(self.blocks[cid])
        assert isinstance(value, dict)
        return value


def put(blocks: dict[Cid, bytes], value: Any) -> Cid:
    data = dagcbor.encode(value)
    cid = Cid.for_block(data)
    blocks[cid] = data
    return cid


def node_value(left: Cid | None, entries: Iterable[tuple[bytes, Cid, Cid | None]]) -> Any:
    """An MST node map from full keys, compressing prefixes as the spec does."""
    out = []
    previous = b""
    for key, value, right in entries:
        prefix = common_prefix_len(previous, key)
        out.append({"k": key[prefix:], "p": prefix, "t": right, "v": value})
        previous = key
    return {"e": out, "l": left}


def build_mst(entries: Mapping[str, Cid]) -> MstBuild:
    """Build the canonical MST of ``entries`` (key -> value CID)."""
    blocks: dict[Cid, bytes] = {}
    items = sorted((key.encode(), value, key_height(key)) for key, value in entries.items())
    if not items:
        return MstBuild(put(blocks, {"e": [], "l": None}), blocks)
    top = max(height for _, _, height in items)
    return MstBuild(_build(items, top, blocks), blocks)


def _build(items: list[tuple[bytes, Cid, int]], height: int, blocks: dict[Cid, bytes]) -> Cid:
    left: list[tuple[bytes, Cid, int]] = []
    layer: list[tuple[bytes, Cid, list[tuple[bytes, Cid, int]]]] = []
    for key, value, key_h in items:
        if key_h == height:
            layer.append((key, value, []))
        elif layer:
            layer[-1][2].append((key, value, key_h))
        else:
            left.append((key, value, key_h))
    left_cid = _build(left, height - 1, blocks) if left else None
    entries = [
        (key, value, _build(right, height - 1, blocks) if right else None)
        for key, value, right in layer
    ]
    return put(blocks, node_value(left_cid, entries))


def search_path(build: MstBuild, key: str) -> list[Cid]:
    """The node CIDs a lookup of ``key`` visits: exactly what a getRecord proof carries."""
    target = key.encode()
    path: list[Cid] = []
    cid: Cid | None = build.root
    while cid is not None:
        path.append(cid)
        node = build.node(cid)
        following = node["l"]
        previous = b""
        found = False
        for entry in node["e"]:
            full = previous[: entry["p"]] + entry["k"]
            previous = full
            if full == target:
                found = True
                break
            if full > target:
                break
            following = entry["t"]
        if found:
            break
        cid = following
    return path


def random_tid(rng: random.Random) -> str:
    return rng.choice("234567abcdefghij") + "".join(rng.choice(TID_CHARS) for _ in range(12))


def sign_commit(
    key: SigningKey,
    did: str,
    data: Cid,
    *,
    rev: str | None = "3lbqzmbwhiq2c",
    prev: Cid | None = None,
    version: int = 3,
    high_s: bool = False,
    der: bool = False,
    signature: bytes | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Cid, bytes]:
    """Encode and sign a commit; the knobs produce deliberately broken ones."""
    unsigned: dict[str, Any] = {"did": did, "version": version, "data": data, "prev": prev}
    if rev is not None:
        unsigned["rev"] = rev
    if extra:
        unsigned.update(extra)
    message = dagcbor.encode(unsigned)
    if signature is None:
        signature = key.sign_der(message) if der else key.sign(message, high_s=high_s)
    block = dagcbor.encode({**unsigned, "sig": signature})
    return Cid.for_block(block), block


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def write_car(
    roots: list[Cid], blocks: Iterable[tuple[Cid, bytes]], *, header: Any = None
) -> bytes:
    """CAR v1 bytes; ``header`` overrides the header value for malformed-header tests."""
    head = dagcbor.encode({"roots": roots, "version": 1} if header is None else header)
    out = bytearray(varint(len(head)) + head)
    for cid, data in blocks:
        section = cid.encode() + data
        out += varint(len(section)) + section
    return bytes(out)


@dataclass
class Repo:
    """A signed repository built in memory, able to emit getRecord-style proof CARs."""

    did: str
    key: SigningKey
    records: dict[str, bytes]
    record_cids: dict[str, Cid]
    mst: MstBuild
    commit_cid: Cid
    commit_block: bytes

    def proof_blocks(self, key: str) -> list[tuple[Cid, bytes]]:
        blocks = [(self.commit_cid, self.commit_block)]
        blocks += [(cid, self.mst.blocks[cid]) for cid in search_path(self.mst, key)]
        if key in self.records:
            blocks.append((self.record_cids[key], self.records[key]))
        return blocks

    def proof_car(
        self,
        key: str,
        *,
        drop: Iterable[Cid] = (),
        extra: Iterable[tuple[Cid, bytes]] = (),
        shuffle: random.Random | None = None,
    ) -> bytes:
        dropped = set(drop)
        blocks = [item for item in self.proof_blocks(key) if item[0] not in dropped]
        blocks += list(extra)
        if shuffle is not None:
            shuffle.shuffle(blocks)
        return write_car([self.commit_cid], blocks)


def make_repo(
    key: SigningKey,
    did: str,
    records: Mapping[str, Any],
    **commit_options: Any,
) -> Repo:
    """Encode records, build their MST and sign a commit over it."""
    encoded = {name: dagcbor.encode(value) for name, value in records.items()}
    cids = {name: Cid.for_block(data) for name, data in encoded.items()}
    build = build_mst(cids)
    commit_cid, commit_block = sign_commit(key, did, build.root, **commit_options)
    return Repo(did, key, encoded, cids, build, commit_cid, commit_block)


def manifest_record(digest: str, repository: str = "alice/app") -> dict[str, Any]:
    """A plausible io.atcr.manifest record."""
    return {
        "$type": "io.atcr.manifest",
        "repository": repository,
        "digest": digest,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "schemaVersion": 2,
        "createdAt": "2025-01-01T00:00:00.000Z",
    }
