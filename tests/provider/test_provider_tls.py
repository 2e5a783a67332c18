"""TLS over real sockets: 1.3 only, mTLS with the client CA, and certificate files reloaded
without a restart (server certificate, key and client CA), for clients with and without SNI."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from tests.provider.harness import VerifierDouble, provider_settings, running_provider, wait_for
from tests.provider.pki import Issuer, Pki, common_name


async def fetch(
    port: int, context: ssl.SSLContext, server_hostname: str = "localhost"
) -> tuple[str, bytes]:
    """(server certificate CN, HTTP status line) of ``GET /healthz`` on a new connection;
    raises when the handshake or the first read fails."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_hostname),
        timeout=5,
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert(binary_form=True)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), timeout=5)
        if not status:
            raise ConnectionError("closed without an answer")
        return common_name(peer), status.strip()
    finally:
        writer.close()


async def refused(port: int, context: ssl.SSLContext) -> bool:
    try:
        await fetch(port, context)
    except (OSError, ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        return True
    return False


async def test_tls_1_3_is_served_and_tls_1_2_refused(pki: Pki, offline_policy_file: Path) -> None:
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory) as p:
        name, status = await fetch(p.https_port, pki.client_context(None))
        assert name == "server-1" and status == b"HTTP/1.1 200 OK"
        old = pki.client_context(None, maximum_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises((ssl.SSLError, ConnectionResetError)):  # the handshake fails
            await fetch(p.https_port, old)


async def test_without_client_ca_no_client_certificate_is_needed(
    pki: Pki, offline_policy_file: Path
) -> None:
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory) as p:
        assert not await refused(p.https_port, pki.client_context(None))


async def test_mtls_requires_a_certificate_from_the_client_ca(
    pki: Pki, offline_policy_file: Path
) -> None:
    settings = provider_settings(pki, offline_policy_file, client_ca=pki.client_ca_file)
    async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory) as p:
        assert await refused(p.https_port, pki.client_context(None))  # no certificate
        assert await refused(p.https_port, pki.client_context("stranger"))  # another CA
        assert not await refused(p.https_port, pki.client_context("client"))
        # and the real request path works with the right certificate (the harness session)
        items = await p.items(["registry.test/app:1"])
        assert items["registry.test/app:1"]["value"]["allowed"] is True


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])  # with and without SNI
async def test_a_rotated_certificate_is_served_without_restart(
    pki: Pki, offline_policy_file: Path, server_hostname: str
) -> None:
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory) as p:
        client = pki.client_context(None)
        assert (await fetch(p.https_port, client, server_hostname))[0] == "server-1"
        pki.write_server_cert("server-2")

        async def rotated() -> bool:
            return (await fetch(p.https_port, client, server_hostname))[0] == "server-2"

        await wait_for(rotated)
        assert await p.metric("atcr_provider_tls_reload_total", {"result": "success"}) >= 1


async def test_rotation_to_a_new_ca_and_a_broken_rotation(
    pki: Pki, offline_policy_file: Path
) -> None:
    settings = provider_settings(pki, offline_policy_file)
    async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory) as p:
        # half a rotation: a key that does not match the certificate is not loaded
        cert, _ = pki.server_ca.issue("mismatch", server=True)
        pki.server_cert.write_bytes(cert)

        async def failure_counted() -> bool:
            return await p.metric("atcr_provider_tls_reload_total", {"result": "failure"}) >= 1

        await wait_for(failure_counted)
        assert (await fetch(p.https_port, pki.client_context(None)))[0] == "server-1"
        # the rotation completes, with a certificate from a new CA
        new_ca = Issuer.create("rotated server CA")
        pki.write_server_cert("server-3", issuer=new_ca)
        client = pki.client_context(None, trust=new_ca)

        async def rotated() -> bool:
            try:
                return (await fetch(p.https_port, client))[0] == "server-3"
            except ssl.SSLError:
                return False

        await wait_for(rotated)


async def test_a_rotated_client_ca_is_enforced_without_restart(
    pki: Pki, offline_policy_file: Path
) -> None:
    settings = provider_settings(pki, offline_policy_file, client_ca=pki.client_ca_file)
    async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory) as p:
        assert await refused(p.https_port, pki.client_context("stranger"))
        staging = pki.client_ca_file.with_suffix(".new")
        staging.write_bytes(pki.other_ca.pem)
        staging.replace(pki.client_ca_file)

        async def switched() -> bool:
            return not await refused(p.https_port, pki.client_context("stranger"))

        await wait_for(switched)
        assert await refused(p.https_port, pki.client_context("client"))


async def test_unusable_certificates_fail_startup(pki: Pki, offline_policy_file: Path) -> None:
    from atcr_verify import ConfigError

    settings = provider_settings(pki, offline_policy_file, tls_cert=pki.directory / "missing.crt")
    with pytest.raises(ConfigError, match="cannot load TLS files"):
        async with running_provider(settings, pki, verifier_factory=VerifierDouble().factory):
            pass
