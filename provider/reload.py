"""Change detection by polling: mounted Secrets and ConfigMaps are swapped by symlink, without
inotify events that survive the swap, so files are compared by (inode, size, mtime) every few
seconds. ``os.stat`` follows the symlink, so Kubernetes' ``..data`` swap changes the inode."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from structlog.typing import FilteringBoundLogger

FileStamp = tuple[int, int, int] | None
"""(inode, size, mtime_ns) of a file, or None when it is missing or unreadable."""


def file_stamp(path: Path) -> FileStamp:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def stamps(paths: Iterable[Path]) -> tuple[tuple[str, FileStamp], ...]:
    return tuple((str(path), file_stamp(path)) for path in paths)


async def poll(interval: float, check: Callable[[], object], logger: FilteringBoundLogger) -> None:
    """Call ``check`` every ``interval`` seconds until cancelled. A bug in ``check`` is logged and
    polling goes on: a watcher that died silently would freeze certificates or policy forever."""
    while True:
        await asyncio.sleep(interval)
        try:
            check()
        except Exception:
            logger.exception("reload check failed", check=getattr(check, "__qualname__", "?"))
