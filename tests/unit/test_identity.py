"""DID documents and handles: strict parsing of attacker-controlled identity data."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import multibase

from atcr_verify.errors import DidDocumentError, MalformedData, VerifyError
from atcr_verify.identity import (
    HandleResolver,
    Identity,
    normalise_pds_endpoint,
    parse_did_document,
    validate_did,
    validate_handle,
)
from atcr_verify.net import HttpFetcher, NetworkSettings
from tests.support.keys import SigningKey

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"


def document(key: SigningKey, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": DID,
        "alsoKnownAs": ["at://alice.example.com"],
        "verificationMethod": [
            {
                "id": f"{DID}#atproto",
                "type": "Multikey",
                "controller": DID,
                "publicKeyMultibase": key.public.multikey(),
            }
        ],
        "service": [
            {
                "id": "#atproto_pds",
                "type": "AtprotoPersonalDataServer",
                "serviceEndpoint": "https://pds.example.com",
            }
        ],
    }
    doc.update(overrides)
    return doc


def encode(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize("curve", ["k256", "p256"])
def test_multikey_document_yields_key_pds_and_claimed_handle(curve: str) -> None:
    key = SigningKey.generate(curve)  # type: ignore[arg-type]
    identity = parse_did_document(DID, encode(document(key)))
    assert identity.signing_key == key.public
    assert identity.pds_endpoint == "https://pds.example.com"
    assert identity.claimed_handle == "alice.example.com"


@pytest.mark.parametrize(
    ("curve", "method_type"),
    [("k256", "EcdsaSecp256k1VerificationKey2019"), ("p256", "EcdsaSecp256r1VerificationKey2019")],
)
def test_legacy_uncompressed_key_formats_are_supported(curve: str, method_type: str) -> None:
    key = SigningKey.generate(curve)  # type: ignore[arg-type]
    doc = document(key)
    doc["verificationMethod"][0].update(
        type=method_type,
        publicKeyMultibase=multibase.encode(key.uncompressed_public(), "base58btc"),
        id="#atproto",
    )
    assert parse_did_document(DID, encode(doc)).signing_key == key.public


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(id="did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"), "does not match"),
        (lambda d: d.update(verificationMethod=[]), "exactly one #atproto key"),
        (lambda d: d.update(verificationMethod=d["verificationMethod"] * 2), "exactly one"),
        (lambda d: d["verificationMethod"][0].update(type="JsonWebKey2020"), "unsupported"),
        (lambda d: d["verificationMethod"][0].update(publicKeyMultibase="zNope"), "malformed"),
        (lambda d: d["verificationMethod"][0].update(controller="did:plc:x"), "controlled"),
        (lambda d: d.update(service=[]), "exactly one #atproto_pds"),
        (lambda d: d["service"][0].update(serviceEndpoint="http://pds.example.com"), "https"),
        (lambda d: d["service"][0].update(serviceEndpoint="https://pds.example.com/x"), "path"),
        (lambda d: d["service"][0].update(serviceEndpoint="https://u:p@pds.example.com"), "plain"),
        (lambda d: d["service"][0].update(serviceEndpoint=["https://a"]), "not a URL"),
    ],
)
def test_malformed_documents_are_rejected_with_reason(mutate: Any, reason: str) -> None:
    doc = document(SigningKey.generate("k256"))
    mutate(doc)
    with pytest.raises(DidDocumentError, match=reason):
        parse_did_document(DID, encode(doc))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"not json",
        b'{"id": "a", "id": "b"}',
        b"[" * 100_000,
        "\ud800".encode("utf-8", "surrogatepass"),
    ],
)
def test_non_documents_are_typed_errors(body: bytes) -> None:
    with pytest.raises(DidDocumentError):
        parse_did_document(DID, body)


def test_http_pds_only_when_allowed() -> None:
    doc = document(SigningKey.generate("k256"))
    doc["service"][0]["serviceEndpoint"] = "http://127.0.0.1:2583/"
    with pytest.raises(DidDocumentError):
        parse_did_document(DID, encode(doc))
    identity = parse_did_document(DID, encode(doc), allow_http_pds=True)
    assert identity.pds_endpoint == "http://127.0.0.1:2583"


@pytest.mark.parametrize(
    "did",
    ["did:plc:ewvi7nxzyoun6zhxrhs64oiz", "did:web:example.com", "did:web:localhost%3A8080"],
)
def test_resolvable_dids(did: str) -> None:
    validate_did(did)


@pytest.mark.parametrize(
    ("did", "reason"),
    [
        ("did:plc:short", "did:plc"),
        ("did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ", "did:plc"),
        ("did:web:example.com:user:alice", "path"),
        ("did:web:example.com%3A8080", "localhost"),
        ("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDdo1Ko4Z", "unsupported DID method"),
        ("not-a-did", "not a valid DID"),
        ("did:web:" + "a" * 3000, "not a valid DID"),
    ],
)
def test_unresolvable_dids_are_refused(did: str, reason: str) -> None:
    with pytest.raises(DidDocumentError, match=reason):
        validate_did(did)


def test_handles_are_normalised_and_disallowed_tlds_refused() -> None:
    assert validate_handle("Alice.Example.COM") == "alice.example.com"
    for bad in ("alice.local", "alice.onion", "alice", "-a.com", "a..com", "a" * 254):
        with pytest.raises(MalformedData):
            validate_handle(bad)


def test_pds_endpoint_normalisation() -> None:
    assert normalise_pds_endpoint("https://PDS.Example.com/", allow_http=False) == (
        "https://pds.example.com"
    )
    with pytest.raises(DidDocumentError):
        normalise_pds_endpoint("https://pds.example.com:99999", allow_http=False)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.text() | st.integers(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_arbitrary_json_never_escapes_the_error_taxonomy(value: object) -> None:
    with contextlib.suppress(VerifyError):
        parse_did_document(DID, json.dumps(value).encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_the_error_taxonomy(body: bytes) -> None:
    with contextlib.suppress(VerifyError):
        parse_did_document(DID, body)


class HandleLookupDouble(HandleResolver):
    """Test double for DNS/HTTPS handle lookups (no DNS server runs here); the bidirectional
    logic under test is the real one."""

    def __init__(self, answers: dict[str, str | None]) -> None:
        self.answers = answers

    async def _resolve_dns(self, handle: str) -> str | None:
        return self.answers.get(handle)

    async def _resolve_http(self, handle: str) -> str | None:
        return None


def _identity(handle: str | None) -> Identity:
    key = SigningKey.generate("k256")
    return Identity(DID, key.public, "https://pds.example.com", handle)


async def test_handle_is_verified_only_when_it_resolves_back_to_the_same_did() -> None:
    resolver = HandleLookupDouble({"alice.example.com": DID, "mallory.example.com": "did:plc:x"})
    assert await resolver.verified_handle(_identity("alice.example.com")) == "alice.example.com"
    assert await resolver.verified_handle(_identity("mallory.example.com")) is None
    assert await resolver.verified_handle(_identity("unknown.example.com")) is None
    assert await resolver.verified_handle(_identity(None)) is None


async def test_real_resolver_answers_none_for_a_handle_that_does_not_exist() -> None:
    async with HttpFetcher.new_client(NetworkSettings()) as client:
        resolver = HandleResolver(HttpFetcher(client, NetworkSettings()), dns_timeout=1.0)
        handle = "nobody.invalid-tld-for-tests.test"
        assert await resolver.verified_handle(_identity(handle)) is None
