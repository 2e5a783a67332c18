"""One error taxonomy for the whole verifier.

Every failure is either a *denial* (the evidence was examined and does not prove the claim: a
verdict) or a *fault* (the verifier could not decide: network, upstream, limits). Front-ends map
denials to "not admitted" and faults to "could not decide"; neither is ever an admission under an
``enforce`` policy. Configuration and usage mistakes are a third family, raised before any
verification starts.

Every message is short, human-readable and free of secrets: it travels into admission responses.
"""

from __future__ import annotations


class VerifyError(Exception):
    """Base of every error this package raises on purpose."""

    @property
    def reason(self) -> str:
        return str(self) or type(self).__name__


# --- Denials: the evidence is wrong -------------------------------------------------------------


class Denied(VerifyError):
    """The evidence does not prove that a trusted DID published this image."""


class MalformedData(Denied):
    """Untrusted input failed to parse or broke a structural rule."""


class CborError(MalformedData):
    """Not strict DAG-CBOR (DRISL)."""


class CidError(MalformedData):
    """Not a valid (blessed) CID, or bytes that do not hash to it."""


class CarError(MalformedData):
    """Not a valid CAR v1 stream for an atproto proof."""


class MstError(MalformedData):
    """The Merkle Search Tree proof is malformed or structurally invalid."""


class DidDocumentError(MalformedData):
    """The DID document is malformed or lacks the atproto key or PDS."""


class KeyFormatError(MalformedData):
    """A public key in an unsupported or malformed encoding."""


class OciFormatError(MalformedData):
    """An OCI manifest, index, descriptor or signature document is malformed."""


class SignatureInvalid(Denied):
    """A signature does not verify against the DID's current key."""


class IdentityMismatch(Denied):
    """Two places that must name the same DID, handle or subject disagree."""


class DigestMismatch(Denied):
    """Content does not match the digest it was asked for or claims to bind."""


class RecordNotFound(Denied):
    """The record is not in the repository's current commit (deleted records are revoked)."""


class NotFound(Denied):
    """An upstream answered definitively that the thing does not exist (DID, repo, image)."""


class LimitExceeded(Denied):
    """Input exceeded a hard limit (size, count, depth): refused rather than processed."""


class UntrustedSigner(Denied):
    """The signer is valid but not trusted by the policy (or outside its trust window)."""


# --- Faults: could not decide -----------------------------------------------------------------


class Fault(VerifyError):
    """The verifier could not reach a decision. Never an admission under ``enforce``."""


class UpstreamError(Fault):
    """An upstream (PLC, PDS, registry, DNS) failed: 5xx, 429, bad status, transport error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpstreamTimeout(UpstreamError):
    """An upstream did not answer within its deadline."""


class ResponseTooLarge(UpstreamError):
    """An upstream body exceeded its size limit; reading stopped at the limit."""


class AddressBlocked(Fault):
    """The SSRF guard refused a loopback, private, link-local or metadata address."""


class DeadlineExceeded(Fault):
    """The whole verification ran out of time."""


# --- Configuration and usage --------------------------------------------------------------------


class ConfigError(VerifyError):
    """Invalid settings, policy or user input: raised before verification starts."""


class PolicyError(ConfigError):
    """The trust policy is invalid; it names the file, the path inside it and the reason."""

    def __init__(self, reason: str, *, source: str = "<policy>", path: str = "") -> None:
        self.source = source
        self.path = path
        self.detail = reason
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {reason}")


class InvalidReference(ConfigError):
    """The image reference cannot be parsed."""
