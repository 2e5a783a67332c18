"""An on-disk cache shared by the plugin's short-lived processes.

Ratify starts the plugin for every artifact it verifies, so an in-memory cache dies with each
answer. Two kinds of entries live under ``cacheDir``:

* ``dids/``: raw DID documents with their fetch time (:class:`FileDidStore`, the core's
  ``DidDocumentStore``). The core re-parses every body with its strict parser and applies the DID
  TTL and the bounded stale-if-error window itself.
* ``verdicts/``: finished answers keyed by subject, artifact and configuration fingerprint, with
  an absolute expiry (verified results longer than denials; undecided results are not stored).

Each entry is one small JSON file written atomically (temporary file + rename); anything that does
not parse or does not match its key is a miss. The directory must belong to this user and not be
writable by others: a cache that someone else can write could forge answers, so such a directory
is not used at all. Sizes are bounded: entries per directory and bytes per file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable
from typing import Any, TypeGuard

from .log import Log
from .wire import VerifierResult

MAX_ENTRIES = 4096
"""Per kind; the oldest quarter is pruned when exceeded."""
MAX_ENTRY_BYTES = 256 * 1024
_STALE_TMP_SECONDS = 60.0
_KINDS = ("dids", "verdicts")


class DiskCache:
    """Bounded, atomically written JSON entries under a private directory."""

    def __init__(
        self,
        root: str,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self._max_entries = max_entries
        self._clock = clock

    @classmethod
    def open(cls, root: str, log: Log) -> DiskCache | None:
        """The cache at ``root``, created private if missing; None when it is not safe to use."""
        try:
            for kind in ("", *_KINDS):
                path = os.path.join(root, kind) if kind else root
                os.makedirs(path, mode=0o700, exist_ok=True)
                problem = _unsafe(path)
                if problem is not None:
                    log.warn(f"not using cacheDir {root}: {problem}")
                    return None
        except OSError as exc:
            log.warn(f"not using cacheDir {root}: {exc.strerror}")
            return None
        return cls(root)

    def now(self) -> float:
        return self._clock()

    # --- entries -----------------------------------------------------------------------------

    def _path(self, kind: str, key: str) -> str:
        return os.path.join(self.root, kind, hashlib.sha256(key.encode()).hexdigest() + ".json")

    def read(self, kind: str, key: str) -> dict[str, Any] | None:
        """The entry stored under ``key``, or None (absent, unreadable, corrupt, another key)."""
        try:
            with open(self._path(kind, key), "rb") as handle:
                data = handle.read(MAX_ENTRY_BYTES + 1)
        except OSError:
            return None
        if len(data) > MAX_ENTRY_BYTES:
            return None
        try:
            entry = json.loads(data)
        except (ValueError, RecursionError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        return entry

    def write(self, kind: str, key: str, entry: dict[str, Any]) -> None:
        """Store ``entry`` under ``key`` atomically; failures are ignored (a cache is optional)."""
        data = json.dumps({**entry, "key": key}, separators=(",", ":")).encode()
        if len(data) > MAX_ENTRY_BYTES:
            return
        directory = os.path.join(self.root, kind)
        tmp = os.path.join(directory, f".tmp-{os.getpid()}-{time.monotonic_ns()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, self._path(kind, key))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        self._prune(directory)

    def _prune(self, directory: str) -> None:
        """Keep at most ``max_entries`` files: drop stale temporaries, then the oldest quarter."""
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
            if len(entries) <= self._max_entries:
                return
            now = time.time()
            aged: list[tuple[float, str]] = []
            for entry in entries:
                mtime = entry.stat(follow_symlinks=False).st_mtime
                if entry.name.startswith(".tmp-") and now - mtime > _STALE_TMP_SECONDS:
                    os.unlink(entry.path)
                elif entry.name.endswith(".json"):
                    aged.append((mtime, entry.path))
            aged.sort()
            excess = len(aged) - self._max_entries * 3 // 4
            for _, path in aged[: max(excess, 0)]:
                os.unlink(path)
        except OSError:
            pass

    # --- verdicts ----------------------------------------------------------------------------

    def get_verdict(self, key: str) -> VerifierResult | None:
        entry = self.read("verdicts", key)
        if entry is None:
            return None
        expires = entry.get("expires")
        result = entry.get("result")
        if not isinstance(expires, int | float) or expires <= self.now():
            return None
        if not _is_result(result):
            return None
        return result

    def put_verdict(self, key: str, result: VerifierResult, ttl: float) -> None:
        if ttl > 0:
            self.write("verdicts", key, {"expires": self.now() + ttl, "result": result})


def _unsafe(path: str) -> str | None:
    """Why ``path`` must not hold cache entries (None when it is a private directory of ours)."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory"
    if info.st_uid != os.getuid():
        return "owned by another user"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "writable by group or others"
    return None


def _is_result(value: object) -> TypeGuard[VerifierResult]:
    """A cached answer has the shape this plugin writes; anything else is corrupt."""
    if not isinstance(value, dict):
        return False
    extensions = value.get("extensions")
    return (
        isinstance(value.get("isSuccess"), bool)
        and isinstance(value.get("message"), str)
        and isinstance(extensions, dict)
        and isinstance(extensions.get("reason"), str)
        and isinstance(extensions.get("outcome"), str)
    )


class FileDidStore:
    """The core's ``DidDocumentStore`` on disk: raw bytes and fetch time, nothing parsed."""

    def __init__(self, cache: DiskCache) -> None:
        self._cache = cache

    def get(self, did: str) -> tuple[bytes, float] | None:
        entry = self._cache.read("dids", did)
        if entry is None:
            return None
        fetched_at = entry.get("fetchedAt")
        body = entry.get("body")
        if not isinstance(fetched_at, int | float) or not isinstance(body, str):
            return None
        try:
            return base64.b64decode(body, validate=True), float(fetched_at)
        except (binascii.Error, ValueError):
            return None

    def put(self, did: str, body: bytes) -> None:
        self._cache.write(
            "dids",
            did,
            {"fetchedAt": self._cache.now(), "body": base64.b64encode(body).decode("ascii")},
        )
