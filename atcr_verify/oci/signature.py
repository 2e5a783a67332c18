"""The ATProto signature document: the single layer blob of a signature artifact.

Only ``atproto.did``, ``atproto.recordUri`` and ``subject.digest`` drive verification; everything
else is a *hint* that may be reported or cross-checked but is never trusted over the DID document
and the repository proof (see ``shared/specs/signature-artifact.md``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from ..errors import IdentityMismatch, LimitExceeded, OciFormatError
from .manifest import is_valid_digest, loads_strict_json

SIGNATURE_ARTIFACT_TYPE = "application/vnd.atproto.signature.v1+json"
SIGNATURE_DOCUMENT_TYPE = "io.atcr.atproto.signature"
SIGNATURE_DOCUMENT_VERSION = "1.0"
MANIFEST_COLLECTION = "io.atcr.manifest"
MAX_SIGNATURE_DOCUMENT_BYTES = 64 * 1024

_MAX_DID_LENGTH = 2048
_DID = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
_DID_PLC = re.compile(r"did:plc:[a-z2-7]{24}")
_DID_WEB = re.compile(
    r"did:web:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*"
    r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:%3[aA][0-9]{1,5})?"
)
_RECORD_KEY = re.compile(r"[A-Za-z0-9._:~-]{1,512}")
_NSID = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*(?:\.[a-zA-Z0-9-]+)+")


@dataclass(frozen=True)
class SignatureDocument:
    """What a signature blob claims: this DID committed a record about this image digest."""

    subject_digest: str
    did: str
    record_uri: str
    collection: str
    rkey: str
    handle_hint: str | None
    pds_hint: str | None
    key_hint: str | None
    commit_cid_hint: str | None
    signed_at: str | None


def is_atproto_did(value: object) -> TypeGuard[str]:
    """General DID syntax restricted to the methods atproto blesses (plc, web).

    The identity module performs the authoritative per-method checks; this one only keeps
    obviously foreign identifiers out of the pipeline.
    """
    if not isinstance(value, str) or len(value) > _MAX_DID_LENGTH:
        return False
    if _DID.fullmatch(value) is None:
        return False
    if value.startswith("did:plc:"):
        return _DID_PLC.fullmatch(value) is not None
    if value.startswith("did:web:"):
        return _DID_WEB.fullmatch(value) is not None
    return False


def is_record_key(value: object) -> bool:
    """atproto record key syntax: 1–512 of ``[A-Za-z0-9._:~-]``, but not ``.`` or ``..``."""
    return (
        isinstance(value, str)
        and _RECORD_KEY.fullmatch(value) is not None
        and value not in (".", "..")
    )


def parse_record_uri(uri: str) -> tuple[str, str, str]:
    """Split ``at://<authority>/<collection>/<rkey>``; raise :class:`OciFormatError` if not that."""
    if not uri.startswith("at://"):
        raise OciFormatError("recordUri must start with at://")
    if any(c in uri for c in "?#") or not uri.isascii():
        raise OciFormatError("recordUri must not have a query, fragment or non-ASCII text")
    parts = uri[len("at://") :].split("/")
    if len(parts) != 3:
        raise OciFormatError("recordUri must be at://<did>/<collection>/<rkey>")
    authority, collection, rkey = parts
    if not authority:
        raise OciFormatError("recordUri has no authority")
    if _NSID.fullmatch(collection) is None or len(collection) > 317:
        raise OciFormatError("recordUri collection is not a valid NSID")
    if not is_record_key(rkey):
        raise OciFormatError("recordUri record key is not a valid record key")
    return authority, collection, rkey


def parse_signature_document(body: bytes) -> SignatureDocument:
    """Parse and structurally check a signature blob (≤ 64 KiB)."""
    if len(body) > MAX_SIGNATURE_DOCUMENT_BYTES:
        raise LimitExceeded(
            f"signature document is larger than {MAX_SIGNATURE_DOCUMENT_BYTES} bytes"
        )
    document = loads_strict_json(
        body, max_bytes=MAX_SIGNATURE_DOCUMENT_BYTES, what="signature document"
    )
    if document.get("$type") != SIGNATURE_DOCUMENT_TYPE:
        raise OciFormatError(f"signature document $type must be {SIGNATURE_DOCUMENT_TYPE!r}")
    if document.get("version") != SIGNATURE_DOCUMENT_VERSION:
        raise OciFormatError(
            f"unsupported signature document version (expected {SIGNATURE_DOCUMENT_VERSION!r})"
        )

    subject = _object(document.get("subject"), "subject")
    subject_digest = subject.get("digest")
    if not is_valid_digest(subject_digest):
        raise OciFormatError("signature document subject.digest is not a valid digest")
    _optional_string(subject, "mediaType", "subject")

    atproto = _object(document.get("atproto"), "atproto")
    did = atproto.get("did")
    if not is_atproto_did(did):
        raise OciFormatError("signature document atproto.did is not a did:plc or did:web DID")
    record_uri = atproto.get("recordUri")
    if not isinstance(record_uri, str):
        raise OciFormatError("signature document atproto.recordUri must be a string")
    authority, collection, rkey = parse_record_uri(record_uri)
    if collection != MANIFEST_COLLECTION:
        raise OciFormatError(f"recordUri collection must be {MANIFEST_COLLECTION}")
    if authority != did:
        raise IdentityMismatch("recordUri authority does not match the signature's DID")

    signature_value = document.get("signature")
    signature = {} if signature_value is None else _object(signature_value, "signature")
    _optional_string(signature, "algorithm", "signature")
    _optional_string(signature, "keyId", "signature")

    return SignatureDocument(
        subject_digest=subject_digest,
        did=did,
        record_uri=record_uri,
        collection=collection,
        rkey=rkey,
        handle_hint=_optional_string(atproto, "handle", "atproto"),
        pds_hint=_optional_string(atproto, "pdsEndpoint", "atproto"),
        key_hint=_optional_string(signature, "publicKeyMultibase", "signature"),
        commit_cid_hint=_optional_string(atproto, "commitCid", "atproto"),
        signed_at=_optional_string(atproto, "signedAt", "atproto"),
    )


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise OciFormatError(f"signature document {where} must be an object")
    return value


def _optional_string(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise OciFormatError(f"signature document {where}.{key} must be a string")
    return value
