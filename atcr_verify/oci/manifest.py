"""Strict parsing of OCI / Docker v2 manifests, indexes and descriptors.

Manifests come from registries we do not trust. Parsing is deliberately stricter than a JSON
decoder: UTF-8 only, no duplicate keys (two parsers could otherwise pick different values), no
NaN/Infinity, bounded size and nesting, checked digests and sizes, and no ambiguous documents that
could be read both as a manifest and as an index (CVE-2021-41190). Unknown fields are ignored, as
the OCI image-spec requires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeGuard

from ..errors import OciFormatError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
KNOWN_MEDIA_TYPES = MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Default body limit; registries commonly refuse manifests above 4 MiB."""
MAX_JSON_DEPTH = 32
MAX_DESCRIPTORS = 10_000
"""Layers in a manifest or entries in an index."""
MAX_DESCRIPTOR_SIZE = 2**63 - 1
"""OCI sizes are int64."""
MAX_ANNOTATIONS = 1_000

_EMPTY_ANNOTATIONS: Mapping[str, str] = MappingProxyType({})
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
_DIGEST = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
_REGISTERED_ALGORITHMS = {
    "sha256": re.compile(r"[a-f0-9]{64}"),
    "sha512": re.compile(r"[a-f0-9]{128}"),
    "blake3": re.compile(r"[a-f0-9]{64}"),
}
_MAX_DIGEST_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class Platform:
    """The platform of one index entry (only what a verifier may want to report)."""

    architecture: str
    os: str
    variant: str | None = None


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor: what to fetch, how big it is and what it must hash to."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY_ANNOTATIONS, hash=False)
    data: bytes | None = field(default=None, repr=False)
    urls: tuple[str, ...] = ()
    platform: Platform | None = None


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """An OCI image manifest or a Docker v2 schema 2 manifest."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY_ANNOTATIONS, hash=False)


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """An OCI image index or a Docker manifest list."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY_ANNOTATIONS, hash=False)


# --- JSON ---------------------------------------------------------------------------------------


def loads_strict_json(
    body: bytes, *, max_bytes: int, what: str, max_depth: int = MAX_JSON_DEPTH
) -> dict[str, Any]:
    """Decode one JSON object: UTF-8, no duplicate keys, no NaN, bounded size and depth."""
    if len(body) > max_bytes:
        raise OciFormatError(f"{what} is larger than {max_bytes} bytes")
    if body.startswith(b"\xef\xbb\xbf"):
        raise OciFormatError(f"{what} starts with a byte-order mark")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OciFormatError(f"{what} is not UTF-8") from exc
    try:
        value = json.loads(text, object_pairs_hook=_unique_object, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise OciFormatError(f"{what} is nested too deeply") from exc
    except _DuplicateKey as exc:
        raise OciFormatError(f"{what} has a duplicate key {exc.key[:80]!r}") from exc
    except ValueError as exc:  # JSONDecodeError, oversized integers, NaN
        raise OciFormatError(f"{what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise OciFormatError(f"{what} is not a JSON object")
    if _depth(value) > max_depth:
        raise OciFormatError(f"{what} is nested deeper than {max_depth} levels")
    return value


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: object) -> int:
    """Nesting depth, computed iteratively so that it cannot itself recurse too deeply."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


# --- Digests ------------------------------------------------------------------------------------


def is_valid_digest(value: object) -> TypeGuard[str]:
    """OCI digest grammar; registered algorithms must also have their exact encoding."""
    if not isinstance(value, str) or len(value) > _MAX_DIGEST_LENGTH:
        return False
    match = _DIGEST.fullmatch(value)
    if match is None:
        return False
    encoded = _REGISTERED_ALGORITHMS.get(match.group(1))
    return encoded is None or encoded.fullmatch(match.group(2)) is not None


def sha256_digest(body: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``body``."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def digest_matches(digest: str, body: bytes) -> bool:
    """True when ``body`` hashes to ``digest`` (sha256 or sha512; other algorithms never match)."""
    algorithm, _, encoded = digest.partition(":")
    if algorithm not in ("sha256", "sha512"):
        return False
    return hashlib.new(algorithm, body).hexdigest() == encoded


# --- Parsing ------------------------------------------------------------------------------------


def parse_manifest(
    body: bytes, *, content_type: str | None = None, max_bytes: int = MAX_MANIFEST_BYTES
) -> ImageManifest | ImageIndex:
    """Parse a manifest or an index; the kind comes from ``mediaType`` or the Content-Type."""
    document = loads_strict_json(body, max_bytes=max_bytes, what="manifest")
    media_type = _effective_media_type(document, content_type)
    if media_type in INDEX_MEDIA_TYPES:
        return _parse_index(document, media_type)
    return _parse_image_manifest(document, media_type)


def parse_image_manifest(
    body: bytes, *, content_type: str | None = None, max_bytes: int = MAX_MANIFEST_BYTES
) -> ImageManifest:
    """Parse a document that must be an image manifest."""
    parsed = parse_manifest(body, content_type=content_type, max_bytes=max_bytes)
    if not isinstance(parsed, ImageManifest):
        raise OciFormatError(f"expected an image manifest, got {parsed.media_type}")
    return parsed


def parse_index(
    body: bytes, *, content_type: str | None = None, max_bytes: int = MAX_MANIFEST_BYTES
) -> ImageIndex:
    """Parse a document that must be an image index (or Docker manifest list)."""
    parsed = parse_manifest(body, content_type=content_type, max_bytes=max_bytes)
    if not isinstance(parsed, ImageIndex):
        raise OciFormatError(f"expected an image index, got {parsed.media_type}")
    return parsed


def parse_descriptor(value: object, where: str = "descriptor") -> Descriptor:
    """Parse one descriptor object; ``where`` names it in error messages."""
    obj = _object(value, where)
    media_type = _media_type(obj.get("mediaType"), f"{where}.mediaType")
    digest = obj.get("digest")
    if not is_valid_digest(digest):
        raise OciFormatError(f"{where}.digest is not a valid digest")
    size = _size(obj.get("size"), f"{where}.size")
    artifact_type = _optional_media_type(obj.get("artifactType"), f"{where}.artifactType")
    annotations = _annotations(obj.get("annotations"), f"{where}.annotations")
    data = _data(obj.get("data"), digest, size, where)
    urls = _urls(obj.get("urls"), f"{where}.urls")
    platform = _platform(obj.get("platform"), f"{where}.platform")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=artifact_type,
        annotations=annotations,
        data=data,
        urls=urls,
        platform=platform,
    )


def _effective_media_type(document: Mapping[str, Any], content_type: str | None) -> str:
    schema_version = document.get("schemaVersion")
    if type(schema_version) is not int or schema_version != 2:
        raise OciFormatError("manifest schemaVersion must be 2")
    declared = document.get("mediaType")
    header = _bare_content_type(content_type)
    if declared is not None:
        if not isinstance(declared, str) or declared not in KNOWN_MEDIA_TYPES:
            raise OciFormatError(f"unsupported manifest mediaType {_clip(declared)!r}")
        if header in KNOWN_MEDIA_TYPES and header != declared:
            raise OciFormatError(
                f"manifest mediaType {declared} disagrees with Content-Type {header}"
            )
        return declared
    if header in KNOWN_MEDIA_TYPES:
        return header
    # OCI allows omitting mediaType; fall back to the shape (ambiguity is rejected later).
    return OCI_INDEX if "manifests" in document else OCI_MANIFEST


def _parse_image_manifest(document: Mapping[str, Any], media_type: str) -> ImageManifest:
    if "manifests" in document:
        raise OciFormatError("image manifest must not contain 'manifests'")
    config = parse_descriptor(document.get("config"), "config")
    layers_value = document.get("layers")
    if not isinstance(layers_value, list):
        raise OciFormatError("manifest layers must be an array")
    if len(layers_value) > MAX_DESCRIPTORS:
        raise OciFormatError(f"manifest has more than {MAX_DESCRIPTORS} layers")
    layers = tuple(parse_descriptor(item, f"layers[{i}]") for i, item in enumerate(layers_value))
    artifact_type = _optional_media_type(document.get("artifactType"), "artifactType")
    if media_type == DOCKER_MANIFEST and artifact_type is not None:
        raise OciFormatError("Docker manifests cannot carry an artifactType")
    subject_value = document.get("subject")
    subject = None if subject_value is None else parse_descriptor(subject_value, "subject")
    return ImageManifest(
        media_type=media_type,
        config=config,
        layers=layers,
        artifact_type=artifact_type,
        subject=subject,
        annotations=_annotations(document.get("annotations"), "annotations"),
    )


def _parse_index(document: Mapping[str, Any], media_type: str) -> ImageIndex:
    if "layers" in document or "config" in document:
        raise OciFormatError("image index must not contain 'layers' or 'config'")
    manifests_value = document.get("manifests")
    if not isinstance(manifests_value, list):
        raise OciFormatError("index manifests must be an array")
    if len(manifests_value) > MAX_DESCRIPTORS:
        raise OciFormatError(f"index has more than {MAX_DESCRIPTORS} entries")
    manifests = tuple(
        parse_descriptor(item, f"manifests[{i}]") for i, item in enumerate(manifests_value)
    )
    subject_value = document.get("subject")
    return ImageIndex(
        media_type=media_type,
        manifests=manifests,
        artifact_type=_optional_media_type(document.get("artifactType"), "artifactType"),
        subject=None if subject_value is None else parse_descriptor(subject_value, "subject"),
        annotations=_annotations(document.get("annotations"), "annotations"),
    )


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise OciFormatError(f"{where} must be an object")
    return value


def _media_type(value: object, where: str) -> str:
    if not isinstance(value, str) or _MEDIA_TYPE.fullmatch(value) is None:
        raise OciFormatError(f"{where} is not a valid media type")
    return value


def _optional_media_type(value: object, where: str) -> str | None:
    return None if value is None else _media_type(value, where)


def _size(value: object, where: str) -> int:
    if type(value) is not int:
        raise OciFormatError(f"{where} must be an integer")
    if value < 0 or value > MAX_DESCRIPTOR_SIZE:
        raise OciFormatError(f"{where} is out of range")
    return value


def _annotations(value: object, where: str) -> Mapping[str, str]:
    if value is None:
        return _EMPTY_ANNOTATIONS
    obj = _object(value, where)
    if len(obj) > MAX_ANNOTATIONS:
        raise OciFormatError(f"{where} has more than {MAX_ANNOTATIONS} entries")
    for key, item in obj.items():
        if not isinstance(item, str):
            raise OciFormatError(f"{where}[{_clip(key)!r}] must be a string")
    return MappingProxyType(dict(obj))


def _data(value: object, digest: str, size: int, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise OciFormatError(f"{where}.data must be a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OciFormatError(f"{where}.data is not valid base64") from exc
    if len(data) != size:
        raise OciFormatError(f"{where}.data does not have the declared size")
    algorithm = digest.partition(":")[0]
    if algorithm in ("sha256", "sha512") and not digest_matches(digest, data):
        raise OciFormatError(f"{where}.data does not match its digest")
    return data


def _urls(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise OciFormatError(f"{where} must be an array of strings")
    return tuple(value)


def _platform(value: object, where: str) -> Platform | None:
    if value is None:
        return None
    obj = _object(value, where)
    architecture, os_name, variant = obj.get("architecture"), obj.get("os"), obj.get("variant")
    if not isinstance(architecture, str) or not isinstance(os_name, str):
        raise OciFormatError(f"{where} needs string 'architecture' and 'os'")
    if variant is not None and not isinstance(variant, str):
        raise OciFormatError(f"{where}.variant must be a string")
    return Platform(architecture=architecture, os=os_name, variant=variant)


def _bare_content_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.partition(";")[0].strip().lower() or None


def _clip(value: object, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
