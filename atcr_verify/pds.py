"""The PDS calls the verifier makes: a record proof, nothing else.

``com.atproto.sync.getRecord`` returns a CAR with the current signed commit, the MST path to the
record and the record itself: O(log n) bytes however large the repository is. ``getRepo`` is never
used (its size grows with the repository).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from .errors import NotFound, RecordNotFound, UpstreamError
from .net import HttpFetcher

_REPO_GONE = frozenset({"RepoNotFound", "RepoTakendown", "RepoDeactivated", "RepoSuspended"})


class PdsClient:
    def __init__(self, fetcher: HttpFetcher, *, max_proof_bytes: int = 1024 * 1024) -> None:
        self._fetcher = fetcher
        self._max_proof_bytes = max_proof_bytes

    async def get_record_proof(self, pds: str, did: str, collection: str, rkey: str) -> bytes:
        """The CAR proving (or disproving) ``at://did/collection/rkey`` at the current commit."""
        query = urlencode({"did": did, "collection": collection, "rkey": rkey})
        response = await self._fetcher.get(
            f"{pds}/xrpc/com.atproto.sync.getRecord?{query}",
            max_bytes=self._max_proof_bytes,
            headers={"Accept": "application/vnd.ipld.car"},
        )
        if response.status == 200:
            return response.body
        error = _xrpc_error_name(response.body)
        if error == "RecordNotFound":
            raise RecordNotFound(f"record {collection}/{rkey} is not in {did}'s repository")
        if error in _REPO_GONE:
            raise NotFound(f"{did}'s repository is not available on its PDS ({error})")
        if response.status == 404:
            raise NotFound(f"PDS {pds} has no repository for {did}")
        raise UpstreamError(
            f"PDS {pds} answered HTTP {response.status}" + (f" ({error})" if error else ""),
            status=response.status,
        )


def _xrpc_error_name(body: bytes) -> str | None:
    """The ``error`` name of an XRPC error body, if it is one."""
    try:
        document = json.loads(body[:4096])
    except (ValueError, RecursionError):
        return None
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return str(document["error"])[:64]
    return None
