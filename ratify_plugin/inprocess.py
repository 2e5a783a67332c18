"""Verify one artifact with the shared core, in this process.

Imported only on a disk-cache miss: this module (and the core behind it) is what a warm answer
does not load.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from atcr_verify import (
    CacheSettings,
    ConfigError,
    IdentitySettings,
    InvalidReference,
    NetworkSettings,
    Outcome,
    RegistrySettings,
    TrustPolicy,
    Verdict,
    Verifier,
    VerifierSettings,
    load_policy,
    parse_reference,
)
from atcr_verify.errors import OciFormatError
from atcr_verify.oci.manifest import Descriptor, parse_descriptor
from atcr_verify.oci.signature import SIGNATURE_ARTIFACT_TYPE

from .config import PluginConfig
from .credentials import docker_credentials
from .diskcache import DiskCache, FileDidStore
from .wire import (
    ErrorCode,
    Extensions,
    PluginError,
    ReferenceDesc,
    VerifierResult,
    clip,
)


def verifier_settings(
    config: PluginConfig, registry: str, credentials: Mapping[str, tuple[str, str]]
) -> VerifierSettings:
    """The core's settings for this invocation; ``useHttp`` adds the subject's registry."""
    plain = set(config.plain_http)
    if config.use_http:
        plain.add(registry)
    return VerifierSettings(
        network=NetworkSettings(
            allow_private_networks=config.allow_private_networks,
            request_timeout=min(5.0, config.timeout),
            connect_timeout=min(2.0, config.timeout),
        ),
        registry=RegistrySettings(plain_http_hosts=frozenset(plain), credentials=credentials),
        identity=IdentitySettings(
            plc_url=config.plc_url,
            allow_http_pds=config.allow_private_networks,
            allow_did_web_localhost_port=config.allow_private_networks,
        ),
        verify_timeout=config.timeout,
        verify_handles=config.verify_handles,
        strict_hints=config.strict_hints,
    )


def _policy(config: PluginConfig) -> TrustPolicy:
    if config.policy_text is None:
        raise PluginError(ErrorCode.INVALID_VERIFIER_CONFIG, "no trust policy configured")
    try:
        return load_policy(config.policy_text, source=config.policy_source)
    except ConfigError as error:
        raise PluginError(ErrorCode.INVALID_VERIFIER_CONFIG, error.reason) from error


def _descriptor(desc: ReferenceDesc) -> Descriptor:
    try:
        return parse_descriptor(dict(desc), "referenceDesc")
    except OciFormatError as error:
        raise PluginError(ErrorCode.CONFIG_PARSING_FAILURE, error.reason) from error


async def verify_in_process(
    config: PluginConfig, subject: str, desc: ReferenceDesc, cache: DiskCache | None
) -> tuple[VerifierResult, float]:
    """The answer for one artifact and how long it may be reused (0: not at all)."""
    policy = _policy(config)
    try:
        ref = parse_reference(subject)
    except InvalidReference as error:
        raise PluginError(
            ErrorCode.ARGS_PARSING_FAILURE, "cannot parse subject reference", error.reason
        ) from error
    descriptor = _descriptor(desc)
    if descriptor.artifact_type not in (None, SIGNATURE_ARTIFACT_TYPE):
        return not_ours(config, descriptor), 0.0
    settings = verifier_settings(config, ref.registry, docker_credentials(ref.registry))
    store = FileDidStore(cache) if cache is not None else None
    now = datetime.now(UTC)
    async with Verifier(policy, settings, did_store=store) as verifier:
        verdict = await verifier.verify_artifact(subject, descriptor)
    ttl = reuse_seconds(verdict, policy, settings.cache, now)
    if ref.digest is None:
        ttl = min(ttl, settings.cache.tag_ttl)  # a tag may move: reuse no longer than the core
    return to_result(config, verdict, descriptor.digest), ttl


def not_ours(config: PluginConfig, descriptor: Descriptor) -> VerifierResult:
    """Ratify routed an artifact of another type here: a failed check, never a pass."""
    reason = (
        f"artifact {descriptor.digest} is not an ATProto signature artifact "
        f"(artifactType {clip(descriptor.artifact_type or '', 120)}); "
        "list only application/vnd.atproto.signature.v1+json in this verifier's artifactTypes"
    )
    extensions: Extensions = {
        "did": None,
        "handle": None,
        "recordUri": None,
        "policy": None,
        "reason": reason,
        "digest": None,
        "artifactDigest": descriptor.digest,
        "outcome": Outcome.FAILED.value,
        "verified": False,
        "action": None,
        "source": "plugin",
    }
    return {
        "isSuccess": False,
        "name": config.name,
        "type": config.type,
        "message": reason,
        "extensions": extensions,
    }


def to_result(config: PluginConfig, verdict: Verdict, artifact_digest: str) -> VerifierResult:
    """``isSuccess`` is the trust policy's admission; ``extensions`` say how it was reached."""
    signature = verdict.signatures[0] if verdict.signatures else None
    reason = clip(verdict.reason)
    message = reason
    if verdict.outcome is Outcome.ERROR:
        message = clip(f"could not decide: {reason}")
    extensions: Extensions = {
        "did": signature.did if signature else None,
        "handle": signature.handle if signature else None,
        "recordUri": signature.record_uri if signature else None,
        "policy": verdict.policy,
        "reason": reason,
        "digest": verdict.digest,
        "artifactDigest": artifact_digest,
        "outcome": verdict.outcome.value,
        "verified": verdict.verified,
        "action": verdict.action,
        "source": "plugin",
    }
    return {
        "isSuccess": verdict.allowed,
        "name": config.name,
        "type": config.type,
        "message": message,
        "extensions": extensions,
    }


def reuse_seconds(
    verdict: Verdict, policy: TrustPolicy, cache: CacheSettings, now: datetime
) -> float:
    """The core's verdict TTLs: verified and skipped long, denials short, undecided never.

    A reuse never crosses the policy's next trust-window boundary (``validFrom``/``expiresAt``).
    """
    if verdict.outcome in (Outcome.VERIFIED, Outcome.SKIPPED):
        ttl = cache.verdict_ttl
    elif verdict.outcome is Outcome.FAILED:
        ttl = cache.denial_ttl
    else:
        return 0.0
    change = policy.next_change_after(now)
    if change is not None:
        ttl = min(ttl, (change - now).total_seconds())
    return max(ttl, 0.0)
