"""``atcr-verify-provider``: run the Gatekeeper external data provider until SIGTERM/SIGINT.

Exit codes: 0 after a clean shutdown, 2 for usage or configuration errors (bad flags, unusable
certificates), 1 when the server cannot listen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from atcr_verify import ConfigError

from .app import serve
from .settings import ProviderSettings, parse_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv, os.environ)  # usage errors exit 2 here (argparse)
    # Libraries (aiohttp, kubernetes-asyncio) log through the standard library: warnings only.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve_until_signalled(settings))
    except ConfigError as error:
        print(f"atcr-verify-provider: {error.reason}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # the port is taken, say
        print(f"atcr-verify-provider: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


async def serve_until_signalled(settings: ProviderSettings) -> None:
    """Serve until SIGTERM (Kubernetes) or SIGINT; then drain and stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(settings):
        await stop.wait()


if __name__ == "__main__":
    raise SystemExit(main())
