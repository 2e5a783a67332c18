"""Run a command and stop it when our stdin closes.

``docker-registry`` does not notice when the process that started it dies; wrapped in this
watchdog (stdin = a pipe from the parent), it is stopped as soon as the parent goes away, even
after a SIGKILL, so tests never leave a registry behind. Usage::

    python -m atcr_devnet.watchdog docker-registry serve config.yml
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from types import FrameType


def run(argv: list[str]) -> int:
    """Start ``argv``; terminate it on EOF of stdin, SIGTERM or SIGINT; return its exit code."""
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def stop(*_: object) -> None:
        if child.poll() is None:
            child.terminate()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            stop()

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        return child.wait(timeout=None)
    finally:
        stop()


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m atcr_devnet.watchdog COMMAND [ARGS...]")
    code = run(sys.argv[1:])
    # A child stopped by our own SIGTERM is a clean stop, not a failure.
    sys.exit(0 if code in (0, -signal.SIGTERM) else code)


if __name__ == "__main__":
    main()
