"""structlog JSON logging, built per application instead of configured globally.

A logger made here carries its own processors and level filter, so two applications in one
process (tests) never share or overwrite each other's configuration, and nothing happens at
import time.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import FilteringBoundLogger

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def make_logger(level: str = "info", stream: TextIO | None = None) -> FilteringBoundLogger:
    """A JSON-lines logger writing to ``stream`` (stderr by default); below ``level`` is free."""
    proxy = structlog.wrap_logger(
        structlog.PrintLogger(stream if stream is not None else sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
    )
    # bind() resolves the lazy proxy once: later calls go straight to the filtering logger.
    logger: FilteringBoundLogger = proxy.bind(logger="atcr-verify-provider")
    return logger


def _dumps(value: object, **kwargs: object) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)
