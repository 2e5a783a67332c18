"""The signature document (the artifact's layer blob) and the WWW-Authenticate challenge parser."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atcr_verify.errors import (
    ConfigError,
    IdentityMismatch,
    LimitExceeded,
    OciFormatError,
    UpstreamError,
    VerifyError,
)
from atcr_verify.oci.registry import AuthChallenge, RegistrySettings, parse_www_authenticate
from atcr_verify.oci.signature import (
    SIGNATURE_ARTIFACT_TYPE,
    SignatureDocument,
    is_atproto_did,
    is_record_key,
    parse_record_uri,
    parse_signature_document,
)

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
OTHER_DID = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
IMAGE = "sha256:" + "c" * 64


def _document(**atproto_overrides: Any) -> dict[str, Any]:
    atproto: dict[str, Any] = {
        "did": DID,
        "handle": "alice.example.com",
        "pdsEndpoint": "https://pds.example.com",
        "recordUri": f"at://{DID}/io.atcr.manifest/3l2uyzcdhe22b",
        "commitCid": "bafyreibjifzpqj6o6wcq3hejh7y4z4z2vnmkkxuqpp6yqy6m2xvo7c3d5e",
        "signedAt": "2026-11-22T10:00:00.000Z",
    }
    atproto.update(atproto_overrides)
    return {
        "$type": "io.atcr.atproto.signature",
        "version": "1.0",
        "subject": {"digest": IMAGE, "mediaType": "application/vnd.oci.image.manifest.v1+json"},
        "atproto": atproto,
        "signature": {
            "algorithm": "ECDSA-K256-SHA256",
            "keyId": f"{DID}#atproto",
            "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF",
        },
    }


def _body(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_artifact_type_constant() -> None:
    assert SIGNATURE_ARTIFACT_TYPE == "application/vnd.atproto.signature.v1+json"


def test_valid_document() -> None:
    parsed = parse_signature_document(_body(_document()))
    assert parsed == SignatureDocument(
        subject_digest=IMAGE,
        did=DID,
        record_uri=f"at://{DID}/io.atcr.manifest/3l2uyzcdhe22b",
        collection="io.atcr.manifest",
        rkey="3l2uyzcdhe22b",
        handle_hint="alice.example.com",
        pds_hint="https://pds.example.com",
        key_hint="zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF",
        commit_cid_hint="bafyreibjifzpqj6o6wcq3hejh7y4z4z2vnmkkxuqpp6yqy6m2xvo7c3d5e",
        signed_at="2026-11-22T10:00:00.000Z",
    )


def test_minimal_document_hints_are_optional() -> None:
    doc = _document()
    del doc["signature"]
    for key in ("handle", "pdsEndpoint", "commitCid", "signedAt"):
        del doc["atproto"][key]
    parsed = parse_signature_document(_body(doc))
    assert parsed.handle_hint is None
    assert parsed.key_hint is None
    assert parsed.signed_at is None


@pytest.mark.parametrize(
    "rkey", ["self", "3l2uyzcdhe22b", "a.b_c~d:e-f", "..a", "x" * 512, "pre:fix", "Zz9"]
)
def test_any_valid_record_key_is_accepted(rkey: str) -> None:
    doc = _document(recordUri=f"at://{DID}/io.atcr.manifest/{rkey}")
    assert parse_signature_document(_body(doc)).rkey == rkey


def test_did_web_is_accepted() -> None:
    did = "did:web:example.com"
    doc = _document(did=did, recordUri=f"at://{did}/io.atcr.manifest/abc")
    assert parse_signature_document(_body(doc)).did == did
    did = "did:web:localhost%3A8080"
    doc = _document(did=did, recordUri=f"at://{did}/io.atcr.manifest/abc")
    assert parse_signature_document(_body(doc)).did == did


def _without(key: str) -> dict[str, Any]:
    doc = _document()
    del doc[key]
    return doc


def _with(key: str, value: Any) -> dict[str, Any]:
    doc = _document()
    doc[key] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (_with("$type", "io.atcr.manifest"), "$type must be"),
        (_without("$type"), "$type must be"),
        (_with("version", "2.0"), "unsupported signature document version"),
        (_with("version", 1.0), "unsupported signature document version"),
        (_without("subject"), "subject must be an object"),
        (_with("subject", {"digest": "sha256:1234"}), "subject.digest is not a valid digest"),
        (_with("subject", {"digest": IMAGE, "mediaType": 5}), "subject.mediaType must be"),
        (_without("atproto"), "atproto must be an object"),
        (
            _document(did="did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"),
            "not a did:plc or did:web",
        ),
        (_document(did="did:plc:short"), "not a did:plc or did:web"),
        (_document(did="did:plc:" + "A" * 24), "not a did:plc or did:web"),
        (_document(did="did:web:exa mple.com"), "not a did:plc or did:web"),
        (_document(did=None), "not a did:plc or did:web"),
        (_document(recordUri=None), "recordUri must be a string"),
        (_document(recordUri=f"https://{DID}/io.atcr.manifest/abc"), "must start with at://"),
        (_document(recordUri=f"at://{DID}/io.atcr.manifest"), "at://<did>/<collection>/<rkey>"),
        (_document(recordUri=f"at://{DID}/io.atcr.manifest/a/b"), "at://<did>/<collection>"),
        (_document(recordUri=f"at://{DID}/io.atcr.manifest/abc?x=1"), "query"),
        (_document(recordUri=f"at://{DID}/io.atcr.manifest/abc#frag"), "fragment"),
        (_document(recordUri=f"at://{DID}/app.bsky.feed.post/abc"), "collection must be"),
        (_document(recordUri=f"at://{DID}/not_an_nsid/abc"), "not a valid NSID"),
        (_document(recordUri=f"at://{DID}/io.atcr.manifest/."), "not a valid record key"),
        (_document(recordUri=f"at://{DID}/io.atcr.manifest/.."), "not a valid record key"),
        (_document(recordUri=f"at://{DID}/io.atcr.manifest/a b"), "not a valid record key"),
        (
            _document(recordUri=f"at://{DID}/io.atcr.manifest/" + "x" * 513),
            "not a valid record key",
        ),
        (_document(recordUri=f"at://{DID}/io.atcr.manifest/"), "not a valid record key"),
        (_document(recordUri="at:///io.atcr.manifest/abc"), "no authority"),
        (_document(handle=7), "atproto.handle must be a string"),
        (_with("signature", "zQ3sh"), "signature must be an object"),
        (_with("signature", {"publicKeyMultibase": 1}), "publicKeyMultibase must be"),
    ],
)
def test_malformed_documents(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(OciFormatError) as info:
        parse_signature_document(_body(doc))
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "record_uri",
    [
        f"at://{OTHER_DID}/io.atcr.manifest/abc",
        "at://alice.example.com/io.atcr.manifest/abc",
    ],
)
def test_record_authority_must_equal_did(record_uri: str) -> None:
    with pytest.raises(IdentityMismatch, match="authority does not match"):
        parse_signature_document(_body(_document(recordUri=record_uri)))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xc3\x28", "not UTF-8"),
        (b'{"$type": "io.atcr.atproto.signature", "$type": "x"}', "duplicate key"),
    ],
)
def test_not_a_json_document(body: bytes, reason: str) -> None:
    with pytest.raises(OciFormatError, match=reason):
        parse_signature_document(body)


def test_duplicate_did_key_cannot_smuggle_a_second_identity() -> None:
    text = _body(_document()).decode().replace(f'"did": "{DID}"', f'"did": "{DID}", "did": "x"')
    with pytest.raises(OciFormatError, match="duplicate key 'did'"):
        parse_signature_document(text.encode())


def test_too_big() -> None:
    doc = _document()
    doc["padding"] = "x" * (64 * 1024)
    with pytest.raises(LimitExceeded, match="larger than 65536 bytes"):
        parse_signature_document(_body(doc))


def test_syntax_helpers() -> None:
    assert is_atproto_did(DID)
    assert not is_atproto_did("did:plc:" + "a" * 25)
    assert not is_atproto_did("did:example:123")
    assert is_record_key("self")
    assert not is_record_key("")
    assert not is_record_key("a/b")
    assert parse_record_uri(f"at://{DID}/io.atcr.manifest/k") == (DID, "io.atcr.manifest", "k")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1024))
def test_arbitrary_bytes_only_raise_verify_errors(body: bytes) -> None:
    with contextlib.suppress(VerifyError):
        parse_signature_document(body)


_TEXT = st.text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    did=st.one_of(_TEXT, st.just(DID), st.integers()),
    record_uri=st.one_of(
        _TEXT,
        st.builds(lambda a, c, k: f"at://{a}/{c}/{k}", _TEXT, _TEXT, _TEXT),
        st.integers(),
    ),
    digest=st.one_of(_TEXT, st.just(IMAGE)),
)
def test_structured_garbage_only_raises_verify_errors(
    did: object, record_uri: object, digest: object
) -> None:
    doc = _document(did=did, recordUri=record_uri)
    doc["subject"]["digest"] = digest
    with contextlib.suppress(VerifyError):
        parse_signature_document(_body(doc))


# --- WWW-Authenticate ---------------------------------------------------------------------------


def test_docker_hub_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"'
    )
    assert parse_www_authenticate(header) == (
        AuthChallenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/nginx:pull",
            },
        ),
    )


def test_quoted_strings_with_commas_escapes_and_spaces() -> None:
    header = (
        'Bearer realm = "https://a.example/token?x=1,2" , scope="repository:a:pull,push",'
        ' error="say \\"hi\\", please"'
    )
    (challenge,) = parse_www_authenticate(header)
    assert challenge.params["realm"] == "https://a.example/token?x=1,2"
    assert challenge.params["scope"] == "repository:a:pull,push"
    assert challenge.params["error"] == 'say "hi", please'


def test_several_challenges_and_token68() -> None:
    header = 'Basic realm="Registry Realm", Negotiate abc==, Bearer realm=unquoted,service=s'
    challenges = parse_www_authenticate(header)
    assert [c.scheme for c in challenges] == ["basic", "negotiate", "bearer"]
    assert challenges[0].params == {"realm": "Registry Realm"}
    assert challenges[1].params == {"token68": "abc=="}
    assert challenges[2].params == {"realm": "unquoted", "service": "s"}


def test_scheme_and_parameter_names_are_case_insensitive() -> None:
    (challenge,) = parse_www_authenticate('BEARER Realm="r", SERVICE="s"')
    assert challenge.scheme == "bearer"
    assert challenge.params == {"realm": "r", "service": "s"}


def test_bare_scheme() -> None:
    assert parse_www_authenticate("Basic") == (AuthChallenge("basic", {}),)
    assert parse_www_authenticate("") == ()


@pytest.mark.parametrize(
    "header",
    [
        'Bearer realm="unterminated',
        'Bearer realm="a" service="b"',
        'Bearer realm="a", realm="b"',
        'Bearer realm="a",service=,',
        "Bearer Basic realm=x",
        '"quoted-scheme"',
        'Bearer realm="a\nb"',
        "Bearer " + "x" * 9000,
    ],
)
def test_malformed_challenges(header: str) -> None:
    with pytest.raises(UpstreamError):
        parse_www_authenticate(header)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_challenge_parser_only_raises_verify_errors(header: str) -> None:
    with contextlib.suppress(VerifyError):
        parse_www_authenticate(header)


def test_registry_settings_hide_credentials() -> None:
    settings_ = RegistrySettings(credentials={"ghcr.io": ("user", "hunter2")})
    assert "hunter2" not in repr(settings_)


@pytest.mark.parametrize("field", ["max_artifacts", "max_manifest_bytes", "max_token_bytes"])
@pytest.mark.parametrize("value", [0, -1, True])
def test_registry_settings_validate_limits(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=field):
        RegistrySettings(**{field: value})
