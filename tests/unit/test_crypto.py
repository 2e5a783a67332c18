"""Keys and signatures: interop vectors on both curves plus forged and malformed inputs."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atcr_verify.crypto import (
    PublicKey,
    _b58decode,
    _b58encode,
    _load_key,
    parse_did_key,
    parse_legacy_key,
    parse_multikey,
)
from atcr_verify.errors import KeyFormatError, SignatureInvalid, VerifyError
from tests.support import vector_params
from tests.support.keys import ORDER, SigningKey

CURVES = ["k256", "p256"]


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize(
    "case",
    vector_params(
        "crypto/signature-fixtures.json",
        ids=lambda i, c: f"{c['algorithm']}-{'-'.join(c['tags']) or 'valid'}-{i}",
    ),
)
def test_signature_fixture(case: dict[str, object]) -> None:
    key = parse_did_key(str(case["publicKeyDid"]))
    assert key.curve == {"ES256K": "k256", "ES256": "p256"}[str(case["algorithm"])]
    assert key.did_key() == case["publicKeyDid"]
    # The fixture's publicKeyMultibase is the legacy (no codec) form of the same key.
    assert parse_legacy_key(str(case["didDocSuite"]), str(case["publicKeyMultibase"])) == key
    message = _b64(str(case["messageBase64"]))
    signature = _b64(str(case["signatureBase64"]))
    if case["validSignature"]:
        key.verify(message, signature)
    else:
        with pytest.raises(SignatureInvalid) as info:
            key.verify(message, signature)
        tags = case["tags"]
        assert isinstance(tags, list)
        if "high-s" in tags:
            assert info.value.reason == "high-S signature"
        if "der-encoded" in tags:
            assert "64 bytes" in info.value.reason


@pytest.mark.parametrize(
    "case", vector_params("crypto/w3c_didkey_K256.json", ids=lambda i, c: f"k256-{i}")
)
def test_w3c_didkey_k256(case: dict[str, str]) -> None:
    signer = SigningKey.from_secret("k256", bytes.fromhex(case["privateKeyBytesHex"]))
    assert signer.public.did_key() == case["publicDidKey"]
    assert parse_did_key(case["publicDidKey"]) == signer.public


@pytest.mark.parametrize(
    "case", vector_params("crypto/w3c_didkey_P256.json", ids=lambda i, c: f"p256-{i}")
)
def test_w3c_didkey_p256(case: dict[str, str]) -> None:
    secret = _b58decode(case["privateKeyBytesBase58"])
    signer = SigningKey.from_secret("p256", secret.rjust(32, b"\x00"))
    assert signer.public.did_key() == case["publicDidKey"]
    assert parse_did_key(case["publicDidKey"]) == signer.public


@pytest.mark.parametrize("curve", CURVES)
def test_generated_keys_round_trip(curve: str) -> None:
    signer = SigningKey.generate(curve)  # type: ignore[arg-type]
    key = signer.public
    assert key.multikey().startswith("zQ3s" if curve == "k256" else "zDn")
    assert parse_multikey(key.multikey()) == key
    assert parse_did_key(key.did_key()) == key
    legacy_type = {
        "k256": "EcdsaSecp256k1VerificationKey2019",
        "p256": "EcdsaSecp256r1VerificationKey2019",
    }[curve]
    uncompressed = "z" + _b58encode(signer.uncompressed_public())
    assert parse_legacy_key(legacy_type, uncompressed) == key
    assert parse_legacy_key(legacy_type, "z" + _b58encode(key.compressed)) == key
    assert hash(key) == hash(parse_multikey(key.multikey()))


@pytest.mark.parametrize("curve", CURVES)
def test_sign_and_verify(curve: str) -> None:
    signer = SigningKey.from_seed(curve, "verify")  # type: ignore[arg-type]
    message = b"commit bytes"
    signer.public.verify(message, signer.sign(message))


@pytest.mark.parametrize("curve", CURVES)
def test_high_s_rejected(curve: str) -> None:
    signer = SigningKey.from_seed(curve, "high-s")  # type: ignore[arg-type]
    with pytest.raises(SignatureInvalid, match=r"^high-S signature$"):
        signer.public.verify(b"m", signer.sign(b"m", high_s=True))


@pytest.mark.parametrize("curve", CURVES)
def test_der_rejected(curve: str) -> None:
    signer = SigningKey.from_seed(curve, "der")  # type: ignore[arg-type]
    with pytest.raises(SignatureInvalid, match="must be 64 bytes"):
        signer.public.verify(b"m", signer.sign_der(b"m"))


@pytest.mark.parametrize("curve", CURVES)
@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda sig, n: sig[:63], id="short"),
        pytest.param(lambda sig, n: sig + b"\x00", id="long"),
        pytest.param(lambda sig, n: b"", id="empty"),
        pytest.param(lambda sig, n: bytes(32) + sig[32:], id="r-zero"),
        pytest.param(lambda sig, n: sig[:32] + bytes(32), id="s-zero"),
        pytest.param(lambda sig, n: n.to_bytes(32, "big") + sig[32:], id="r-equals-n"),
        pytest.param(lambda sig, n: b"\xff" * 32 + sig[32:], id="r-above-n"),
        pytest.param(lambda sig, n: sig[:32] + n.to_bytes(32, "big"), id="s-equals-n"),
        pytest.param(lambda sig, n: bytes([sig[0] ^ 1]) + sig[1:], id="r-flipped"),
        pytest.param(lambda sig, n: sig[:63] + bytes([sig[63] ^ 1]), id="s-flipped"),
    ],
)
def test_malformed_signatures(curve: str, mangle: object) -> None:
    signer = SigningKey.from_seed(curve, "mangle")  # type: ignore[arg-type]
    signature = signer.sign(b"m")
    bad = mangle(signature, ORDER[curve])  # type: ignore[operator]
    with pytest.raises(SignatureInvalid):
        signer.public.verify(b"m", bad)


@pytest.mark.parametrize("curve", CURVES)
def test_wrong_message_or_key(curve: str) -> None:
    signer = SigningKey.from_seed(curve, "a")  # type: ignore[arg-type]
    other = SigningKey.from_seed(curve, "b")  # type: ignore[arg-type]
    signature = signer.sign(b"m")
    with pytest.raises(SignatureInvalid, match=r"^signature does not verify$"):
        signer.public.verify(b"n", signature)
    with pytest.raises(SignatureInvalid, match=r"^signature does not verify$"):
        other.public.verify(b"m", signature)


def test_cross_curve_signature_rejected() -> None:
    k256 = SigningKey.from_seed("k256", "x")
    p256 = SigningKey.from_seed("p256", "x")
    with pytest.raises(SignatureInvalid):
        p256.public.verify(b"m", k256.sign(b"m"))


def test_non_bytes_signature_rejected() -> None:
    key = SigningKey.from_seed("k256", "x").public
    with pytest.raises(SignatureInvalid):
        key.verify(b"m", "not bytes" * 8)  # type: ignore[arg-type]


def test_parsed_library_key_is_cached() -> None:
    key = SigningKey.from_seed("p256", "cache").public
    before = _load_key.cache_info().hits
    key.verify(b"m", SigningKey.from_seed("p256", "cache").sign(b"m"))
    key.verify(b"m", SigningKey.from_seed("p256", "cache").sign(b"m"))
    assert _load_key.cache_info().hits >= before + 2


K256_MULTIKEY = "zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("z", id="bare-z"),
        pytest.param("f" + K256_MULTIKEY[1:], id="base16-prefix"),
        pytest.param("m" + K256_MULTIKEY[1:], id="base64-prefix"),
        pytest.param(K256_MULTIKEY[:-1] + "0", id="bad-base58-char-0"),
        pytest.param(K256_MULTIKEY[:-1] + "l", id="bad-base58-char-l"),
        pytest.param(K256_MULTIKEY[:-2], id="truncated"),
        pytest.param(K256_MULTIKEY + "2", id="too-long"),
        pytest.param("z" + _b58encode(b"\xed\x01" + bytes(32)), id="ed25519-codec"),
        pytest.param("z" + _b58encode(b"\xe7\x01" + b"\x02" + b"\xff" * 32), id="k256-off-curve"),
        pytest.param("z" + _b58encode(b"\x80\x24" + b"\x02" + b"\xff" * 32), id="p256-off-curve"),
        pytest.param("z" + _b58encode(b"\xe7\x01" + b"\x05" + b"\x01" * 32), id="bad-sec1-tag"),
        pytest.param("z" + _b58encode(b"\xe7\x81\x00" + b"\x02" * 33), id="non-minimal-varint"),
        pytest.param("z" + "2" * 200, id="absurdly-long"),
        pytest.param(" " + K256_MULTIKEY, id="leading-space"),
    ],
)
def test_bad_multikeys(value: str) -> None:
    with pytest.raises(KeyFormatError):
        parse_multikey(value)


def test_multikey_rejects_uncompressed_point() -> None:
    signer = SigningKey.from_seed("k256", "u")
    with pytest.raises(KeyFormatError, match="33-byte"):
        parse_multikey("z" + _b58encode(b"\xe7\x01" + signer.uncompressed_public()))


@pytest.mark.parametrize(
    "value",
    [
        "did:web:" + K256_MULTIKEY,
        "did:key:",
        "did:key:x",
        K256_MULTIKEY,
        "DID:KEY:" + K256_MULTIKEY,
    ],
)
def test_bad_did_keys(value: str) -> None:
    with pytest.raises(KeyFormatError):
        parse_did_key(value)


def test_legacy_key_errors() -> None:
    signer = SigningKey.from_seed("k256", "legacy")
    good = "z" + _b58encode(signer.uncompressed_public())
    with pytest.raises(KeyFormatError, match="unsupported legacy key type"):
        parse_legacy_key("Ed25519VerificationKey2020", good)
    with pytest.raises(KeyFormatError):
        parse_legacy_key("EcdsaSecp256k1VerificationKey2019", "z" + _b58encode(b"\x04" + bytes(64)))
    with pytest.raises(KeyFormatError, match="65- or 33-byte"):
        parse_legacy_key("EcdsaSecp256k1VerificationKey2019", "z" + _b58encode(bytes(40)))
    with pytest.raises(KeyFormatError):  # a k256 point is (almost surely) not a p256 point
        parse_legacy_key("EcdsaSecp256r1VerificationKey2019", good)


@pytest.mark.parametrize(
    ("curve", "point"),
    [
        ("k256", b"\x02" + bytes(31)),
        ("k256", b"\x04" + bytes(32)),
        ("p256", b"\x02" + b"\xff" * 32),
        ("ed25519", b"\x02" + bytes(32)),
        ("k256", bytearray(b"\x02" + bytes(32))),
    ],
)
def test_public_key_validates_on_construction(curve: str, point: bytes) -> None:
    with pytest.raises(KeyFormatError):
        PublicKey(curve, point)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_parse_multikey_never_crashes(text: str) -> None:
    for parse in (parse_multikey, parse_did_key):
        with contextlib.suppress(VerifyError):
            parse(text)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"\xe7\x01", b"\x80\x24", b"", b"\x04"]),
    st.binary(max_size=70),
)
def test_parse_multikey_structured_never_crashes(prefix: bytes, body: bytes) -> None:
    text = "z" + _b58encode(prefix + body)
    with contextlib.suppress(VerifyError):
        parse_multikey(text)
    for suite in ("EcdsaSecp256k1VerificationKey2019", "EcdsaSecp256r1VerificationKey2019"):
        with contextlib.suppress(VerifyError):
            parse_legacy_key(suite, text)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=80))
def test_verify_never_crashes(signature: bytes) -> None:
    key = SigningKey.from_seed("p256", "fuzz").public
    with pytest.raises(SignatureInvalid):
        key.verify(b"m", signature)
