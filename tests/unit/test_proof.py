"""End-to-end record proofs built from real (builder-made, fixture-checked) repositories."""

from __future__ import annotations

import contextlib
import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atcr_verify.errors import (
    CarError,
    CborError,
    CidError,
    IdentityMismatch,
    LimitExceeded,
    MalformedData,
    MstError,
    RecordNotFound,
    SignatureInvalid,
    VerifyError,
)
from atcr_verify.repo import (
    CarLimits,
    MstLimits,
    RecordProof,
    dagcbor,
    parse_at_uri,
    verify_record_proof,
)
from atcr_verify.repo.cid import RAW, Cid
from atcr_verify.repo.proof import is_valid_nsid, is_valid_rkey
from tests.support import vector_params
from tests.support.keys import SigningKey
from tests.support.mst_builder import (
    Repo,
    make_repo,
    manifest_record,
    random_tid,
    search_path,
    write_car,
)

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
COLLECTION = "io.atcr.manifest"
CURVES = ["k256", "p256"]


def build_repo(curve: str = "k256", count: int = 300, seed: int = 1, **options: Any) -> Repo:
    rng = random.Random(seed)
    records: dict[str, Any] = {
        f"{COLLECTION}/{random_tid(rng)}": manifest_record(f"sha256:{index:064x}")
        for index in range(count)
    }
    records["io.atcr.tag/latest"] = {"$type": "io.atcr.tag", "tag": "latest"}
    key = SigningKey.from_seed(curve, f"repo-{seed}")  # type: ignore[arg-type]
    return make_repo(key, DID, records, **options)


@pytest.fixture(scope="module", params=CURVES)
def repo(request: pytest.FixtureRequest) -> Repo:
    return build_repo(request.param)


def deepest_key(repo: Repo) -> str:
    return max(repo.records, key=lambda name: len(search_path(repo.mst, name)))


def verify(repo: Repo, car: bytes, name: str, **overrides: Any) -> RecordProof:
    collection, rkey = name.split("/")
    options: dict[str, Any] = {
        "did": repo.did,
        "collection": collection,
        "rkey": rkey,
        "key": repo.key.public,
    }
    options.update(overrides)
    return verify_record_proof(car, **options)


def test_inclusion_proof(repo: Repo) -> None:
    name = deepest_key(repo)
    assert len(search_path(repo.mst, name)) >= 4
    proof = verify(repo, repo.proof_car(name), name)
    assert proof.commit_cid == repo.commit_cid
    assert proof.commit.did == DID
    assert proof.commit.data == repo.mst.root
    assert proof.record_cid == repo.record_cids[name]
    assert proof.record_bytes == repo.records[name]
    assert proof.record == dagcbor.decode(repo.records[name])
    assert proof.record["$type"] == COLLECTION


def test_every_record_provable(repo: Repo) -> None:
    for name in list(repo.records)[::17]:
        assert verify(repo, repo.proof_car(name), name).record_cid == repo.record_cids[name]


def test_shuffled_blocks_and_extra_blocks(repo: Repo) -> None:
    name = deepest_key(repo)
    other = next(iter(repo.records))
    extra = [(repo.record_cids[other], repo.records[other])]
    car = repo.proof_car(name, extra=extra + extra, shuffle=random.Random(3))
    assert verify(repo, car, name).record_cid == repo.record_cids[name]


def test_absent_record_is_record_not_found(repo: Repo) -> None:
    name = f"{COLLECTION}/2222222222222"
    assert name not in repo.records
    car = repo.proof_car(name)
    with pytest.raises(RecordNotFound) as info:
        verify(repo, car, name)
    assert info.value.reason == (
        f"record {name} is not in the repository at commit {repo.commit_cid} "
        "(deleted or never existed)"
    )


def test_deleted_record_is_revoked() -> None:
    before = build_repo(count=50, seed=9)
    name = next(iter(before.records))
    records = {key: dagcbor.decode(value) for key, value in before.records.items() if key != name}
    after = make_repo(before.key, DID, records)
    assert verify(before, before.proof_car(name), name)
    with pytest.raises(RecordNotFound):
        verify(after, after.proof_car(name), name)


def test_did_mismatch(repo: Repo) -> None:
    name = deepest_key(repo)
    with pytest.raises(IdentityMismatch):
        verify(repo, repo.proof_car(name), name, did="did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")


@pytest.mark.parametrize("curve", CURVES)
def test_commit_signed_by_another_key(curve: str) -> None:
    repo = build_repo(curve, count=20)
    name = next(iter(repo.records))
    other = SigningKey.from_seed(curve, "attacker")  # type: ignore[arg-type]
    with pytest.raises(SignatureInvalid):
        verify(repo, repo.proof_car(name), name, key=other.public)


@pytest.mark.parametrize("curve", CURVES)
def test_forged_commit_with_attacker_key(curve: str) -> None:
    # An attacker builds a perfectly valid repo for the victim's DID with their own key.
    victim = SigningKey.from_seed(curve, "victim")  # type: ignore[arg-type]
    attacker = SigningKey.from_seed(curve, "attacker")  # type: ignore[arg-type]
    name = f"{COLLECTION}/3lbqzmbwhiq2c"
    forged = make_repo(attacker, DID, {name: manifest_record("sha256:" + "0" * 64)})
    with pytest.raises(SignatureInvalid):
        verify(forged, forged.proof_car(name), name, key=victim.public)


@pytest.mark.parametrize("curve", CURVES)
def test_high_s_commit(curve: str) -> None:
    repo = build_repo(curve, count=20, high_s=True)
    name = next(iter(repo.records))
    with pytest.raises(SignatureInvalid, match="high-S"):
        verify(repo, repo.proof_car(name), name)


@pytest.mark.parametrize("curve", CURVES)
def test_der_commit(curve: str) -> None:
    repo = build_repo(curve, count=20, der=True)
    name = next(iter(repo.records))
    with pytest.raises(SignatureInvalid, match="64 bytes"):
        verify(repo, repo.proof_car(name), name)


@pytest.mark.parametrize("curve", CURVES)
def test_v2_commit_proof(curve: str) -> None:
    repo = build_repo(curve, count=20, rev=None, version=2)
    name = next(iter(repo.records))
    assert verify(repo, repo.proof_car(name), name).commit.version == 2


def test_missing_mst_node_is_incomplete(repo: Repo) -> None:
    name = deepest_key(repo)
    path = search_path(repo.mst, name)
    for cid in path:
        with pytest.raises(MstError, match="proof incomplete"):
            verify(repo, repo.proof_car(name, drop=[cid]), name)


def test_missing_node_on_absence_path_is_not_absence(repo: Repo) -> None:
    name = f"{COLLECTION}/2222222222222"
    path = search_path(repo.mst, name)
    with pytest.raises(MstError, match="proof incomplete"):
        verify(repo, repo.proof_car(name, drop=[path[-1]]), name)


def test_missing_record_block(repo: Repo) -> None:
    name = deepest_key(repo)
    with pytest.raises(MstError, match="proof incomplete: record block"):
        verify(repo, repo.proof_car(name, drop=[repo.record_cids[name]]), name)


def test_missing_commit_block(repo: Repo) -> None:
    name = deepest_key(repo)
    with pytest.raises(CarError, match="root commit block"):
        verify(repo, repo.proof_car(name, drop=[repo.commit_cid]), name)


def test_tampered_record_block(repo: Repo) -> None:
    name = deepest_key(repo)
    blocks = repo.proof_blocks(name)
    tampered = dagcbor.encode(manifest_record("sha256:" + "f" * 64))
    blocks = [(cid, tampered if cid == repo.record_cids[name] else data) for cid, data in blocks]
    with pytest.raises(CidError):
        verify(repo, write_car([repo.commit_cid], blocks), name)


def test_record_swapped_for_another_valid_block(repo: Repo) -> None:
    # Substituting another record under its own CID cannot satisfy the MST's value link.
    names = list(repo.records)
    name, other = names[0], names[1]
    blocks = [item for item in repo.proof_blocks(name) if item[0] != repo.record_cids[name]] + [
        (repo.record_cids[other], repo.records[other])
    ]
    with pytest.raises(MstError, match="record block"):
        verify(repo, write_car([repo.commit_cid], blocks), name)


def test_record_must_be_a_map() -> None:
    key = SigningKey.from_seed("k256", "map")
    name = f"{COLLECTION}/3lbqzmbwhiq2c"
    repo = make_repo(key, DID, {name: ["not", "a", "map"]})
    with pytest.raises(MalformedData, match="map"):
        verify(repo, repo.proof_car(name), name)


def test_record_must_be_dag_cbor_codec() -> None:
    from tests.support.mst_builder import build_mst, sign_commit

    key = SigningKey.from_seed("k256", "raw")
    name = f"{COLLECTION}/3lbqzmbwhiq2c"
    data = dagcbor.encode({"a": 1})
    raw = Cid.for_block(data, RAW)
    tree = build_mst({name: raw})
    commit_cid, commit = sign_commit(key, DID, tree.root)
    car = write_car([commit_cid], [(commit_cid, commit), *tree.blocks.items(), (raw, data)])
    with pytest.raises(MalformedData, match="dag-cbor"):
        verify_record_proof(
            car, did=DID, collection=COLLECTION, rkey="3lbqzmbwhiq2c", key=key.public
        )


def test_root_not_a_commit(repo: Repo) -> None:
    name = deepest_key(repo)
    record_cid = repo.record_cids[name]
    car = write_car([record_cid], [(record_cid, repo.records[name])])
    with pytest.raises(MalformedData):
        verify(repo, car, name)


def test_limits_apply(repo: Repo) -> None:
    name = deepest_key(repo)
    car = repo.proof_car(name)
    with pytest.raises(LimitExceeded):
        verify(repo, car, name, car_limits=CarLimits(max_blocks=2))
    with pytest.raises(LimitExceeded):
        verify(repo, car, name, mst_limits=MstLimits(max_depth=2))


@pytest.mark.parametrize(
    ("collection", "rkey"),
    [
        ("io.atcr", "x"),
        ("io.atcr.manifest", ""),
        ("io.atcr.manifest", "a/b"),
        ("x/y", "z"),
        ("io.atcr.manifest", ".."),
        ("io.atcr.manifest", "a b"),
    ],
)
def test_invalid_collection_or_rkey(repo: Repo, collection: str, rkey: str) -> None:
    with pytest.raises(MalformedData):
        verify_record_proof(
            repo.proof_car(deepest_key(repo)),
            did=repo.did,
            collection=collection,
            rkey=rkey,
            key=repo.key.public,
        )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_car_bytes(data: bytes) -> None:
    key = SigningKey.from_seed("k256", "fuzz").public
    with contextlib.suppress(VerifyError):
        verify_record_proof(data, did=DID, collection=COLLECTION, rkey="x", key=key)


# --- at-uri ---------------------------------------------------------------------------------


def test_parse_at_uri() -> None:
    assert parse_at_uri(f"at://{DID}/io.atcr.manifest/3lbqzmbwhiq2c") == (
        DID,
        "io.atcr.manifest",
        "3lbqzmbwhiq2c",
    )


@pytest.mark.parametrize(
    "uri",
    [
        "at://alice.bsky.social/io.atcr.manifest/3lbqzmbwhiq2c",  # handle authority
        f"at://{DID}/io.atcr.manifest",
        f"at://{DID}",
        f"at://{DID}/io.atcr.manifest/3lbqzmbwhiq2c?x=1",
        f"at://{DID}/io.atcr.manifest/3lbqzmbwhiq2c#frag",
        f"https://{DID}/io.atcr.manifest/3lbqzmbwhiq2c",
        f"at://{DID}/io.atcr.manifest/" + "a" * 513,
        f"at://{DID}/io.atcr.manifest/" + "a" * 9000,
    ],
)
def test_parse_at_uri_rejects(uri: str) -> None:
    with pytest.raises(MalformedData):
        parse_at_uri(uri)


_RECORD_URI = re.compile(r"at://(did:[^/]+)/([^/]+)/([^/]+)")


@pytest.mark.parametrize("uri", vector_params("syntax/aturi_syntax_valid.txt", lines=True))
def test_interop_valid_at_uris(uri: str) -> None:
    match = _RECORD_URI.fullmatch(uri)
    if match:  # a record URI with a DID authority: must parse to its parts
        assert parse_at_uri(uri) == match.groups()
    else:  # handle authorities and collection/repo URIs name no single record here
        with pytest.raises(MalformedData):
            parse_at_uri(uri)


@pytest.mark.parametrize("uri", vector_params("syntax/aturi_syntax_invalid.txt", lines=True))
def test_interop_invalid_at_uris(uri: str) -> None:
    with pytest.raises(MalformedData):
        parse_at_uri(uri)


@pytest.mark.parametrize("nsid", vector_params("syntax/nsid_syntax_valid.txt", lines=True))
def test_interop_valid_nsids(nsid: str) -> None:
    assert is_valid_nsid(nsid)


@pytest.mark.parametrize("nsid", vector_params("syntax/nsid_syntax_invalid.txt", lines=True))
def test_interop_invalid_nsids(nsid: str) -> None:
    assert not is_valid_nsid(nsid)


@pytest.mark.parametrize("rkey", vector_params("syntax/recordkey_syntax_valid.txt", lines=True))
def test_interop_valid_record_keys(rkey: str) -> None:
    assert is_valid_rkey(rkey)


@pytest.mark.parametrize("rkey", vector_params("syntax/recordkey_syntax_invalid.txt", lines=True))
def test_interop_invalid_record_keys(rkey: str) -> None:
    assert not is_valid_rkey(rkey)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.builds(lambda s: "at://" + s, st.text(max_size=80)))
def test_parse_at_uri_never_crashes(uri: str) -> None:
    try:
        did, collection, rkey = parse_at_uri(uri)
    except MalformedData:
        return
    assert uri == f"at://{did}/{collection}/{rkey}"


def test_cbor_error_is_malformed_data() -> None:
    assert issubclass(CborError, MalformedData)
