"""``python -m provider`` is ``atcr-verify-provider``."""

from provider.main import main

raise SystemExit(main())
