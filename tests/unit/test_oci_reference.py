"""Image reference parsing, with cases taken from distribution/reference's own test tables."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atcr_verify.errors import InvalidReference, VerifyError
from atcr_verify.oci.reference import (
    ImageReference,
    is_sha256_digest,
    parse_reference,
)

SHA = "sha256:" + "ff" * 32
SHA_OTHER = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "ab" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        # Docker Hub defaults.
        ("nginx", "docker.io", "library/nginx", "latest", None),
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
        ("library/nginx", "docker.io", "library/nginx", "latest", None),
        ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("docker.io/library/nginx", "docker.io", "library/nginx", "latest", None),
        ("index.docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("registry-1.docker.io/foo/bar", "docker.io", "foo/bar", "latest", None),
        ("docker/docker", "docker.io", "docker/docker", "latest", None),
        ("dmcgowan/myapp", "docker.io", "dmcgowan/myapp", "latest", None),
        ("dmcgowan/myapp/foo", "docker.io", "dmcgowan/myapp/foo", "latest", None),
        # Registry hosts, ports, localhost.
        ("test_com", "docker.io", "library/test_com", "latest", None),
        ("test.com:tag", "docker.io", "library/test.com", "tag", None),
        ("test.com:5000", "docker.io", "library/test.com", "5000", None),
        ("test.com/repo:tag", "test.com", "repo", "tag", None),
        ("test:5000/repo", "test:5000", "repo", "latest", None),
        ("test:5000/repo:tag", "test:5000", "repo", "tag", None),
        (f"test:5000/repo@{SHA}", "test:5000", "repo", None, SHA),
        (f"test:5000/repo:tag@{SHA}", "test:5000", "repo", "tag", SHA),
        ("localhost/repo", "localhost", "repo", "latest", None),
        ("localhost:5000/a/b/c:v1", "localhost:5000", "a/b/c", "v1", None),
        ("127.0.0.1:5000/repo", "127.0.0.1:5000", "repo", "latest", None),
        ("[::1]:5000/repo", "[::1]:5000", "repo", "latest", None),
        ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", "latest", None),
        (
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            "some-long-tag",
            None,
        ),
        (
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "test.example.com/my-app",
            "test.example.com",
            None,
        ),
        ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None),
        ("Foo.Example.COM/repo", "foo.example.com", "repo", "latest", None),
        # Separators in path components.
        ("a.com/a__b/c-d/e---f/g.h", "a.com", "a__b/c-d/e---f/g.h", "latest", None),
        # Digests.
        (f"nginx@{SHA}", "docker.io", "library/nginx", None, SHA),
        (f"ghcr.io/o/r:v1@{SHA_OTHER}", "ghcr.io", "o/r", "v1", SHA_OTHER),
        (f"ghcr.io/o/r@{SHA512}", "ghcr.io", "o/r", None, SHA512),
        # Tags: word characters first, up to 128.
        ("repo:_underscore", "docker.io", "library/repo", "_underscore", None),
        ("repo:" + "a" * 128, "docker.io", "library/repo", "a" * 128, None),
    ],
)
def test_valid_references(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert ref == ImageReference(registry, repository, tag, digest)
    # The canonical form parses back to the same reference.
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (":justtag", "no repository"),
        ("@" + SHA, "no repository"),
        ("repo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "digest"),
        ("repo@sha256:" + "FF" * 32, "digest"),
        ("repo@sha256:" + "f" * 65, "digest"),
        ("repo@md5:" + "f" * 32, "digest"),
        ("repo@" + SHA + "@" + SHA, "digest"),
        (
            "validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "digest",
        ),
        ("Uppercase:tag", "lowercase"),
        ("docker/Docker", "lowercase"),
        ("test:5000/Uppercase/lowercase:tag", "lowercase"),
        ("aa/asdf$$^/aa", "path component"),
        ("a/-leading", "path component"),
        ("a/trailing-", "path component"),
        ("a/double..dot", "path component"),
        ("a/___three", "path component"),
        ("a//b", "path component"),
        ("a/", "path component"),
        ("repo:-dash", "tag"),
        ("repo:.dot", "tag"),
        ("repo:" + "a" * 129, "tag"),
        ("repo:", "tag"),
        ("-host.com/repo", "registry"),
        ("host-.com/repo", "registry"),
        ("host..com/repo", "registry"),
        ("host.com:port/repo", "registry"),
        ("has space", "whitespace"),
        ("tab\there", "whitespace"),
        ("caf\u00e9/repo", "non-ASCII"),
        ("nl\n", "whitespace"),
        (("a" * 256), "longer than 255"),
        ("a.com/" + "/".join(["abcdefghij"] * 30), "longer than 255"),
        ("a" * 5000, "longer than 4096"),
        ("docker.io/" + "a" * 64, "hexadecimal"),
        ("a" * 64, "hexadecimal"),
    ],
)
def test_invalid_references(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert reason in str(info.value)


def test_properties() -> None:
    hub = parse_reference("nginx")
    assert hub.name == "docker.io/library/nginx"
    assert hub.api_host == "registry-1.docker.io"
    assert str(hub) == "docker.io/library/nginx:latest"

    local = parse_reference("127.0.0.1:5000/team/app:v2")
    assert local.api_host == "127.0.0.1:5000"
    assert local.name == "127.0.0.1:5000/team/app"

    pinned = local.with_digest(SHA)
    assert pinned.digest == SHA
    assert pinned.tag == "v2"
    assert str(pinned) == f"127.0.0.1:5000/team/app:v2@{SHA}"
    with pytest.raises(InvalidReference):
        local.with_digest("sha256:nothex")


def test_reference_is_hashable_and_frozen() -> None:
    ref = parse_reference("ghcr.io/o/r:v1")
    assert {ref: 1}[parse_reference("ghcr.io/o/r:v1")] == 1
    with pytest.raises(AttributeError):
        ref.tag = "v2"  # type: ignore[misc]


def test_is_sha256_digest() -> None:
    assert is_sha256_digest(SHA)
    assert not is_sha256_digest(SHA512)
    assert not is_sha256_digest("sha256:" + "F" * 64)
    assert not is_sha256_digest("sha256:" + "f" * 63)
    assert not is_sha256_digest(None)
    assert not is_sha256_digest(SHA + "\n")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_only_raises_verify_errors(text: str) -> None:
    with contextlib.suppress(VerifyError):
        parse_reference(text)


_COMPONENT = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    host=st.sampled_from(["ghcr.io", "localhost:5000", "10.0.0.1:443", "example.com"]),
    components=st.lists(_COMPONENT, min_size=1, max_size=4),
    tag=st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)
def test_generated_valid_references_round_trip(
    host: str, components: list[str], tag: str | None
) -> None:
    text = f"{host}/{'/'.join(components)}" + (f":{tag}" if tag else "")
    ref = parse_reference(text)
    assert ref.registry == host
    assert ref.repository == "/".join(components)
    assert parse_reference(str(ref)) == ref
