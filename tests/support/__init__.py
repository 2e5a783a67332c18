"""Test-only helpers: signing keys, an MST builder, CAR/commit assembly, interop vectors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# ../shared/vectors/atproto-interop relative to the repository root (never copied into the repo).
_DEFAULT_VECTORS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "atproto-interop"
)


def vectors_dir() -> Path:
    """Where the atproto interop vectors live (env ATPROTO_INTEROP_VECTORS overrides)."""
    override = os.environ.get("ATPROTO_INTEROP_VECTORS")
    return Path(override) if override else _DEFAULT_VECTORS


def _missing_reason() -> str:
    return (
        f"atproto interop vectors not found at {vectors_dir()} "
        "(set ATPROTO_INTEROP_VECTORS to their folder)"
    )


def require_vectors() -> Path:
    """The vectors folder, or skip the calling test when it is absent."""
    folder = vectors_dir()
    if not folder.is_dir():
        pytest.skip(_missing_reason())
    return folder


def vector_json(relative: str) -> Any:
    return json.loads((vectors_dir() / relative).read_text(encoding="utf-8"))


def vector_lines(relative: str) -> list[str]:
    """Non-comment, non-empty lines of a syntax vector file (trailing spaces are significant)."""
    text = (vectors_dir() / relative).read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line and not line.startswith("#")]


def vector_params(
    relative: str, *, lines: bool = False, ids: Any = None, where: Any = None
) -> list[Any]:
    """pytest params, one per vector; a single skipped param when the folder is absent.

    Parametrizing at collection time gives every vector its own test id; ``where`` keeps only
    the vectors a test applies to.
    """
    if not vectors_dir().is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=_missing_reason()), id="absent")]
    items = vector_lines(relative) if lines else vector_json(relative)
    params = []
    for index, item in enumerate(items):
        if where is not None and not where(item):
            continue
        label = ids(index, item) if ids else str(index)
        params.append(pytest.param(item, id=label))
    return params
