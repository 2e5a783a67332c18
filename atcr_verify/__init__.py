"""atcr_verify: prove that a container image was published by a trusted ATProto DID.

The core knows nothing about web servers, Ratify or command lines: front-ends build a
:class:`Verifier` from a :class:`TrustPolicy` and :class:`VerifierSettings` and call
:meth:`Verifier.verify`.
"""

from .cache import CacheSettings
from .errors import (
    ConfigError,
    Denied,
    Fault,
    InvalidReference,
    PolicyError,
    VerifyError,
)
from .identity import DidDocumentStore, IdentitySettings
from .net import NetworkSettings
from .oci.reference import ImageReference, parse_reference
from .oci.registry import RegistrySettings
from .policy import TrustPolicy, load_policy, load_policy_file
from .verdict import Outcome, SignatureResult, Verdict
from .verifier import Verifier, VerifierObserver, VerifierSettings

__all__ = [
    "CacheSettings",
    "ConfigError",
    "Denied",
    "DidDocumentStore",
    "Fault",
    "IdentitySettings",
    "ImageReference",
    "InvalidReference",
    "NetworkSettings",
    "Outcome",
    "PolicyError",
    "RegistrySettings",
    "SignatureResult",
    "TrustPolicy",
    "Verdict",
    "Verifier",
    "VerifierObserver",
    "VerifierSettings",
    "VerifyError",
    "load_policy",
    "load_policy_file",
    "parse_reference",
]
