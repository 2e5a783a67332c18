"""The real local test network: PLC + PDS (``node devnet/start.mjs``) and Debian's docker-registry.

Both are plain subprocesses bound to 127.0.0.1 on free ports, with all state in one temp dir.
``LocalNetwork`` is a sync context manager so pytest session fixtures, demos and benchmarks can
share it; it always stops what it started, also after a failed start.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

DEVNET_DIR_ENV = "ATCR_DEVNET_DIR"
REGISTRY_BIN_ENV = "ATCR_DEVNET_REGISTRY_BIN"
LOOPBACK = "127.0.0.1"


class DevnetError(RuntimeError):
    """The local network could not be started or used."""


class DevnetSetupError(DevnetError):
    """A prerequisite is missing (npm dependencies, node, docker-registry)."""


def default_devnet_dir() -> Path:
    """``$ATCR_DEVNET_DIR``, else ``devnet/`` beside this package in a repository checkout."""
    from_env = os.environ.get(DEVNET_DIR_ENV)
    if from_env:
        return Path(from_env)
    return Path(__file__).resolve().parent.parent / "devnet"


def free_port() -> int:
    """A currently free TCP port on the loopback address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def registry_config(storage_dir: Path, port: int) -> str:
    """A docker-registry (distribution 2.8) config: loopback, filesystem, deletes on, no auth."""
    return f"""\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage_dir}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {LOOPBACK}:{port}
  secret: {secrets.token_hex(16)}
health:
  storagedriver:
    enabled: false
"""


class LocalNetwork:
    """PLC, PDS and OCI registry on 127.0.0.1, started on ``__enter__`` and stopped on exit.

    After start: ``plc_url``, ``pds_url`` (``http://127.0.0.1:PORT``), ``pds_did``,
    ``handle_domain`` (``.test``), ``registry`` (``127.0.0.1:PORT``), ``registry_url``,
    ``data_dir`` (the PDS data directory), ``plc_rotation_key_hex`` (the PDS's PLC rotation key,
    a rotation key of every account it creates) and ``admin_password``.
    """

    def __init__(
        self,
        *,
        devnet_dir: Path | None = None,
        startup_timeout: float = 60.0,
        registry_bin: str | None = None,
        node_bin: str = "node",
    ) -> None:
        self.devnet_dir = devnet_dir or default_devnet_dir()
        self.startup_timeout = startup_timeout
        self.registry_bin = registry_bin or os.environ.get(REGISTRY_BIN_ENV, "docker-registry")
        self.node_bin = node_bin
        self.plc_url = ""
        self.pds_url = ""
        self.pds_did = ""
        self.handle_domain = ""
        self.registry = ""
        self.plc_rotation_key_hex = ""
        self.admin_password = ""
        self.work_dir: Path | None = None
        self.data_dir: Path | None = None
        self.startup_seconds = 0.0
        self._node: subprocess.Popen[bytes] | None = None
        self._registry: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    @property
    def registry_url(self) -> str:
        return f"http://{self.registry}"

    def process_ids(self) -> list[int]:
        """PIDs of the direct children (node; the watchdog that runs docker-registry)."""
        return [p.pid for p in (self._node, self._registry) if p is not None]

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalNetwork:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start registry and PLC+PDS, and wait until both answer; stop everything on failure."""
        node, registry = self._check_prerequisites()
        began = time.monotonic()
        self.work_dir = Path(tempfile.mkdtemp(prefix="atcr-devnet-"))
        try:
            self._start_registry(registry)
            self._start_node(node)
            deadline = began + self.startup_timeout
            self._read_ready_line(deadline)
            self._wait_http(f"{self.pds_url}/xrpc/_health", deadline, "PDS")
            self._wait_http(f"{self.registry_url}/v2/", deadline, "docker-registry")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop both processes (close stdin, SIGTERM, then SIGKILL) and delete the temp dir."""
        for proc in (self._node, self._registry):
            if proc is not None:
                _stop_process(proc)
        self._node = self._registry = None
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    # --- internals -------------------------------------------------------------------------

    def _check_prerequisites(self) -> tuple[str, str]:
        start_script = self.devnet_dir / "start.mjs"
        if not start_script.is_file():
            raise DevnetSetupError(
                f"devnet not found at {self.devnet_dir} (set {DEVNET_DIR_ENV} to the repository's "
                "devnet/ directory)"
            )
        if not (self.devnet_dir / "node_modules" / "@atproto" / "pds").is_dir():
            raise DevnetSetupError(
                f"npm dependencies are missing in {self.devnet_dir}/node_modules: "
                "run `make devnet-deps`"
            )
        node = shutil.which(self.node_bin)
        if node is None:
            raise DevnetSetupError("node (Node.js 20) is not installed or not on PATH")
        registry = shutil.which(self.registry_bin)
        if registry is None:
            raise DevnetSetupError(
                f"{self.registry_bin} is not installed: run `apt-get install -y docker-registry`"
            )
        return node, registry

    def _log_file(self, name: str) -> IO[bytes]:
        assert self.work_dir is not None
        log = (self.work_dir / name).open("wb")
        self._logs.append(log)
        return log

    def _start_registry(self, registry_bin: str) -> None:
        assert self.work_dir is not None
        port = free_port()
        storage = self.work_dir / "registry"
        storage.mkdir()
        config = self.work_dir / "registry.yml"
        config.write_text(registry_config(storage, port))
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        # The watchdog must import this package even from a plain (non-installed) checkout.
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        log = self._log_file("registry.log")
        self._registry = subprocess.Popen(
            [sys.executable, "-m", "atcr_devnet.watchdog", registry_bin, "serve", str(config)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.registry = f"{LOOPBACK}:{port}"

    def _start_node(self, node_bin: str) -> None:
        assert self.work_dir is not None
        self.data_dir = self.work_dir / "pds"
        self.data_dir.mkdir()
        self.plc_rotation_key_hex = _secp256k1_private_key_hex()
        self.admin_password = secrets.token_hex(12)
        env = dict(os.environ)
        env.update(
            ATCR_DEVNET_HOST=LOOPBACK,
            ATCR_DEVNET_DATA_DIR=str(self.data_dir),
            ATCR_DEVNET_PLC_ROTATION_KEY_HEX=self.plc_rotation_key_hex,
            ATCR_DEVNET_ADMIN_PASSWORD=self.admin_password,
        )
        env.pop("ATCR_DEVNET_KEEP_STDIN", None)
        self._node = subprocess.Popen(
            [node_bin, "start.mjs"],
            cwd=self.devnet_dir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file("devnet.log"),
            env=env,
        )

    def _read_ready_line(self, deadline: float) -> None:
        """Read start.mjs's single JSON line (without blocking past the deadline)."""
        assert self._node is not None
        assert self._node.stdout is not None
        stdout = self._node.stdout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DevnetError(f"PLC/PDS did not start in time{self._log_tail()}")
                if not sel.select(timeout=remaining):
                    continue
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    raise DevnetError(f"PLC/PDS exited during startup{self._log_tail()}")
                buf += chunk
        info: dict[str, Any] = json.loads(buf.split(b"\n", 1)[0])
        self.plc_url = str(info["plc"])
        self.pds_url = str(info["pds"])
        self.pds_did = str(info["pdsDid"])
        self.handle_domain = str(info["handleDomain"])

    def _wait_http(self, url: str, deadline: float, what: str) -> None:
        with httpx.Client(timeout=2.0) as client:
            while True:
                for proc in (self._node, self._registry):
                    if proc is not None and proc.poll() is not None:
                        raise DevnetError(f"{what}: a devnet process exited{self._log_tail()}")
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise DevnetError(f"{what} not ready at {url} in time{self._log_tail()}")
                time.sleep(0.05)

    def _log_tail(self) -> str:
        if self.work_dir is None:
            return ""
        parts = []
        for name in ("devnet.log", "registry.log"):
            path = self.work_dir / name
            if path.exists():
                tail = path.read_text(errors="replace")[-2000:].strip()
                if tail:
                    parts.append(f"--- {name} ---\n{tail}")
        return (":\n" + "\n".join(parts)) if parts else ""


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # both children exit on EOF
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _secp256k1_private_key_hex() -> str:
    """A random valid secp256k1 private key (1 <= k < n), hex encoded."""
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    while True:
        key = int.from_bytes(secrets.token_bytes(32), "big")
        if 0 < key < order:
            return f"{key:064x}"
