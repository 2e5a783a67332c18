"""Gatekeeper's external data wire format: typed shapes, a strict request parser, item builders.

Gatekeeper sends ``{"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind":
"ProviderRequest", "request": {"keys": [...]}}`` and reads ``response.items`` (``key`` with a
``value`` or a non-empty ``error``) and ``response.systemError``. The parser refuses anything
else with a :class:`RequestError` whose message becomes the ``systemError``: a request we do not
fully understand is never answered item by item.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, NotRequired, TypedDict

from atcr_verify import Verdict

API_GROUP = "externaldata.gatekeeper.sh"
API_VERSION = f"{API_GROUP}/v1beta1"
UNDECIDED_PREFIX = "could not verify: "
"""Items whose error starts with this were not decided (a fault, not a denial)."""
DEADLINE_ERROR = UNDECIDED_PREFIX + "verification did not finish within the deadline"

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class ProviderRequestBody(TypedDict):
    keys: list[str]


class ProviderRequest(TypedDict, total=False):
    apiVersion: str
    kind: Literal["ProviderRequest"]
    request: ProviderRequestBody


class AdmittedValue(TypedDict):
    """The ``value`` of an admitted key; a denied or undecided key has only an ``error``."""

    allowed: Literal[True]
    verified: bool
    digest: str | None
    did: str | None
    """The first trusted signer whose signature verified; null when nothing was verified."""
    policy: str | None
    reason: str


class ProviderItem(TypedDict):
    key: str
    value: NotRequired[AdmittedValue]
    error: NotRequired[str]


class ProviderResponseBody(TypedDict):
    idempotent: bool
    items: list[ProviderItem]
    systemError: str


class ProviderResponse(TypedDict):
    apiVersion: str
    kind: Literal["ProviderResponse"]
    response: ProviderResponseBody


class RequestError(Exception):
    """A request answered with a ``systemError`` only; ``status`` is the HTTP status used."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def parse_request(body: bytes, *, max_keys: int, max_key_length: int) -> list[str]:
    """The keys of a ProviderRequest, in order and with duplicates; raises :class:`RequestError`."""
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise RequestError("request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise RequestError("request body must be a JSON object (a ProviderRequest)")
    kind = document.get("kind")
    if kind is not None and kind != "ProviderRequest":
        raise RequestError(f"kind must be ProviderRequest, not {_short(kind)}")
    api_version = document.get("apiVersion")
    if api_version is not None and (
        not isinstance(api_version, str) or not api_version.startswith(f"{API_GROUP}/")
    ):
        raise RequestError(f"apiVersion must be {API_GROUP}/<version>, not {_short(api_version)}")
    request = document.get("request")
    if not isinstance(request, dict) or "keys" not in request:
        raise RequestError("request must be an object with a keys list")
    keys = request["keys"]
    if not isinstance(keys, list):
        raise RequestError("request.keys must be a list of strings")
    if len(keys) > max_keys:
        raise RequestError(f"too many keys: {len(keys)} (this provider accepts {max_keys})")
    for index, key in enumerate(keys):
        if not isinstance(key, str):
            raise RequestError(f"request.keys[{index}] is not a string")
        if len(key) > max_key_length:
            raise RequestError(f"request.keys[{index}] is longer than {max_key_length} characters")
    return keys


def split_key(key: str) -> tuple[str | None, str]:
    """``[namespace]image`` → ``(namespace, image)``; ``[]image`` and ``image`` → ``(None, image)``.

    Only a valid namespace name in brackets is a prefix, so an IPv6 registry such as
    ``[::1]:5000/app`` is read as an image, never as a namespace.
    """
    if key.startswith("["):
        end = key.find("]")
        if end != -1:
            namespace = key[1:end]
            if not namespace:
                return None, key[end + 1 :]
            if _NAMESPACE.fullmatch(namespace):
                return namespace, key[end + 1 :]
    return None, key


def admitted_item(key: str, verdict: Verdict) -> ProviderItem:
    did = next((s.did for s in verdict.signatures if s.valid and s.trusted and s.did), None)
    return {
        "key": key,
        "value": {
            "allowed": True,
            "verified": verdict.verified,
            "digest": verdict.digest,
            "did": did,
            "policy": verdict.policy,
            "reason": verdict.reason,
        },
    }


def verdict_item(key: str, verdict: Verdict) -> ProviderItem:
    """Admitted verdicts carry a value; every other verdict is an item error with the reason."""
    if verdict.allowed:
        return admitted_item(key, verdict)
    # Rego prefixes its own "image X denied: ", so a denial is just the reason; an undecided
    # image says so, because the fix (retry, check the network) differs from a denial's.
    where = f" (policy {verdict.policy})" if verdict.policy else ""
    if verdict.outcome.value == "error":
        return error_item(key, f"{UNDECIDED_PREFIX}{verdict.reason}{where}")
    return error_item(key, f"{verdict.reason}{where}")


def error_item(key: str, message: str) -> ProviderItem:
    return {"key": key, "error": message or "denied"}


def undecided_system_error(items: list[ProviderItem]) -> str:
    """A ``systemError`` when any key is undecided, else "".

    Gatekeeper caches per-item errors for minutes but never a ``systemError``; an undecided key
    (PLC or registry down, deadline) already denies its pod, so raising it to a ``systemError``
    costs nothing and lets the pod in as soon as the upstream is back.
    """
    undecided = [item for item in items if item.get("error", "").startswith(UNDECIDED_PREFIX)]
    if not undecided:
        return ""
    first = undecided[0]
    return f"could not verify {len(undecided)} image(s), e.g. {first['key']}: {first['error']}"


def response(items: list[ProviderItem], system_error: str = "") -> ProviderResponse:
    return {
        "apiVersion": API_VERSION,
        "kind": "ProviderResponse",
        "response": {"idempotent": True, "items": items, "systemError": system_error},
    }


def encode(document: ProviderResponse) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text[:80] + ("…" if len(text) > 80 else "")
