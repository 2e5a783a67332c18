"""Publish real signed images to the local network: accounts, records, images, signature artifacts.

Everything goes through the real servers' public APIs (PDS XRPC, PLC HTTP, OCI distribution), so
what tests verify is exactly what a real publisher would produce. Each step is a separate method
with override hooks so attack tests can publish tampered variants (wrong subject, forged document,
missing or deleted record, rotated key...).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from atcr_devnet.oci import (
    EMPTY_DIGEST,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    Json,
    RegistryClient,
    canonical_json,
    descriptor,
    image_config,
    layer_tar,
    sha256_digest,
)
from atcr_devnet.plc import SigningKey, signed_update_op

if TYPE_CHECKING:
    from atcr_devnet.network import LocalNetwork

MANIFEST_COLLECTION = "io.atcr.manifest"
SIGNATURE_ARTIFACT_TYPE = "application/vnd.atproto.signature.v1+json"
SIGNATURE_DOCUMENT_TYPE = "io.atcr.atproto.signature"
APPLY_WRITES_MAX = 200  # the PDS's applyWrites limit per call


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE: Any = _Delete()
"""Value for ``*_overrides`` / ``extra`` dicts: remove this key instead of setting it."""


class XrpcError(RuntimeError):
    """A PDS or PLC request failed; ``error`` is the XRPC error name when there is one."""

    def __init__(self, what: str, status: int, error: str | None, message: str) -> None:
        super().__init__(f"{what}: HTTP {status} {error or ''}: {message}".strip())
        self.status = status
        self.error = error


@dataclass
class Account:
    """A PDS account. Tokens are refreshed in place when they expire."""

    did: str
    handle: str
    email: str
    password: str
    access_jwt: str
    refresh_jwt: str


@dataclass(frozen=True)
class PushedImage:
    """An image manifest (or index) in the registry."""

    registry: str
    repository: str
    digest: str
    size: int
    media_type: str
    manifest: bytes
    tag: str | None = None
    children: tuple[PushedImage, ...] = ()

    @property
    def reference(self) -> str:
        """``127.0.0.1:PORT/<repository>@sha256:…``"""
        return f"{self.registry}/{self.repository}@{self.digest}"

    @property
    def tag_reference(self) -> str | None:
        return None if self.tag is None else f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def signature_tag(self) -> str:
        """The tag-schema tag that lists this image's referrers: ``sha256-<hex>``."""
        return self.digest.replace(":", "-", 1)

    def descriptor(self) -> Json:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class RecordRef:
    """A record committed to a PDS repository."""

    uri: str
    cid: str
    commit_cid: str
    rkey: str
    did: str
    collection: str
    value: Json = field(default_factory=dict)


@dataclass(frozen=True)
class Artifact:
    """A signature artifact manifest plus its entry in the ``sha256-<hex>`` index."""

    registry: str
    repository: str
    digest: str
    size: int
    manifest: bytes
    document: bytes
    index_tag: str
    index_entry: Json

    @property
    def reference(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


@dataclass(frozen=True)
class SignedImage:
    image: PushedImage
    account: Account
    record: RecordRef
    artifact: Artifact

    @property
    def reference(self) -> str:
        return self.image.reference


@dataclass(frozen=True)
class RotatedKey:
    """Outcome of :meth:`Publisher.rotate_signing_key`."""

    did: str
    previous_did_key: str
    new_key: SigningKey
    installed_in_pds: bool


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> Json:
    """Copy of ``base`` with ``overrides`` merged in (nested dicts merged, ``DELETE`` removes)."""
    out: Json = copy.deepcopy(dict(base))
    for key, value in (overrides or {}).items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def now_iso() -> str:
    """Current UTC time in the atproto datetime form, e.g. ``2026-11-22T10:00:00.000Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def split_at_uri(uri: str) -> tuple[str, str, str]:
    """``at://did/collection/rkey`` → (did, collection, rkey)."""
    if not uri.startswith("at://"):
        raise ValueError(f"not an at:// URI: {uri}")
    parts = uri[len("at://") :].split("/")
    if len(parts) != 3:
        raise ValueError(f"not a record URI: {uri}")
    return parts[0], parts[1], parts[2]


def record_repository(image_repository: str) -> str:
    """The image path after the owner segment: ``alice.test/myapp`` → ``myapp``."""
    owner, sep, rest = image_repository.partition("/")
    if not sep or not owner or not rest:
        raise ValueError(f"image repository {image_repository!r} has no <owner>/<repo> form")
    return rest


class Publisher:
    """Creates accounts, records, images and signatures on a local network (sync, httpx)."""

    def __init__(
        self,
        *,
        plc_url: str,
        pds_url: str,
        registry: str,
        handle_domain: str = ".test",
        plc_rotation_key_hex: str | None = None,
        pds_data_dir: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.plc_url = plc_url.rstrip("/")
        self.pds_url = pds_url.rstrip("/")
        self.registry = registry
        self.handle_domain = handle_domain
        self.plc_rotation_key_hex = plc_rotation_key_hex
        self.pds_data_dir = pds_data_dir
        self._http = httpx.Client(timeout=timeout)
        self.oci = RegistryClient(registry, timeout=timeout)

    @classmethod
    def from_network(cls, network: LocalNetwork) -> Publisher:
        return cls(
            plc_url=network.plc_url,
            pds_url=network.pds_url,
            registry=network.registry,
            handle_domain=network.handle_domain,
            plc_rotation_key_hex=network.plc_rotation_key_hex or None,
            pds_data_dir=network.data_dir,
        )

    def close(self) -> None:
        self._http.close()
        self.oci.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- identity ------------------------------------------------------------------------

    def create_account(self, name: str, *, exact: bool = False) -> Account:
        """Create ``<name>-<random><handle domain>`` (or exactly ``<name><domain>`` if ``exact``).

        The random suffix keeps accounts of different tests apart on a session-wide network;
        the PDS allows 3-18 characters before the domain, so ``name`` is cut to 12.
        """
        label = name.lower() if exact else f"{name.lower()[:12]}-{secrets.token_hex(3)[:5]}"
        handle = label + self.handle_domain
        email = f"{label}@example.com"
        password = secrets.token_urlsafe(18)
        out = self._post(
            "com.atproto.server.createAccount",
            {"handle": handle, "email": email, "password": password},
        )
        return Account(
            did=out["did"],
            handle=out["handle"],
            email=email,
            password=password,
            access_jwt=out["accessJwt"],
            refresh_jwt=out["refreshJwt"],
        )

    def did_document(self, did: str) -> Json:
        """The DID document as the PLC directory serves it now."""
        resp = self._http.get(f"{self.plc_url}/{did}")
        _raise_for_xrpc(resp, f"resolve {did}")
        doc: Json = resp.json()
        return doc

    def rotate_signing_key(self, account: Account, *, install_in_pds: bool = False) -> RotatedKey:
        """Replace the DID's ``#atproto`` key with a fresh one via a signed PLC operation.

        With ``install_in_pds=False`` the PDS keeps signing with the old key, so the current
        repo commit no longer verifies against the DID document (the "key rotated away" case).
        With ``True`` the new private key is also written to the PDS's actor key file, so the
        NEXT commit (any record write) is signed with the new key (a legitimate rotation).
        """
        if not self.plc_rotation_key_hex:
            raise RuntimeError("the PDS's PLC rotation key is unknown: build from a LocalNetwork")
        last = self._http.get(f"{self.plc_url}/{account.did}/log/last")
        _raise_for_xrpc(last, f"PLC last op of {account.did}")
        last_op: Json = last.json()
        new_key = SigningKey.generate()
        methods = {**last_op["verificationMethods"], "atproto": new_key.did_key}
        op = signed_update_op(
            last_op, SigningKey(self.plc_rotation_key_hex), verificationMethods=methods
        )
        resp = self._http.post(f"{self.plc_url}/{account.did}", json=op)
        _raise_for_xrpc(resp, f"PLC update of {account.did}")
        if install_in_pds:
            self._install_pds_key(account.did, new_key)
        return RotatedKey(
            did=account.did,
            previous_did_key=str(last_op["verificationMethods"]["atproto"]),
            new_key=new_key,
            installed_in_pds=install_in_pds,
        )

    def move_pds(self, account: Account, endpoint: str) -> None:
        """Point the DID document's ``#atproto_pds`` at ``endpoint`` via a signed PLC operation.

        The repository stays where it is: verifiers that follow the DID document now reach a
        PDS that does not answer (the "unreachable PDS" case) or one that lacks the repo.
        """
        if not self.plc_rotation_key_hex:
            raise RuntimeError("the PDS's PLC rotation key is unknown: build from a LocalNetwork")
        last = self._http.get(f"{self.plc_url}/{account.did}/log/last")
        _raise_for_xrpc(last, f"PLC last op of {account.did}")
        last_op: Json = last.json()
        services = {
            **last_op["services"],
            "atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": endpoint},
        }
        op = signed_update_op(last_op, SigningKey(self.plc_rotation_key_hex), services=services)
        resp = self._http.post(f"{self.plc_url}/{account.did}", json=op)
        _raise_for_xrpc(resp, f"PLC update of {account.did}")

    def _install_pds_key(self, did: str, key: SigningKey) -> None:
        if self.pds_data_dir is None:
            raise RuntimeError("the PDS data directory is unknown: build from a LocalNetwork")
        did_hash = hashlib.sha256(did.encode()).hexdigest()
        key_file = self.pds_data_dir / "actors" / did_hash[:2] / did / "key"
        if not key_file.is_file():
            raise RuntimeError(f"no PDS actor key file at {key_file}")
        key_file.write_bytes(key.private_key)  # the PDS re-reads it for every write

    # --- records ---------------------------------------------------------------------------

    def manifest_record(
        self,
        *,
        repository: str,
        digest: str,
        media_type: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Json:
        """The ``io.atcr.manifest`` record exactly as the spec lays it out, plus ``extra``."""
        record = {
            "$type": MANIFEST_COLLECTION,
            "repository": repository,
            "digest": digest,
            "mediaType": media_type,
            "schemaVersion": 2,
            "createdAt": now_iso(),
        }
        return deep_merge(record, extra)

    def write_manifest_record(
        self,
        account: Account,
        *,
        repository: str,
        digest: str,
        media_type: str,
        rkey: str | None = None,
        extra: Mapping[str, Any] | None = None,
        record: Mapping[str, Any] | None = None,
        collection: str = MANIFEST_COLLECTION,
    ) -> RecordRef:
        """Commit an ``io.atcr.manifest`` record (createRecord; putRecord when ``rkey`` is given).

        ``record`` replaces the whole value (for tampered-record tests); ``repository`` is the
        record's repository, i.e. the image path after the owner segment.
        """
        value = (
            dict(record)
            if record is not None
            else self.manifest_record(
                repository=repository, digest=digest, media_type=media_type, extra=extra
            )
        )
        body: Json = {"repo": account.did, "collection": collection, "record": value}
        body["validate"] = False  # io.atcr.* is unknown to the PDS's lexicons
        if rkey is None:
            out = self._post("com.atproto.repo.createRecord", body, account)
        else:
            out = self._post("com.atproto.repo.putRecord", {**body, "rkey": rkey}, account)
        did, coll, key = split_at_uri(out["uri"])
        return RecordRef(
            uri=out["uri"],
            cid=out["cid"],
            commit_cid=out["commit"]["cid"],
            rkey=key,
            did=did,
            collection=coll,
            value=value,
        )

    def delete_record(self, account: Account, uri: str) -> str | None:
        """Delete a record (revocation); returns the new commit CID (None if nothing changed)."""
        did, collection, rkey = split_at_uri(uri)
        out = self._post(
            "com.atproto.repo.deleteRecord",
            {"repo": did, "collection": collection, "rkey": rkey},
            account,
        )
        commit = out.get("commit")
        return None if commit is None else str(commit["cid"])

    def write_many_records(
        self,
        account: Account,
        n: int,
        *,
        collection: str = MANIFEST_COLLECTION,
        batch_size: int = APPLY_WRITES_MAX,
    ) -> list[str]:
        """Fill the repo with ``n`` filler manifest-like records via applyWrites; return URIs."""
        if not 1 <= batch_size <= APPLY_WRITES_MAX:
            raise ValueError(f"batch_size must be 1..{APPLY_WRITES_MAX}")
        uris: list[str] = []
        created = now_iso()
        salt = secrets.token_hex(4)
        for start in range(0, n, batch_size):
            writes = [
                {
                    "$type": "com.atproto.repo.applyWrites#create",
                    "collection": collection,
                    "value": {
                        "$type": MANIFEST_COLLECTION,
                        "repository": f"filler-{i}",
                        "digest": sha256_digest(f"filler-{salt}-{i}".encode()),
                        "mediaType": OCI_MANIFEST,
                        "schemaVersion": 2,
                        "createdAt": created,
                    },
                }
                for i in range(start, min(n, start + batch_size))
            ]
            out = self._post(
                "com.atproto.repo.applyWrites",
                {"repo": account.did, "validate": False, "writes": writes},
                account,
            )
            uris.extend(str(r["uri"]) for r in out.get("results", []))
        return uris

    # --- registry ----------------------------------------------------------------------------

    def image_repository(self, account: Account, repository: str, owner: str | None = None) -> str:
        """ATCR naming ``<owner>/<repository>``; the owner defaults to the account's handle."""
        return f"{owner or account.handle}/{repository}"

    def push_image(
        self,
        repository: str,
        tag: str | None = "latest",
        *,
        payload: bytes | None = None,
        architecture: str = "amd64",
    ) -> PushedImage:
        """Push a tiny real OCI image (config + one tar layer); pushed by digest if ``tag`` is None.

        The default payload is random so every call yields a distinct digest: signatures of one
        test can never show up on another test's image.
        """
        if payload is None:
            payload = f"atcr devnet image {secrets.token_hex(8)}\n".encode()
        layer = layer_tar(payload)
        config = image_config(layer, architecture=architecture)
        self.oci.push_blob(repository, layer)
        self.oci.push_blob(repository, config)
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER_TAR, layer)],
            }
        )
        return self._put_image(repository, tag, manifest, OCI_MANIFEST)

    def push_index(
        self,
        repository: str,
        tag: str | None = "latest",
        *,
        architectures: Iterable[str] = ("amd64", "arm64"),
        payload: bytes | None = None,
    ) -> PushedImage:
        """Push a multi-arch OCI image index over one image per architecture (children first)."""
        archs = tuple(architectures)
        base = payload if payload is not None else secrets.token_hex(8).encode()
        children = tuple(
            self.push_image(
                repository, None, payload=base + b" " + arch.encode(), architecture=arch
            )
            for arch in archs
        )
        index = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {**child.descriptor(), "platform": {"os": "linux", "architecture": arch}}
                    for child, arch in zip(children, archs, strict=True)
                ],
            }
        )
        image = self._put_image(repository, tag, index, OCI_INDEX)
        return dataclasses.replace(image, children=children)

    def _put_image(
        self, repository: str, tag: str | None, manifest: bytes, media_type: str
    ) -> PushedImage:
        digest = self.oci.put_manifest(
            repository, tag or sha256_digest(manifest), manifest, media_type
        )
        return PushedImage(
            registry=self.registry,
            repository=repository,
            digest=digest,
            size=len(manifest),
            media_type=media_type,
            manifest=manifest,
            tag=tag,
        )

    # --- signatures --------------------------------------------------------------------------

    def signature_document(
        self, image: PushedImage, *, account: Account, record: RecordRef
    ) -> Json:
        """The seed-001 signature document; hints (handle, PDS, key) come from the DID document."""
        doc = self.did_document(account.did)
        handle = next(
            (aka[len("at://") :] for aka in doc.get("alsoKnownAs", []) if aka.startswith("at://")),
            account.handle,
        )
        pds = next(
            (
                s["serviceEndpoint"]
                for s in doc.get("service", [])
                if s.get("id") in ("#atproto_pds", f"{account.did}#atproto_pds")
            ),
            self.pds_url,
        )
        key = next(
            (
                m.get("publicKeyMultibase", "")
                for m in doc.get("verificationMethod", [])
                if m.get("id") in ("#atproto", f"{account.did}#atproto")
            ),
            "",
        )
        return {
            "$type": SIGNATURE_DOCUMENT_TYPE,
            "version": "1.0",
            "subject": {"digest": image.digest, "mediaType": image.media_type},
            "atproto": {
                "did": account.did,
                "handle": handle,
                "pdsEndpoint": pds,
                "recordUri": record.uri,
                "commitCid": record.commit_cid,
                "signedAt": now_iso(),
            },
            "signature": {
                "algorithm": "ECDSA-K256-SHA256",
                "keyId": f"{account.did}#atproto",
                "publicKeyMultibase": key,
            },
        }

    def attach_signature(
        self,
        image: PushedImage,
        *,
        account: Account,
        record: RecordRef,
        document_overrides: Mapping[str, Any] | None = None,
        subject_override: Mapping[str, Any] | None = None,
        document: Mapping[str, Any] | None = None,
        document_bytes: bytes | None = None,
        annotations: Mapping[str, Any] | None = None,
        manifest_overrides: Mapping[str, Any] | None = None,
    ) -> Artifact:
        """Push a signature artifact for ``image`` and list it under tag ``sha256-<hex>``.

        Order matters on distribution 2.8: blobs, then the artifact manifest (by digest), then
        the index (which must only name existing manifests). The index is merged with the one
        already there, so several signers accumulate. Tamper hooks: ``document_overrides``
        (deep-merged, ``DELETE`` removes), ``document`` (replaces it), ``document_bytes`` (raw
        layer bytes), ``subject_override`` (the artifact's ``subject``; it is still listed
        under THIS image's tag), ``annotations`` and ``manifest_overrides`` (deep-merged).
        """
        if document_bytes is None:
            base = (
                document
                if document is not None
                else self.signature_document(image, account=account, record=record)
            )
            document_bytes = json.dumps(deep_merge(base, document_overrides), indent=2).encode()
        repo = image.repository
        self.oci.push_blob(repo, document_bytes)
        self.oci.push_blob(repo, EMPTY_JSON)
        artifact_annotations = deep_merge(
            {"io.atcr.did": account.did, "io.atcr.recordUri": record.uri}, annotations
        )
        manifest_json = deep_merge(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": SIGNATURE_ARTIFACT_TYPE,
                "config": {
                    "mediaType": OCI_EMPTY,
                    "digest": EMPTY_DIGEST,
                    "size": 2,
                    "data": "e30=",
                },
                "layers": [descriptor(SIGNATURE_ARTIFACT_TYPE, document_bytes)],
                "subject": dict(subject_override)
                if subject_override is not None
                else image.descriptor(),
                "annotations": artifact_annotations,
            },
            manifest_overrides,
        )
        manifest = canonical_json(manifest_json)
        digest = self.oci.put_manifest(repo, sha256_digest(manifest), manifest, OCI_MANIFEST)
        entry: Json = {
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": len(manifest),
            "artifactType": SIGNATURE_ARTIFACT_TYPE,
            "annotations": artifact_annotations,
        }
        self._add_to_referrers_index(repo, image.signature_tag, entry)
        return Artifact(
            registry=self.registry,
            repository=repo,
            digest=digest,
            size=len(manifest),
            manifest=manifest,
            document=document_bytes,
            index_tag=image.signature_tag,
            index_entry=entry,
        )

    def referrers(self, image: PushedImage) -> list[Json]:
        """Descriptors listed in the image's ``sha256-<hex>`` tag-schema index (empty if none)."""
        found = self.oci.get_manifest(image.repository, image.signature_tag)
        if found is None:
            return []
        manifests: list[Json] = json.loads(found[0]).get("manifests", [])
        return manifests

    def _add_to_referrers_index(self, repository: str, tag: str, entry: Json) -> None:
        found = self.oci.get_manifest(repository, tag)
        manifests: list[Json] = json.loads(found[0]).get("manifests", []) if found else []
        manifests = [m for m in manifests if m.get("digest") != entry["digest"]] + [entry]
        index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
        self.oci.put_manifest(repository, tag, index, OCI_INDEX)

    def publish_signed_image(
        self,
        account: Account,
        repository: str,
        tag: str | None = "latest",
        *,
        owner: str | None = None,
        multi_arch: bool = False,
    ) -> SignedImage:
        """Push ``<owner>/<repository>:<tag>``, commit its record, attach its signature."""
        image_repo = self.image_repository(account, repository, owner)
        image = self.push_index(image_repo, tag) if multi_arch else self.push_image(image_repo, tag)
        record = self.write_manifest_record(
            account,
            repository=record_repository(image_repo),
            digest=image.digest,
            media_type=image.media_type,
        )
        artifact = self.attach_signature(image, account=account, record=record)
        return SignedImage(image=image, account=account, record=record, artifact=artifact)

    # --- XRPC plumbing -----------------------------------------------------------------------

    def _post(self, nsid: str, body: Json, account: Account | None = None) -> Json:
        """POST an XRPC procedure, refreshing the account's session once if it expired."""
        resp = self._http.post(f"{self.pds_url}/xrpc/{nsid}", json=body, headers=_auth(account))
        if account is not None and _xrpc_error(resp) == "ExpiredToken":
            self._refresh(account)
            resp = self._http.post(f"{self.pds_url}/xrpc/{nsid}", json=body, headers=_auth(account))
        _raise_for_xrpc(resp, nsid)
        out: Json = resp.json() if resp.content else {}
        return out

    def _refresh(self, account: Account) -> None:
        resp = self._http.post(
            f"{self.pds_url}/xrpc/com.atproto.server.refreshSession",
            headers={"authorization": f"Bearer {account.refresh_jwt}"},
        )
        _raise_for_xrpc(resp, "refreshSession")
        out = resp.json()
        account.access_jwt = out["accessJwt"]
        account.refresh_jwt = out["refreshJwt"]


def _auth(account: Account | None) -> dict[str, str]:
    return {} if account is None else {"authorization": f"Bearer {account.access_jwt}"}


def _xrpc_error(resp: httpx.Response) -> str | None:
    if resp.is_success:
        return None
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _raise_for_xrpc(resp: httpx.Response, what: str) -> None:
    if resp.is_success:
        return
    message = resp.text[:500]
    try:
        body = resp.json()
        if isinstance(body, dict):
            message = str(body.get("message", message))
    except ValueError:
        pass
    raise XrpcError(what, resp.status_code, _xrpc_error(resp), message)
