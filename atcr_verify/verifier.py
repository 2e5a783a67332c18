"""The one entry point every front-end calls: ``Verifier.verify(image) -> Verdict``.

Chain of trust: image digest → signature artifact (hints only) → DID document (authoritative key
and PDS) → ``getRecord`` CAR → commit signature → MST inclusion → record block → record binds the
image digest → trust policy. Denials and faults are kept apart all the way up: a verdict is
``failed`` only when the evidence was examined and found wanting, ``error`` when the verifier
could not decide. Neither is an admission under an ``enforce`` policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import httpx

from .cache import AsyncTtlCache, CacheObserver, CacheSettings
from .crypto import PublicKey, parse_legacy_key, parse_multikey
from .errors import (
    DigestMismatch,
    Fault,
    IdentityMismatch,
    KeyFormatError,
    MalformedData,
    VerifyError,
)
from .identity import (
    DidDocumentStore,
    DidResolver,
    HandleResolver,
    Identity,
    IdentitySettings,
    normalise_pds_endpoint,
)
from .net import HttpFetcher, NetworkSettings
from .oci.manifest import Descriptor
from .oci.reference import ImageReference, parse_reference
from .oci.registry import RegistryClient, RegistrySettings
from .oci.signature import SignatureDocument
from .pds import PdsClient
from .policy import DefaultAction, ScopePolicy, TrustedDid, TrustPolicy
from .repo.car import CarLimits
from .repo.mst import MstLimits
from .repo.proof import RecordProof, verify_record_proof
from .verdict import ErrorKind, Outcome, SignatureResult, Verdict

MANIFEST_COLLECTION = "io.atcr.manifest"


@dataclass(frozen=True, slots=True)
class VerifierSettings:
    """Everything that shapes a verification, grouped by the part it configures."""

    network: NetworkSettings = field(default_factory=NetworkSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    car_limits: CarLimits = field(default_factory=CarLimits)
    mst_limits: MstLimits = field(default_factory=MstLimits)
    verify_timeout: float = 10.0
    """Seconds for one whole verification; front-ends pass their own tighter deadline."""
    verify_handles: bool = True
    """Check the signer's handle bidirectionally (for display only; never changes a verdict)."""
    strict_hints: bool = True
    """Deny when the artifact's PDS or key hint contradicts the DID document."""


class VerifierObserver(CacheObserver):
    """Cache events plus DID resolutions; the provider maps these to Prometheus metrics."""

    def did_resolution(self, success: bool) -> None:
        pass


def _parse_key_hint(value: str) -> PublicKey | None:
    """A key hint may be Multikey or the legacy uncompressed form the DID document used."""
    try:
        return parse_multikey(value)
    except KeyFormatError:
        pass
    for method_type in ("EcdsaSecp256k1VerificationKey2019", "EcdsaSecp256r1VerificationKey2019"):
        try:
            return parse_legacy_key(method_type, value)
        except KeyFormatError:
            continue
    return None


def _error_kind(error: VerifyError) -> ErrorKind:
    return "fault" if isinstance(error, Fault) else "denied"


class Verifier:
    """Verifies images against a trust policy; owns its HTTP client and caches."""

    def __init__(
        self,
        policy: TrustPolicy,
        settings: VerifierSettings | None = None,
        *,
        observer: VerifierObserver | None = None,
        client: httpx.AsyncClient | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        did_store: DidDocumentStore | None = None,
    ) -> None:
        """``did_store`` shares raw DID documents across processes (the Ratify plugin's disk)."""
        self.settings = settings or VerifierSettings()
        self.policy = policy
        self._observer = observer or VerifierObserver()
        self._now = now
        self._owns_client = client is None
        self._client = client or HttpFetcher.new_client(self.settings.network)
        self.fetcher = HttpFetcher(self._client, self.settings.network)
        self._registry = RegistryClient(self.fetcher, self.settings.registry)
        self._dids = DidResolver(
            self.fetcher,
            self.settings.identity,
            store=did_store,
            store_ttl=self.settings.cache.did_ttl,
            store_stale_seconds=self.settings.cache.did_stale_seconds,
        )
        self._handles = HandleResolver(self.fetcher)
        self._pds = PdsClient(self.fetcher)
        limit = self.settings.cache.max_entries
        self._identity_cache: AsyncTtlCache[str, Identity] = AsyncTtlCache(
            "did", max_entries=limit, observer=self._observer
        )
        self._handle_cache: AsyncTtlCache[str, str | None] = AsyncTtlCache(
            "handle", max_entries=limit, observer=self._observer
        )
        self._tag_cache: AsyncTtlCache[tuple[str, str], str] = AsyncTtlCache(
            "tag", max_entries=limit, observer=self._observer
        )
        self._verdict_cache: AsyncTtlCache[tuple[str, str, str], Verdict] = AsyncTtlCache(
            "verdict", max_entries=limit, observer=self._observer
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # --- the entry point ---------------------------------------------------------------------

    async def verify(self, image: str, *, policy: TrustPolicy | None = None) -> Verdict:
        """Decide whether ``image`` may run. Raises only :class:`InvalidReference`."""
        policy = policy or self.policy

        async def evaluate(ref: ImageReference, digest: str, scope: ScopePolicy) -> Verdict:
            return await self._verdict_cache.get_or_load(
                (ref.name, digest, policy.fingerprint),
                lambda: self._evaluate(ref, digest, scope, policy),
            )

        return await self._decide_image(image, policy, evaluate)

    async def verify_artifact(
        self, image: str, artifact: Descriptor, *, policy: TrustPolicy | None = None
    ) -> Verdict:
        """Verify ONE signature artifact of ``image`` (Ratify asks per artifact).

        The verdict is ``verified`` when this artifact's signer is trusted by the applicable
        policy and its proof holds. ``minSignatures`` counts artifacts, so it cannot be applied
        to one artifact: Ratify's own policy aggregates the per-artifact reports.
        """
        policy = policy or self.policy

        async def evaluate(ref: ImageReference, digest: str, scope: ScopePolicy) -> Verdict:
            signers = policy.trusted_signers(scope)
            result = await self._check_signature(ref, artifact, digest, signers, self._now())
            single = dataclasses.replace(
                scope, require=dataclasses.replace(scope.require, min_signatures=1)
            )
            return self._decide(str(ref.with_digest(digest)), digest, single, (result,))

        return await self._decide_image(image, policy, evaluate)

    async def _decide_image(
        self,
        image: str,
        policy: TrustPolicy,
        evaluate: Callable[[ImageReference, str, ScopePolicy], Awaitable[Verdict]],
    ) -> Verdict:
        """Policy lookup, tag resolution and the deadline shared by every entry point."""
        ref = parse_reference(image)
        scope = policy.policy_for(ref.name)
        if scope is None:
            return self._unmatched(image, ref, policy)
        if not scope.require.signature:
            return Verdict(
                image=image,
                digest=ref.digest,
                allowed=True,
                verified=False,
                outcome=Outcome.SKIPPED,
                policy=scope.name,
                action=scope.action.value,
                reason=f"policy {scope.name} does not require a signature",
            )
        try:
            async with asyncio.timeout(self.settings.verify_timeout):
                digest = ref.digest or await self._digest_for_tag(ref)
                verdict = await evaluate(ref, digest, scope)
        except TimeoutError:
            return self._undecided(
                image,
                ref.digest,
                scope,
                f"verification did not finish within {self.settings.verify_timeout:g}s",
                Outcome.ERROR,
            )
        except VerifyError as error:
            outcome = Outcome.ERROR if isinstance(error, Fault) else Outcome.FAILED
            return self._undecided(image, ref.digest, scope, error.reason, outcome)
        return verdict if verdict.image == image else dataclasses.replace(verdict, image=image)

    def cached(self, image: str, *, policy: TrustPolicy | None = None) -> Verdict | None:
        """A fresh cached verdict for a digest reference, without any I/O (or None)."""
        ref = parse_reference(image)
        if ref.digest is None:
            return None
        verdict = self._verdict_cache.peek(
            (ref.name, ref.digest, (policy or self.policy).fingerprint)
        )
        if verdict is None or verdict.image == image:
            return verdict
        return dataclasses.replace(verdict, image=image)

    # --- steps --------------------------------------------------------------------------------

    async def _digest_for_tag(self, ref: ImageReference) -> str:
        async def load() -> tuple[str, float]:
            resolved = await self._registry.resolve_digest(ref)
            return resolved.digest, self.settings.cache.tag_ttl

        assert ref.tag is not None
        return await self._tag_cache.get_or_load((ref.name, ref.tag), load)

    async def _evaluate(
        self, ref: ImageReference, digest: str, scope: ScopePolicy, policy: TrustPolicy
    ) -> tuple[Verdict, float]:
        """Verify every signature artifact and apply the scope's requirement."""
        now = self._now()
        image = str(ref.with_digest(digest))
        try:
            descriptors = await self._registry.find_signature_artifacts(ref, digest)
        except VerifyError as error:
            outcome = Outcome.ERROR if isinstance(error, Fault) else Outcome.FAILED
            verdict = self._undecided(image, digest, scope, error.reason, outcome)
            return verdict, self._ttl(verdict, policy, now)
        signers = policy.trusted_signers(scope)
        results = tuple(
            await asyncio.gather(
                *(self._check_signature(ref, d, digest, signers, now) for d in descriptors)
            )
        )
        verdict = self._decide(image, digest, scope, results)
        return verdict, self._ttl(verdict, policy, now)

    async def _check_signature(
        self,
        ref: ImageReference,
        descriptor: Descriptor,
        digest: str,
        signers: Mapping[str, TrustedDid],
        now: datetime,
    ) -> SignatureResult:
        artifact_digest = descriptor.digest
        try:
            document = await self._registry.fetch_signature(ref, descriptor, digest)
        except VerifyError as error:
            return SignatureResult(
                did=None,
                valid=False,
                trusted=False,
                error=error.reason,
                error_kind=_error_kind(error),
                artifact_digest=artifact_digest,
            )
        base = SignatureResult(
            did=document.did,
            valid=False,
            trusted=False,
            record_uri=document.record_uri,
            handle=None,
            artifact_digest=artifact_digest,
        )
        trusted = signers.get(document.did)
        if trusted is None:
            return dataclasses.replace(
                base, error="signer is not a trusted DID for this policy", error_kind="denied"
            )
        window = trusted.window_problem(now)
        if window is not None:
            return dataclasses.replace(base, error=window, error_kind="denied")
        try:
            identity = await self._identity(document.did)
            self._check_hints(document, identity)
            proof, handle = await asyncio.gather(
                self._record_proof(identity, document), self._verified_handle(identity)
            )
            self._check_record(proof, digest)
        except VerifyError as error:
            return dataclasses.replace(
                base, trusted=True, error=error.reason, error_kind=_error_kind(error)
            )
        return dataclasses.replace(
            base,
            valid=True,
            trusted=True,
            handle=handle,
            pds=identity.pds_endpoint,
            commit_cid=str(proof.commit_cid),
            commit_rev=proof.commit.rev,
        )

    async def _identity(self, did: str) -> Identity:
        async def load() -> tuple[Identity, float]:
            try:
                identity = await self._dids.resolve(did)
            except VerifyError:
                self._observer.did_resolution(False)
                raise
            self._observer.did_resolution(True)
            return identity, self.settings.cache.did_ttl

        return await self._identity_cache.get_or_load(
            did, load, stale_seconds=self.settings.cache.did_stale_seconds
        )

    async def _verified_handle(self, identity: Identity) -> str | None:
        if not self.settings.verify_handles or identity.claimed_handle is None:
            return None

        async def load() -> tuple[str | None, float]:
            return await self._handles.verified_handle(identity), self.settings.cache.did_ttl

        return await self._handle_cache.get_or_load(
            f"{identity.did} {identity.claimed_handle}", load
        )

    def _check_hints(self, document: SignatureDocument, identity: Identity) -> None:
        """Hints are never trusted; under ``strict_hints`` a contradiction is a denial."""
        if not self.settings.strict_hints:
            return
        if document.pds_hint is not None:
            try:
                hinted = normalise_pds_endpoint(document.pds_hint, allow_http=True)
            except MalformedData:
                hinted = document.pds_hint
            if hinted != identity.pds_endpoint:
                raise IdentityMismatch(
                    f"artifact claims PDS {document.pds_hint[:100]} but the DID document "
                    f"names {identity.pds_endpoint}"
                )
        if (
            document.key_hint is not None
            and _parse_key_hint(document.key_hint) != identity.signing_key
        ):
            raise IdentityMismatch(
                "artifact claims a signing key that is not the DID document's current key"
            )

    async def _record_proof(self, identity: Identity, document: SignatureDocument) -> RecordProof:
        car = await self._pds.get_record_proof(
            identity.pds_endpoint, identity.did, document.collection, document.rkey
        )
        return verify_record_proof(
            car,
            did=identity.did,
            collection=document.collection,
            rkey=document.rkey,
            key=identity.signing_key,
            car_limits=self.settings.car_limits,
            mst_limits=self.settings.mst_limits,
        )

    @staticmethod
    def _check_record(proof: RecordProof, digest: str) -> None:
        record = proof.record
        if record.get("$type") != MANIFEST_COLLECTION:
            raise MalformedData(f"record is not an {MANIFEST_COLLECTION} record")
        if record.get("digest") != digest:
            claimed = record.get("digest")
            raise DigestMismatch(f"record binds {str(claimed)[:80]}, not the image digest {digest}")

    # --- decisions ----------------------------------------------------------------------------

    def _decide(
        self,
        image: str,
        digest: str,
        scope: ScopePolicy,
        results: tuple[SignatureResult, ...],
    ) -> Verdict:
        needed = scope.require.min_signatures
        verified_dids = {r.did for r in results if r.valid and r.trusted}
        if len(verified_dids) >= needed:
            names = ", ".join(sorted(d for d in verified_dids if d))
            return Verdict(
                image=image,
                digest=digest,
                allowed=True,
                verified=True,
                outcome=Outcome.VERIFIED,
                policy=scope.name,
                action=scope.action.value,
                reason=f"signed by trusted {'DID' if needed == 1 else 'DIDs'} {names}",
                signatures=results,
            )
        # A fault before the signer was known (the artifact could not be fetched) may hide a
        # trusted signature: that is "could not decide", like a fault after a trusted DID.
        undecided = {
            r.did or r.artifact_digest
            for r in results
            if r.error_kind == "fault" and (r.trusted or r.did is None)
        }
        outcome = Outcome.ERROR if len(verified_dids | undecided) >= needed else Outcome.FAILED
        if not results:
            reason = "no ATProto signature artifact found for this image"
        else:
            problems = "; ".join(
                f"{r.did or r.artifact_digest or 'artifact'}: {r.error}" for r in results if r.error
            )
            reason = f"{len(verified_dids)} of {needed} required trusted signatures verified" + (
                f" ({problems[:600]})" if problems else ""
            )
        return self._undecided(image, digest, scope, reason, outcome, results)

    @staticmethod
    def _undecided(
        image: str,
        digest: str | None,
        scope: ScopePolicy,
        reason: str,
        outcome: Outcome,
        results: tuple[SignatureResult, ...] = (),
    ) -> Verdict:
        """Not enough trusted signatures: denied under enforce, admitted under audit."""
        audit = scope.action.value == "audit"
        return Verdict(
            image=image,
            digest=digest,
            allowed=audit,
            verified=False,
            outcome=outcome,
            policy=scope.name,
            action=scope.action.value,
            reason=("audit only: " if audit else "") + reason,
            signatures=results,
        )

    def _unmatched(self, image: str, ref: ImageReference, policy: TrustPolicy) -> Verdict:
        action = policy.default_action
        return Verdict(
            image=image,
            digest=ref.digest,
            allowed=action is not DefaultAction.DENY,
            verified=False,
            outcome=Outcome.SKIPPED if action is not DefaultAction.DENY else Outcome.FAILED,
            policy=None,
            action=action.value,
            reason=f"no policy scope matches {ref.name} (defaultAction: {action.value})",
        )

    def _ttl(self, verdict: Verdict, policy: TrustPolicy, now: datetime) -> float:
        """Verdicts are reused only while nothing they depend on can have changed."""
        cache = self.settings.cache
        if verdict.outcome is Outcome.VERIFIED:
            ttl = cache.verdict_ttl
        elif verdict.outcome is Outcome.FAILED:
            ttl = cache.denial_ttl
        else:
            return 0.0
        change = policy.next_change_after(now)
        if change is not None:
            ttl = min(ttl, (change - now).total_seconds())
        return ttl
