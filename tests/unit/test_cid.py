"""Blessed CIDs: binary and string forms, hashing, and everything that is not blessed."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atcr_verify.errors import CidError, VerifyError
from atcr_verify.repo.cid import DAG_CBOR, RAW, Cid
from tests.support import vector_params

KNOWN = "bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a"
BLOB = "bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity"


def test_parse_and_format_round_trip() -> None:
    cid = Cid.parse(KNOWN)
    assert cid.codec == DAG_CBOR
    assert str(cid) == KNOWN
    assert Cid.decode(cid.encode()) == cid
    assert cid.encode()[:4] == b"\x01\x71\x12\x20"
    assert repr(cid) == f"Cid({KNOWN})"
    blob = Cid.parse(BLOB)
    assert blob.codec == RAW
    assert str(blob) == BLOB


def test_for_block_and_verify() -> None:
    data = b"\xa1\x61\x61\x01"
    cid = Cid.for_block(data)
    assert cid.digest == hashlib.sha256(data).digest()
    cid.verify_block(data)
    with pytest.raises(CidError, match="does not hash"):
        cid.verify_block(data + b"\x00")
    assert Cid.for_block(data, RAW).codec == RAW


def test_hashable_and_equal() -> None:
    one = Cid.parse(KNOWN)
    two = Cid.decode(one.encode())
    assert one == two
    assert {one: 1}[two] == 1
    assert one != Cid(RAW, one.digest)


def test_decode_prefix_with_offset() -> None:
    cid = Cid.parse(KNOWN)
    data = b"xx" + cid.encode() + b"tail"
    parsed, end = Cid.decode_prefix(data, 2)
    assert parsed == cid
    assert data[end:] == b"tail"
    with pytest.raises(CidError, match="truncated"):
        Cid.decode_prefix(data[:20], 2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x12\x20" + bytes(32), "CIDv0"),
        (b"\x00\x71\x12\x20" + bytes(32), "version"),
        (b"\x02\x71\x12\x20" + bytes(32), "version"),
        (b"\x01\x70\x12\x20" + bytes(32), "codec"),  # dag-pb
        (b"\x01\x71\x13\x40" + bytes(64), "hash"),  # sha2-512
        (b"\x01\x71\x00\x04abcd", "hash"),  # identity multihash
        (b"\x01\x71\x12\x10" + bytes(16), "32 bytes"),
        (b"\x01\x71\x12\x20" + bytes(31), "36 bytes"),
        (b"\x01\x71\x12\x20" + bytes(33), "36 bytes"),
        (b"\x01", "truncated"),
    ],
)
def test_decode_rejects(data: bytes, message: str) -> None:
    with pytest.raises(CidError, match=message):
        Cid.decode(data)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(KNOWN.upper(), id="uppercase"),
        pytest.param("B" + KNOWN[1:], id="uppercase-prefix"),
        pytest.param(KNOWN + "=", id="padding"),
        pytest.param(KNOWN[:-1], id="short"),
        pytest.param(KNOWN + "a", id="long"),
        pytest.param("z" + KNOWN[1:], id="base58-prefix"),
        pytest.param(KNOWN[:-1] + "1", id="non-base32-char"),
        pytest.param(KNOWN[:-1] + "b", id="non-zero-trailing-bits"),
        pytest.param("QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR", id="cidv0"),
        pytest.param("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", id="dag-pb"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(CidError):
        Cid.parse(text)


def test_trailing_bits_variant_decodes_to_same_bytes() -> None:
    # Sanity for the test above: the altered string really is a second spelling.
    raw = base64.b32decode(KNOWN[1:-1].upper() + "B" + "======")
    assert raw == Cid.parse(KNOWN).encode()


@pytest.mark.parametrize("text", vector_params("syntax/cid_syntax_invalid.txt", lines=True))
def test_interop_invalid_cid_syntax_rejected(text: str) -> None:
    with pytest.raises(CidError):
        Cid.parse(text)


@pytest.mark.parametrize("text", vector_params("syntax/cid_syntax_valid.txt", lines=True))
def test_interop_valid_cid_syntax_only_blessed_accepted(text: str) -> None:
    # The generic syntax vectors include CIDv0, dag-pb and other bases: atproto proofs accept
    # only the blessed base32 dag-cbor/raw sha2-256 form, so those must be refused (typed).
    try:
        cid = Cid.parse(text)
    except CidError:
        return
    assert str(cid) == text


def test_constructor_validates() -> None:
    with pytest.raises(CidError):
        Cid(0x70, bytes(32))
    with pytest.raises(CidError):
        Cid(DAG_CBOR, bytes(31))
    with pytest.raises(CidError):
        Cid(DAG_CBOR, bytearray(32))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=48))
def test_decode_never_crashes(data: bytes) -> None:
    try:
        cid = Cid.decode(data)
    except CidError:
        return
    assert cid.encode() == data


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=70))
def test_parse_never_crashes(text: str) -> None:
    try:
        cid = Cid.parse(text)
    except VerifyError:
        return
    assert str(cid) == text


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.sampled_from([DAG_CBOR, RAW]))
def test_string_round_trip(digest: bytes, codec: int) -> None:
    cid = Cid(codec, digest)
    assert Cid.parse(str(cid)) == cid
    assert Cid.decode(cid.encode()) == cid
