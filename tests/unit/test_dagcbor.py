"""Strict DAG-CBOR: interop fixtures, every non-canonical form, and differential fuzzing."""

from __future__ import annotations

import base64
import math
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atcr_verify.errors import CborError
from atcr_verify.repo.cid import RAW, Cid
from atcr_verify.repo.dagcbor import decode, encode
from tests.support import vector_params

CID = Cid.parse("bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a")
CID_TAG = b"\xd8\x2a\x58\x25\x00" + CID.encode()


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def from_json(value: Any) -> Any:
    """atproto JSON data model -> Python DAG-CBOR model ($link, $bytes, integer-like floats)."""
    if isinstance(value, dict):
        if set(value) == {"$link"}:
            return Cid.parse(value["$link"])
        if set(value) == {"$bytes"}:
            return _b64(value["$bytes"])
        return {key: from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@pytest.mark.parametrize(
    "case", vector_params("data-model/data-model-fixtures.json", ids=lambda i, c: f"fixture-{i}")
)
def test_data_model_fixture(case: dict[str, Any]) -> None:
    raw = _b64(case["cbor_base64"])
    value = decode(raw)
    assert value == from_json(case["json"])
    assert encode(value) == raw
    assert str(Cid.for_block(raw)) == case["cid"]
    assert encode(from_json(case["json"])) == raw


@pytest.mark.parametrize(
    "case", vector_params("data-model/data-model-valid.json", ids=lambda i, c: c["note"])
)
def test_data_model_valid_round_trips(case: dict[str, Any]) -> None:
    value = from_json(case["json"])
    assert decode(encode(value)) == value


# Only the float case of data-model-invalid.json is a DAG-CBOR rule; the others ($type, blob,
# $bytes/$link shapes) are lexicon-level rules that this layer does not (and must not) enforce.
@pytest.mark.parametrize(
    "case",
    vector_params(
        "data-model/data-model-invalid.json",
        ids=lambda i, c: c["note"],
        where=lambda c: c["note"] == "float",
    ),
)
def test_data_model_invalid_float(case: dict[str, Any]) -> None:
    with pytest.raises(CborError, match="float"):
        encode(from_json(case["json"]))


def test_decodes_basic_types() -> None:
    assert decode(b"\xf6") is None
    assert decode(b"\xf5") is True
    assert decode(b"\xf4") is False
    assert decode(b"\x17") == 23
    assert decode(b"\x18\x18") == 24
    assert decode(b"\x20") == -1
    assert decode(b"\x1b\x7f\xff\xff\xff\xff\xff\xff\xff") == 2**63 - 1
    assert decode(b"\x3b\x7f\xff\xff\xff\xff\xff\xff\xff") == -(2**63)
    assert decode(b"\x43abc") == b"abc"
    assert decode(b"\x63abc") == "abc"
    assert decode(b"\x82\x01\x02") == [1, 2]
    assert decode(b"\xa0") == {}
    assert decode(CID_TAG) == CID
    assert decode(bytearray(b"\x01")) == 1
    assert decode(memoryview(b"\x01")) == 1


def test_raw_codec_link_accepted() -> None:
    blob = Cid(RAW, CID.digest)
    assert decode(b"\xd8\x2a\x58\x25\x00" + blob.encode()) == blob


HOSTILE = {
    # structure
    "empty": b"",
    "trailing-bytes": b"\x01\x02",
    "trailing-after-map": b"\xa0\x00",
    "truncated-bytes": b"\x45abc",
    "truncated-text": b"\x65abc",
    "truncated-array": b"\x82\x01",
    "truncated-map": b"\xa1\x61a",
    "truncated-argument": b"\x19\x01",
    "truncated-cid": CID_TAG[:-1],
    # canonical form
    "duplicate-keys": b"\xa2\x61a\x01\x61a\x02",
    "keys-bytewise-unsorted": b"\xa2\x61b\x01\x61a\x02",
    "keys-length-unsorted": b"\xa2\x62aa\x01\x61b\x02",
    "non-shortest-int-1": b"\x18\x17",
    "non-shortest-int-2": b"\x19\x00\xff",
    "non-shortest-int-4": b"\x1a\x00\x00\xff\xff",
    "non-shortest-int-8": b"\x1b\x00\x00\x00\x00\xff\xff\xff\xff",
    "non-shortest-negative": b"\x38\x00",
    "non-shortest-length": b"\x58\x01a",
    "non-shortest-text-length": b"\x78\x01a",
    "non-shortest-array-length": b"\x98\x00",
    "non-shortest-key-length": b"\xa1\x78\x01a\x01",
    "non-shortest-tag": b"\xd9\x00\x2a\x58\x25\x00" + CID.encode(),
    "non-shortest-cid-length": b"\xd8\x2a\x59\x00\x25\x00" + CID.encode(),
    # indefinite lengths
    "indefinite-bytes": b"\x5f\x41a\xff",
    "indefinite-text": b"\x7f\x61a\xff",
    "indefinite-array": b"\x9f\x01\xff",
    "indefinite-map": b"\xbf\x61a\x01\xff",
    "break": b"\xff",
    # forbidden types
    "float16": b"\xf9\x3c\x00",
    "float32": b"\xfa\x3f\x80\x00\x00",
    "float64": b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00",
    "float-nan": b"\xf9\x7e\x00",
    "undefined": b"\xf7",
    "simple-0": b"\xe0",
    "simple-19": b"\xf3",
    "simple-32": b"\xf8\x20",
    "reserved-1c": b"\x1c",
    "reserved-5d": b"\x5d",
    "reserved-fc": b"\xfc",
    "int-above-int64": b"\x1b\x80\x00\x00\x00\x00\x00\x00\x00",
    "int-below-int64": b"\x3b\x80\x00\x00\x00\x00\x00\x00\x00",
    "uint64-max": b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",
    "invalid-utf8": b"\x62\xff\xfe",
    "utf8-surrogate": b"\x63\xed\xa0\x80",
    "invalid-utf8-key": b"\xa1\x61\xff\x01",
    "int-key": b"\xa1\x01\x01",
    "bytes-key": b"\xa1\x41a\x01",
    "array-key": b"\xa1\x80\x01",
    # tags
    "tag-0-datetime": b"\xc0\x74" + b"2013-03-21T20:04:00Z",
    "tag-1-epoch": b"\xc1\x01",
    "tag-2-bignum": b"\xc2\x49\x01" + bytes(8),
    "tag-55799-self-describe": b"\xd9\xd9\xf7\x01",
    "tag-258-set": b"\xd9\x01\x02\x80",
    "tag-28-shareable": b"\xd8\x1c\x80",
    "tag-43": b"\xd8\x2b\x41a",
    "tag-42-text": b"\xd8\x2a\x61a",
    "tag-42-int": b"\xd8\x2a\x01",
    "tag-42-empty": b"\xd8\x2a\x40",
    "tag-42-no-prefix": b"\xd8\x2a\x58\x24" + CID.encode(),
    "tag-42-prefix-01": b"\xd8\x2a\x58\x25\x01" + CID.encode(),
    "tag-42-dag-pb": b"\xd8\x2a\x58\x25\x00\x01\x70\x12\x20" + bytes(32),
    "tag-42-cidv0": b"\xd8\x2a\x58\x23\x00\x12\x20" + bytes(32),
    "tag-42-sha512": b"\xd8\x2a\x58\x45\x00\x01\x71\x13\x40" + bytes(64),
    "tag-42-short-digest": b"\xd8\x2a\x58\x24\x00\x01\x71\x12\x20" + bytes(31),
    "tag-42-long-digest": b"\xd8\x2a\x58\x26\x00\x01\x71\x12\x20" + bytes(33),
    "tag-42-nested-tag": b"\xd8\x2a\xd8\x2a\x58\x25\x00" + CID.encode(),
    # hostile sizes
    "huge-bytes": b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff",
    "huge-text": b"\x7b\xff\xff\xff\xff\xff\xff\xff\xff",
    "huge-array": b"\x9b\x7f\xff\xff\xff\xff\xff\xff\xff",
    "huge-map": b"\xbb\x7f\xff\xff\xff\xff\xff\xff\xff",
    "array-count-beyond-input": b"\x9a\x00\x01\x00\x00" + b"\x00" * 100,
}


@pytest.mark.parametrize("data", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_inputs_rejected(data: bytes) -> None:
    with pytest.raises(CborError):
        decode(data)


@pytest.mark.parametrize("opener", [b"\x81", b"\xa1\x61a"], ids=["arrays", "maps"])
def test_deep_nesting_is_a_cbor_error(opener: bytes) -> None:
    data = opener * 10_000 + b"\x00"
    with pytest.raises(CborError, match="nested"):
        decode(data)
    with pytest.raises(CborError):
        decode(data, max_depth=100_000)  # deeper than Python's stack: still typed


def test_depth_limit_is_exact() -> None:
    assert decode(b"\x81" * 32 + b"\x00") is not None
    with pytest.raises(CborError):
        decode(b"\x81" * 33 + b"\x00")
    assert decode(b"\x81\x00", max_depth=1) == [0]
    with pytest.raises(CborError):
        decode(b"\x81\x81\x00", max_depth=1)
    assert decode(CID_TAG, max_depth=0) == CID  # links are not containers


def test_canonical_key_order_accepted() -> None:
    data = b"\xa3\x61a\x01\x61b\x02\x62aa\x03"
    assert decode(data) == {"a": 1, "b": 2, "aa": 3}
    assert encode({"aa": 3, "b": 2, "a": 1}) == data


def test_encode_refuses_non_data_model_values() -> None:
    for value in (
        1.5,
        {"a": 1.0},
        [float("nan")],
        {1: 2},
        {b"k": 1},
        2**63,
        -(2**63) - 1,
        {1, 2},
        cbor2.CBORTag(1, 2),
        cbor2.undefined,
        object(),
        bytearray(b"x"),
    ):
        with pytest.raises(CborError):
            encode(value)


def test_encode_refuses_cycles_and_absurd_depth() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(CborError):
        encode(cyclic)
    deep: Any = 0
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(CborError):
        encode(deep)


def test_encode_matches_cbor2_canonical() -> None:
    value = {"zz": [1, -1, 2**40, "x", b"y", None, True, CID], "a": {"c": False, "bb": {}}}
    assert encode(value) == cbor2.dumps(
        {
            "zz": [1, -1, 2**40, "x", b"y", None, True, cbor2.CBORTag(42, b"\x00" + CID.encode())],
            "a": {"c": False, "bb": {}},
        },
        canonical=True,
    )
    assert encode((1, 2)) == encode([1, 2])


# --- property tests -----------------------------------------------------------------------

links = st.builds(
    lambda digest, codec: Cid(codec, digest),
    st.binary(min_size=32, max_size=32),
    st.sampled_from([0x71, 0x55]),
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(max_size=30)
    | st.binary(max_size=40)
    | links
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_encode_decode_round_trip(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    # Differential check against cbor2's canonical encoder.
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    try:
        value = decode(data)
    except CborError:
        return
    # Anything accepted must be the one canonical encoding of what it decoded to.
    assert encode(value) == data


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_decode_mutated_encodings(value: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        index = data.draw(st.integers(0, len(raw)))
        if action == "insert":
            raw.insert(index, data.draw(st.integers(0, 255)))
        elif raw and index < len(raw):
            if action == "flip":
                raw[index] = data.draw(st.integers(0, 255))
            else:
                del raw[index]
    try:
        decoded = decode(bytes(raw))
    except CborError:
        return
    assert encode(decoded) == bytes(raw)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_every_float_refused(number: float) -> None:
    with pytest.raises(CborError):
        encode(number)
    with pytest.raises(CborError):
        decode(cbor2.dumps(number))
    assert math.isnan(number) or not isinstance(decode(cbor2.dumps([1])), float)
