"""Test certificates made with ``cryptography``: a server CA and certificate for 127.0.0.1 and
localhost, a client CA with a client certificate (Gatekeeper's role), and a second, untrusted CA
with its own client certificate. ECDSA P-256 keys keep handshakes cheap."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issuer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str) -> Issuer:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(self, common_name: str, *, server: bool) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for a server (127.0.0.1, localhost) or a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        return (
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Pki:
    """Every file a test needs, written under ``directory``."""

    directory: Path
    server_ca: Issuer
    client_ca: Issuer
    other_ca: Issuer

    @classmethod
    def create(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        pki = cls(
            directory,
            Issuer.create("test server CA"),
            Issuer.create("gatekeeper-ca"),
            Issuer.create("someone else's CA"),
        )
        pki.write_server_cert("server-1")
        (directory / "server-ca.crt").write_bytes(pki.server_ca.pem)
        (directory / "client-ca.crt").write_bytes(pki.client_ca.pem)
        (directory / "other-ca.crt").write_bytes(pki.other_ca.pem)
        for name, issuer in (("client", pki.client_ca), ("stranger", pki.other_ca)):
            cert, key = issuer.issue(f"{name} client", server=False)
            (directory / f"{name}.crt").write_bytes(cert)
            (directory / f"{name}.key").write_bytes(key)
        return pki

    @property
    def server_cert(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "tls.key"

    @property
    def client_ca_file(self) -> Path:
        return self.directory / "client-ca.crt"

    def write_server_cert(self, common_name: str, issuer: Issuer | None = None) -> None:
        """Replace tls.crt/tls.key the way a Secret rotates: new files renamed into place."""
        cert, key = (issuer or self.server_ca).issue(common_name, server=True)
        for path, data in ((self.server_key, key), (self.server_cert, cert)):
            staging = path.with_suffix(".new")
            staging.write_bytes(data)
            staging.replace(path)

    def client_context(
        self,
        client: str | None = "client",
        *,
        maximum_version: ssl.TLSVersion | None = None,
        trust: Issuer | None = None,
    ) -> ssl.SSLContext:
        """A client context trusting the server CA, presenting ``client``'s certificate."""
        context = ssl.create_default_context(cadata=(trust or self.server_ca).pem.decode())
        if maximum_version is not None:
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.maximum_version = maximum_version
        if client is not None:
            context.load_cert_chain(
                self.directory / f"{client}.crt", self.directory / f"{client}.key"
            )
        return context


def common_name(peer_cert_der: bytes) -> str:
    cert = x509.load_der_x509_certificate(peer_cert_der)
    (attribute,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value)
