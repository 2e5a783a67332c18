"""Ratify v1's plugin wire formats, typed, and the one-line JSON writers.

Ratify concatenates the plugin's stderr and stdout, keeps every line containing ``{`` that parses
as JSON and joins them: the answer must be ONE compact JSON line and the only JSON on either
stream. Errors use the Go skel's ``{"code", "msg", "details"}`` object and a non-zero exit.

Everything read from stdin is untrusted: it is checked here, field by field, before use.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any, Literal, NotRequired, TypedDict, cast

COMMAND_ENV = "RATIFY_VERIFIER_COMMAND"
SUBJECT_ENV = "RATIFY_VERIFIER_SUBJECT"
VERSION_ENV = "RATIFY_VERIFIER_VERSION"
VERIFY_COMMAND = "VERIFY"
SUPPORTED_VERSIONS = ("1.0.0", "0.1.0")
"""Exact matches, as Ratify compares them: 1.0.0 is Kubernetes' default, 0.1.0 the CLI's."""

MAX_STDIN_BYTES = 1024 * 1024
MAX_SUBJECT_LENGTH = 4096
MAX_MESSAGE_CHARS = 1000
"""Messages may reach admission responses: short, and far below Ratify's 64 KiB line limit."""


class ErrorCode(IntEnum):
    """The Go skel's error codes (``pkg/verifier/types``)."""

    UNKNOWN = 0
    CONFIG_PARSING_FAILURE = 1
    INVALID_VERIFIER_CONFIG = 2
    UNKNOWN_COMMAND = 3
    MISSING_ENVIRONMENT_VARIABLES = 4
    IO_FAILURE = 5
    VERSION_NOT_SUPPORTED = 6
    ARGS_PARSING_FAILURE = 7
    PLUGIN_CMD_FAILURE = 8
    INTERNAL_FAILURE = 999


class PluginError(Exception):
    """A plugin failure: printed as the skel's error object, exit status 1."""

    def __init__(self, code: ErrorCode, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details


# --- stdin ----------------------------------------------------------------------------------------


class ReferenceDesc(TypedDict):
    """The artifact Ratify asks about (an OCI descriptor plus ``artifactType``)."""

    mediaType: str
    digest: str
    size: int
    artifactType: NotRequired[str]
    annotations: NotRequired[dict[str, str]]


class StoreSpec(TypedDict, total=False):
    """The referrer store entry; only ``useHttp`` matters to a plugin that is not Go."""

    name: str
    useHttp: bool


class StoreConfig(TypedDict, total=False):
    version: str
    pluginBinDirs: list[str] | None
    store: StoreSpec


class VerifierConfig(TypedDict, total=False):
    """The verifier entry (Kubernetes: ``spec.parameters`` flattened, plus name/type)."""

    name: str
    type: str
    artifactTypes: str
    policy: str | dict[str, Any]
    policyPath: str
    plcUrl: str
    plainHttp: str | list[str]
    allowPrivateNetworks: bool
    strictHints: bool
    verifyHandles: bool
    cache: bool
    cacheDir: str
    timeout: float
    logFile: str
    providerUrl: str
    providerCaFile: str
    providerCertFile: str
    providerKeyFile: str


class PluginInput(TypedDict):
    config: VerifierConfig
    storeConfig: StoreConfig
    referenceDesc: ReferenceDesc


# --- stdout ---------------------------------------------------------------------------------------

Source = Literal["plugin", "cache", "provider"]


class Extensions(TypedDict):
    """What Rego policies and operators see beside ``isSuccess``."""

    did: str | None
    handle: str | None
    recordUri: str | None
    policy: str | None
    reason: str
    digest: str | None
    artifactDigest: str
    outcome: str
    verified: bool
    action: str | None
    source: Source


class VerifierResult(TypedDict):
    """The fields Ratify reads; ``artifactType``/``subject`` are Ratify's to set, not ours."""

    isSuccess: bool
    name: str
    type: str
    message: str
    extensions: Extensions


class ErrorObject(TypedDict):
    code: int
    msg: str
    details: str


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line, bounded: newlines would split the JSON line Ratify scans for."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def result_line(result: VerifierResult) -> str:
    return json.dumps(result, separators=(",", ":"), ensure_ascii=True) + "\n"


def error_line(error: PluginError) -> str:
    body: ErrorObject = {
        "code": int(error.code),
        "msg": clip(error.msg, 300),
        "details": clip(error.details, 300),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True) + "\n"


# --- parsing --------------------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_input(raw: bytes) -> PluginInput:
    """Decode and check the stdin document (code 1 for its shape, 2 for a nameless verifier)."""
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PluginError(
            ErrorCode.CONFIG_PARSING_FAILURE, "stdin is not a JSON document", type(exc).__name__
        ) from exc
    if not isinstance(document, dict):
        raise PluginError(ErrorCode.CONFIG_PARSING_FAILURE, "stdin is not a JSON object")
    config = _object(document.get("config", {}), "config")
    name = config.get("name")
    if not isinstance(name, str) or not name:
        raise PluginError(ErrorCode.INVALID_VERIFIER_CONFIG, "missing verifier name")
    kind = config.get("type", "")
    if not isinstance(kind, str):
        raise PluginError(ErrorCode.INVALID_VERIFIER_CONFIG, "config.type must be a string")
    store_config = _object(document.get("storeConfig") or {}, "storeConfig")
    store = _object(store_config.get("store") or {}, "storeConfig.store")
    use_http = store.get("useHttp", False)
    if not isinstance(use_http, bool):
        raise PluginError(
            ErrorCode.CONFIG_PARSING_FAILURE, "storeConfig.store.useHttp must be a boolean"
        )
    store_spec: StoreSpec = {"useHttp": use_http}
    if isinstance(store.get("name"), str):
        store_spec["name"] = store["name"]
    return {
        "config": _verifier_config(config),
        "storeConfig": {"store": store_spec},
        "referenceDesc": _reference_desc(document.get("referenceDesc")),
    }


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PluginError(ErrorCode.CONFIG_PARSING_FAILURE, f"{where} must be a JSON object")
    return value


def _verifier_config(config: dict[str, Any]) -> VerifierConfig:
    """The entry as Ratify passed it: ``config.parse_config`` checks each value before use."""
    return cast(VerifierConfig, config)


def _reference_desc(value: object) -> ReferenceDesc:
    if value is None:
        raise PluginError(ErrorCode.CONFIG_PARSING_FAILURE, "stdin has no referenceDesc")
    desc = _object(value, "referenceDesc")
    media_type = desc.get("mediaType")
    digest = desc.get("digest")
    size = desc.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str) or not digest:
        raise PluginError(
            ErrorCode.CONFIG_PARSING_FAILURE, "referenceDesc needs a mediaType and a digest"
        )
    if type(size) is not int or size < 0:
        raise PluginError(
            ErrorCode.CONFIG_PARSING_FAILURE, "referenceDesc.size must be a non-negative integer"
        )
    result: ReferenceDesc = {"mediaType": media_type, "digest": digest, "size": size}
    artifact_type = desc.get("artifactType")
    if artifact_type is not None:
        if not isinstance(artifact_type, str):
            raise PluginError(
                ErrorCode.CONFIG_PARSING_FAILURE, "referenceDesc.artifactType must be a string"
            )
        if artifact_type:
            result["artifactType"] = artifact_type
    annotations = desc.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise PluginError(
                ErrorCode.CONFIG_PARSING_FAILURE, "referenceDesc.annotations must map strings"
            )
        result["annotations"] = annotations
    return result
