"""``python -m ratify_plugin``: the same entry point as the ``atcr-ratify`` console script."""

import sys

from .main import main

sys.exit(main())
