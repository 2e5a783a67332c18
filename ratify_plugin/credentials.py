"""Registry credentials from a Docker config file, as Ratify's ``dockerConfig`` auth provider.

A plugin that is not Go cannot borrow Ratify's store: it reads the same ``config.json``
(``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``) itself. Only static ``auths``
entries are understood (``auth`` or ``username``/``password``); credential helpers and cloud
workload identities are not. Nothing read here is ever logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping

MAX_CONFIG_BYTES = 1024 * 1024
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")


def _config_path(env: Mapping[str, str]) -> str:
    directory = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def _host(key: str) -> str:
    """``https://host:port/v1/`` and ``host`` both name ``host``."""
    text = key.split("://", 1)[-1]
    return text.split("/", 1)[0].lower()


def docker_credentials(
    registry: str, env: Mapping[str, str] | None = None
) -> Mapping[str, tuple[str, str]]:
    """``{registry: (username, password)}`` when the config has an entry for it, else empty."""
    try:
        with open(_config_path(os.environ if env is None else env), "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        document = json.loads(data) if len(data) <= MAX_CONFIG_BYTES else None
    except (OSError, ValueError, RecursionError):
        return {}
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        return {}
    wanted = {registry.lower()}
    if registry == "docker.io":
        wanted.update(_host(k) for k in _DOCKER_HUB_KEYS)
    for key, entry in auths.items():
        if not isinstance(key, str) or _host(key) not in wanted or not isinstance(entry, dict):
            continue
        pair = _pair(entry)
        if pair is not None:
            return {registry: pair}
    return {}


def _pair(entry: Mapping[str, object]) -> tuple[str, str] | None:
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        return username, password
    auth = entry.get("auth")
    if not isinstance(auth, str) or not auth:
        return None
    try:
        decoded = base64.b64decode(auth, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, secret = decoded.partition(":")
    return (user, secret) if sep and user else None
