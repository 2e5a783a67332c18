"""Trust policies in force: a default policy plus optional per-namespace overrides.

Both sources (a file or directory, a ConfigMap) produce the same thing, a mapping of names to
policy documents: ``policy.yaml`` is the default, ``policy.<namespace>.yaml`` overrides it for one
namespace (the names follow ``--policy-key``). A set is validated whole: one invalid document
rejects the update and the previous set stays in force, with the error logged and counted.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from structlog.typing import FilteringBoundLogger

from atcr_verify import PolicyError, TrustPolicy, load_policy

from .metrics import ProviderMetrics
from .reload import stamps

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The default policy and the per-namespace ones, as loaded together from one source."""

    default: TrustPolicy
    namespaces: Mapping[str, TrustPolicy]
    origin: str

    def for_namespace(self, namespace: str | None) -> TrustPolicy:
        if namespace is None:
            return self.default
        return self.namespaces.get(namespace, self.default)

    @property
    def fingerprint(self) -> str:
        """Changes whenever any policy of the set could decide differently."""
        parts = [f"={self.default.fingerprint}"]
        parts += [f"{ns}={p.fingerprint}" for ns, p in sorted(self.namespaces.items())]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class PolicyKeys:
    """Which names hold policies: ``policy.yaml`` and ``policy.<namespace>.yaml`` by default."""

    def __init__(self, default_key: str) -> None:
        self.default_key = default_key
        self._stem, self._suffix = os.path.splitext(default_key)

    def namespace_key(self, namespace: str) -> str:
        return f"{self._stem}.{namespace}{self._suffix}"

    def namespace_of(self, key: str) -> str | None:
        """The namespace a key is for, or None when the key is not a namespace policy."""
        prefix = f"{self._stem}."
        if key == self.default_key or not key.startswith(prefix):
            return None
        if self._suffix and not key.endswith(self._suffix):
            return None
        return key[len(prefix) : len(key) - len(self._suffix)]

    def is_policy_key(self, key: str) -> bool:
        return key == self.default_key or self.namespace_of(key) is not None


def build_policy_set(
    entries: Mapping[str, str | bytes], keys: PolicyKeys, origin: str
) -> PolicySet:
    """Validate every policy in ``entries``; raise :class:`PolicyError` naming the bad one."""
    if keys.default_key not in entries:
        raise PolicyError(f"no {keys.default_key} (the default policy)", source=origin)
    default = load_policy(entries[keys.default_key], source=f"{origin}:{keys.default_key}")
    namespaces: dict[str, TrustPolicy] = {}
    for key, text in sorted(entries.items()):
        namespace = keys.namespace_of(key)
        if namespace is None:
            continue  # not a policy (a README key, say)
        if len(namespace) > 63 or not _NAMESPACE.fullmatch(namespace):
            raise PolicyError(
                f"{namespace!r} is not a valid namespace name", source=f"{origin}:{key}"
            )
        namespaces[namespace] = load_policy(text, source=f"{origin}:{key}")
    return PolicySet(default, MappingProxyType(namespaces), origin)


class PolicyStore:
    """Holds the policy set in force; updates are all-or-nothing and observable."""

    def __init__(
        self, keys: PolicyKeys, metrics: ProviderMetrics, logger: FilteringBoundLogger
    ) -> None:
        self.keys = keys
        self.current: PolicySet | None = None
        self.last_error: str | None = None
        self._metrics = metrics
        self._log = logger

    @property
    def ready(self) -> bool:
        return self.current is not None

    def update(self, entries: Mapping[str, str | bytes], origin: str) -> bool:
        """Load a new set from ``entries``; on failure keep the previous one and say why."""
        try:
            policies = build_policy_set(entries, self.keys, origin)
        except PolicyError as error:
            self.reject(error.reason, origin)
            return False
        previous = self.current
        self.current = policies
        self.last_error = None
        metrics = self._metrics
        metrics.policy_reloads.labels("success").inc()
        metrics.policy_last_success.set(time.time())
        metrics.policy_loaded.set(1)
        metrics.policy_info.clear()
        metrics.policy_info.labels("", policies.default.fingerprint).set(1)
        for namespace, policy in policies.namespaces.items():
            metrics.policy_info.labels(namespace, policy.fingerprint).set(1)
        self._log.info(
            "policy loaded",
            origin=origin,
            fingerprint=policies.fingerprint,
            default_fingerprint=policies.default.fingerprint,
            namespaces=sorted(policies.namespaces),
            changed=previous is None or previous.fingerprint != policies.fingerprint,
        )
        return True

    def reject(self, reason: str, origin: str) -> None:
        """An update that cannot be used: the previous policy (if any) stays in force."""
        self.last_error = reason
        self._metrics.policy_reloads.labels("failure").inc()
        self._log.error(
            "policy update rejected; keeping the previous policy",
            origin=origin,
            error=reason,
            kept=self.current.fingerprint if self.current else None,
        )


class FilePolicySource:
    """A policy file (the default policy only) or a directory of policy files, polled."""

    def __init__(self, path: Path, store: PolicyStore) -> None:
        self.path = path
        self._store = store
        self._seen: object = None

    def _files(self) -> list[Path]:
        if not self.path.is_dir():
            return [self.path]
        try:
            names = sorted(os.listdir(self.path))
        except OSError:
            return []
        return [
            self.path / name
            for name in names
            if not name.startswith(".") and self._store.keys.is_policy_key(name)
        ]

    def check(self) -> None:
        """Reload when any policy file appeared, vanished or changed since the last look."""
        files = self._files()
        seen = (self.path.is_dir(), stamps(files))
        if seen == self._seen:
            return
        self._seen = seen
        origin = str(self.path)
        entries: dict[str, bytes] = {}
        for file in files:
            key = self._store.keys.default_key if not self.path.is_dir() else file.name
            try:
                with open(file, "rb") as handle:
                    entries[key] = handle.read(_MAX_FILE_BYTES + 1)
            except OSError as exc:
                self._store.reject(f"cannot read {file}: {exc.strerror or exc}", origin)
                return
        self._store.update(entries, origin)
