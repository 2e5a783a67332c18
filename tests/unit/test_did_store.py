"""``DidResolver`` with a ``DidDocumentStore``: reuse within the TTL, bounded stale-if-error.

The PLC here is an ``httpx.MockTransport`` that counts requests and can be switched to failing:
what is under test is the resolver's use of the store, not HTTP.
"""

from __future__ import annotations

import json

import httpx
import pytest

from atcr_verify.errors import DidDocumentError, NotFound, UpstreamError
from atcr_verify.identity import DidResolver, IdentitySettings
from atcr_verify.net import HttpFetcher, NetworkSettings
from tests.support.keys import SigningKey

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
PLC = "https://plc.test.invalid"


def document(key: SigningKey, pds: str = "https://pds.example.com") -> bytes:
    return json.dumps(
        {
            "id": DID,
            "alsoKnownAs": ["at://alice.example.com"],
            "verificationMethod": [
                {
                    "id": f"{DID}#atproto",
                    "type": "Multikey",
                    "controller": DID,
                    "publicKeyMultibase": key.public.multikey(),
                }
            ],
            "service": [
                {
                    "id": "#atproto_pds",
                    "type": "AtprotoPersonalDataServer",
                    "serviceEndpoint": pds,
                }
            ],
        }
    ).encode()


class MemoryStore:
    def __init__(self) -> None:
        self.entries: dict[str, tuple[bytes, float]] = {}
        self.clock = 1_000_000.0

    def get(self, did: str) -> tuple[bytes, float] | None:
        return self.entries.get(did)

    def put(self, did: str, body: bytes) -> None:
        self.entries[did] = (body, self.clock)


class CountingPlc:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.status = 200
        self.requests = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(self.status, content=self.body if self.status == 200 else b"")


def resolver(plc: CountingPlc, store: MemoryStore) -> DidResolver:
    client = httpx.AsyncClient(transport=httpx.MockTransport(plc.handler))
    settings = IdentitySettings(plc_url=PLC)
    network = NetworkSettings(allow_private_networks=True)
    return DidResolver(
        HttpFetcher(client, network),
        settings,
        store=store,
        store_ttl=300.0,
        store_stale_seconds=3600.0,
        clock=lambda: store.clock,
    )


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("k256")


async def test_a_fresh_stored_document_is_reused_without_a_request(key: SigningKey) -> None:
    plc, store = CountingPlc(document(key)), MemoryStore()
    first = await resolver(plc, store).resolve(DID)
    assert plc.requests == 1 and DID in store.entries
    store.clock += 299
    again = await resolver(plc, store).resolve(DID)
    assert plc.requests == 1
    assert again == first


async def test_an_expired_document_is_fetched_again_and_replaced(key: SigningKey) -> None:
    plc, store = CountingPlc(document(key)), MemoryStore()
    await resolver(plc, store).resolve(DID)
    store.clock += 301
    plc.body = document(key, pds="https://moved.example.com")
    identity = await resolver(plc, store).resolve(DID)
    assert plc.requests == 2
    assert identity.pds_endpoint == "https://moved.example.com"
    assert store.entries[DID] == (plc.body, store.clock)


async def test_stale_document_is_served_only_within_the_window_and_only_on_faults(
    key: SigningKey,
) -> None:
    plc, store = CountingPlc(document(key)), MemoryStore()
    await resolver(plc, store).resolve(DID)
    plc.status = 503
    store.clock += 300 + 3599
    assert (await resolver(plc, store).resolve(DID)).did == DID
    store.clock += 2
    with pytest.raises(UpstreamError):
        await resolver(plc, store).resolve(DID)
    plc.status = 404  # a tombstone is a denial: never answered from the store
    store.clock -= 3000
    with pytest.raises(NotFound):
        await resolver(plc, store).resolve(DID)


async def test_a_corrupt_or_future_stored_document_is_never_trusted(key: SigningKey) -> None:
    plc, store = CountingPlc(document(key)), MemoryStore()
    store.entries[DID] = (b'{"id": "did:plc:someoneelse"}', store.clock)
    identity = await resolver(plc, store).resolve(DID)
    assert plc.requests == 1 and identity.did == DID
    store.entries[DID] = (document(SigningKey.generate("k256")), store.clock + 60)
    assert (await resolver(plc, store).resolve(DID)) == identity  # future time: refetched
    assert plc.requests == 2


async def test_a_fetched_document_that_does_not_parse_is_not_stored(key: SigningKey) -> None:
    plc, store = CountingPlc(b"not json"), MemoryStore()
    with pytest.raises(DidDocumentError):
        await resolver(plc, store).resolve(DID)
    assert store.entries == {}
