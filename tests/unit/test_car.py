"""CAR v1 reader: strict header, hash-checked blocks, limits, truncation."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atcr_verify.errors import CarError, CidError, LimitExceeded, VerifyError
from atcr_verify.repo import dagcbor
from atcr_verify.repo.car import CarLimits, read_car
from atcr_verify.repo.cid import RAW, Cid
from tests.support.mst_builder import varint, write_car

BLOCK_A = dagcbor.encode({"a": 1})
BLOCK_B = dagcbor.encode({"b": [1, 2, 3]})
CID_A = Cid.for_block(BLOCK_A)
CID_B = Cid.for_block(BLOCK_B)
GOOD = write_car([CID_A], [(CID_A, BLOCK_A), (CID_B, BLOCK_B)])


def section(cid_bytes: bytes, data: bytes) -> bytes:
    return varint(len(cid_bytes) + len(data)) + cid_bytes + data


def header(value: object) -> bytes:
    head = dagcbor.encode(value)
    return varint(len(head)) + head


def test_reads_blocks_and_root() -> None:
    car = read_car(GOOD)
    assert car.root == CID_A
    assert dict(car.blocks) == {CID_A: BLOCK_A, CID_B: BLOCK_B}


def test_blocks_are_read_only() -> None:
    car = read_car(GOOD)
    with pytest.raises(TypeError):
        car.blocks[CID_A] = b""  # type: ignore[index]


def test_block_order_free_and_root_block_optional() -> None:
    car = read_car(write_car([CID_A], [(CID_B, BLOCK_B)]))
    assert car.root == CID_A
    assert CID_A not in car.blocks  # the proof layer decides that a missing root is fatal


def test_duplicate_identical_blocks_tolerated() -> None:
    car = read_car(write_car([CID_A], [(CID_A, BLOCK_A), (CID_A, BLOCK_A)]))
    assert dict(car.blocks) == {CID_A: BLOCK_A}


def test_raw_blocks_accepted() -> None:
    raw = Cid.for_block(b"blob", RAW)
    assert read_car(write_car([CID_A], [(raw, b"blob")])).blocks[raw] == b"blob"


def test_empty_block_accepted_if_it_hashes() -> None:
    empty = Cid.for_block(b"", RAW)
    assert read_car(write_car([CID_A], [(empty, b"")])).blocks[empty] == b""


def test_accepts_bytearray_and_memoryview() -> None:
    assert read_car(bytearray(GOOD)).root == CID_A
    assert read_car(memoryview(GOOD)).root == CID_A


def test_block_hash_mismatch() -> None:
    with pytest.raises(CidError, match="does not hash"):
        read_car(write_car([CID_A], [(CID_A, BLOCK_B)]))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"roots": [CID_A, CID_B], "version": 1}, id="two-roots"),
        pytest.param({"roots": [], "version": 1}, id="no-roots"),
        pytest.param({"roots": CID_A, "version": 1}, id="roots-not-list"),
        pytest.param({"roots": [CID_A], "version": 2}, id="version-2"),
        pytest.param({"roots": [CID_A], "version": True}, id="version-true"),
        pytest.param({"roots": [CID_A], "version": "1"}, id="version-string"),
        pytest.param({"roots": [CID_A]}, id="no-version"),
        pytest.param({"version": 1}, id="no-roots-key"),
        pytest.param({"roots": [CID_A], "version": 1, "x": 0}, id="extra-key"),
        pytest.param({"roots": [b"x"], "version": 1}, id="root-not-cid"),
        pytest.param({"roots": [Cid.for_block(b"x", RAW)], "version": 1}, id="root-raw"),
        pytest.param([CID_A], id="not-a-map"),
        pytest.param({"roots": [[CID_A]], "version": 1}, id="nested-root"),
    ],
)
def test_bad_headers(value: object) -> None:
    with pytest.raises(CarError):
        read_car(header(value) + section(CID_A.encode(), BLOCK_A))


def test_carv2_pragma_rejected() -> None:
    pragma = bytes.fromhex("0aa16776657273696f6e02")
    with pytest.raises(CarError, match="version"):
        read_car(pragma + bytes(40))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00", id="zero-header"),
        pytest.param(b"\x80", id="truncated-varint"),
        pytest.param(b"\x80\x00", id="non-minimal-varint"),
        pytest.param(b"\xff" * 10, id="ten-byte-varint"),
        pytest.param(b"\x05\xa0", id="truncated-header"),
        pytest.param(b"\x01\x00\x00", id="header-not-map"),
        pytest.param(b"\xff\xff\x03" + bytes(10), id="huge-header"),
        pytest.param(header({"roots": [CID_A], "version": 1}) + b"\x00", id="zero-section"),
        pytest.param(header({"roots": [CID_A], "version": 1}) + b"\x81\x00", id="non-minimal-len"),
        pytest.param(header({"roots": [CID_A], "version": 1}) + b"\x10" + bytes(5), id="cut-block"),
        pytest.param(GOOD[:-1], id="truncated-last-block"),
        pytest.param(GOOD + b"\x80", id="truncated-trailing-varint"),
    ],
)
def test_malformed_framing(data: bytes) -> None:
    with pytest.raises(CarError):
        read_car(data)


def test_section_shorter_than_a_cid() -> None:
    with pytest.raises(CidError):
        read_car(header({"roots": [CID_A], "version": 1}) + b"\x05" + bytes(5))
    with pytest.raises(CidError, match="36 bytes"):
        read_car(header({"roots": [CID_A], "version": 1}) + section(CID_A.encode()[:30], b""))


def test_header_must_be_strict_dag_cbor() -> None:
    head = b"\xa2\x67version\x01\x65roots\x81\xd8\x2a\x58\x25\x00" + CID_A.encode()  # unsorted
    with pytest.raises(CarError, match="strict DAG-CBOR"):
        read_car(varint(len(head)) + head)


@pytest.mark.parametrize(
    "cid_bytes",
    [
        pytest.param(b"\x12\x20" + hashlib.sha256(BLOCK_A).digest(), id="cidv0"),
        pytest.param(b"\x01\x70\x12\x20" + hashlib.sha256(BLOCK_A).digest(), id="dag-pb"),
        pytest.param(b"\x01\x71\x13\x40" + hashlib.sha512(BLOCK_A).digest(), id="sha512"),
        pytest.param(b"\x01\x71\x00\x05" + BLOCK_A[:5], id="identity-hash"),
    ],
)
def test_non_blessed_block_cids_rejected(cid_bytes: bytes) -> None:
    data = header({"roots": [CID_A], "version": 1}) + section(cid_bytes, BLOCK_A)
    with pytest.raises(CidError):
        read_car(data)


def test_every_truncation_is_an_error_or_a_shorter_car() -> None:
    boundaries = set()
    position = 0
    for item in (
        header({"roots": [CID_A], "version": 1}),
        section(CID_A.encode(), BLOCK_A),
        section(CID_B.encode(), BLOCK_B),
    ):
        position += len(item)
        boundaries.add(position)
    for cut in range(len(GOOD)):
        if cut in boundaries:
            assert read_car(GOOD[:cut]).root == CID_A
        else:
            with pytest.raises(CarError):
                read_car(GOOD[:cut])


def test_size_limit() -> None:
    with pytest.raises(LimitExceeded):
        read_car(GOOD, CarLimits(max_bytes=len(GOOD) - 1))
    assert read_car(GOOD, CarLimits(max_bytes=len(GOOD))).root == CID_A


def test_block_count_limit() -> None:
    with pytest.raises(LimitExceeded):
        read_car(GOOD, CarLimits(max_blocks=1))
    assert len(read_car(GOOD, CarLimits(max_blocks=2)).blocks) == 2
    duplicated = write_car([CID_A], [(CID_A, BLOCK_A)] * 3)
    with pytest.raises(LimitExceeded):  # duplicates still cost work: they count
        read_car(duplicated, CarLimits(max_blocks=2))


def test_block_size_limit() -> None:
    big = dagcbor.encode(b"x" * 2000)
    cid = Cid.for_block(big)
    data = write_car([cid], [(cid, big)])
    with pytest.raises(LimitExceeded):
        read_car(data, CarLimits(max_block_bytes=1000))
    assert read_car(data, CarLimits(max_block_bytes=len(big))).blocks[cid] == big


def test_huge_declared_section_length() -> None:
    data = header({"roots": [CID_A], "version": 1}) + varint(2**62) + CID_A.encode()
    with pytest.raises(LimitExceeded):
        read_car(data)
    with pytest.raises(CarError):
        read_car(data, CarLimits(max_block_bytes=2**63))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(VerifyError):
        read_car(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_cars(data: st.DataObject) -> None:
    raw = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            raw[index] = data.draw(st.integers(0, 255))
        elif action == "insert":
            raw.insert(index, data.draw(st.integers(0, 255)))
        elif len(raw) > 1:
            del raw[index]
    try:
        car = read_car(bytes(raw))
    except VerifyError:
        return
    for cid, block in car.blocks.items():
        cid.verify_block(block)
