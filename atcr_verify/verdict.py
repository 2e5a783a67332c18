"""The result of a verification, shaped for every front-end (CLI JSON, provider, Ratify)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

ErrorKind = Literal["denied", "fault"]


class Outcome(StrEnum):
    """The metric label of seed 000: ``atcr_verifications_total{result=...}``."""

    VERIFIED = "verified"
    """Enough trusted signatures verified."""
    FAILED = "failed"
    """The evidence was examined and does not satisfy the policy (a denial)."""
    ERROR = "error"
    """The verifier could not decide (network, upstream, deadline)."""
    SKIPPED = "skipped"
    """No verification was required (policy without ``signature: true``, or no scope matched)."""


@dataclass(frozen=True, slots=True)
class SignatureResult:
    """One signature artifact and what became of it."""

    did: str | None
    valid: bool
    trusted: bool
    error: str | None = None
    error_kind: ErrorKind | None = None
    handle: str | None = None
    record_uri: str | None = None
    pds: str | None = None
    commit_cid: str | None = None
    commit_rev: str | None = None
    artifact_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "did": self.did,
            "handle": self.handle,
            "recordUri": self.record_uri,
            "pds": self.pds,
            "commitCid": self.commit_cid,
            "commitRev": self.commit_rev,
            "artifactDigest": self.artifact_digest,
            "valid": self.valid,
            "trusted": self.trusted,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an image may run, and why."""

    image: str
    digest: str | None
    allowed: bool
    verified: bool
    outcome: Outcome
    policy: str | None
    action: str
    reason: str
    signatures: tuple[SignatureResult, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "digest": self.digest,
            "allowed": self.allowed,
            "verified": self.verified,
            "outcome": self.outcome.value,
            "policy": self.policy,
            "action": self.action,
            "reason": self.reason,
            "signatures": [s.to_dict() for s in self.signatures],
        }
