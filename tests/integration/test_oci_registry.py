"""RegistryClient against the real Debian registry (distribution 2.8.2) started by this module.

Debian's registry has no Referrers API, so against it the ``sha256-<hex>`` tag fallback is what
gets exercised. Three registries are started from ``/usr/bin/docker-registry``: an open one, one
with token auth (its realm is :class:`TokenRealm`, a small real token issuer whose JWTs the real
registry verifies), and one with htpasswd Basic auth. The Referrers API path and upstream
misbehaviour are proved with :class:`ReferrersApiDouble`, a test double in front of the real open
registry. These tests must fail, not skip, when ``docker-registry`` is missing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import re
import shutil
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from atcr_verify.errors import (
    DigestMismatch,
    LimitExceeded,
    NotFound,
    OciFormatError,
    UpstreamError,
)
from atcr_verify.net import HttpFetcher, NetworkSettings
from atcr_verify.oci.manifest import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Descriptor
from atcr_verify.oci.reference import ImageReference, parse_reference
from atcr_verify.oci.registry import RegistryClient, RegistrySettings
from atcr_verify.oci.signature import SIGNATURE_ARTIFACT_TYPE

pytestmark = pytest.mark.network

DOCKER_REGISTRY = "/usr/bin/docker-registry"
REPO = "team/app"
EMPTY_CONFIG = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
SBOM_TYPE = "application/vnd.example.sbom.v1+json"
DID_ALICE = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
DID_BOB = "did:plc:" + "b" * 24
TOKEN_SERVICE = "atcr-test-registry"
TOKEN_ISSUER = "atcr-test-issuer"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- A real registry process --------------------------------------------------------------------


@dataclass
class LocalRegistry:
    """One ``docker-registry serve`` process on 127.0.0.1 with filesystem storage."""

    host: str
    process: subprocess.Popen[bytes]
    log: Path
    auth_headers: dict[str, str] = field(default_factory=dict)
    """Headers the pusher sends (a minted push token or Basic credentials)."""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_registry(root: Path, auth: dict[str, Any] | None = None) -> LocalRegistry:
    if not Path(DOCKER_REGISTRY).exists() and shutil.which("docker-registry") is None:
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if auth is not None:
        config["auth"] = auth
    config_path = root / "config.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    log = root / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [DOCKER_REGISTRY, "serve", str(config_path)], stdout=out, stderr=subprocess.STDOUT
        )
    registry = LocalRegistry(host=f"127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://{registry.host}/v2/", timeout=1).status_code in (200, 401):
                return registry
        time.sleep(0.1)
    registry.stop()
    pytest.fail(f"docker-registry did not start: {log.read_text()[-2000:]}")


class Pusher:
    """Pushes blobs and manifests with the plain distribution API (POST+PUT, manifest PUT)."""

    def __init__(self, registry: LocalRegistry) -> None:
        self.base = f"http://{registry.host}"
        self.headers = registry.auth_headers

    def blob(self, repo: str, data: bytes) -> Descriptor:
        digest = _digest(data)
        started = httpx.post(f"{self.base}/v2/{repo}/blobs/uploads/", headers=self.headers)
        assert started.status_code == 202, started.text
        location = httpx.URL(self.base).join(started.headers["location"])
        done = httpx.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={**self.headers, "Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        return Descriptor("application/octet-stream", digest, len(data))

    def manifest(self, repo: str, reference: str | None, body: bytes, media_type: str) -> str:
        digest = _digest(body)
        response = httpx.put(
            f"{self.base}/v2/{repo}/manifests/{reference or digest}",
            content=body,
            headers={**self.headers, "Content-Type": media_type},
        )
        assert response.status_code == 201, response.text
        assert response.headers["docker-content-digest"] == digest
        return digest

    def image(self, repo: str, tag: str, seed: str) -> tuple[str, int]:
        config = self.blob(repo, _json({"architecture": "amd64", "os": "linux", "seed": seed}))
        layer = self.blob(repo, f"layer {seed}".encode())
        body = _json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config.digest,
                    "size": config.size,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer.digest,
                        "size": layer.size,
                    }
                ],
            }
        )
        return self.manifest(repo, tag, body, OCI_MANIFEST), len(body)

    def artifact(
        self,
        repo: str,
        subject: tuple[str, int],
        blob: bytes,
        *,
        artifact_type: str = SIGNATURE_ARTIFACT_TYPE,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Push an artifact manifest by digest; return its descriptor as an index entry."""
        self.blob(repo, EMPTY_CONFIG)
        layer = self.blob(repo, blob)
        body = _json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": {
                    "mediaType": OCI_EMPTY,
                    "digest": EMPTY_DIGEST,
                    "size": 2,
                    "data": "e30=",
                },
                "layers": [
                    {"mediaType": artifact_type, "digest": layer.digest, "size": layer.size}
                ],
                "subject": {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": subject[1]},
                "annotations": annotations or {},
            }
        )
        digest = self.manifest(repo, None, body, OCI_MANIFEST)
        return {
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": len(body),
            "artifactType": artifact_type,
        }

    def referrers_tag(self, repo: str, subject: str, entries: list[dict[str, Any]]) -> None:
        body = _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
        self.manifest(repo, subject.replace(":", "-"), body, OCI_INDEX)


def signature_blob(image_digest: str, did: str = DID_ALICE, rkey: str = "3l2uyzcdhe22b") -> bytes:
    return _json(
        {
            "$type": "io.atcr.atproto.signature",
            "version": "1.0",
            "subject": {"digest": image_digest, "mediaType": OCI_MANIFEST},
            "atproto": {
                "did": did,
                "handle": "alice.example.com",
                "pdsEndpoint": "https://pds.example.com",
                "recordUri": f"at://{did}/io.atcr.manifest/{rkey}",
                "commitCid": "bafyreibjifzpqj6o6wcq3hejh7y4z4z2vnmkkxuqpp6yqy6m2xvo7c3d5e",
                "signedAt": "2026-11-22T10:00:00.000Z",
            },
            "signature": {
                "algorithm": "ECDSA-K256-SHA256",
                "keyId": f"{did}#atproto",
                "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF",
            },
        }
    )


@dataclass
class Content:
    """What the fixture pushed, by name."""

    signed: tuple[str, int]
    """The image with two signature artifacts (alice, bob) and an SBOM artifact."""
    signatures: list[dict[str, Any]]
    sbom: dict[str, Any]
    mismatched: tuple[str, int]
    """An image whose signature document names another image."""
    mismatched_signature: dict[str, Any]
    many: tuple[str, int]
    """An image with 17 signature artifacts."""
    unsigned: tuple[str, int]
    index_digest: str
    """A multi-platform index (tag ``multi``) over the signed image."""


def push_content(pusher: Pusher) -> Content:
    signed = pusher.image(REPO, "v1", "signed")
    alice = pusher.artifact(
        REPO, signed, signature_blob(signed[0]), annotations={"io.atcr.did": DID_ALICE}
    )
    bob = pusher.artifact(REPO, signed, signature_blob(signed[0], did=DID_BOB, rkey="self"))
    sbom = pusher.artifact(REPO, signed, b'{"sbom": true}', artifact_type=SBOM_TYPE)
    pusher.referrers_tag(REPO, signed[0], [alice, sbom, bob])

    mismatched = pusher.image(REPO, "mismatch", "mismatch")
    bad = pusher.artifact(REPO, mismatched, signature_blob(signed[0]))
    pusher.referrers_tag(REPO, mismatched[0], [bad])

    many = pusher.image(REPO, "many", "many")
    entries = [
        pusher.artifact(REPO, many, signature_blob(many[0], rkey=f"k{i}")) for i in range(17)
    ]
    pusher.referrers_tag(REPO, many[0], entries)

    unsigned = pusher.image(REPO, "unsigned", "unsigned")
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": signed[0],
                    "size": signed[1],
                    "platform": {"architecture": "amd64", "os": "linux"},
                },
            ],
        }
    )
    index_digest = pusher.manifest(REPO, "multi", index, OCI_INDEX)
    return Content(signed, [alice, bob], sbom, mismatched, bad, many, unsigned, index_digest)


# --- Fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    local = start_registry(tmp_path_factory.mktemp("registry"))
    yield local
    local.stop()


@pytest.fixture(scope="module")
def content(registry: LocalRegistry) -> Content:
    return push_content(Pusher(registry))


def network_settings() -> NetworkSettings:
    return NetworkSettings(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))


@pytest_asyncio.fixture(scope="module")
async def fetcher() -> AsyncIterator[HttpFetcher]:
    settings = network_settings()
    async with HttpFetcher.new_client(settings) as client:
        yield HttpFetcher(client, settings)


def client_for(fetcher: HttpFetcher, *hosts: str, **overrides: Any) -> RegistryClient:
    return RegistryClient(fetcher, RegistrySettings(plain_http_hosts=frozenset(hosts), **overrides))


def ref(host: str, tag: str = "v1", repo: str = REPO) -> ImageReference:
    return parse_reference(f"{host}/{repo}:{tag}")


# --- Resolution ---------------------------------------------------------------------------------


async def test_resolve_by_tag_and_by_digest(
    fetcher: HttpFetcher, registry: LocalRegistry, content: Content
) -> None:
    client = client_for(fetcher, registry.host)
    by_tag = await client.resolve_digest(ref(registry.host))
    assert by_tag.digest == content.signed[0]
    assert by_tag.size == content.signed[1] == len(by_tag.body)
    assert by_tag.media_type == OCI_MANIFEST

    by_digest = await client.resolve_digest(ref(registry.host).with_digest(content.signed[0]))
    assert by_digest == by_tag


async def test_resolve_index(
    fetcher: HttpFetcher, registry: LocalRegistry, content: Content
) -> None:
    resolved = await client_for(fetcher, registry.host).resolve_digest(ref(registry.host, "multi"))
    assert resolved.digest == content.index_digest
    assert resolved.media_type == OCI_INDEX


@pytest.mark.parametrize(
    "reference",
    ["{host}/team/app:nope", "{host}/team/missing:v1", "{host}/team/app@" + "sha256:" + "0" * 64],
)
async def test_unknown_image_is_not_found(
    fetcher: HttpFetcher, registry: LocalRegistry, content: Content, reference: str
) -> None:
    client = client_for(fetcher, registry.host)
    with pytest.raises(NotFound, match="not found"):
        await client.resolve_digest(parse_reference(reference.format(host=registry.host)))


async def test_https_is_the_default(fetcher: HttpFetcher, registry: LocalRegistry) -> None:
    """Without plain_http_hosts the client speaks TLS, which the plain registry cannot answer."""
    with pytest.raises(UpstreamError):
        await client_for(fetcher).resolve_digest(ref(registry.host))


# --- Discovery through the tag fallback (real registry, no Referrers API) -----------------------


async def test_tag_fallback_finds_signature_artifacts_only(
    fetcher: HttpFetcher, registry: LocalRegistry, content: Content
) -> None:
    client = client_for(fetcher, registry.host)
    found = await client.find_signature_artifacts(ref(registry.host), content.signed[0])
    assert [d.digest for d in found] == [s["digest"] for s in content.signatures]
    assert all(d.artifact_type == SIGNATURE_ARTIFACT_TYPE for d in found)
    assert content.sbom["digest"] not in {d.digest for d in found}


async def test_unsigned_image_has_no_artifacts(
    fetcher: HttpFetcher, registry: LocalRegistry, content: Content
) -> None:
    client = client_for(fetcher, registry.host)
    assert await client.find_signature_artifacts(ref(registry.host), content.unsigned[0]) == []


async def test_fetch_signature(
    fetcher: HttpFetcher, registry: LocalRegistry, content: Content
) -> None:
    client = client_for(fetcher, registry.host)
    image = ref(registry.host)
    found = await client.find_signature_artifacts(image, content.signed[0])
    documents = [await client.fetch_signature(image, d, content.signed[0]) for d in found]
    assert [d.did for d in documents] == [DID_ALICE, DID_BOB]
    assert documents[0].subject_digest == content.signed[0]
    assert documents[0].rkey == "3l2uyzcdhe22b"
    assert documents[0].collection == "io.atcr.manifest"
    assert documents[1].record_uri == f"at://{DID_BOB}/io.atcr.manifest/self"


async def test_artifact_for_another_image_is_a_digest_mismatch(
    fetcher: HttpFetcher, registry: LocalRegistry, content: Content
) -> None:
    client = client_for(fetcher, registry.host)
    image = ref(registry.host)
    (alice, _) = await client.find_signature_artifacts(image, content.signed[0])
    with pytest.raises(DigestMismatch, match="signature artifact refers to another image"):
        await client.fetch_signature(image, alice, content.unsigned[0])


async def test_document_naming_another_image_is_a_digest_mismatch(
    fetcher: HttpFetcher, registry: LocalRegistry, content: Content
) -> None:
    client = client_for(fetcher, registry.host)
    image = ref(registry.host, "mismatch")
    (bad,) = await client.find_signature_artifacts(image, content.mismatched[0])
    with pytest.raises(DigestMismatch, match="signature document refers to another image"):
        await client.fetch_signature(image, bad, content.mismatched[0])


async def test_descriptor_lying_about_the_manifest_is_a_digest_mismatch(
    fetcher: HttpFetcher, registry: LocalRegistry, content: Content
) -> None:
    client = client_for(fetcher, registry.host)
    image = ref(registry.host)
    (alice, _) = await client.find_signature_artifacts(image, content.signed[0])
    wrong_size = Descriptor(alice.media_type, alice.digest, alice.size + 1, alice.artifact_type)
    with pytest.raises(DigestMismatch, match="declared size"):
        await client.fetch_signature(image, wrong_size, content.signed[0])
    sbom = Descriptor(OCI_MANIFEST, content.sbom["digest"], content.sbom["size"])
    with pytest.raises(OciFormatError, match="not an ATProto signature artifact"):
        await client.fetch_signature(image, sbom, content.signed[0])
    missing = Descriptor(OCI_MANIFEST, "sha256:" + "1" * 64, 10)
    with pytest.raises(NotFound):
        await client.fetch_signature(image, missing, content.signed[0])


async def test_too_many_artifacts(
    fetcher: HttpFetcher, registry: LocalRegistry, content: Content
) -> None:
    image = ref(registry.host, "many")
    with pytest.raises(LimitExceeded, match="more than 16 signature artifacts"):
        await client_for(fetcher, registry.host).find_signature_artifacts(image, content.many[0])
    roomy = client_for(fetcher, registry.host, max_artifacts=17)
    assert len(await roomy.find_signature_artifacts(image, content.many[0])) == 17


async def test_signature_blob_limit(
    fetcher: HttpFetcher, registry: LocalRegistry, content: Content
) -> None:
    client = client_for(fetcher, registry.host, max_signature_blob_bytes=64)
    image = ref(registry.host)
    (alice, _) = await client.find_signature_artifacts(image, content.signed[0])
    with pytest.raises(LimitExceeded, match="signature blob is larger"):
        await client.fetch_signature(image, alice, content.signed[0])


# --- The Referrers API, through a double in front of the real registry -------------------------


@dataclass
class Page:
    entries: list[dict[str, Any]]
    next_link: str | None = None


class ReferrersApiDouble:
    """TEST DOUBLE: a reverse proxy to the real registry that adds a Referrers API.

    ``/v2/<name>/referrers/<digest>`` is answered from :attr:`pages` (an in-memory image index
    per page, with ``Link: rel="next"`` between pages, and deliberately *not* applying the
    ``artifactType`` filter, as some registries do). :attr:`overrides` replaces any other path
    with a canned answer to simulate a misbehaving upstream; everything else is forwarded to the
    real registry. Every request path is recorded in :attr:`requests`.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.pages: dict[str, list[Page]] = {}
        self.referrers_status: int | None = None
        """When set, the Referrers API answers only this status (e.g. 400/405: unsupported)."""
        self.overrides: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[str] = []
        self.host = ""
        self._runner: web.AppRunner | None = None
        self._client = httpx.AsyncClient(trust_env=False)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = _free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.host = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self._client.aclose()

    def reset(self) -> None:
        self.referrers_status = None
        self.pages.clear()
        self.overrides.clear()
        self.requests.clear()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        referrers = re.fullmatch(r"/v2/(.+)/referrers/(sha256:[a-f0-9]{64})", request.path)
        if referrers is not None:
            return self._referrers(referrers.group(2), int(request.query.get("page", "0")))
        if request.path in self.overrides:
            status, headers, body = self.overrides[request.path]
            return web.Response(status=status, headers=headers, body=body)
        upstream = await self._client.request(
            request.method,
            f"http://{self.upstream}{request.path_qs}",
            headers={
                k: v for k, v in request.headers.items() if k.lower() in ("accept", "authorization")
            },
        )
        keep = ("content-type", "docker-content-digest", "location", "www-authenticate")
        headers = {k: v for k, v in upstream.headers.items() if k.lower() in keep}
        return web.Response(status=upstream.status_code, headers=headers, body=upstream.content)

    def _referrers(self, digest: str, page: int) -> web.Response:
        if self.referrers_status is not None:
            return web.Response(status=self.referrers_status, text="unsupported")
        pages = self.pages.get(digest)
        if pages is None:
            return web.Response(status=404, text="404 page not found")
        current = pages[page]
        headers = {"Content-Type": OCI_INDEX}
        if current.next_link is not None:
            headers["Link"] = f'<{current.next_link}>; rel="next"'
        body = _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": current.entries})
        return web.Response(status=200, headers=headers, body=body)


@pytest_asyncio.fixture(scope="module")
async def double_server(registry: LocalRegistry) -> AsyncIterator[ReferrersApiDouble]:
    double = ReferrersApiDouble(registry.host)
    await double.start()
    yield double
    await double.stop()


@pytest.fixture
def double(double_server: ReferrersApiDouble) -> ReferrersApiDouble:
    double_server.reset()
    return double_server


def _fallback_consulted(double: ReferrersApiDouble, digest: str) -> bool:
    return any(path.endswith(f"/manifests/{digest.replace(':', '-')}") for path in double.requests)


async def test_referrers_api_is_preferred_and_filtered_client_side(
    fetcher: HttpFetcher, double: ReferrersApiDouble, content: Content
) -> None:
    digest = content.signed[0]
    alice, bob = content.signatures
    double.pages[digest] = [Page([content.sbom, alice])]
    client = client_for(fetcher, double.host)
    image = ref(double.host)
    found = await client.find_signature_artifacts(image, digest)
    assert [d.digest for d in found] == [alice["digest"]]
    assert not _fallback_consulted(double, digest)
    assert double.requests[0] == (
        f"/v2/{REPO}/referrers/{digest}?artifactType=application%2Fvnd.atproto.signature.v1%2Bjson"
    )
    document = await client.fetch_signature(image, found[0], digest)
    assert document.did == DID_ALICE
    assert bob["digest"] not in {d.digest for d in found}


async def test_empty_referrers_answer_does_not_fall_back(
    fetcher: HttpFetcher, double: ReferrersApiDouble, content: Content
) -> None:
    digest = content.signed[0]
    double.pages[digest] = [Page([])]
    found = await client_for(fetcher, double.host).find_signature_artifacts(
        ref(double.host), digest
    )
    assert found == []
    assert not _fallback_consulted(double, digest)


async def test_referrers_404_falls_back_to_the_tag(
    fetcher: HttpFetcher, double: ReferrersApiDouble, content: Content
) -> None:
    digest = content.signed[0]
    found = await client_for(fetcher, double.host).find_signature_artifacts(
        ref(double.host), digest
    )
    assert len(found) == 2
    assert _fallback_consulted(double, digest)


@pytest.mark.parametrize("status", [400, 405])
async def test_referrers_unsupported_statuses_fall_back(
    fetcher: HttpFetcher, double: ReferrersApiDouble, content: Content, status: int
) -> None:
    digest = content.signed[0]
    double.referrers_status = status
    client = client_for(fetcher, double.host)
    found = await client.find_signature_artifacts(ref(double.host), digest)
    assert len(found) == 2
    assert _fallback_consulted(double, digest)


async def test_referrers_server_error_is_a_fault_without_fallback(
    fetcher: HttpFetcher, double: ReferrersApiDouble, content: Content
) -> None:
    digest = content.signed[0]
    double.referrers_status = 502
    with pytest.raises(UpstreamError, match="502"):
        await client_for(fetcher, double.host).find_signature_artifacts(ref(double.host), digest)
    assert not _fallback_consulted(double, digest)


async def test_referrers_pagination(
    fetcher: HttpFetcher, double: ReferrersApiDouble, content: Content
) -> None:
    digest = content.signed[0]
    alice, bob = content.signatures
    next_page = f"/v2/{REPO}/referrers/{digest}?page=1"
    double.pages[digest] = [Page([alice], next_page), Page([bob, alice])]
    found = await client_for(fetcher, double.host).find_signature_artifacts(
        ref(double.host), digest
    )
    assert [d.digest for d in found] == [alice["digest"], bob["digest"]]


async def test_referrers_pagination_limits(
    fetcher: HttpFetcher, double: ReferrersApiDouble, content: Content
) -> None:
    digest = content.signed[0]
    alice, _ = content.signatures
    client = client_for(fetcher, double.host)
    double.pages[digest] = [Page([alice], f"http://198.51.100.7/v2/{REPO}/referrers/{digest}")]
    with pytest.raises(UpstreamError, match="another host"):
        await client.find_signature_artifacts(ref(double.host), digest)
    endless = f"/v2/{REPO}/referrers/{digest}?page=0"
    double.pages[digest] = [Page([alice], endless)]
    with pytest.raises(LimitExceeded, match="more than 4 pages"):
        await client.find_signature_artifacts(ref(double.host), digest)


async def test_tag_schema_holding_an_image_manifest_is_malformed(
    fetcher: HttpFetcher, double: ReferrersApiDouble, content: Content
) -> None:
    """The tag schema must hold an index; an image manifest under that tag is refused."""
    digest = content.signed[0]
    tag_path = f"/v2/{REPO}/manifests/{digest.replace(':', '-')}"
    manifest = (await client_for(fetcher, double.host).resolve_digest(ref(double.host))).body
    double.overrides[tag_path] = (200, {"Content-Type": OCI_MANIFEST}, manifest)
    with pytest.raises(OciFormatError, match="expected an image index"):
        await client_for(fetcher, double.host).find_signature_artifacts(ref(double.host), digest)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_upstream_failures_are_faults(
    fetcher: HttpFetcher, double: ReferrersApiDouble, status: int
) -> None:
    double.overrides[f"/v2/{REPO}/manifests/v1"] = (status, {}, b"busy")
    with pytest.raises(UpstreamError) as info:
        await client_for(fetcher, double.host).resolve_digest(ref(double.host))
    assert info.value.status == status


async def test_lying_registry_is_caught(
    fetcher: HttpFetcher, double: ReferrersApiDouble, content: Content
) -> None:
    client = client_for(fetcher, double.host)
    real = await client.resolve_digest(ref(double.host))
    other = await client.resolve_digest(ref(double.host, "unsigned"))
    # A Docker-Content-Digest header that disagrees with the body.
    double.overrides[f"/v2/{REPO}/manifests/v1"] = (
        200,
        {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": other.digest},
        real.body,
    )
    with pytest.raises(DigestMismatch, match="Docker-Content-Digest"):
        await client.resolve_digest(ref(double.host))
    # Another manifest served for a digest.
    double.overrides[f"/v2/{REPO}/manifests/{real.digest}"] = (
        200,
        {"Content-Type": OCI_MANIFEST},
        other.body,
    )
    with pytest.raises(DigestMismatch, match="does not hash to"):
        await client.resolve_digest(ref(double.host).with_digest(real.digest))
    # A tampered signature blob.
    (alice, _) = await client.find_signature_artifacts(ref(double.host), content.signed[0])
    manifest = json.loads(
        (
            await fetcher.get(
                f"http://{double.host}/v2/{REPO}/manifests/{alice.digest}",
                max_bytes=65536,
                headers={"Accept": OCI_MANIFEST},
            )
        ).body
    )
    layer = manifest["layers"][0]
    double.overrides[f"/v2/{REPO}/blobs/{layer['digest']}"] = (200, {}, b"x" * layer["size"])
    with pytest.raises(DigestMismatch, match="signature blob does not match"):
        await client.fetch_signature(ref(double.host), alice, content.signed[0])


async def test_blob_redirects_are_followed(
    fetcher: HttpFetcher, double: ReferrersApiDouble, registry: LocalRegistry, content: Content
) -> None:
    """Blobs are content-addressed, so a redirect to a storage host is followed."""
    client = client_for(fetcher, double.host)
    (alice, _) = await client.find_signature_artifacts(ref(double.host), content.signed[0])
    manifest = json.loads(
        (
            await fetcher.get(
                f"http://{double.host}/v2/{REPO}/manifests/{alice.digest}",
                max_bytes=65536,
                headers={"Accept": OCI_MANIFEST},
            )
        ).body
    )
    blob_path = f"/v2/{REPO}/blobs/{manifest['layers'][0]['digest']}"
    double.overrides[blob_path] = (307, {"Location": f"http://{registry.host}{blob_path}"}, b"")
    document = await client.fetch_signature(ref(double.host), alice, content.signed[0])
    assert document.did == DID_ALICE
    # Manifests never follow redirects.
    double.overrides[f"/v2/{REPO}/manifests/v1"] = (
        307,
        {"Location": f"http://{registry.host}/v2/{REPO}/manifests/v1"},
        b"",
    )
    with pytest.raises(UpstreamError, match="redirect"):
        await client.resolve_digest(ref(double.host))


# --- Token auth: the real registry verifying JWTs from a small real token issuer ----------------


class TokenRealm:
    """A minimal distribution token server (ES256 JWTs with an ``x5c`` chain).

    It is a real issuer, not a double of the registry: the real registry verifies its tokens
    against ``root.pem``. It grants pull to anonymous callers and pull+push to ``alice:secret``,
    and records every request.
    """

    def __init__(self, root: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "atcr-test-token-issuer")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = root / "root.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[httpx.QueryParams] = []
        self.authorizations: list[str | None] = []
        self.expires_in = 300
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None

    def mint(self, subject: str, scope: str) -> str:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + self.expires_in,
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [{"type": kind, "name": name, "actions": actions.split(",")}],
        }
        signing_input = f"{_b64url(_json(header))}.{_b64url(_json(claims))}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        params = httpx.QueryParams(request.query_string)
        self.requests.append(params)
        authorization = request.headers.get("Authorization")
        self.authorizations.append(authorization)
        subject = ""
        if authorization is not None:
            if authorization != _basic_header("alice", "secret"):
                return web.json_response({"details": "bad credentials"}, status=401)
            subject = "alice"
        if params.get("service") != TOKEN_SERVICE:
            return web.json_response({"details": "unknown service"}, status=400)
        scope = params.get("scope", "")
        if not subject:
            scope = scope.rsplit(":", 1)[0] + ":pull"
        token = self.mint(subject, scope)
        return web.json_response({"token": token, "expires_in": self.expires_in})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest_asyncio.fixture(scope="module")
async def token_setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[LocalRegistry, TokenRealm, Content]]:
    root = tmp_path_factory.mktemp("token-registry")
    realm = TokenRealm(root)
    await realm.start()
    auth = {
        "token": {
            "realm": f"http://{realm.host}/token",
            "service": TOKEN_SERVICE,
            "issuer": TOKEN_ISSUER,
            "rootcertbundle": str(realm.bundle),
        }
    }
    local = await asyncio.to_thread(start_registry, root, auth)
    local.auth_headers = {
        "Authorization": "Bearer " + realm.mint("alice", f"repository:{REPO}:pull,push")
    }
    pushed = await asyncio.to_thread(push_content, Pusher(local))
    realm.requests.clear()
    yield local, realm, pushed
    local.stop()
    await realm.stop()


async def test_token_flow_anonymous_with_cache(
    fetcher: HttpFetcher, token_setup: tuple[LocalRegistry, TokenRealm, Content]
) -> None:
    local, realm, content = token_setup
    realm.requests.clear()
    realm.authorizations.clear()
    client = client_for(fetcher, local.host, realm.host)
    image = ref(local.host)
    resolved = await client.resolve_digest(image)
    assert resolved.digest == content.signed[0]
    found = await client.find_signature_artifacts(image, resolved.digest)
    documents = [await client.fetch_signature(image, d, resolved.digest) for d in found]
    assert [d.did for d in documents] == [DID_ALICE, DID_BOB]
    # One token for the whole flow, requested for pull only, anonymously.
    assert len(realm.requests) == 1
    assert realm.requests[0]["scope"] == f"repository:{REPO}:pull"
    assert realm.requests[0]["service"] == TOKEN_SERVICE
    assert realm.authorizations == [None]


async def test_token_flow_with_credentials(
    fetcher: HttpFetcher, token_setup: tuple[LocalRegistry, TokenRealm, Content]
) -> None:
    local, realm, content = token_setup
    realm.authorizations.clear()
    client = client_for(
        fetcher, local.host, realm.host, credentials={local.host: ("alice", "secret")}
    )
    assert (await client.resolve_digest(ref(local.host))).digest == content.signed[0]
    assert realm.authorizations == [_basic_header("alice", "secret")]

    wrong = client_for(fetcher, local.host, realm.host, credentials={local.host: ("alice", "nope")})
    with pytest.raises(UpstreamError, match="answered 401"):
        await wrong.resolve_digest(ref(local.host))


async def test_token_expiry_refreshes(
    fetcher: HttpFetcher, token_setup: tuple[LocalRegistry, TokenRealm, Content]
) -> None:
    local, realm, _ = token_setup
    realm.requests.clear()
    realm.expires_in = 1
    try:
        client = client_for(fetcher, local.host, realm.host)
        await client.resolve_digest(ref(local.host))
        await client.resolve_digest(ref(local.host))
        assert len(realm.requests) == 1
        await asyncio.sleep(1.1)
        await client.resolve_digest(ref(local.host))
        assert len(realm.requests) == 2
    finally:
        realm.expires_in = 300


async def test_plain_http_realm_is_refused_unless_listed(
    fetcher: HttpFetcher, token_setup: tuple[LocalRegistry, TokenRealm, Content]
) -> None:
    local, realm, _ = token_setup
    realm.requests.clear()
    with pytest.raises(UpstreamError, match="token realm must use https"):
        await client_for(fetcher, local.host).resolve_digest(ref(local.host))
    assert realm.requests == []


async def test_unauthenticated_registry_without_token_is_denied_access(
    token_setup: tuple[LocalRegistry, TokenRealm, Content],
) -> None:
    """The registry really enforces tokens: a bogus bearer is refused."""
    local, _, _ = token_setup
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(
            f"http://{local.host}/v2/{REPO}/manifests/v1",
            headers={"Authorization": "Bearer not-a-token", "Accept": OCI_MANIFEST},
        )
    assert response.status_code == 401


# --- Basic auth (htpasswd) on the real registry -------------------------------------------------


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # Debian's libcrypt implements bcrypt; the module is deprecated, not gone

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    root = tmp_path_factory.mktemp("basic-registry")
    root.mkdir(parents=True, exist_ok=True)
    (root / "htpasswd").write_text(f"alice:{_bcrypt('secret')}\n")
    auth = {"htpasswd": {"realm": "atcr-test", "path": str(root / "htpasswd")}}
    local = start_registry(root, auth)
    local.auth_headers = {"Authorization": _basic_header("alice", "secret")}
    Pusher(local).image(REPO, "v1", "basic")
    yield local
    local.stop()


async def test_basic_auth(fetcher: HttpFetcher, basic_registry: LocalRegistry) -> None:
    host = basic_registry.host
    client = client_for(fetcher, host, credentials={host: ("alice", "secret")})
    assert (await client.resolve_digest(ref(host))).media_type == OCI_MANIFEST

    anonymous = client_for(fetcher, host)
    with pytest.raises(UpstreamError, match="none are configured"):
        await anonymous.resolve_digest(ref(host))

    wrong = client_for(fetcher, host, credentials={host: ("alice", "wrong")})
    with pytest.raises(UpstreamError, match="refused our credentials"):
        await wrong.resolve_digest(ref(host))


async def test_redirect_target_demanding_auth_gets_no_credentials(
    fetcher: HttpFetcher,
    double: ReferrersApiDouble,
    basic_registry: LocalRegistry,
    content: Content,
) -> None:
    """A blob redirect to a host that challenges is refused, never answered with credentials."""
    credentials = {double.host: ("alice", "secret"), basic_registry.host: ("alice", "secret")}
    client = client_for(fetcher, double.host, basic_registry.host, credentials=credentials)
    (alice, _) = await client.find_signature_artifacts(ref(double.host), content.signed[0])
    manifest = json.loads(
        (
            await fetcher.get(
                f"http://{double.host}/v2/{REPO}/manifests/{alice.digest}",
                max_bytes=65536,
                headers={"Accept": OCI_MANIFEST},
            )
        ).body
    )
    blob_path = f"/v2/{REPO}/blobs/{manifest['layers'][0]['digest']}"
    target = f"http://{basic_registry.host}{blob_path}"
    double.overrides[blob_path] = (307, {"Location": target}, b"")
    with pytest.raises(UpstreamError, match="redirect target demanded authentication"):
        await client.fetch_signature(ref(double.host), alice, content.signed[0])
