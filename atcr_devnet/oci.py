"""A minimal OCI distribution client for publishing test images to the local registry.

Only what the publisher needs: monolithic blob uploads (POST + PUT), manifests by tag or digest.
Debian's distribution 2.8 only serves OCI manifests and indexes to clients that ``Accept`` them,
so every read sends the OCI media types explicitly.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

Json = dict[str, Any]


class RegistryError(RuntimeError):
    """The registry refused a request."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> Json:
    """An OCI descriptor for ``data`` (mediaType, digest, size, then ``extra`` fields)."""
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


def canonical_json(value: Any) -> bytes:
    """Compact, key-sorted JSON: stable bytes so equal content gives equal digests."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def layer_tar(payload: bytes, name: str = "payload.txt") -> bytes:
    """A deterministic uncompressed tar holding one file (a real, extractable layer)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mode = 0o644
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def image_config(layer: bytes, *, os_name: str = "linux", architecture: str = "amd64") -> bytes:
    config = {
        "architecture": architecture,
        "os": os_name,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
    }
    return canonical_json(config)


class RegistryClient:
    """Sync client for one registry at ``http://host:port`` (no auth: the devnet has none)."""

    def __init__(self, registry: str, *, timeout: float = 30.0) -> None:
        self.registry = registry
        self._http = httpx.Client(base_url=f"http://{registry}", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self._http.head(f"/v2/{repository}/blobs/{digest}").status_code == 200

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` (POST then PUT with the digest); skip it if already present."""
        digest = sha256_digest(data)
        if self.blob_exists(repository, digest):
            return digest
        started = self._http.post(f"/v2/{repository}/blobs/uploads/")
        _expect(started, 202, "start blob upload")
        location = self._http.base_url.join(started.headers["location"])
        done = self._http.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        _expect(done, 201, "finish blob upload")
        return digest

    def get_blob(self, repository: str, digest: str) -> bytes:
        resp = self._http.get(f"/v2/{repository}/blobs/{digest}", follow_redirects=True)
        _expect(resp, 200, f"get blob {digest}")
        return resp.content

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or digest; returns its digest (sha256 of ``body``)."""
        resp = self._http.put(
            f"/v2/{repository}/manifests/{reference}",
            content=body,
            headers={"content-type": media_type},
        )
        _expect(resp, 201, f"put manifest {repository}:{reference}")
        digest = sha256_digest(body)
        served = resp.headers.get("docker-content-digest")
        if served is not None and served != digest:
            raise RegistryError(f"registry computed digest {served}, expected {digest}")
        return digest

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str] | None:
        """(bytes, media type) of a manifest or index, or None if the registry has none."""
        resp = self._http.get(
            f"/v2/{repository}/manifests/{reference}", headers={"accept": MANIFEST_ACCEPT}
        )
        if resp.status_code == 404:
            return None
        _expect(resp, 200, f"get manifest {repository}:{reference}")
        return resp.content, resp.headers.get("content-type", "")

    def delete_manifest(self, repository: str, digest: str) -> None:
        resp = self._http.delete(f"/v2/{repository}/manifests/{digest}")
        _expect(resp, 202, f"delete manifest {repository}@{digest}")


def _expect(resp: httpx.Response, status: int, what: str) -> None:
    if resp.status_code != status:
        raise RegistryError(f"{what}: HTTP {resp.status_code}: {resp.text[:500]}")
