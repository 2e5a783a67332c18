"""The local test network and publisher produce what the verifier will consume.

Plain httpx against the real servers; the few decoding helpers (CAR, base58, commit signature)
are local on purpose, so these tests do not depend on the verifier under development.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cbor2
import coincurve
import httpx
import pytest
from coincurve.ecdsa import cdata_to_der, deserialize_compact

from atcr_devnet import DELETE, Account, DevnetSetupError, LocalNetwork, Publisher
from atcr_devnet.publisher import split_at_uri

pytestmark = pytest.mark.network

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SIG_TYPE = "application/vnd.atproto.signature.v1+json"
ACCEPT = {"accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


# --- small local decoders ----------------------------------------------------------------------


def b58decode(text: str) -> bytes:
    num = 0
    for char in text:
        num = num * 58 + B58.index(char)
    body = num.to_bytes((num.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def car_blocks(car: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """(root CID bytes, {CID bytes: block}) of a CAR v1 with 36-byte CIDv1 sha256 CIDs."""
    size, pos = varint(car, 0)
    header = cbor2.loads(car[pos : pos + size])
    pos += size
    blocks = {}
    while pos < len(car):
        size, pos = varint(car, pos)
        blocks[car[pos : pos + 36]] = car[pos + 36 : pos + size]
        pos += size
    root = header["roots"][0].value[1:]  # tag 42: 0x00 + binary CID
    return root, blocks


def cid_bytes(cid: str) -> bytes:
    assert cid.startswith("b")
    text = cid[1:].upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def public_key_from_did_key(did_key: str) -> bytes:
    raw = b58decode(did_key.removeprefix("did:key:z"))
    assert raw[:2] == b"\xe7\x01", "expected a secp256k1 did:key"
    return raw[2:]


def commit_verifies(commit: dict[str, Any], public_key: bytes) -> bool:
    unsigned = {k: v for k, v in commit.items() if k != "sig"}
    message = hashlib.sha256(cbor2.dumps(unsigned, canonical=True)).digest()
    der = cdata_to_der(deserialize_compact(commit["sig"]))
    return bool(coincurve.PublicKey(public_key).verify(der, message, hasher=None))


def atproto_key(doc: dict[str, Any]) -> dict[str, Any]:
    return next(
        m for m in doc["verificationMethod"] if m["id"] in ("#atproto", f"{doc['id']}#atproto")
    )


def doc_public_key(doc: dict[str, Any]) -> bytes:
    """The DID document's atproto key: legacy uncompressed point or Multikey."""
    method = atproto_key(doc)
    raw = b58decode(method["publicKeyMultibase"][1:])
    if method["type"] == "Multikey":
        assert raw[:2] == b"\xe7\x01"
        return raw[2:]
    assert method["type"] == "EcdsaSecp256k1VerificationKey2019"
    return raw  # 65-byte uncompressed point


def latest_commit(network: LocalNetwork, did: str, record_uri: str) -> dict[str, Any]:
    _, collection, rkey = split_at_uri(record_uri)
    resp = httpx.get(
        f"{network.pds_url}/xrpc/com.atproto.sync.getRecord",
        params={"did": did, "collection": collection, "rkey": rkey},
    )
    resp.raise_for_status()
    root, blocks = car_blocks(resp.content)
    commit: dict[str, Any] = cbor2.loads(blocks[root])
    return commit


def listening_sockets(pids: set[int]) -> list[str]:
    """``ip:port`` of every TCP listening socket owned by ``pids`` (from /proc, no ss needed)."""
    inodes = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                addr, port = fields[1].split(":")
                found.append(f"{addr}:{int(port, 16)}")
    return found


def descendants(pid: int) -> set[int]:
    out = {pid}
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            out |= descendants(int(child))
    return out


# --- the network ---------------------------------------------------------------------------


def test_network_serves_on_loopback_only(network: LocalNetwork) -> None:
    assert network.plc_url.startswith("http://127.0.0.1:")
    assert network.pds_url.startswith("http://127.0.0.1:")
    assert network.registry.startswith("127.0.0.1:")
    assert network.handle_domain == ".test"
    assert httpx.get(f"{network.pds_url}/xrpc/_health").status_code == 200
    assert httpx.get(f"{network.registry_url}/v2/").status_code == 200

    pids: set[int] = set()
    for pid in network.process_ids():
        pids |= descendants(pid)
    sockets = listening_sockets(pids)
    ports = {
        network.plc_url.rsplit(":", 1)[1],
        network.pds_url.rsplit(":", 1)[1],
        network.registry.rsplit(":", 1)[1],
    }
    assert {s.rsplit(":", 1)[1] for s in sockets} >= ports
    # 0100007F = 127.0.0.1 in /proc's little-endian hex; anything else would be exposed.
    assert all(s.startswith("0100007F:") for s in sockets), sockets


def test_network_stops_and_cleans_up(tmp_path: Path) -> None:
    with LocalNetwork() as net:
        pids = set(net.process_ids())
        work_dir = net.work_dir
        assert work_dir is not None
        assert work_dir.is_dir()
    assert not work_dir.exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{net.pds_url}/xrpc/_health", timeout=2)


def test_missing_node_modules_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "start.mjs").write_text("")
    with pytest.raises(DevnetSetupError, match="make devnet-deps"):
        LocalNetwork(devnet_dir=tmp_path).start()


def test_missing_registry_fails_clearly() -> None:
    with pytest.raises(DevnetSetupError, match="apt-get install -y docker-registry"):
        LocalNetwork(registry_bin="no-such-docker-registry").start()


# --- identities ----------------------------------------------------------------------------


def test_did_document_names_pds_and_atproto_key(network: LocalNetwork, account: Account) -> None:
    resp = httpx.get(f"{network.plc_url}/{account.did}")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["id"] == account.did
    assert doc["alsoKnownAs"] == [f"at://{account.handle}"]
    pds = [s for s in doc["service"] if s["id"] == "#atproto_pds"]
    assert pds == [
        {
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": network.pds_url,
        }
    ]
    # @did-plc/server 0.0.1 publishes the legacy form: z + base58btc(65-byte uncompressed point).
    method = atproto_key(doc)
    assert method["type"] == "EcdsaSecp256k1VerificationKey2019"
    assert len(doc_public_key(doc)) == 65


# --- a signed image, end to end ------------------------------------------------------------


def test_signed_image_chain(network: LocalNetwork, publisher: Publisher, account: Account) -> None:
    signed = publisher.publish_signed_image(account, "myapp", "v1")
    image = signed.image
    base = f"{network.registry_url}/v2/{image.repository}"
    assert image.repository == f"{account.handle}/myapp"
    assert image.reference == f"{network.registry}/{account.handle}/myapp@{image.digest}"

    # The registry serves the image manifest by digest, byte for byte.
    resp = httpx.get(f"{base}/manifests/{image.digest}", headers=ACCEPT)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == OCI_MANIFEST
    assert "sha256:" + hashlib.sha256(resp.content).hexdigest() == image.digest

    # The tag-schema index sha256-<hex> lists the artifact.
    resp = httpx.get(f"{base}/manifests/sha256-{image.digest[7:]}", headers=ACCEPT)
    assert resp.status_code == 200
    index = resp.json()
    assert index["mediaType"] == OCI_INDEX
    [entry] = index["manifests"]
    assert entry["artifactType"] == SIG_TYPE
    assert entry["digest"] == signed.artifact.digest
    assert entry["annotations"]["io.atcr.did"] == account.did

    # The artifact manifest: artifactType, empty config, one layer, subject = the image.
    resp = httpx.get(f"{base}/manifests/{entry['digest']}", headers=ACCEPT)
    assert resp.status_code == 200
    artifact = resp.json()
    assert artifact["artifactType"] == SIG_TYPE
    assert artifact["subject"] == {
        "mediaType": OCI_MANIFEST,
        "digest": image.digest,
        "size": image.size,
    }
    assert artifact["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
        "data": "e30=",
    }
    [layer] = artifact["layers"]
    assert layer["mediaType"] == SIG_TYPE

    # The layer blob is the signature document, pointing at the record.
    blob = httpx.get(f"{base}/blobs/{layer['digest']}", follow_redirects=True)
    assert blob.status_code == 200
    assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == layer["digest"]
    document = json.loads(blob.content)
    assert document["$type"] == "io.atcr.atproto.signature"
    assert document["subject"]["digest"] == image.digest
    assert document["atproto"]["did"] == account.did
    assert document["atproto"]["handle"] == account.handle
    assert document["atproto"]["pdsEndpoint"] == network.pds_url
    assert document["signature"]["keyId"] == f"{account.did}#atproto"
    did, collection, rkey = split_at_uri(document["atproto"]["recordUri"])
    assert (did, collection) == (account.did, "io.atcr.manifest")

    # The record: a CAR proof whose root is the current commit, and the JSON view.
    resp = httpx.get(
        f"{network.pds_url}/xrpc/com.atproto.sync.getRecord",
        params={"did": did, "collection": collection, "rkey": rkey},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/vnd.ipld.car")
    root, blocks = car_blocks(resp.content)
    assert root == cid_bytes(document["atproto"]["commitCid"])
    assert cid_bytes(signed.record.cid) in blocks
    assert commit_verifies(cbor2.loads(blocks[root]), doc_public_key(publisher.did_document(did)))

    resp = httpx.get(
        f"{network.pds_url}/xrpc/com.atproto.repo.getRecord",
        params={"repo": did, "collection": collection, "rkey": rkey},
    )
    assert resp.status_code == 200
    value = resp.json()["value"]
    assert value == {
        "$type": "io.atcr.manifest",
        "repository": "myapp",
        "digest": image.digest,
        "mediaType": OCI_MANIFEST,
        "schemaVersion": 2,
        "createdAt": value["createdAt"],
    }


def test_deleted_record_answers_non_inclusion_proof(
    network: LocalNetwork, publisher: Publisher, account: Account
) -> None:
    signed = publisher.publish_signed_image(account, "revoked")
    did, collection, rkey = split_at_uri(signed.record.uri)
    assert publisher.delete_record(account, signed.record.uri) is not None

    # The reference PDS answers a missing record with a proof (CAR without the record)...
    resp = httpx.get(
        f"{network.pds_url}/xrpc/com.atproto.sync.getRecord",
        params={"did": did, "collection": collection, "rkey": rkey},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/vnd.ipld.car")
    root, blocks = car_blocks(resp.content)
    assert root != cid_bytes(signed.record.commit_cid)
    assert cid_bytes(signed.record.cid) not in blocks
    # ...while the JSON view says RecordNotFound.
    resp = httpx.get(
        f"{network.pds_url}/xrpc/com.atproto.repo.getRecord",
        params={"repo": did, "collection": collection, "rkey": rkey},
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "RecordNotFound"


def test_multi_arch_index_is_signed(network: LocalNetwork, publisher: Publisher) -> None:
    owner = publisher.create_account("multi")
    signed = publisher.publish_signed_image(owner, "multi", multi_arch=True)
    assert signed.image.media_type == OCI_INDEX
    assert len(signed.image.children) == 2
    resp = httpx.get(
        f"{network.registry_url}/v2/{signed.image.repository}/manifests/{signed.image.digest}",
        headers=ACCEPT,
    )
    assert resp.status_code == 200
    assert [m["platform"]["architecture"] for m in resp.json()["manifests"]] == ["amd64", "arm64"]
    assert signed.record.value["mediaType"] == OCI_INDEX
    assert publisher.referrers(signed.image) == [signed.artifact.index_entry]


def test_several_signers_accumulate(publisher: Publisher, account: Account) -> None:
    signed = publisher.publish_signed_image(account, "shared")
    bob = publisher.create_account("bob")
    record = publisher.write_manifest_record(
        bob, repository="shared", digest=signed.image.digest, media_type=signed.image.media_type
    )
    second = publisher.attach_signature(signed.image, account=bob, record=record)
    dids = [m["annotations"]["io.atcr.did"] for m in publisher.referrers(signed.image)]
    assert dids == [account.did, bob.did]
    assert second.digest != signed.artifact.digest


def test_tamper_hooks_publish_what_they_are_told(publisher: Publisher, account: Account) -> None:
    image = publisher.push_image(publisher.image_repository(account, "tampered"))
    other = publisher.push_image(publisher.image_repository(account, "tampered"), "other")
    record = publisher.write_manifest_record(
        account, repository="tampered", digest=other.digest, media_type=other.media_type
    )
    artifact = publisher.attach_signature(
        image,
        account=account,
        record=record,
        document_overrides={"atproto": {"did": "did:plc:evil"}},
        subject_override=other.descriptor(),
    )
    manifest = json.loads(artifact.manifest)
    assert manifest["subject"]["digest"] == other.digest
    assert json.loads(artifact.document)["atproto"]["did"] == "did:plc:evil"
    assert publisher.referrers(image) == [artifact.index_entry]  # listed under the first image


def test_rotate_signing_key(network: LocalNetwork, publisher: Publisher, account: Account) -> None:
    signed = publisher.publish_signed_image(account, "rotated")
    old_key = doc_public_key(publisher.did_document(account.did))

    # Key rotated away: the DID document names a new key, the PDS still signs with the old one.
    rotated = publisher.rotate_signing_key(account)
    doc = publisher.did_document(account.did)
    new_key = doc_public_key(doc)
    assert new_key != old_key
    assert coincurve.PublicKey(new_key).format() == rotated.new_key.public_key_compressed
    commit = latest_commit(network, account.did, signed.record.uri)
    assert commit_verifies(commit, old_key)
    assert commit_verifies(commit, public_key_from_did_key(rotated.previous_did_key))
    assert not commit_verifies(commit, new_key)

    # Legitimate rotation: the PDS gets the new key and signs the next commit with it.
    installed = publisher.rotate_signing_key(account, install_in_pds=True)
    publisher.write_manifest_record(
        account, repository="rotated", digest=signed.image.digest, media_type=OCI_MANIFEST
    )
    commit = latest_commit(network, account.did, signed.record.uri)
    current = doc_public_key(publisher.did_document(account.did))
    assert coincurve.PublicKey(current).format() == installed.new_key.public_key_compressed
    assert commit_verifies(commit, current)


def test_write_many_records(network: LocalNetwork, publisher: Publisher) -> None:
    filler = publisher.create_account("filler")
    uris = publisher.write_many_records(filler, 450)
    assert len(uris) == len(set(uris)) == 450
    resp = httpx.get(
        f"{network.pds_url}/xrpc/com.atproto.repo.describeRepo", params={"repo": filler.did}
    )
    assert resp.json()["collections"] == ["io.atcr.manifest"]


def test_cli_up_once_writes_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    env_file = tmp_path / "devnet.env"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "atcr_devnet",
            "up",
            "--once",
            "--summary",
            str(summary),
            "--env-file",
            str(env_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(summary.read_text())
    assert json.loads(result.stdout) == data
    assert data["did"].startswith("did:plc:")
    assert data["signed_image"].startswith(f"{data['registry']}/{data['handle']}/demo@sha256:")
    assert data["unsigned_image"].startswith(f"{data['registry']}/{data['handle']}/demo@sha256:")
    assert f"ATCR_DEVNET_DID={data['did']}\n" in env_file.read_text()


def test_put_record_with_rkey_overwrites(network: LocalNetwork, publisher: Publisher) -> None:
    owner = publisher.create_account("putter")
    image = publisher.push_image(publisher.image_repository(owner, "put"))
    first = publisher.write_manifest_record(
        owner, repository="put", digest=image.digest, media_type=image.media_type, rkey="self"
    )
    second = publisher.write_manifest_record(
        owner,
        repository="put",
        digest=image.digest,
        media_type=image.media_type,
        rkey="self",
        extra={"annotations": {"note": "second"}, "createdAt": DELETE},
    )
    assert first.uri == second.uri == f"at://{owner.did}/io.atcr.manifest/self"
    assert first.cid != second.cid
    resp = httpx.get(
        f"{network.pds_url}/xrpc/com.atproto.repo.getRecord",
        params={"repo": owner.did, "collection": "io.atcr.manifest", "rkey": "self"},
    )
    value = resp.json()["value"]
    assert value["annotations"] == {"note": "second"}
    assert "createdAt" not in value
