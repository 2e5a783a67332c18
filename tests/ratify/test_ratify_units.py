"""The plugin's pieces in isolation: disk cache bounds and expiry, configuration fingerprints,
Docker credentials and the log quarantine."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest

from ratify_plugin.config import parse_config
from ratify_plugin.credentials import docker_credentials
from ratify_plugin.diskcache import DiskCache, FileDidStore
from ratify_plugin.log import Log, Quarantine, sanitise
from ratify_plugin.wire import VerifierResult

POLICY = "version: 1.0\ntrustedDIDs: {}\npolicies: []\n"


def result(success: bool = True) -> VerifierResult:
    return {
        "isSuccess": success,
        "name": "n",
        "type": "t",
        "message": "m",
        "extensions": {
            "did": None,
            "handle": None,
            "recordUri": None,
            "policy": None,
            "reason": "m",
            "digest": None,
            "artifactDigest": "sha256:" + "0" * 64,
            "outcome": "verified",
            "verified": success,
            "action": "enforce",
            "source": "plugin",
        },
    }


def open_cache(path: Path, **kw: Any) -> DiskCache:
    cache = DiskCache.open(str(path), Log(io.StringIO()))
    assert cache is not None
    return DiskCache(cache.root, **kw)


def test_verdicts_expire_and_ttl_zero_is_not_stored(tmp_path: Path) -> None:
    now = [1000.0]
    cache = open_cache(tmp_path / "c", clock=lambda: now[0])
    cache.put_verdict("k", result(), 30)
    cache.put_verdict("never", result(), 0)
    assert cache.get_verdict("k") == result()
    assert cache.get_verdict("never") is None
    now[0] += 31
    assert cache.get_verdict("k") is None


def test_entries_are_bounded_and_writes_leave_no_temporaries(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "c", max_entries=20)
    for i in range(60):
        cache.put_verdict(f"k{i}", result(), 300)
    files = list((tmp_path / "c" / "verdicts").iterdir())
    assert 15 <= len(files) <= 20
    assert all(f.name.endswith(".json") for f in files)
    assert cache.get_verdict("k59") is not None


def test_an_entry_is_only_returned_for_its_own_key(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "c")
    cache.put_verdict("a", result(), 300)
    (entry,) = (tmp_path / "c" / "verdicts").iterdir()
    target = cache._path("verdicts", "b")
    Path(target).write_bytes(entry.read_bytes())  # a copied file under another key's name
    assert cache.get_verdict("b") is None


def test_oversized_and_misshapen_entries_are_misses(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "c")
    path = Path(cache._path("verdicts", "k"))
    path.write_bytes(b" " * (300 * 1024))
    assert cache.get_verdict("k") is None
    bad = {"key": "k", "expires": 1e12, "result": {**result(), "isSuccess": "yes"}}
    path.write_text(json.dumps(bad))
    assert cache.get_verdict("k") is None


def test_did_store_round_trips_raw_bytes_and_time(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "c", clock=lambda: 1234.5)
    store = FileDidStore(cache)
    body = b'{"id": "did:plc:x", "\xff": 1}'
    store.put("did:plc:x", body)
    assert store.get("did:plc:x") == (body, 1234.5)
    assert store.get("did:plc:y") is None


def test_cache_directory_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    stderr = io.StringIO()
    assert DiskCache.open(str(link), Log(stderr)) is None
    assert "not a directory" in stderr.getvalue()


def config(**entry: Any) -> Any:
    return parse_config({"name": "n", "policy": POLICY, **entry}, {}, {})


def test_fingerprint_covers_what_changes_a_verdict_only() -> None:
    base = config()
    assert config(logFile="/tmp/x", cacheDir="/tmp/y").fingerprint == base.fingerprint
    assert config(name="other", type="t").fingerprint == base.fingerprint
    for change in (
        {"policy": POLICY + "# edited\n"},
        {"plcUrl": "https://plc.example.com"},
        {"plainHttp": "r.example:5000"},
        {"allowPrivateNetworks": True},
        {"strictHints": "false"},
        {"verifyHandles": True},
    ):
        assert config(**change).fingerprint != base.fingerprint, change
    assert (
        parse_config({"name": "n", "policy": POLICY}, {"useHttp": True}, {}).fingerprint
        != base.fingerprint
    )


def test_policy_mapping_and_file_are_read(tmp_path: Path) -> None:
    mapping = config(policy={"version": 1.0, "policies": []})
    assert mapping.policy_text == '{"policies": [], "version": 1.0}'
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    from_file = parse_config({"name": "n", "policyPath": str(path)}, {}, {})
    assert from_file.policy_text == POLICY and from_file.policy_source == str(path)


def test_default_cache_dir_follows_xdg() -> None:
    assert config().cache_dir == "/tmp/atcr-ratify-cache"
    xdg = parse_config({"name": "n", "policy": POLICY}, {}, {"XDG_CACHE_HOME": "/home/r/.c"})
    assert xdg.cache_dir == "/home/r/.c/atcr-ratify"


@pytest.mark.parametrize(
    ("key", "entry"),
    [
        ("registry.example:5000", {"auth": base64.b64encode(b"bob:s3cr:et").decode()}),
        ("https://registry.example:5000/v1/", {"username": "bob", "password": "s3cr:et"}),
    ],
)
def test_docker_config_credentials(tmp_path: Path, key: str, entry: dict[str, str]) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auths": {key: entry}}))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert docker_credentials("registry.example:5000", env) == {
        "registry.example:5000": ("bob", "s3cr:et")
    }
    assert docker_credentials("other.example", env) == {}


def test_docker_hub_credentials_and_broken_configs(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path)}
    auth = base64.b64encode(b"u:p").decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth}}})
    )
    assert docker_credentials("docker.io", env) == {"docker.io": ("u", "p")}
    for broken in ("{", "[]", '{"auths": []}', '{"auths": {"docker.io": {"auth": "!!"}}}'):
        (tmp_path / "config.json").write_text(broken)
        assert docker_credentials("docker.io", env) == {}
    assert docker_credentials("docker.io", {"DOCKER_CONFIG": str(tmp_path / "none")}) == {}


def test_quarantine_turns_stray_output_into_brace_free_log_lines() -> None:
    stderr = io.StringIO()
    log = Log(stderr)
    stray = Quarantine(log, "stdout")
    stray.write('{"isSuccess": true}\nhalf')
    stray.write(" line\n")
    stray.write("tail without newline")
    stray.flush()
    lines = stderr.getvalue().splitlines()
    assert lines == [
        'WARN: atcr-ratify: stray stdout output: ("isSuccess": true)',
        "WARN: atcr-ratify: stray stdout output: half line",
        "WARN: atcr-ratify: stray stdout output: tail without newline",
    ]
    assert sanitise("a\n{b}\tc") == "a (b) c"
