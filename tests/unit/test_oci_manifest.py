"""Strict parsing of OCI / Docker manifests, indexes and descriptors."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atcr_verify.errors import OciFormatError, VerifyError
from atcr_verify.oci.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageIndex,
    ImageManifest,
    digest_matches,
    is_valid_digest,
    loads_strict_json,
    parse_descriptor,
    parse_image_manifest,
    parse_index,
    parse_manifest,
    sha256_digest,
)

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
SIG = "application/vnd.atproto.signature.v1+json"


def _manifest(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": D1,
            "size": 7023,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": D2,
                "size": 32654,
                "annotations": {"org.opencontainers.image.title": "layer"},
            },
        ],
        "annotations": {"com.example.key": "value"},
    }
    doc.update(overrides)
    return doc


def _index(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": D1,
                "size": 7143,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {"mediaType": OCI_MANIFEST, "digest": D2, "size": 7682, "artifactType": SIG},
        ],
    }
    doc.update(overrides)
    return doc


def _bytes(doc: object) -> bytes:
    return json.dumps(doc).encode()


# --- valid documents ----------------------------------------------------------------------------


def test_oci_manifest() -> None:
    parsed = parse_manifest(_bytes(_manifest()))
    assert isinstance(parsed, ImageManifest)
    assert parsed.media_type == OCI_MANIFEST
    assert parsed.config.digest == D1
    assert parsed.config.size == 7023
    assert parsed.layers[0].annotations["org.opencontainers.image.title"] == "layer"
    assert parsed.annotations == {"com.example.key": "value"}
    assert parsed.subject is None
    assert parsed.artifact_type is None


def test_signature_artifact_manifest_with_subject_and_embedded_empty_config() -> None:
    doc = _manifest(
        artifactType=SIG,
        config={"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2, "data": "e30="},
        layers=[{"mediaType": SIG, "digest": D2, "size": 512}],
        subject={"mediaType": OCI_MANIFEST, "digest": D1, "size": 1234},
    )
    parsed = parse_image_manifest(_bytes(doc))
    assert parsed.artifact_type == SIG
    assert parsed.config.data == b"{}"
    assert parsed.subject == Descriptor(OCI_MANIFEST, D1, 1234)


def test_docker_manifest_and_list() -> None:
    docker = _manifest(mediaType=DOCKER_MANIFEST)
    docker["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    assert parse_manifest(_bytes(docker)).media_type == DOCKER_MANIFEST
    listing = _index(mediaType=DOCKER_MANIFEST_LIST)
    parsed = parse_index(_bytes(listing))
    assert parsed.media_type == DOCKER_MANIFEST_LIST
    assert parsed.manifests[0].platform is not None
    assert parsed.manifests[0].platform.architecture == "amd64"


def test_index() -> None:
    parsed = parse_manifest(_bytes(_index()))
    assert isinstance(parsed, ImageIndex)
    assert [d.artifact_type for d in parsed.manifests] == [None, SIG]


def test_media_type_from_content_type_or_shape() -> None:
    no_type = _manifest()
    del no_type["mediaType"]
    assert parse_manifest(_bytes(no_type)).media_type == OCI_MANIFEST
    assert (
        parse_manifest(_bytes(no_type), content_type=f"{DOCKER_MANIFEST}; charset=utf-8").media_type
        == DOCKER_MANIFEST
    )
    no_type_index = _index()
    del no_type_index["mediaType"]
    assert parse_manifest(_bytes(no_type_index)).media_type == OCI_INDEX
    # A generic content type does not contradict the document.
    assert parse_manifest(_bytes(_manifest()), content_type="application/json").media_type == (
        OCI_MANIFEST
    )


def test_unknown_fields_are_ignored() -> None:
    doc = _manifest(futureField={"x": [1, 2, 3]})
    doc["layers"][0]["futureField"] = True
    assert isinstance(parse_manifest(_bytes(doc)), ImageManifest)


def test_descriptor_hashable_and_equal() -> None:
    a = parse_descriptor(
        {"mediaType": OCI_MANIFEST, "digest": D1, "size": 1, "annotations": {"k": "v"}}
    )
    b = parse_descriptor(
        {"mediaType": OCI_MANIFEST, "digest": D1, "size": 1, "annotations": {"k": "v"}}
    )
    assert a == b
    assert hash(a) == hash(b)


# --- invalid documents --------------------------------------------------------------------------


def _mutated(path: list[Any], value: Any, base: dict[str, Any] | None = None) -> bytes:
    doc = base if base is not None else _manifest()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return _bytes(doc)


_DELETE = object()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"\xef\xbb\xbf{}", "byte-order mark"),
        ('{"schemaVersion": 2}'.encode("utf-16"), "not UTF-8"),
        (b'{"schemaVersion": NaN}', "not valid JSON"),
        (b'{"schemaVersion": 2, "schemaVersion": 2}', "duplicate key 'schemaVersion'"),
        (_mutated(["schemaVersion"], 1), "schemaVersion must be 2"),
        (_mutated(["schemaVersion"], "2"), "schemaVersion must be 2"),
        (_mutated(["schemaVersion"], True), "schemaVersion must be 2"),
        (_mutated(["schemaVersion"], 2.0), "schemaVersion must be 2"),
        (
            _mutated(["mediaType"], "application/vnd.docker.distribution.manifest.v1+json"),
            "unsupported manifest mediaType",
        ),
        (_mutated(["mediaType"], 5), "unsupported manifest mediaType"),
        (_mutated(["config"], _DELETE), "config must be an object"),
        (_mutated(["config"], []), "config must be an object"),
        (_mutated(["layers"], _DELETE), "layers must be an array"),
        (_mutated(["layers"], {}), "layers must be an array"),
        (_mutated(["layers", 0, "digest"], "sha256:abc"), "layers[0].digest is not a valid"),
        (_mutated(["layers", 0, "digest"], "sha256:" + "A" * 64), "digest is not a valid"),
        (_mutated(["layers", 0, "digest"], "sha512:" + "a" * 64), "digest is not a valid"),
        (_mutated(["layers", 0, "digest"], "nocolon"), "digest is not a valid"),
        (_mutated(["layers", 0, "digest"], 7), "digest is not a valid"),
        (_mutated(["layers", 0, "size"], -1), "size is out of range"),
        (_mutated(["layers", 0, "size"], 2**63), "size is out of range"),
        (_mutated(["layers", 0, "size"], 10**30), "size is out of range"),
        (_mutated(["layers", 0, "size"], 1.5), "size must be an integer"),
        (_mutated(["layers", 0, "size"], "12"), "size must be an integer"),
        (_mutated(["layers", 0, "size"], True), "size must be an integer"),
        (_mutated(["layers", 0, "mediaType"], "not a media type"), "mediaType is not a valid"),
        (_mutated(["layers", 0, "mediaType"], None), "mediaType is not a valid"),
        (_mutated(["layers", 0, "annotations"], {"k": 1}), "must be a string"),
        (_mutated(["layers", 0, "annotations"], ["k"]), "annotations must be an object"),
        (_mutated(["layers", 0, "urls"], "http://x"), "urls must be an array"),
        (_mutated(["layers", 0, "data"], "!!"), "not valid base64"),
        (_mutated(["layers", 0, "data"], "e30="), "declared size"),
        (_mutated(["artifactType"], "bogus"), "artifactType is not a valid media type"),
        (_mutated(["subject"], "sha256:" + "a" * 64), "subject must be an object"),
        (_mutated(["manifests"], []), "must not contain 'manifests'"),
        (_bytes(_index(layers=[])), "must not contain"),
        (_bytes(_index(manifests={})), "manifests must be an array"),
        (
            _bytes(_index(manifests=[{"mediaType": OCI_MANIFEST, "digest": D1}])),
            "manifests[0].size must be an integer",
        ),
        (
            _bytes(
                _index(
                    manifests=[
                        {
                            "mediaType": OCI_MANIFEST,
                            "digest": D1,
                            "size": 1,
                            "platform": {"os": "linux"},
                        }
                    ]
                )
            ),
            "platform needs",
        ),
        (
            _mutated(["artifactType"], SIG, _manifest(mediaType=DOCKER_MANIFEST)),
            "Docker manifests cannot carry an artifactType",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper than 32"),
        (b'{"schemaVersion": 2' + b"9" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_malformed_manifests(body: bytes, reason: str) -> None:
    with pytest.raises(OciFormatError) as info:
        parse_manifest(body)
    assert reason in str(info.value)


def test_embedded_data_must_match_digest() -> None:
    bad = {"mediaType": OCI_EMPTY, "digest": D1, "size": 2, "data": "e30="}
    with pytest.raises(OciFormatError, match="does not match its digest"):
        parse_descriptor(bad)
    good = {"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2, "data": "e30="}
    assert parse_descriptor(good).data == b"{}"


def test_content_type_disagreeing_with_media_type_is_rejected() -> None:
    with pytest.raises(OciFormatError, match="disagrees with Content-Type"):
        parse_manifest(_bytes(_manifest()), content_type=OCI_INDEX)


def test_expected_kind() -> None:
    with pytest.raises(OciFormatError, match="expected an image manifest"):
        parse_image_manifest(_bytes(_index()))
    with pytest.raises(OciFormatError, match="expected an image index"):
        parse_index(_bytes(_manifest()))


def test_size_limit() -> None:
    body = _bytes(_manifest(padding="x" * 2048))
    with pytest.raises(OciFormatError, match="larger than 1024 bytes"):
        parse_manifest(body, max_bytes=1024)


def test_too_many_descriptors() -> None:
    layer = {"mediaType": "application/octet-stream", "digest": D1, "size": 1}
    with pytest.raises(OciFormatError, match="more than 10000 layers"):
        parse_manifest(_bytes(_manifest(layers=[layer] * 10_001)))


def test_digest_helpers() -> None:
    assert is_valid_digest(D1)
    assert is_valid_digest("sha512:" + "c" * 128)
    assert is_valid_digest("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8")
    assert not is_valid_digest("sha256:" + "c" * 63)
    assert not is_valid_digest("SHA256:" + "c" * 64)
    body = b"hello"
    assert sha256_digest(body) == "sha256:" + hashlib.sha256(body).hexdigest()
    assert digest_matches(sha256_digest(body), body)
    assert digest_matches("sha512:" + hashlib.sha512(body).hexdigest(), body)
    assert not digest_matches(sha256_digest(body), b"other")
    assert not digest_matches("blake3:" + "0" * 64, body)


def test_loads_strict_json_nested_duplicate_keys() -> None:
    with pytest.raises(OciFormatError, match="duplicate key 'k'"):
        loads_strict_json(b'{"a": {"k": 1, "k": 2}}', max_bytes=100, what="doc")
    assert loads_strict_json(b'{"a": {"k": 1}}', max_bytes=100, what="doc") == {"a": {"k": 1}}


def test_base64_data_round_trip() -> None:
    data = b"\x00\x01binary"
    descriptor = {
        "mediaType": "application/octet-stream",
        "digest": sha256_digest(data),
        "size": len(data),
        "data": base64.b64encode(data).decode(),
    }
    assert parse_descriptor(descriptor).data == data


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_raise_verify_errors(body: bytes) -> None:
    with contextlib.suppress(VerifyError):
        parse_manifest(body)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"schemaVersion": st.just(2)},
        optional={
            "mediaType": st.sampled_from([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, "x/y"]),
            "config": _JSON,
            "layers": st.lists(_JSON, max_size=3),
            "manifests": st.lists(_JSON, max_size=3),
            "subject": _JSON,
            "artifactType": _JSON,
            "annotations": _JSON,
        },
    )
)
def test_structured_garbage_only_raises_verify_errors(doc: dict[str, Any]) -> None:
    with contextlib.suppress(VerifyError):
        parse_manifest(json.dumps(doc).encode())
