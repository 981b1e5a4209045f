"""Tests for asgiri.ssl_utils and asgiri.devcert.

Everything is exercised for real: certificates are parsed with ``cryptography`` and
OpenSSL, contexts are checked through actual TLS handshakes on loopback sockets, and
the devcert CLI runs as a subprocess.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from asgiri.ssl_utils import (
    CertificateFileNotFoundError,
    create_ssl_context,
    generate_self_signed_cert,
    save_cert_and_key,
    spki_sha256_base64,
)
from tests.support.tls import make_client_cert

SRC_DIR = Path(__file__).resolve().parents[2] / "src"
HANDSHAKE_TIMEOUT = 10.0


# --- fixtures & helpers ---------------------------------------------------------------


@dataclass
class CertPair:
    cert_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> CertPair:
    cert_pem, key_pem = generate_self_signed_cert(
        "example.test", ip_addresses=["10.1.2.3", "fd00::7"]
    )
    directory = tmp_path_factory.mktemp("pair")
    cert_path, key_path = save_cert_and_key(
        cert_pem, key_pem, directory / "cert.pem", directory / "key.pem"
    )
    return CertPair(cert_pem, key_pem, cert_path, key_path)


def _san(cert_pem: bytes) -> x509.SubjectAlternativeName:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


@dataclass
class Side:
    alpn: str | None = None
    version: str | None = None
    peercert: dict[str, Any] | None = None
    data: bytes = b""
    error: BaseException | None = None


def _handshake(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    server_hostname: str = "localhost",
) -> tuple[Side, Side]:
    """Run one TLS connection over loopback: the server sends b"ok" after handshaking."""
    server, client = Side(), Side()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(HANDSHAKE_TIMEOUT)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(HANDSHAKE_TIMEOUT)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    server.alpn = tls.selected_alpn_protocol()
                    server.version = tls.version()
                    server.peercert = tls.getpeercert()
                    tls.sendall(b"ok")
            except (OSError, ValueError) as exc:
                server.error = exc

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_TIMEOUT) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                client.alpn = tls.selected_alpn_protocol()
                client.version = tls.version()
                client.data = tls.recv(2)
        except (OSError, ValueError) as exc:
            client.error = exc
        thread.join(HANDSHAKE_TIMEOUT)
        assert not thread.is_alive(), "TLS server thread did not finish"
    return server, client


def _client_ctx(cafile: Path, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A verifying client that trusts exactly the generated certificate."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


# --- certificate generation -----------------------------------------------------------


def test_generated_pem_and_key_match() -> None:
    cert_pem, key_pem = generate_self_signed_cert()
    assert cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    cert_key = cert.public_key()
    assert isinstance(cert_key, rsa.RSAPublicKey)
    assert cert_key.public_numbers() == key.public_key().public_numbers()
    cert.verify_directly_issued_by(cert)  # self-signed, valid signature


def test_key_size_is_honoured() -> None:
    _, key_pem = generate_self_signed_cert(key_size=3072)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072


def test_ec_key_type() -> None:
    cert_pem, key_pem = generate_self_signed_cert(key_type="ec")
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ku = x509.load_pem_x509_certificate(cert_pem).extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.value.digital_signature and not ku.value.key_encipherment


def test_san_contains_hostname_loopback_and_extra_ips(pair: CertPair) -> None:
    san = _san(pair.cert_pem)
    assert san.get_values_for_type(x509.DNSName)[0] == "example.test"
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    for expected in ("127.0.0.1", "::1", "10.1.2.3", "fd00::7"):
        assert ipaddress.ip_address(expected) in ips
    assert len(ips) == len(set(ips))


def test_ip_hostname_becomes_ip_san_and_invalid_ips_are_skipped() -> None:
    cert_pem, _ = generate_self_signed_cert("192.0.2.10", ip_addresses=["nope", "127.0.0.1"])
    san = _san(cert_pem)
    ips = san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("192.0.2.10") in ips
    assert "192.0.2.10" not in san.get_values_for_type(x509.DNSName)
    assert ips.count(ipaddress.ip_address("127.0.0.1")) == 1


def test_extensions_and_validity(pair: CertPair) -> None:
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "example.test"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment
    assert not ku.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)

    now = datetime.datetime.now(datetime.timezone.utc)
    assert now - cert.not_valid_before_utc > datetime.timedelta(hours=23)
    remaining = cert.not_valid_after_utc - now
    assert datetime.timedelta(days=364) < remaining <= datetime.timedelta(days=365)


@pytest.mark.parametrize(
    "kwargs",
    [{"hostname": ""}, {"validity_days": 0}, {"key_size": 1024}, {"key_type": "dsa"}],
)
def test_generate_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate_self_signed_cert(**kwargs)


# --- saving ---------------------------------------------------------------------------


def test_save_creates_dirs_and_restricts_key(tmp_path: Path) -> None:
    cert_pem, key_pem = generate_self_signed_cert()
    cert_path = tmp_path / "a" / "b" / "server.crt"
    key_path = tmp_path / "c" / "server.key"
    returned = save_cert_and_key(cert_pem, key_pem, str(cert_path), str(key_path))
    assert returned == (cert_path, key_path)
    assert cert_path.read_bytes() == cert_pem
    assert key_path.read_bytes() == key_pem
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    # Only the two files: the temporary siblings used for atomic writes are gone.
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "server.crt",
        "server.key",
    ]


def test_save_tightens_existing_world_readable_key(tmp_path: Path) -> None:
    cert_pem, key_pem = generate_self_signed_cert()
    key_path = tmp_path / "server.key"
    key_path.write_bytes(b"old")
    key_path.chmod(0o644)
    save_cert_and_key(cert_pem, key_pem, tmp_path / "server.crt", key_path)
    assert key_path.read_bytes() == key_pem
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


# --- SSL context ----------------------------------------------------------------------


def test_context_from_paths_is_hardened_server_context(pair: CertPair) -> None:
    ctx = create_ssl_context(str(pair.cert_path), str(pair.key_path))
    assert ctx.protocol == ssl.PROTOCOL_TLS_SERVER
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert ctx.verify_mode == ssl.CERT_NONE
    weak = ("NULL", "RC4", "DES", "MD5", "EXPORT", "anon", "CBC")
    for cipher in ctx.get_ciphers():
        assert not any(w in cipher["name"] or w in cipher["description"] for w in weak), cipher


def test_context_accepts_pathlike(pair: CertPair) -> None:
    assert isinstance(create_ssl_context(pair.cert_path, pair.key_path), ssl.SSLContext)


def test_handshake_with_context_from_paths(pair: CertPair) -> None:
    ctx = create_ssl_context(certfile=str(pair.cert_path), keyfile=str(pair.key_path))
    server, client = _handshake(ctx, _client_ctx(pair.cert_path), "example.test")
    assert client.error is None and server.error is None
    assert client.data == b"ok"
    assert client.version in ("TLSv1.2", "TLSv1.3")


def test_handshake_with_context_from_pem_bytes(pair: CertPair) -> None:
    ctx = create_ssl_context(cert_data=pair.cert_pem, key_data=pair.key_pem)
    # Verifying against 127.0.0.1 proves the IP SAN is usable, not just present.
    server, client = _handshake(ctx, _client_ctx(pair.cert_path), "127.0.0.1")
    assert client.error is None and server.error is None
    assert client.data == b"ok"


def test_pem_bytes_temp_files_are_removed(
    pair: CertPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    create_ssl_context(cert_data=pair.cert_pem, key_data=pair.key_pem)
    assert list(tmp_path.iterdir()) == []


def test_combined_pem_without_key_argument(pair: CertPair, tmp_path: Path) -> None:
    combined = tmp_path / "combined.pem"
    combined.write_bytes(pair.cert_pem + pair.key_pem)
    ctx = create_ssl_context(certfile=str(combined))
    _, client = _handshake(ctx, _client_ctx(pair.cert_path))
    assert client.data == b"ok"


@pytest.mark.parametrize(
    ("offered_by_server", "expected"),
    [(("http/1.1",), "http/1.1"), (("h2", "http/1.1"), "h2")],
)
def test_alpn_negotiation(
    pair: CertPair, offered_by_server: tuple[str, ...], expected: str
) -> None:
    if offered_by_server == ("h2", "http/1.1"):
        ctx = create_ssl_context(cert_data=pair.cert_pem, key_data=pair.key_pem)  # default
    else:
        ctx = create_ssl_context(
            cert_data=pair.cert_pem, key_data=pair.key_pem, alpn_protocols=offered_by_server
        )
    server, client = _handshake(ctx, _client_ctx(pair.cert_path, ["h2", "http/1.1"]))
    assert client.error is None and server.error is None
    assert client.alpn == expected
    assert server.alpn == expected


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_below_1_2_is_refused(pair: CertPair) -> None:
    ctx = create_ssl_context(cert_data=pair.cert_pem, key_data=pair.key_pem)
    client_ctx = _client_ctx(pair.cert_path)
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    client_ctx.set_ciphers("ALL:@SECLEVEL=0")
    server, client = _handshake(ctx, client_ctx)
    assert isinstance(client.error, ssl.SSLError)
    assert isinstance(server.error, ssl.SSLError)


def test_mutual_tls(pair: CertPair, tmp_path: Path) -> None:
    client_cert, client_key, _ = make_client_cert(tmp_path, organization=None)
    ctx = create_ssl_context(
        str(pair.cert_path),
        str(pair.key_path),
        verify_mode=ssl.CERT_REQUIRED,
        cafile=str(client_cert),
    )
    assert ctx.verify_mode == ssl.CERT_REQUIRED

    with_cert = _client_ctx(pair.cert_path)
    with_cert.load_cert_chain(str(client_cert), str(client_key))
    server, client = _handshake(ctx, with_cert)
    assert server.error is None and client.data == b"ok"
    assert server.peercert is not None
    assert server.peercert["subject"] == ((("commonName", "test-client"),),)

    server, _ = _handshake(ctx, _client_ctx(pair.cert_path))
    assert isinstance(server.error, ssl.SSLError)


def test_cafile_alone_implies_cert_required(pair: CertPair, tmp_path: Path) -> None:
    client_cert, _, _ = make_client_cert(tmp_path)
    ctx = create_ssl_context(
        cert_data=pair.cert_pem, key_data=pair.key_pem, cafile=str(client_cert)
    )
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_encrypted_key_needs_password(pair: CertPair) -> None:
    key = serialization.load_pem_private_key(pair.key_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    create_ssl_context(cert_data=pair.cert_pem, key_data=encrypted, password="s3cret")
    # Without a password this must fail fast instead of prompting on the terminal.
    with pytest.raises(ValueError, match="encrypted"):
        create_ssl_context(cert_data=pair.cert_pem, key_data=encrypted)
    with pytest.raises(ValueError):
        create_ssl_context(cert_data=pair.cert_pem, key_data=encrypted, password="wrong")


# --- argument errors ------------------------------------------------------------------


def test_no_certificate_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="certfile/keyfile or cert_data/key_data"):
        create_ssl_context()


def test_missing_key_is_a_value_error(pair: CertPair) -> None:
    with pytest.raises(ValueError, match="private key"):
        create_ssl_context(certfile=str(pair.cert_path))
    with pytest.raises(ValueError, match="private key"):
        create_ssl_context(cert_data=pair.cert_pem)


@pytest.mark.parametrize("which", ["certfile", "keyfile", "cafile"])
def test_missing_files_name_the_path(pair: CertPair, tmp_path: Path, which: str) -> None:
    missing = str(tmp_path / f"no-such-{which}.pem")
    kwargs: dict[str, Any] = {"certfile": str(pair.cert_path), "keyfile": str(pair.key_path)}
    kwargs[which] = missing
    with pytest.raises(ValueError, match=f"no-such-{which}") as info:
        create_ssl_context(**kwargs)
    # Also a FileNotFoundError, which is what asgiri 0.3 raised.
    assert isinstance(info.value, CertificateFileNotFoundError)
    assert isinstance(info.value, FileNotFoundError)


def test_conflicting_and_mismatched_material(pair: CertPair) -> None:
    with pytest.raises(ValueError, match="not both"):
        create_ssl_context(
            certfile=str(pair.cert_path), cert_data=pair.cert_pem, key_data=pair.key_pem
        )
    _, other_key = generate_self_signed_cert()
    with pytest.raises(ValueError, match="does not belong"):
        create_ssl_context(cert_data=pair.cert_pem, key_data=other_key)
    with pytest.raises(ValueError):
        create_ssl_context(cert_data=b"garbage", key_data=pair.key_pem)
    with pytest.raises(ValueError, match="cipher"):
        create_ssl_context(cert_data=pair.cert_pem, key_data=pair.key_pem, ciphers="NO-SUCH-CIPHER")


# --- SPKI pin -------------------------------------------------------------------------


def test_spki_hash_matches_independent_computation(pair: CertPair) -> None:
    # Derive the SPKI from the private key rather than from the certificate, and feed
    # the certificate back as DER too (converted by the ssl module, not cryptography).
    key = serialization.load_pem_private_key(pair.key_pem, password=None)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert spki_sha256_base64(pair.cert_pem) == expected
    der = ssl.PEM_cert_to_DER_cert(pair.cert_pem.decode())
    assert spki_sha256_base64(der) == expected


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_spki_hash_matches_openssl_cli(pair: CertPair) -> None:
    pubkey = subprocess.run(
        ["openssl", "x509", "-in", str(pair.cert_path), "-pubkey", "-noout"],
        check=True,
        capture_output=True,
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "der"],
        input=pubkey,
        check=True,
        capture_output=True,
    ).stdout
    expected = base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert spki_sha256_base64(pair.cert_pem) == expected


# --- devcert CLI ----------------------------------------------------------------------


@pytest.fixture
def cli_env() -> Iterator[dict[str, str]]:
    """Environment that finds the in-tree package even without an editable install."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC_DIR), env.get("PYTHONPATH")) if p)
    yield env


def test_devcert_cli_writes_pair(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out_dir = tmp_path / "certs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asgiri.devcert",
            str(out_dir),
            "--hostname",
            "dev.example.test",
            "--ip",
            "10.9.8.7",
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    cert_path, key_path = out_dir / "cert.pem", out_dir / "key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert_pem = cert_path.read_bytes()
    assert str(cert_path) in proc.stdout and str(key_path) in proc.stdout
    assert spki_sha256_base64(cert_pem) in proc.stdout
    san = _san(cert_pem)
    assert "dev.example.test" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.9.8.7") in san.get_values_for_type(x509.IPAddress)
    # The written pair is directly usable by the server.
    ctx = create_ssl_context(str(cert_path), str(key_path))
    _, client = _handshake(ctx, _client_ctx(cert_path), "dev.example.test")
    assert client.data == b"ok"


def test_devcert_cli_rejects_bad_ip(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "asgiri.devcert", str(tmp_path), "--ip", "300.1.1.1"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "not an IP address" in proc.stderr
    assert not (tmp_path / "cert.pem").exists()


def test_devcert_main_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from asgiri.devcert import main, write_dev_cert

    cert_path, key_path = write_dev_cert(str(tmp_path / "w"), "localhost", ["::2"])
    assert Path(cert_path).is_file() and Path(key_path).is_file()
    assert main([str(tmp_path / "m")]) == 0
    assert "SPKI sha256:" in capsys.readouterr().out
    assert (tmp_path / "m" / "cert.pem").is_file()
