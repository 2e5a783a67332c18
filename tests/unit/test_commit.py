"""Commits: strict parsing, the exact unsigned bytes, signatures on both curves."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atcr_verify.errors import CborError, MalformedData, SignatureInvalid, VerifyError
from atcr_verify.repo import dagcbor
from atcr_verify.repo.cid import RAW, Cid
from atcr_verify.repo.commit import Commit, is_valid_did, parse_commit, verify_commit
from tests.support import vector_params
from tests.support.keys import SigningKey
from tests.support.mst_builder import sign_commit

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
DATA = Cid.for_block(dagcbor.encode({"e": [], "l": None}))
CURVES = ["k256", "p256"]


def signer(curve: str = "k256") -> SigningKey:
    return SigningKey.from_seed(curve, "commit")  # type: ignore[arg-type]


@pytest.mark.parametrize("curve", CURVES)
def test_v3_commit_round_trip(curve: str) -> None:
    key = signer(curve)
    _, block = sign_commit(key, DID, DATA)
    commit = parse_commit(block)
    assert commit == Commit(DID, 3, DATA, "3lbqzmbwhiq2c", None, commit.sig)
    unsigned = dagcbor.decode(commit.unsigned_bytes())
    assert unsigned == {
        "did": DID,
        "version": 3,
        "data": DATA,
        "rev": "3lbqzmbwhiq2c",
        "prev": None,
    }
    verify_commit(commit, key.public)


def test_unsigned_bytes_keep_null_prev_and_reencode_exactly() -> None:
    _, block = sign_commit(signer(), DID, DATA)
    commit = parse_commit(block)
    raw = dagcbor.decode(block)
    del raw["sig"]
    assert commit.unsigned_bytes() == dagcbor.encode(raw)
    assert b"\x64prev\xf6" in commit.unsigned_bytes()


def test_prev_link_accepted() -> None:
    _, block = sign_commit(signer(), DID, DATA, prev=DATA)
    commit = parse_commit(block)
    assert commit.prev == DATA
    verify_commit(commit, signer().public)


@pytest.mark.parametrize("curve", CURVES)
def test_v2_commit_has_no_rev(curve: str) -> None:
    key = signer(curve)
    _, block = sign_commit(key, DID, DATA, rev=None, version=2)
    commit = parse_commit(block)
    assert commit.version == 2
    assert commit.rev is None
    assert set(dagcbor.decode(commit.unsigned_bytes())) == {"did", "version", "data", "prev"}
    verify_commit(commit, key.public)


@pytest.mark.parametrize("curve", CURVES)
def test_high_s_commit_rejected(curve: str) -> None:
    key = signer(curve)
    _, block = sign_commit(key, DID, DATA, high_s=True)
    with pytest.raises(SignatureInvalid, match="high-S"):
        verify_commit(parse_commit(block), key.public)


@pytest.mark.parametrize("curve", CURVES)
def test_der_commit_rejected(curve: str) -> None:
    key = signer(curve)
    _, block = sign_commit(key, DID, DATA, der=True)
    with pytest.raises(SignatureInvalid, match="64 bytes"):
        verify_commit(parse_commit(block), key.public)


@pytest.mark.parametrize("curve", CURVES)
def test_wrong_key_rejected(curve: str) -> None:
    _, block = sign_commit(signer(curve), DID, DATA)
    other = SigningKey.from_seed(curve, "someone else")  # type: ignore[arg-type]
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_commit(parse_commit(block), other.public)


def test_tampered_field_breaks_signature() -> None:
    key = signer()
    _, block = sign_commit(key, DID, DATA)
    raw = dagcbor.decode(block)
    raw["rev"] = "3lbqzmbwhiq2d"
    with pytest.raises(SignatureInvalid):
        verify_commit(parse_commit(dagcbor.encode(raw)), key.public)


def _commit(**changes: Any) -> bytes:
    value: dict[str, Any] = {
        "did": DID,
        "version": 3,
        "data": DATA,
        "rev": "3lbqzmbwhiq2c",
        "prev": None,
        "sig": bytes(64),
    }
    value.update(changes)
    return dagcbor.encode({key: item for key, item in value.items() if item is not ...})


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(_commit(extra=1), id="unknown-field"),
        pytest.param(_commit(prev=...), id="missing-prev"),
        pytest.param(_commit(rev=...), id="v3-missing-rev"),
        pytest.param(_commit(sig=...), id="missing-sig"),
        pytest.param(_commit(data=...), id="missing-data"),
        pytest.param(_commit(did=...), id="missing-did"),
        pytest.param(_commit(version=2), id="v2-with-rev"),
        pytest.param(_commit(version=1), id="version-1"),
        pytest.param(_commit(version=4), id="version-4"),
        pytest.param(_commit(version=True), id="version-true"),
        pytest.param(_commit(version="3"), id="version-string"),
        pytest.param(_commit(version=...), id="missing-version"),
        pytest.param(_commit(did="plc:abc"), id="did-no-scheme"),
        pytest.param(_commit(did="did:PLC:abc"), id="did-uppercase-method"),
        pytest.param(_commit(did="did:plc:abc:"), id="did-trailing-colon"),
        pytest.param(_commit(did="did:plc:" + "a" * 3000), id="did-too-long"),
        pytest.param(_commit(did=b"did:plc:abc"), id="did-bytes"),
        pytest.param(_commit(data=b"x"), id="data-bytes"),
        pytest.param(_commit(data=Cid.for_block(b"x", RAW)), id="data-raw-codec"),
        pytest.param(_commit(prev=b"x"), id="prev-bytes"),
        pytest.param(_commit(rev="not-a-tid"), id="rev-not-tid"),
        pytest.param(_commit(rev="zzzzzzzzzzzzz"), id="rev-high-bit"),
        pytest.param(_commit(rev=123), id="rev-int"),
        pytest.param(_commit(rev=None), id="rev-null"),
        pytest.param(_commit(sig="sig"), id="sig-text"),
        pytest.param(_commit(sig=None), id="sig-null"),
        pytest.param(dagcbor.encode([1, 2]), id="not-a-map"),
    ],
)
def test_malformed_commits(block: bytes) -> None:
    with pytest.raises(MalformedData):
        parse_commit(block)


def test_non_canonical_commit_is_cbor_error() -> None:
    block = _commit()
    with pytest.raises(CborError):
        parse_commit(block + b"\x00")


@pytest.mark.parametrize("did", vector_params("syntax/did_syntax_valid.txt", lines=True))
def test_interop_valid_dids(did: str) -> None:
    assert is_valid_did(did)


@pytest.mark.parametrize("did", vector_params("syntax/did_syntax_invalid.txt", lines=True))
def test_interop_invalid_dids(did: str) -> None:
    assert not is_valid_did(did)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(VerifyError):
        parse_commit(data)


field_values = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.text(max_size=20)
    | st.binary(max_size=70)
    | st.just(DATA)
    | st.just(DID)
    | st.just("3lbqzmbwhiq2c")
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["did", "version", "data", "rev", "prev", "sig", "x"]), field_values
    )
)
def test_arbitrary_commit_maps(value: dict[str, Any]) -> None:
    try:
        commit = parse_commit(dagcbor.encode(value))
    except VerifyError:
        return
    with contextlib.suppress(SignatureInvalid):
        verify_commit(commit, signer().public)
