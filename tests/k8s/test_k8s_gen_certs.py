"""manifests/gen-certs.sh: the certificate Gatekeeper will accept for the provider."""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.k8s.k8s_support import GEN_CERTS, b64_cert, load_docs, one, run

HOST = "atcr-verify-provider.gatekeeper-system"


def gen(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    r = run(["bash", str(GEN_CERTS), str(out)], env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    gen(out)
    return out


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_server_certificate(certs: Path) -> None:
    cert, ca = load(certs / "tls.crt"), load(certs / "ca.crt")
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(
        [HOST, f"{HOST}.svc", f"{HOST}.svc.cluster.local", "localhost"]
    )
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365


def test_ca_certificate(certs: Path) -> None:
    ca = load(certs / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert oct((certs / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert oct((certs / "tls.key").stat().st_mode & 0o777) == "0o600"


def test_openssl_verifies_for_tls_server(certs: Path) -> None:
    r = run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(certs / "ca.crt"),
            "-purpose",
            "sslserver",
            "-verify_hostname",
            HOST,
            str(certs / "tls.crt"),
        ]
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_secret_and_provider_yaml(certs: Path) -> None:
    secret = one(load_docs([certs / "tls-secret.yaml"]), "Secret")
    assert secret["metadata"] == {
        "name": "atcr-verify-provider-tls",
        "namespace": "gatekeeper-system",
        "labels": {
            "app.kubernetes.io/name": "atcr-verify-provider",
            "app.kubernetes.io/part-of": "atcr-verifier",
        },
    }
    assert secret["type"] == "kubernetes.io/tls"
    for key in ("tls.crt", "tls.key", "ca.crt"):
        assert base64.b64decode(secret["data"][key]) == (certs / key).read_bytes()
    provider = one(load_docs([certs / "provider.yaml"]), "Provider")
    assert provider["spec"]["url"] == f"https://{HOST}:8443/validate"
    # What Gatekeeper's provider cache does with caBundle: base64 -> PEM -> x509.
    assert b64_cert(provider["spec"]["caBundle"]) == load(certs / "ca.crt")


def test_tls13_handshake_with_the_provider_hostname(certs: Path) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    server_ctx.load_cert_chain(certs / "tls.crt", certs / "tls.key")
    client_ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            for _ in range(2):
                conn, _ = listener.accept()
                try:
                    with server_ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except (ssl.SSLError, OSError):
                    pass

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_ctx.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            assert tls.version() == "TLSv1.3"
            tls.sendall(b"x")
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            client_ctx.wrap_socket(raw, server_hostname="evil.gatekeeper-system")
        t.join(timeout=5)


def test_rerun_keeps_the_ca_and_rotates_the_server_cert(tmp_path: Path) -> None:
    gen(tmp_path)
    ca1, crt1 = (tmp_path / "ca.crt").read_bytes(), (tmp_path / "tls.crt").read_bytes()
    r = gen(tmp_path)
    assert "reusing the CA" in r.stderr
    assert (tmp_path / "ca.crt").read_bytes() == ca1
    assert (tmp_path / "tls.crt").read_bytes() != crt1
    load(tmp_path / "tls.crt").verify_directly_issued_by(load(tmp_path / "ca.crt"))


def test_out_of_cluster_url_and_extra_sans(tmp_path: Path) -> None:
    gen(
        tmp_path,
        PROVIDER_URL="https://127.0.0.1:18443/validate",
        EXTRA_SANS="DNS:provider.test,IP:10.9.8.7",
    )
    provider = one(load_docs([tmp_path / "provider.yaml"]), "Provider")
    assert provider["spec"]["url"] == "https://127.0.0.1:18443/validate"
    sans = (
        load(tmp_path / "tls.crt")
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert "provider.test" in sans.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.9.8.7") in sans.get_values_for_type(x509.IPAddress)


def test_usage_error() -> None:
    assert run(["bash", str(GEN_CERTS)]).returncode == 2
