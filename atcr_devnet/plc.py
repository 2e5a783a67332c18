"""Just enough did:plc to rotate an account's atproto key on the local PLC directory.

The PDS will only submit PLC operations that keep its own signing key (and wants an emailed
token), so a "key rotated" scenario is produced the way a key owner would: an update operation
signed with a rotation key listed in the DID's current state (here the PDS's own rotation key,
which the devnet chooses and therefore knows) and posted to the PLC directory.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import cbor2
import coincurve

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_SECP256K1_PUB_CODEC = b"\xe7\x01"  # multicodec secp256k1-pub (varint 0xe7)


def base58btc(data: bytes) -> str:
    """Bitcoin base58 (leading zero bytes become '1')."""
    num = int.from_bytes(data, "big")
    out = ""
    while num:
        num, rem = divmod(num, 58)
        out = _B58_ALPHABET[rem] + out
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + out


def dag_cbor(value: Any) -> bytes:
    """DAG-CBOR of a JSON-like value (strings, ints, lists, maps, null): canonical CBOR."""
    return cbor2.dumps(value, canonical=True)


def cid_for_dag_cbor(data: bytes) -> str:
    """CIDv1, dag-cbor, sha2-256 of ``data``, as the usual ``b``-prefixed base32 string."""
    raw = b"\x01\x71\x12\x20" + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


@dataclass(frozen=True)
class SigningKey:
    """A secp256k1 key pair: ``private_key_hex`` and its ``did:key`` (Multikey form)."""

    private_key_hex: str

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(coincurve.PrivateKey().secret.hex())

    @property
    def private_key(self) -> bytes:
        return bytes.fromhex(self.private_key_hex)

    @property
    def public_key_compressed(self) -> bytes:
        key: bytes = coincurve.PrivateKey(self.private_key).public_key.format(compressed=True)
        return key

    @property
    def multibase(self) -> str:
        """``z`` + base58btc(secp256k1-pub codec + compressed point), e.g. ``zQ3s…``."""
        return "z" + base58btc(_SECP256K1_PUB_CODEC + self.public_key_compressed)

    @property
    def did_key(self) -> str:
        return "did:key:" + self.multibase

    def sign(self, data: bytes) -> bytes:
        """ECDSA over sha256(data), compact 64-byte r||s, low-S (libsecp256k1 normalises)."""
        recoverable: bytes = coincurve.PrivateKey(self.private_key).sign_recoverable(data)
        return recoverable[:64]


def signed_update_op(
    last_op: dict[str, Any], rotation_key: SigningKey, **changes: Any
) -> dict[str, Any]:
    """The next ``plc_operation`` after ``last_op`` with ``changes``, signed by ``rotation_key``."""
    op: dict[str, Any] = {
        "type": "plc_operation",
        "rotationKeys": last_op["rotationKeys"],
        "verificationMethods": last_op["verificationMethods"],
        "alsoKnownAs": last_op["alsoKnownAs"],
        "services": last_op["services"],
        "prev": cid_for_dag_cbor(dag_cbor(last_op)),
    }
    op.update(changes)
    sig = rotation_key.sign(dag_cbor(op))
    op["sig"] = base64.urlsafe_b64encode(sig).decode().rstrip("=")
    return op
