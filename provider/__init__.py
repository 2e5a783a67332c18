"""The OPA Gatekeeper external data provider for atcr-verifier.

An aiohttp service (``atcr-verify-provider``) that answers Gatekeeper's ``ProviderRequest`` with
one item per image: admitted images carry a value, denied or undecided ones an error. The
verification itself is :mod:`atcr_verify`'s; this package adds the wire format, TLS (1.3, optional
mTLS, hot certificate reload), trust policies from a file or a watched ConfigMap (with
per-namespace overrides), Prometheus metrics and JSON logs. Importing it does no I/O.
"""

from .app import RunningProvider, create_app, serve
from .settings import ProviderSettings, parse_settings

__all__ = ["ProviderSettings", "RunningProvider", "create_app", "parse_settings", "serve"]
