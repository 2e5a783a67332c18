"""Image references (``registry/repository[:tag][@digest]``) parsed like distribution/reference.

The grammar is the one ``docker pull`` uses, including Docker Hub's defaults, so that a policy
written against ``nginx`` and an admission request for ``docker.io/library/nginx:latest`` name the
same image. Registry hosts are lowercased (DNS is case-insensitive; two spellings of one host must
not be two policy subjects); everything else is case-sensitive as in the reference grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import InvalidReference

MAX_REFERENCE_LENGTH = 4096
"""Longest reference text accepted at all."""
MAX_NAME_LENGTH = 255
"""distribution's limit on ``registry/repository``."""

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_DEFAULT_TAG = "latest"

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]{{1,5}})?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")
_SHA512 = re.compile(r"sha512:[a-f0-9]{128}")
_HEX64 = re.compile(r"[a-f0-9]{64}")


def is_sha256_digest(value: object) -> bool:
    """True for ``sha256:`` followed by exactly 64 lowercase hex digits."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def is_reference_digest(value: object) -> bool:
    """True for the digests a reference may pin: sha256 or sha512, lowercase hex."""
    return isinstance(value, str) and (
        _SHA256.fullmatch(value) is not None or _SHA512.fullmatch(value) is not None
    )


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A normalised image reference; ``tag`` and ``digest`` may both be set (the digest wins)."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """``registry/repository``: what policies match against."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host (and port) that serves the registry API for this reference."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def with_digest(self, digest: str) -> ImageReference:
        """The same reference pinned to ``digest`` (the tag is kept for display)."""
        if not is_reference_digest(digest):
            raise InvalidReference(f"invalid digest {digest[:80]!r}")
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse ``text`` with docker's normalisation or raise :class:`InvalidReference`."""
    if not isinstance(text, str):
        raise InvalidReference("reference must be a string")
    if not text:
        raise InvalidReference("empty reference")
    if len(text) > MAX_REFERENCE_LENGTH:
        raise InvalidReference(f"reference longer than {MAX_REFERENCE_LENGTH} characters")
    if not text.isascii() or not text.isprintable() or " " in text:
        raise InvalidReference("reference contains whitespace, control or non-ASCII characters")

    remainder, at, digest_text = text.partition("@")
    digest: str | None = None
    if at:
        if not is_reference_digest(digest_text):
            raise InvalidReference(
                f"invalid digest {_clip(digest_text)!r}: expected sha256:<64 lowercase hex> "
                "or sha512:<128 lowercase hex>"
            )
        digest = digest_text

    tag: str | None = None
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if _TAG.fullmatch(tag) is None:
            raise InvalidReference(f"invalid tag {_clip(tag)!r}")
    if not remainder:
        raise InvalidReference("reference has no repository name")

    registry, repository = _split_registry(remainder)
    if _DOMAIN.fullmatch(registry) is None:
        raise InvalidReference(f"invalid registry host {_clip(registry)!r}")
    registry = registry.lower()
    if registry in _DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    _check_repository(repository)
    if registry == DOCKER_HUB and _HEX64.fullmatch(repository.removeprefix("library/")):
        raise InvalidReference("repository name cannot be a 64-character hexadecimal string")
    if len(registry) + 1 + len(repository) > MAX_NAME_LENGTH:
        raise InvalidReference(f"repository name longer than {MAX_NAME_LENGTH} characters")

    if tag is None and digest is None:
        tag = _DEFAULT_TAG
    return ImageReference(registry=registry, repository=repository, tag=tag, digest=digest)


def _split_registry(name: str) -> tuple[str, str]:
    """Docker's rule: the first component is a host only if it looks like one."""
    first, slash, rest = name.partition("/")
    if slash and (any(c in first for c in ".:") or first == "localhost" or first != first.lower()):
        return first, rest
    return DOCKER_HUB, name


def _check_repository(repository: str) -> None:
    if not repository:
        raise InvalidReference("reference has no repository name")
    for component in repository.split("/"):
        if _PATH_COMPONENT.fullmatch(component) is not None:
            continue
        if component and _PATH_COMPONENT.fullmatch(component.lower()) is not None:
            raise InvalidReference("repository name must be lowercase")
        raise InvalidReference(f"invalid repository path component {_clip(component)!r}")


def _clip(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "…"
