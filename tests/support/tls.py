"""Certificates for tests: one self-signed ECDSA pair per session, as PEM bytes and as files.

Every TLS, HTTP/2-over-TLS and QUIC test shares it (registered in ``tests/conftest.py``),
so no module generates its own; a test that needs a certificate of its own making
(a renewal, a client certificate) builds it here too.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from asgiri.ssl_utils import generate_self_signed_cert, save_cert_and_key


def make_client_cert(
    directory: Path, common_name: str = "test-client", organization: str | None = "asgiri tests"
) -> tuple[str, str, str]:
    """A client certificate that is its own CA (so it can be the server's
    ``--ssl-ca-certs``), written to ``directory``: (certfile, keyfile, PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attributes)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
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
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path = directory / "client.pem"
    key_path = directory / "client.key"
    cert_path.write_text(cert_pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path), cert_pem


@pytest.fixture(scope="session")
def pems() -> tuple[bytes, bytes]:
    """The session's certificate and key (ECDSA P-256, ``localhost``), PEM bytes."""
    return generate_self_signed_cert("localhost", key_type="ec")


@pytest.fixture(scope="session")
def cert_files(
    tmp_path_factory: pytest.TempPathFactory, pems: tuple[bytes, bytes]
) -> tuple[str, str]:
    """``pems`` written to files, for ``--certfile``/``--keyfile``: (certfile, keyfile)."""
    directory = tmp_path_factory.mktemp("certs")
    cert, key = save_cert_and_key(pems[0], pems[1], directory / "cert.pem", directory / "key.pem")
    return str(cert), str(key)


def client_context(pems: tuple[bytes, bytes], alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context that trusts ``pems``' certificate and offers ``alpn``."""
    context = ssl.create_default_context(cadata=pems[0].decode())
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context
