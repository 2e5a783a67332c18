"""The wire format: the strict request parser, key prefixes and item shapes."""

from __future__ import annotations

import json

import pytest

from atcr_verify import Outcome, SignatureResult, Verdict
from provider.wire import (
    DEADLINE_ERROR,
    RequestError,
    encode,
    error_item,
    parse_request,
    response,
    split_key,
    verdict_item,
)


def parse(document: object, max_keys: int = 1000) -> list[str]:
    return parse_request(json.dumps(document).encode(), max_keys=max_keys, max_key_length=4096)


def request(keys: object, **extra: object) -> dict[str, object]:
    return {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest",
        "request": {"keys": keys},
        **extra,
    }


def test_a_gatekeeper_request_yields_its_keys_in_order() -> None:
    assert parse(request(["b", "a", "b"])) == ["b", "a", "b"]


def test_kind_and_api_version_may_be_absent() -> None:
    assert parse({"request": {"keys": ["x"]}}) == ["x"]
    assert (
        parse({"apiVersion": "externaldata.gatekeeper.sh/v1alpha1", "request": {"keys": []}}) == []
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'["a"]', "must be a JSON object"),
        (b'"keys"', "must be a JSON object"),
        (
            json.dumps(request(["a"], kind="AdmissionReview")).encode(),
            "kind must be ProviderRequest",
        ),
        (json.dumps(request(["a"], apiVersion="v1")).encode(), "apiVersion must be"),
        (json.dumps(request(["a"], apiVersion=7)).encode(), "apiVersion must be"),
        (b'{"kind": "ProviderRequest"}', "request must be an object"),
        (b'{"request": ["a"]}', "request must be an object"),
        (b'{"request": {"keys": "a"}}', "request.keys must be a list"),
        (json.dumps(request(["a", 1])).encode(), "request.keys[1] is not a string"),
        (json.dumps(request([None])).encode(), "request.keys[0] is not a string"),
        (json.dumps(request([["nested"]])).encode(), "request.keys[0] is not a string"),
        (json.dumps(request(["x" * 4097])).encode(), "longer than 4096 characters"),
    ],
)
def test_malformed_requests_are_refused_with_a_clear_reason(body: bytes, message: str) -> None:
    with pytest.raises(RequestError) as raised:
        parse_request(body, max_keys=1000, max_key_length=4096)
    assert message in raised.value.message
    assert raised.value.status == 400


def test_too_many_keys_is_refused_before_looking_at_them() -> None:
    with pytest.raises(RequestError, match="too many keys: 10001"):
        parse(request(["img"] * 10_001))
    assert len(parse(request(["img"] * 1000))) == 1000


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("nginx", (None, "nginx")),
        ("[team-a]nginx:1.25", ("team-a", "nginx:1.25")),
        ("[]nginx", (None, "nginx")),
        ("[kube-system]registry.k8s.io/pause:3.9", ("kube-system", "registry.k8s.io/pause:3.9")),
        ("[::1]:5000/app", (None, "[::1]:5000/app")),  # an IPv6 registry, not a namespace
        ("[Not_A_Namespace]img", (None, "[Not_A_Namespace]img")),
        ("[unterminated", (None, "[unterminated")),
    ],
)
def test_namespace_prefix(key: str, expected: tuple[str | None, str]) -> None:
    assert split_key(key) == expected


def verdict(**changes: object) -> Verdict:
    fields: dict[str, object] = {
        "image": "registry.test/app@sha256:" + "a" * 64,
        "digest": "sha256:" + "a" * 64,
        "allowed": True,
        "verified": True,
        "outcome": Outcome.VERIFIED,
        "policy": "prod",
        "action": "enforce",
        "reason": "signed by trusted DID did:plc:two",
        "signatures": (
            SignatureResult(did="did:plc:one", valid=False, trusted=False, error="untrusted"),
            SignatureResult(did="did:plc:two", valid=True, trusted=True),
        ),
    }
    fields.update(changes)
    return Verdict(**fields)  # type: ignore[arg-type]


def test_an_admitted_verdict_is_a_value_naming_the_first_verified_signer() -> None:
    assert verdict_item("k", verdict()) == {
        "key": "k",
        "value": {
            "allowed": True,
            "verified": True,
            "digest": "sha256:" + "a" * 64,
            "did": "did:plc:two",
            "policy": "prod",
            "reason": "signed by trusted DID did:plc:two",
        },
    }


def test_an_audit_failure_is_admitted_unverified_with_the_reason() -> None:
    item = verdict_item(
        "k",
        verdict(
            verified=False, outcome=Outcome.FAILED, reason="audit only: no signature", signatures=()
        ),
    )
    assert item["value"]["allowed"] is True and item["value"]["verified"] is False
    assert item["value"]["did"] is None and item["value"]["reason"] == "audit only: no signature"
    assert "error" not in item


def test_a_denial_is_an_error_without_a_value() -> None:
    item = verdict_item(
        "k", verdict(allowed=False, verified=False, outcome=Outcome.FAILED, reason="no signature")
    )
    assert item == {"key": "k", "error": "no signature (policy prod)"}


def test_an_undecided_verdict_says_it_could_not_verify() -> None:
    item = verdict_item(
        "k",
        verdict(
            allowed=False, verified=False, outcome=Outcome.ERROR, reason="PLC down", policy=None
        ),
    )
    assert item == {"key": "k", "error": "could not verify: PLC down"}


def test_response_shape_and_encoding() -> None:
    document = response([error_item("a", DEADLINE_ERROR)])
    assert json.loads(encode(document)) == {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderResponse",
        "response": {
            "idempotent": True,
            "items": [{"key": "a", "error": DEADLINE_ERROR}],
            "systemError": "",
        },
    }
    assert response([], "bad")["response"]["systemError"] == "bad"
