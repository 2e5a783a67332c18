"""OCI side of verification: image references, manifests, signature artifacts, registry client."""

from .manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageIndex,
    ImageManifest,
    Platform,
    parse_descriptor,
    parse_image_manifest,
    parse_index,
    parse_manifest,
    sha256_digest,
)
from .reference import ImageReference, is_sha256_digest, parse_reference
from .registry import (
    AuthChallenge,
    RegistryClient,
    RegistrySettings,
    ResolvedManifest,
    parse_www_authenticate,
)
from .signature import (
    SIGNATURE_ARTIFACT_TYPE,
    SignatureDocument,
    parse_signature_document,
)

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "SIGNATURE_ARTIFACT_TYPE",
    "AuthChallenge",
    "Descriptor",
    "ImageIndex",
    "ImageManifest",
    "ImageReference",
    "Platform",
    "RegistryClient",
    "RegistrySettings",
    "ResolvedManifest",
    "SignatureDocument",
    "is_sha256_digest",
    "parse_descriptor",
    "parse_image_manifest",
    "parse_index",
    "parse_manifest",
    "parse_reference",
    "parse_signature_document",
    "parse_www_authenticate",
    "sha256_digest",
]
