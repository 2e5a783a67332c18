"""A real local ATProto network (PLC + PDS from npm) and OCI registry, plus a publisher of signed
images, for integration tests, benchmarks and demos. Not part of the verifier: nothing in
``atcr_verify`` may import it.
"""

from atcr_devnet.network import DevnetError, DevnetSetupError, LocalNetwork
from atcr_devnet.publisher import (
    DELETE,
    Account,
    Artifact,
    Publisher,
    PushedImage,
    RecordRef,
    RotatedKey,
    SignedImage,
    XrpcError,
)

__all__ = [
    "DELETE",
    "Account",
    "Artifact",
    "DevnetError",
    "DevnetSetupError",
    "LocalNetwork",
    "Publisher",
    "PushedImage",
    "RecordRef",
    "RotatedKey",
    "SignedImage",
    "XrpcError",
]
