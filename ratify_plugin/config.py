"""The plugin's configuration: the verifier entry (``spec.parameters``) checked into one object.

Parsing stays cheap and core-free (no YAML, no policy validation, not even ``dataclasses`` or
``urllib``): a warm-cache answer needs only the fingerprint of what could change a verdict. The
policy text itself is validated by the core when a verification actually runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import NamedTuple

from .wire import ErrorCode, PluginError, StoreSpec

CACHE_FORMAT = 1
"""Bumped whenever a cached verdict written by an older plugin must not be reused."""
DEFAULT_PLC_URL = "https://plc.directory"
DEFAULT_TIMEOUT = 2.5
"""Seconds; below Ratify serve mode's 2.9 s kill, so a slow upstream is reported, not killed."""
MAX_TIMEOUT = 60.0
MAX_POLICY_BYTES = 1024 * 1024

_KNOWN_KEYS = frozenset(
    {
        "name",
        "type",
        "artifactTypes",
        "nestedReferences",
        "version",
        "source",
        "policy",
        "policyPath",
        "plcUrl",
        "plainHttp",
        "allowPrivateNetworks",
        "strictHints",
        "verifyHandles",
        "cache",
        "cacheDir",
        "timeout",
        "logFile",
        "providerUrl",
        "providerCaFile",
        "providerCertFile",
        "providerKeyFile",
    }
)


class ProviderConfig(NamedTuple):
    """Where a running provider answers ``ProviderRequest``s, and the TLS material to reach it."""

    url: str
    ca_file: str | None
    cert_file: str | None
    key_file: str | None


class PluginConfig(NamedTuple):
    """Everything one invocation needs; ``fingerprint`` covers what can change a verdict."""

    name: str
    type: str
    policy_text: str | None
    policy_source: str
    plc_url: str
    plain_http: frozenset[str]
    use_http: bool
    allow_private_networks: bool
    strict_hints: bool
    verify_handles: bool
    cache: bool
    cache_dir: str
    timeout: float
    log_file: str | None
    provider: ProviderConfig | None
    fingerprint: str


def _invalid(message: str) -> PluginError:
    return PluginError(ErrorCode.INVALID_VERIFIER_CONFIG, message)


def _string(config: Mapping[str, object], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"config.{key} must be a string")
    return value or None


def _boolean(config: Mapping[str, object], key: str, default: bool) -> bool:
    """Booleans; the strings "true"/"false" too (Helm values are often quoted)."""
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _invalid(f"config.{key} must be true or false")


def _hosts(value: object) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = value
    else:
        raise _invalid("config.plainHttp must be a list of HOST:PORT or a comma-separated string")
    hosts = frozenset(item.strip() for item in items if item.strip())
    for host in hosts:
        if "/" in host or any(c.isspace() for c in host):
            raise _invalid(f"config.plainHttp entry is not HOST[:PORT]: {host[:80]!r}")
    return hosts


def _timeout(value: object) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid("config.timeout must be a number of seconds")
    if not 0 < value <= MAX_TIMEOUT:
        raise _invalid(f"config.timeout must be within (0, {MAX_TIMEOUT:g}] seconds")
    return float(value)


def _url(value: str, key: str) -> str:
    """An http(s) URL with a host and no credentials (checked without importing urllib)."""
    scheme, sep, rest = value.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if not sep or scheme not in ("http", "https") or not authority or not value.isprintable():
        raise _invalid(f"config.{key} must be an http(s) URL")
    if "@" in authority or " " in value:
        raise _invalid(f"config.{key} must be an http(s) URL without credentials")
    return value


def _policy(config: Mapping[str, object], *, required: bool) -> tuple[str | None, str]:
    """The policy text and where it came from: inline (YAML/JSON or a mapping) or a file."""
    inline = config.get("policy")
    path = _string(config, "policyPath")
    if inline is not None and path is not None:
        raise _invalid("set config.policy or config.policyPath, not both")
    if isinstance(inline, dict):
        return json.dumps(inline, sort_keys=True), "config.policy"
    if isinstance(inline, str) and inline.strip():
        return inline, "config.policy"
    if inline is not None:
        raise _invalid("config.policy must be a YAML/JSON string or a mapping")
    if path is not None:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_POLICY_BYTES + 1)
        except OSError as exc:
            raise _invalid(f"cannot read config.policyPath {path}: {exc.strerror}") from exc
        if len(data) > MAX_POLICY_BYTES:
            raise _invalid(f"{path}: larger than {MAX_POLICY_BYTES} bytes")
        try:
            return data.decode("utf-8"), path
        except UnicodeDecodeError as exc:
            raise _invalid(f"{path}: not UTF-8") from exc
    if required:
        raise _invalid("config.policy or config.policyPath is required (or config.providerUrl)")
    return None, ""


def default_cache_dir(env: Mapping[str, str]) -> str:
    base = env.get("XDG_CACHE_HOME")
    return os.path.join(base, "atcr-ratify") if base else "/tmp/atcr-ratify-cache"  # noqa: S108


def parse_config(
    config: Mapping[str, object], store: StoreSpec, env: Mapping[str, str]
) -> PluginConfig:
    """Check every parameter; raise :class:`PluginError` code 2 naming the bad one."""
    unknown = sorted(set(config) - _KNOWN_KEYS)
    if unknown:
        raise _invalid(f"unknown config parameter(s): {', '.join(k[:40] for k in unknown[:5])}")
    provider_url = _string(config, "providerUrl")
    provider = None
    if provider_url is not None:
        provider = ProviderConfig(
            url=_url(provider_url, "providerUrl"),
            ca_file=_string(config, "providerCaFile"),
            cert_file=_string(config, "providerCertFile"),
            key_file=_string(config, "providerKeyFile"),
        )
        if (provider.cert_file is None) != (provider.key_file is None):
            raise _invalid("config.providerCertFile and config.providerKeyFile go together")
    policy_text, policy_source = _policy(config, required=provider is None)
    plc_url = _url(_string(config, "plcUrl") or DEFAULT_PLC_URL, "plcUrl")
    plain_http = _hosts(config.get("plainHttp"))
    use_http = bool(store.get("useHttp", False))
    allow_private = _boolean(config, "allowPrivateNetworks", False)
    strict_hints = _boolean(config, "strictHints", True)
    # Off by default: handles are display-only, and their DNS/HTTPS lookups run inside the
    # verification deadline, where a slow resolver could turn a valid signature into a fault.
    verify_handles = _boolean(config, "verifyHandles", False)
    timeout = _timeout(config.get("timeout"))
    decisive = {
        "format": CACHE_FORMAT,
        "policy": policy_text,
        "plcUrl": plc_url,
        "plainHttp": sorted(plain_http),
        "useHttp": use_http,
        "allowPrivateNetworks": allow_private,
        "strictHints": strict_hints,
        "verifyHandles": verify_handles,
        "timeout": timeout,
        "providerUrl": provider_url,
    }
    fingerprint = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()
    name = config.get("name")
    kind = config.get("type")
    return PluginConfig(
        name=name if isinstance(name, str) else "",
        type=kind if isinstance(kind, str) else "",
        policy_text=policy_text,
        policy_source=policy_source,
        plc_url=plc_url,
        plain_http=plain_http,
        use_http=use_http,
        allow_private_networks=allow_private,
        strict_hints=strict_hints,
        verify_handles=verify_handles,
        cache=_boolean(config, "cache", True),
        cache_dir=_string(config, "cacheDir") or default_cache_dir(env),
        timeout=timeout,
        log_file=_string(config, "logFile"),
        provider=provider,
        fingerprint=fingerprint,
    )
