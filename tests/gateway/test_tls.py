"""HTTPS is certificate-verified: an untrusted certificate is refused before anything is sent."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivrpay.gateway import GatewayClient
from ivrpay.sandbox import Sandbox, start_sandbox
from tests.support.gateway import SHOP_ID, SHOP_PASS

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
async def tls_sandbox(certificate: tuple[Path, Path]) -> AsyncIterator[Sandbox]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(*certificate)
    sandbox = await start_sandbox(ssl_context=server_ctx)
    try:
        yield sandbox
    finally:
        await sandbox.stop()


async def test_untrusted_certificate_is_refused(tls_sandbox: Sandbox) -> None:
    assert tls_sandbox.url.startswith("https://")
    async with GatewayClient(
        tls_sandbox.url, SHOP_ID, SHOP_PASS, timeout_s=2.0, retry_backoff_s=(0.0, 0.0)
    ) as client:
        out = await client.entry_tran("TLS-01", "AUTH", 100)
    assert (out.kind, out.sent, out.attempts) == ("system", False, 1)  # not retried
    assert tls_sandbox.state.requests["EntryTran"] == 0


async def test_trusted_certificate_works(
    tls_sandbox: Sandbox, certificate: tuple[Path, Path]
) -> None:
    ctx = ssl.create_default_context(cafile=str(certificate[0]))
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    async with GatewayClient(
        tls_sandbox.url, SHOP_ID, SHOP_PASS, timeout_s=2.0, ssl_context=ctx
    ) as client:
        out = await client.entry_tran("TLS-02", "AUTH", 100)
    assert out.ok
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2  # the client raised the floor
