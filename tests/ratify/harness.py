"""Running the INSTALLED ``atcr-ratify`` executable exactly as Ratify does, and reading its output
the way Ratify reads it; plus a logging HTTP proxy placed in front of the real PLC or registry."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from atcr_devnet import LocalNetwork
from atcr_devnet.publisher import Artifact
from atcr_verify.oci.manifest import OCI_MANIFEST
from atcr_verify.oci.signature import SIGNATURE_ARTIFACT_TYPE

VERIFIER_NAME = "atcr-verify"
"""What an operator calls the verifier (the CR's metadata.name; config.name)."""
PLUGIN_TYPE = "atcr-ratify"
"""The executable's name, which Ratify looks up (config.type, or spec.name on Helm CRDs)."""


def plugin_executable() -> Path:
    """The console script pip installed next to this interpreter (not a pyenv shim)."""
    path = Path(sysconfig.get_path("scripts")) / "atcr-ratify"
    assert path.is_file(), f"{path} is missing: pip install -e '.[provider,dev]'"
    return path


@dataclass(frozen=True)
class PluginRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def json_lines(self) -> list[str]:
        """Every line Ratify would try to parse: it scans stderr, then stdout, for ``{``."""
        return [line for line in (self.stderr + self.stdout).splitlines() if "{" in line]

    @property
    def answer(self) -> dict[str, Any]:
        """The one JSON line, checked to be the only one on both streams and compact."""
        lines = self.json_lines
        assert len(lines) == 1, f"expected exactly one JSON line, got {lines!r}"
        (line,) = lines
        assert self.stdout == line + "\n", f"stdout is not exactly the answer: {self.stdout!r}"
        assert len(line.encode()) < 64 * 1024
        document: dict[str, Any] = json.loads(line)
        assert json.dumps(document, separators=(",", ":"), ensure_ascii=True) == line
        return document

    @property
    def result(self) -> dict[str, Any]:
        """A verdict: exit 0 and the result object's exact field set."""
        assert self.returncode == 0, (self.returncode, self.stdout, self.stderr)
        document = self.answer
        assert set(document) == {"isSuccess", "name", "type", "message", "extensions"}
        assert "Traceback" not in self.stderr
        return document

    @property
    def error(self) -> dict[str, Any]:
        """A plugin failure: non-zero exit and the skel's error object."""
        assert self.returncode != 0, (self.stdout, self.stderr)
        document = self.answer
        assert set(document) == {"code", "msg", "details"}
        assert "Traceback" not in self.stdout + self.stderr
        return document


def run_plugin(
    stdin: bytes | Mapping[str, Any],
    *,
    subject: str | None,
    version: str | None = "1.0.0",
    command: str | None = "VERIFY",
    env: Mapping[str, str] | None = None,
    executable: Path | None = None,
) -> PluginRun:
    """Environment = ours plus the three RATIFY_VERIFIER_* variables; JSON on stdin; no args."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RATIFY_VERIFIER_")}
    for key, value in (
        ("RATIFY_VERIFIER_COMMAND", command),
        ("RATIFY_VERIFIER_SUBJECT", subject),
        ("RATIFY_VERIFIER_VERSION", version),
    ):
        if value is not None:
            environment[key] = value
    environment.update(env or {})
    data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    started = time.perf_counter()
    program = executable or plugin_executable()
    command = [sys.executable, str(program)] if program.suffix == ".py" else [str(program)]
    proc = subprocess.run(
        command,
        input=data,
        capture_output=True,
        env=environment,
        timeout=60,
        check=False,
    )
    return PluginRun(
        proc.returncode,
        proc.stdout.decode(),
        proc.stderr.decode(),
        time.perf_counter() - started,
    )


def reference_desc(artifact: Artifact) -> dict[str, Any]:
    """The descriptor Ratify sends: the referrer entry of the signature artifact."""
    return {
        "mediaType": OCI_MANIFEST,
        "digest": artifact.digest,
        "size": artifact.size,
        "annotations": dict(artifact.index_entry.get("annotations", {})),
        "artifactType": SIGNATURE_ARTIFACT_TYPE,
    }


def plugin_config(
    network: LocalNetwork, policy: str, cache_dir: Path, **extra: Any
) -> dict[str, Any]:
    """A verifier entry as Ratify passes it (Kubernetes: spec.parameters flattened into it)."""
    return {
        "name": VERIFIER_NAME,
        "type": PLUGIN_TYPE,
        "artifactTypes": SIGNATURE_ARTIFACT_TYPE,
        "policy": policy,
        "plcUrl": network.plc_url,
        "allowPrivateNetworks": True,
        "cacheDir": str(cache_dir),
        "timeout": 10,
        **extra,
    }


def plugin_input(
    config: Mapping[str, Any], desc: Mapping[str, Any], *, use_http: bool = True
) -> dict[str, Any]:
    return {
        "config": dict(config),
        "storeConfig": {
            "version": "1.0.0",
            "pluginBinDirs": None,
            "store": {"name": "oras", "useHttp": use_http, "authProvider": {}},
        },
        "referenceDesc": dict(desc),
    }


# --- a logging proxy in front of a real server (the PLC, the registry) ----------------------------

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "server", "date"})


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str
    status: int
    user_agent: str


@dataclass
class LoggingProxy:
    """Forwards GET/HEAD to the real upstream and logs each exchange; can play an outage (503).

    Not a fake server: the answers are the upstream's own bytes and headers. It exists to count
    and order requests, which proves what the disk cache saves and how Ratify lists referrers.
    """

    upstream: str
    requests: list[ProxiedRequest] = field(default_factory=list)
    outage: bool = False
    url: str = ""

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def dids_requested(self) -> list[str]:
        return [r.path.lstrip("/") for r in self.requests if r.path.startswith("/did:")]


@contextmanager
def logging_proxy(upstream: str) -> Iterator[LoggingProxy]:
    proxy = LoggingProxy(upstream)
    target = urlsplit(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._forward()

        def do_HEAD(self) -> None:
            self._forward()

        def _forward(self) -> None:
            agent = self.headers.get("User-Agent", "")
            if proxy.outage:
                proxy.requests.append(ProxiedRequest(self.command, self.path, 503, agent))
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {
                k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization")
            }
            connection = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
            try:
                connection.request(self.command, self.path, headers=headers)
                response = connection.getresponse()
                body = response.read()
                upstream_headers = response.getheaders()
            finally:
                connection.close()
            proxy.requests.append(ProxiedRequest(self.command, self.path, response.status, agent))
            self.send_response(response.status)
            for key, value in upstream_headers:
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
