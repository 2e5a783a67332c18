"""Ask a running Gatekeeper provider instead of verifying in this process.

The provider keeps warm caches shared by every caller, so a plugin process that delegates does
not load the core at all. The difference matters: the provider answers for the IMAGE (every
signature artifact, ``minSignatures`` applied), not for the one artifact Ratify asked about, so
every ATProto artifact of an image gets the same report. The request is what Gatekeeper sends:
``POST <providerUrl>`` (no path added) with ``{"kind": "ProviderRequest", "request": {"keys":
[subject]}}``; the subject is passed as Ratify sent it (a tag is resolved by the provider).

Transport, TLS and malformed answers are "could not decide" (``isSuccess: false``), as in-process
faults are: fail closed, with a readable message.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

from .config import PluginConfig, ProviderConfig
from .wire import Extensions, ReferenceDesc, VerifierResult, clip

MAX_RESPONSE_BYTES = 1024 * 1024


class ProviderUnavailable(Exception):
    """The provider could not be asked or did not answer usably (a fault, not a denial)."""


def _tls_context(provider: ProviderConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=provider.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if provider.cert_file is not None:
        context.load_cert_chain(provider.cert_file, provider.key_file)
    return context


def ask_provider(provider: ProviderConfig, key: str, timeout: float) -> dict[str, Any]:
    """POST one ProviderRequest and return the item answered for ``key``."""
    parts = urlsplit(provider.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    try:
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=timeout, context=_tls_context(provider)
            )
        else:
            connection = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=timeout
            )
    except (OSError, ssl.SSLError) as exc:
        raise ProviderUnavailable(f"provider TLS setup failed: {type(exc).__name__}") from exc
    body = json.dumps(
        {
            "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
            "kind": "ProviderRequest",
            "request": {"keys": [key]},
        }
    ).encode()
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read(MAX_RESPONSE_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise ProviderUnavailable(f"provider unreachable: {type(exc).__name__}") from exc
    finally:
        connection.close()
    if len(data) > MAX_RESPONSE_BYTES:
        raise ProviderUnavailable("provider answer is too large")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ProviderUnavailable(f"provider answered HTTP {response.status} without JSON") from exc
    answer = document.get("response") if isinstance(document, dict) else None
    if not isinstance(answer, dict):
        raise ProviderUnavailable("provider answer has no response object")
    system_error = answer.get("systemError")
    if isinstance(system_error, str) and system_error:
        raise ProviderUnavailable(f"provider system error: {clip(system_error, 300)}")
    items = answer.get("items")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("key") == key:
            return item
    raise ProviderUnavailable("provider did not answer for this image")


def delegate(config: PluginConfig, subject: str, desc: ReferenceDesc) -> VerifierResult:
    """The provider's image-level verdict as this artifact's report."""
    assert config.provider is not None
    try:
        item = ask_provider(config.provider, subject, config.timeout)
    except ProviderUnavailable as exc:
        return _report(config, desc, False, f"could not decide: {exc}", "error", {})
    error = item.get("error")
    value = item.get("value")
    if isinstance(error, str) and error:
        return _report(config, desc, False, clip(error), "failed", {})
    if not isinstance(value, dict):
        return _report(
            config, desc, False, "could not decide: provider answered no value", "error", {}
        )
    allowed = value.get("allowed") is True
    reason = value.get("reason")
    text = clip(reason) if isinstance(reason, str) else ("admitted" if allowed else "denied")
    return _report(config, desc, allowed, text, "verified" if allowed else "failed", value)


def _text(value: dict[str, Any], key: str) -> str | None:
    found = value.get(key)
    return found if isinstance(found, str) else None


def _report(
    config: PluginConfig,
    desc: ReferenceDesc,
    success: bool,
    message: str,
    outcome: str,
    value: dict[str, Any],
) -> VerifierResult:
    verified = value.get("verified") is True
    if success and not verified:
        outcome = "skipped"
    extensions: Extensions = {
        "did": _text(value, "did"),
        "handle": _text(value, "handle"),
        "recordUri": _text(value, "recordUri"),
        "policy": _text(value, "policy"),
        "reason": message,
        "digest": _text(value, "digest"),
        "artifactDigest": desc["digest"],
        "outcome": outcome,
        "verified": verified,
        "action": _text(value, "action"),
        "source": "provider",
    }
    return {
        "isSuccess": success,
        "name": config.name,
        "type": config.type,
        "message": message,
        "extensions": extensions,
    }
