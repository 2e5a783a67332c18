"""``atcr-ratify``: the process Ratify runs for every ATProto signature artifact it verifies.

Checks follow the Go skel's order and codes: missing variables (4), stdin unreadable (5), subject
unparsable (7), version not 1.0.0/0.1.0 (6), stdin not the expected JSON (1), configuration
invalid (2), command not VERIFY (3). A verdict (admitted, denied, or could not decide) is exit 0
with one result line; every failure is exit 1 with one skel error line; anything unexpected is
code 999 with the exception's type name only: never a traceback.

Start-up is kept lean because Ratify pays it per artifact: a warm disk-cache answer imports only
the standard library; the core, httpx and the crypto libraries load on a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import BinaryIO

from .config import PluginConfig, parse_config
from .diskcache import DiskCache
from .log import Log, Quarantine
from .wire import (
    COMMAND_ENV,
    MAX_STDIN_BYTES,
    MAX_SUBJECT_LENGTH,
    SUBJECT_ENV,
    SUPPORTED_VERSIONS,
    VERIFY_COMMAND,
    VERSION_ENV,
    ErrorCode,
    PluginError,
    ReferenceDesc,
    VerifierResult,
    clip,
    error_line,
    parse_input,
    result_line,
)


def main() -> int:
    """Run once; the only writer of the real stdout. Returns the exit status."""
    stdout = sys.stdout
    log = Log(sys.stderr)
    sys.stdout = Quarantine(log, "stdout")
    sys.stderr = Quarantine(log, "stderr")
    try:
        line = run(os.environ, sys.stdin.buffer, log)
        status = 0
    except PluginError as error:
        log.file_only("ERROR", f"code {int(error.code)}: {error.msg} {error.details}")
        line, status = error_line(error), 1
    except BaseException as exc:  # the last line of defence: no traceback may reach Ratify
        log.file_only("ERROR", f"internal failure: {type(exc).__name__}: {exc}")
        failure = PluginError(ErrorCode.INTERNAL_FAILURE, "internal failure", type(exc).__name__)
        line, status = error_line(failure), 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        stdout.write(line)
        stdout.flush()
    except (OSError, ValueError):
        status = 1
    # The quarantine stays until the process ends: whatever interpreter shutdown prints (an
    # unclosed resource, a pending task) still becomes a plain log line, never raw output.
    log.close()
    return status


def run(env: Mapping[str, str], stdin: BinaryIO, log: Log) -> str:
    """One invocation: the result line, or :class:`PluginError`."""
    started = time.monotonic()
    missing = [key for key in (COMMAND_ENV, VERSION_ENV, SUBJECT_ENV) if not env.get(key)]
    if missing:
        raise PluginError(
            ErrorCode.MISSING_ENVIRONMENT_VARIABLES, f"missing env variables [{','.join(missing)}]"
        )
    try:
        raw = stdin.read(MAX_STDIN_BYTES + 1)
    except OSError as exc:
        raise PluginError(
            ErrorCode.IO_FAILURE, "error reading from stdin", str(exc.strerror)
        ) from exc
    subject = env[SUBJECT_ENV]
    if len(subject) > MAX_SUBJECT_LENGTH or not subject.isprintable() or " " in subject:
        raise PluginError(ErrorCode.ARGS_PARSING_FAILURE, "cannot parse subject reference")
    version = env[VERSION_ENV]
    if version not in SUPPORTED_VERSIONS:
        raise PluginError(
            ErrorCode.VERSION_NOT_SUPPORTED,
            f"plugin doesn't support version {clip(version, 40)} "
            f"(supported: {', '.join(SUPPORTED_VERSIONS)})",
        )
    if len(raw) > MAX_STDIN_BYTES:
        raise PluginError(
            ErrorCode.CONFIG_PARSING_FAILURE, f"stdin is larger than {MAX_STDIN_BYTES} bytes"
        )
    document = parse_input(raw)
    command = env[COMMAND_ENV]
    if command != VERIFY_COMMAND:
        raise PluginError(ErrorCode.UNKNOWN_COMMAND, f"unknown {COMMAND_ENV}: {clip(command, 40)}")
    config = parse_config(document["config"], document["storeConfig"].get("store", {}), env)
    log.use_file(config.log_file)
    desc = document["referenceDesc"]
    result = answer(config, subject, desc, log)
    elapsed = (time.monotonic() - started) * 1000
    log.info(
        f"{subject} artifact {desc['digest']}: {result['extensions']['outcome']} "
        f"(source {result['extensions']['source']}, {elapsed:.0f} ms)"
    )
    return result_line(result)


def verdict_key(config: PluginConfig, subject: str, desc: ReferenceDesc) -> str:
    """What a cached answer depends on: subject, the artifact as described, configuration."""
    described = {k: desc.get(k) for k in ("mediaType", "digest", "size", "artifactType")}
    return hashlib.sha256(
        json.dumps([subject, described, config.fingerprint], sort_keys=True).encode()
    ).hexdigest()


def answer(config: PluginConfig, subject: str, desc: ReferenceDesc, log: Log) -> VerifierResult:
    """Delegate, or answer from the disk cache, or verify with the core (and remember)."""
    if config.provider is not None:
        from .delegate import delegate

        return delegate(config, subject, desc)
    cache = DiskCache.open(config.cache_dir, log) if config.cache else None
    key = verdict_key(config, subject, desc)
    if cache is not None:
        cached = cache.get_verdict(key)
        if cached is not None:
            cached["name"], cached["type"] = config.name, config.type
            cached["extensions"]["source"] = "cache"
            return cached
    import asyncio

    from .inprocess import verify_in_process

    result, ttl = asyncio.run(verify_in_process(config, subject, desc, cache))
    if cache is not None:
        cache.put_verdict(key, result, ttl)
    return result
