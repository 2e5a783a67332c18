"""Trust policy: which DIDs are trusted, when, and what each image scope requires.

The format is the one of ATCR's plans (seed documents 000/001)::

    version: 1.0
    trustedDIDs:
      did:plc:alice...: {name: "Alice", validFrom: "2024-01-01T00:00:00Z", expiresAt: null}
    policies:
      - name: production-images
        scope: "atcr.io/*/prod-*"
        require: {signature: true, trustedDIDs: [did:plc:alice...], minSignatures: 1}
        action: enforce
    defaultAction: deny        # this project's addition: deny (default) | audit | allow

Scopes are globs over the normalised repository name ``registry/path`` (``nginx`` is
``docker.io/library/nginx``). They are anchored at both ends; ``*`` matches within one path
segment (and within one DNS label in the registry part), ``**`` matches across segments. When
several scopes match, the most specific wins (most literal characters, then fewer wildcards, then
the earlier entry). A policy is validated whole: an invalid file never loads half-way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from .errors import DidDocumentError, PolicyError
from .identity import validate_did

_SCOPE_CHARS = re.compile(r"[a-z0-9._\-/:*\[\]]+")
_MAX_POLICY_BYTES = 1024 * 1024
_MAX_SIGNATURES = 16
_SUPPORTED_VERSIONS = frozenset({"1", "1.0"})


class Action(StrEnum):
    """What a policy does when its requirements are not met."""

    ENFORCE = "enforce"
    AUDIT = "audit"


class DefaultAction(StrEnum):
    """What happens to an image that no policy scope matches."""

    DENY = "deny"
    AUDIT = "audit"
    ALLOW = "allow"


@dataclass(frozen=True, slots=True)
class TrustedDid:
    """A DID the operator trusts, within an optional validity window."""

    did: str
    name: str
    valid_from: datetime | None = None
    expires_at: datetime | None = None

    def trusted_at(self, now: datetime) -> bool:
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.expires_at is None or now <= self.expires_at

    def window_problem(self, now: datetime) -> str | None:
        """Why the DID is not trusted at ``now``, or None when it is."""
        if self.valid_from is not None and now < self.valid_from:
            return f"trust in {self.did} starts at {self.valid_from.isoformat()}"
        if self.expires_at is not None and now > self.expires_at:
            return f"trust in {self.did} expired at {self.expires_at.isoformat()}"
        return None


@dataclass(frozen=True, slots=True)
class Requirement:
    signature: bool = True
    trusted_dids: frozenset[str] = frozenset()
    """Empty means every DID of the policy's ``trustedDIDs`` map."""
    min_signatures: int = 1


@dataclass(frozen=True, slots=True)
class ScopePolicy:
    name: str
    scope: str
    require: Requirement
    action: Action
    specificity: tuple[int, int, int] = field(compare=False)
    pattern: re.Pattern[str] = field(compare=False, repr=False)

    def matches(self, repository_name: str) -> bool:
        return self.pattern.fullmatch(repository_name) is not None


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """A validated trust policy. ``fingerprint`` changes whenever any decision could change."""

    trusted_dids: Mapping[str, TrustedDid]
    policies: tuple[ScopePolicy, ...]
    default_action: DefaultAction
    fingerprint: str
    source: str = "<policy>"

    def policy_for(self, repository_name: str) -> ScopePolicy | None:
        """The most specific policy whose scope matches ``registry/repository``."""
        best: ScopePolicy | None = None
        for policy in self.policies:
            if policy.matches(repository_name) and (
                best is None or policy.specificity > best.specificity
            ):
                best = policy
        return best

    def trusted_signers(self, policy: ScopePolicy) -> Mapping[str, TrustedDid]:
        """The DIDs whose signatures count for ``policy``."""
        if not policy.require.trusted_dids:
            return self.trusted_dids
        return {did: self.trusted_dids[did] for did in policy.require.trusted_dids}

    def next_change_after(self, now: datetime) -> datetime | None:
        """The next instant a trust window opens or closes: cached verdicts must not outlive it."""
        instants = [
            instant
            for trusted in self.trusted_dids.values()
            for instant in (trusted.valid_from, trusted.expires_at)
            if instant is not None and instant > now
        ]
        return min(instants, default=None)


def compile_scope(scope: str, *, path: str = "scope", source: str = "<policy>") -> re.Pattern[str]:
    """Translate an anchored, host-aware scope glob into a regular expression."""
    if not scope or not _SCOPE_CHARS.fullmatch(scope) or "[" in scope or "]" in scope:
        raise PolicyError(
            "scope must be a lowercase repository glob (letters, digits, . _ - / : and *)",
            source=source,
            path=path,
        )
    if "***" in scope:
        raise PolicyError("'***' is not a valid wildcard", source=source, path=path)
    host, slash, rest = scope.partition("/")
    if ":" in rest:
        raise PolicyError(
            "scopes match repositories: tags and digests are not part of a scope",
            source=source,
            path=path,
        )
    if not slash and "**" not in host:
        raise PolicyError(
            "a scope names a registry and a repository, e.g. 'atcr.io/alice/*'",
            source=source,
            path=path,
        )
    return re.compile(
        _glob_to_regex(host, label_bound=True) + re.escape(slash) + _glob_to_regex(rest)
    )


def _glob_to_regex(glob: str, *, label_bound: bool = False) -> str:
    single = r"[^/.]*" if label_bound else r"[^/]*"
    out: list[str] = []
    for index, token in enumerate(re.split(r"(\*\*|\*)", glob)):
        if index % 2 == 0:
            out.append(re.escape(token))
        else:
            out.append(".*" if token == "**" else single)  # noqa: S105 - a glob token
    return "".join(out)


def _specificity(scope: str) -> tuple[int, int, int]:
    literal = len(scope.replace("*", ""))
    doubles = scope.count("**")
    singles = scope.count("*") - 2 * doubles
    return (literal, -doubles, -singles)


def load_policy_file(path: str | Path) -> TrustPolicy:
    """Read and validate a policy file (YAML or JSON)."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"cannot read policy: {exc.strerror or exc}", source=source) from exc
    return load_policy(raw, source=source)


def load_policy(text: str | bytes, *, source: str = "<policy>") -> TrustPolicy:
    """Parse and validate a policy document; raises :class:`PolicyError` naming the bad path."""
    if len(text) > _MAX_POLICY_BYTES:
        raise PolicyError(f"policy is larger than {_MAX_POLICY_BYTES} bytes", source=source)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}", source=source, path=where
        ) from exc
    except RecursionError as exc:
        raise PolicyError("policy nests too deeply", source=source) from exc
    return _PolicyParser(source).parse(document)


class _PolicyParser:
    """Validates a decoded policy document, collecting the path of every value it reads."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, reason: str) -> PolicyError:
        return PolicyError(reason, source=self.source, path=path)

    def parse(self, document: object) -> TrustPolicy:
        root = self._mapping(
            document, "(root)", {"version", "trustedDIDs", "policies", "defaultAction"}
        )
        self._version(root.get("version"))
        trusted = self._trusted_dids(root.get("trustedDIDs", {}))
        policies = self._policies(root.get("policies", []), trusted)
        default_raw = root.get("defaultAction", DefaultAction.DENY.value)
        try:
            default_action = DefaultAction(default_raw)
        except ValueError:
            raise self.fail("defaultAction", "must be one of deny, audit, allow") from None
        return TrustPolicy(
            trusted_dids=trusted,
            policies=policies,
            default_action=default_action,
            fingerprint=self._fingerprint(trusted, policies, default_action),
            source=self.source,
        )

    def _mapping(self, value: object, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a mapping")
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                raise self.fail(
                    f"{path}.{key}" if path != "(root)" else str(key),
                    f"unknown field (allowed: {', '.join(sorted(allowed))})",
                )
        return value

    def _version(self, value: object) -> None:
        if value is None:
            raise self.fail("version", "is required (use 1.0)")
        text = str(value)
        if isinstance(value, bool) or text not in _SUPPORTED_VERSIONS:
            raise self.fail("version", f"unsupported version {text!r} (supported: 1.0)")

    def _trusted_dids(self, value: object) -> dict[str, TrustedDid]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail("trustedDIDs", "must be a mapping of DID to its details")
        result: dict[str, TrustedDid] = {}
        for did, details in value.items():
            path = f"trustedDIDs.{did}"
            if not isinstance(did, str):
                raise self.fail(path, "DID must be a string")
            try:
                validate_did(did)
            except DidDocumentError as exc:
                raise self.fail(path, exc.reason) from None
            entry = self._mapping(details or {}, path, {"name", "validFrom", "expiresAt"})
            name = entry.get("name", did)
            if not isinstance(name, str):
                raise self.fail(f"{path}.name", "must be a string")
            valid_from = self._timestamp(entry.get("validFrom"), f"{path}.validFrom")
            expires_at = self._timestamp(entry.get("expiresAt"), f"{path}.expiresAt")
            if valid_from and expires_at and expires_at <= valid_from:
                raise self.fail(f"{path}.expiresAt", "must be later than validFrom")
            result[did] = TrustedDid(did, name, valid_from, expires_at)
        return result

    def _timestamp(self, value: object, path: str) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):  # YAML parses unquoted timestamps itself
            parsed = value
        elif isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise self.fail(path, f"not an RFC 3339 timestamp: {value!r}") from None
        else:
            raise self.fail(path, "must be an RFC 3339 timestamp or null")
        if parsed.tzinfo is None:
            raise self.fail(path, "timestamp needs a timezone (e.g. a trailing Z)")
        return parsed.astimezone(UTC)

    def _policies(
        self, value: object, trusted: Mapping[str, TrustedDid]
    ) -> tuple[ScopePolicy, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail("policies", "must be a list")
        names: set[str] = set()
        result = []
        for index, item in enumerate(value):
            path = f"policies[{index}]"
            entry = self._mapping(item, path, {"name", "scope", "require", "action"})
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise self.fail(f"{path}.name", "is required")
            if name in names:
                raise self.fail(f"{path}.name", f"duplicate policy name {name!r}")
            names.add(name)
            scope = entry.get("scope")
            if not isinstance(scope, str):
                raise self.fail(f"{path}.scope", "is required")
            pattern = compile_scope(scope, path=f"{path}.scope", source=self.source)
            try:
                action = Action(entry.get("action", Action.ENFORCE.value))
            except ValueError:
                raise self.fail(f"{path}.action", "must be enforce or audit") from None
            require = self._requirement(entry.get("require"), f"{path}.require", trusted)
            result.append(ScopePolicy(name, scope, require, action, _specificity(scope), pattern))
        return tuple(result)

    def _requirement(
        self, value: object, path: str, trusted: Mapping[str, TrustedDid]
    ) -> Requirement:
        entry = self._mapping(
            value if value is not None else {}, path, {"signature", "trustedDIDs", "minSignatures"}
        )
        signature = entry.get("signature", True)
        if not isinstance(signature, bool):
            raise self.fail(f"{path}.signature", "must be true or false")
        dids_raw = entry.get("trustedDIDs", [])
        if not isinstance(dids_raw, list) or not all(isinstance(d, str) for d in dids_raw):
            raise self.fail(f"{path}.trustedDIDs", "must be a list of DIDs")
        for index, did in enumerate(dids_raw):
            if did not in trusted:
                raise self.fail(
                    f"{path}.trustedDIDs[{index}]",
                    f"{did} is not declared in the top-level trustedDIDs",
                )
        minimum = entry.get("minSignatures", 1)
        if (
            isinstance(minimum, bool)
            or not isinstance(minimum, int)
            or not 1 <= minimum <= _MAX_SIGNATURES
        ):
            raise self.fail(
                f"{path}.minSignatures", f"must be an integer from 1 to {_MAX_SIGNATURES}"
            )
        if signature:
            signers = set(dids_raw) or set(trusted)
            if len(signers) < minimum:
                raise self.fail(
                    f"{path}.minSignatures",
                    f"requires {minimum} signatures but only {len(signers)} DIDs are trusted",
                )
        return Requirement(signature, frozenset(dids_raw), minimum)

    @staticmethod
    def _fingerprint(
        trusted: Mapping[str, TrustedDid],
        policies: tuple[ScopePolicy, ...],
        default_action: DefaultAction,
    ) -> str:
        canonical = {
            "trusted": {
                did: [t.name, _iso(t.valid_from), _iso(t.expires_at)]
                for did, t in sorted(trusted.items())
            },
            "policies": [
                [
                    p.name,
                    p.scope,
                    p.action.value,
                    p.require.signature,
                    sorted(p.require.trusted_dids),
                    p.require.min_signatures,
                ]
                for p in policies
            ],
            "default": default_action.value,
        }
        encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
