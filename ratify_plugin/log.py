"""Logging that can never corrupt the answer.

Ratify keeps every line of the plugin's stderr and stdout that contains ``{`` and parses as JSON,
so a JSON log line (or a traceback quoting a dict) would be glued to the result. Logs therefore
go to the configured ``logFile``, or to stderr as plain ``INFO:``/``WARN:`` lines with braces
replaced. :class:`Quarantine` stands in for ``sys.stdout``/``sys.stderr`` during a run, so stray
output from any library (warnings, ``logging``'s last-resort handler, a print) is routed the same
way instead of reaching Ratify raw.
"""

from __future__ import annotations

import contextlib
import io
import time
from typing import TextIO

_BRACES = str.maketrans({"{": "(", "}": ")"})


def sanitise(text: str, limit: int = 2000) -> str:
    """One line, no braces, bounded."""
    flat = " ".join(text.split()).translate(_BRACES)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class Log:
    """Plain log lines to a file (when configured) or to stderr, never JSON."""

    def __init__(self, stderr: TextIO) -> None:
        self._stderr = stderr
        self._file: TextIO | None = None

    def use_file(self, path: str | None) -> None:
        """Send further lines to ``path``; on failure keep stderr and say so once."""
        if path is None or self._file is not None:
            return
        try:
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 — closed in close()
        except OSError as exc:
            self.warn(f"cannot open logFile {path}: {exc.strerror}; logging to stderr")

    @property
    def to_file(self) -> bool:
        return self._file is not None

    def info(self, message: str) -> None:
        self._write("INFO", message)

    def warn(self, message: str) -> None:
        self._write("WARN", message)

    def file_only(self, level: str, message: str) -> None:
        """Details for the log file that must not reach Ratify's (user-visible) error message."""
        if self._file is not None:
            self._write(level, message)

    def _write(self, level: str, message: str) -> None:
        text = sanitise(message)
        try:
            if self._file is not None:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                self._file.write(f"{stamp} {level} atcr-ratify: {text}\n")
                self._file.flush()
            else:
                self._stderr.write(f"{level}: atcr-ratify: {text}\n")
                self._stderr.flush()
        except (OSError, ValueError):
            pass  # a log that cannot be written must not turn a verdict into a failure

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


class Quarantine(io.TextIOBase):
    """A text stream that turns whatever is written to it into sanitised WARN log lines."""

    def __init__(self, log: Log, name: str) -> None:
        super().__init__()
        self._log = log
        self._name = name
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            if line.strip():
                self._log.warn(f"stray {self._name} output: {line}")
        if len(self._pending) > 4096:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self._log.warn(f"stray {self._name} output: {self._pending}")
        self._pending = ""
