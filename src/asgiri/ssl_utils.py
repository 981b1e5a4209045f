"""TLS helpers: self-signed development certificates and server-side SSL contexts.

Everything TLS-related that the server needs before it can accept a connection lives
here, so that the protocol code only ever receives a ready ``ssl.SSLContext``.  The
public functions keep the signatures of asgiri 0.3 so existing callers keep working.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import errno
import hashlib
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateFileNotFoundError",
    "create_ssl_context",
    "generate_self_signed_cert",
    "save_cert_and_key",
    "spki_sha256_base64",
]

logger = logging.getLogger(__name__)

#: ECDHE-only AEAD suites for TLS 1.2 (Mozilla "intermediate" minus DHE).  Every suite
#: here is allowed by RFC 9113 section 9.2.2, so a client that negotiates h2 can never
#: be handed a suite it must reject with INADEQUATE_SECURITY.  DHE is left out because
#: the stdlib never configures DH parameters, so those suites could not be used anyway.
#: TLS 1.3 suites are not affected by ``set_ciphers`` and keep OpenSSL's defaults.
DEFAULT_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)

# Backdating absorbs clock skew between the machine that minted the certificate and the
# client (VMs, containers and CI runners are often seconds to minutes off).
_NOT_BEFORE_SKEW = datetime.timedelta(days=1)

# X.520 caps commonName at 64 characters; longer hostnames only go in the SAN.
_MAX_COMMON_NAME = 64

_LOOPBACK_IPS: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (
    ipaddress.IPv4Address("127.0.0.1"),
    ipaddress.IPv6Address("::1"),
)


class CertificateFileNotFoundError(FileNotFoundError, ValueError):
    """A certificate, key or CA file given to :func:`create_ssl_context` does not exist.

    It is both a ``ValueError`` (it is a configuration mistake, reported like the other
    argument errors) and a ``FileNotFoundError`` (what asgiri 0.3 raised, so existing
    ``except`` clauses keep matching).
    """


# --------------------------------------------------------------------------------------
# Certificate generation
# --------------------------------------------------------------------------------------


def generate_self_signed_cert(
    hostname: str = "localhost",
    ip_addresses: list[str] | None = None,
    key_size: int = 2048,
    validity_days: int = 365,
    *,
    key_type: Literal["rsa", "ec"] = "rsa",
) -> tuple[bytes, bytes]:
    """Create a self-signed server certificate and its private key, both PEM-encoded.

    The certificate is shaped so that strict clients (browsers, curl, OpenSSL hostname
    checks) accept it once it is trusted: the name lives in subjectAltName because
    modern clients ignore the commonName, ``localhost``/``127.0.0.1``/``::1`` are always
    included so the same file works however the developer addresses the machine, and
    it is marked as a non-CA serverAuth leaf.

    Args:
        hostname: DNS name (or IP literal) the certificate is for.
        ip_addresses: Extra IP addresses for the SAN.  Unparseable entries are skipped
            with a warning, as asgiri 0.3 did.
        key_size: RSA modulus size in bits (ignored for ``key_type="ec"``).
        validity_days: How long, counted from now, the certificate stays valid.
        key_type: ``"rsa"`` for maximum compatibility, or ``"ec"`` (P-256) for much
            cheaper handshakes, e.g. when benchmarking.

    Returns:
        ``(cert_pem, key_pem)``; the key is an unencrypted traditional-OpenSSL PEM
        (``BEGIN RSA PRIVATE KEY`` / ``BEGIN EC PRIVATE KEY``), as in asgiri 0.3.

    Raises:
        ValueError: for an empty hostname, a non-positive validity or a bad key size.
    """
    hostname = hostname.strip()
    if not hostname:
        raise ValueError("hostname must not be empty")
    if validity_days < 1:
        raise ValueError(f"validity_days must be at least 1, got {validity_days}")

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if key_type == "rsa":
        if key_size < 2048:
            # OpenSSL's default security level rejects smaller RSA keys at load time,
            # so failing here gives a clearer error than a later SSLError.
            raise ValueError(f"key_size must be at least 2048 bits, got {key_size}")
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    elif key_type == "ec":
        private_key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"key_type must be 'rsa' or 'ec', got {key_type!r}")

    subject_attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "asgiri development")]
    if len(hostname) <= _MAX_COMMON_NAME:
        subject_attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, hostname))
    subject = x509.Name(subject_attrs)

    now = datetime.datetime.now(datetime.timezone.utc)
    public_key = private_key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _NOT_BEFORE_SKEW)
        .not_valid_after(now + datetime.timedelta(days=validity_days))
        .add_extension(
            x509.SubjectAlternativeName(_subject_alt_names(hostname, ip_addresses or [])),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # Only RSA keys can do key transport; declaring it on an EC key makes
                # some strict validators reject the certificate.
                key_encipherment=key_type == "rsa",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(private_key, hashes.SHA256())
    )

    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.TraditionalOpenSSL,
        encryption_algorithm=serialization.NoEncryption(),
    )
    logger.debug(
        "generated self-signed %s certificate for %s (valid %d days)",
        key_type.upper(),
        hostname,
        validity_days,
    )
    return cert_pem, key_pem


def _subject_alt_names(hostname: str, ip_addresses: Iterable[str]) -> list[x509.GeneralName]:
    """Build a de-duplicated SAN list: the hostname first, then loopback, then extras.

    An IP literal given as *hostname* becomes an IPAddress entry, because clients never
    match IP addresses against DNSName entries.
    """
    names: list[x509.GeneralName] = []

    def add(name: x509.GeneralName) -> None:
        if name not in names:
            names.append(name)

    try:
        add(x509.IPAddress(ipaddress.ip_address(hostname)))
    except ValueError:
        add(x509.DNSName(_to_ascii_hostname(hostname)))
    add(x509.DNSName("localhost"))
    for loopback in _LOOPBACK_IPS:
        add(x509.IPAddress(loopback))
    for raw in ip_addresses:
        try:
            add(x509.IPAddress(ipaddress.ip_address(raw.strip())))
        except ValueError:
            logger.warning("ignoring invalid IP address for certificate SAN: %r", raw)
    return names


def _to_ascii_hostname(hostname: str) -> str:
    """Return the A-label form, because X.509 DNSName entries must be plain ASCII."""
    if hostname.isascii():
        return hostname.lower()
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"hostname {hostname!r} is not a valid DNS name: {exc}") from exc


# --------------------------------------------------------------------------------------
# Writing to disk
# --------------------------------------------------------------------------------------


def save_cert_and_key(
    cert_pem: bytes,
    key_pem: bytes,
    cert_path: str | os.PathLike[str] = "server.crt",
    key_path: str | os.PathLike[str] = "server.key",
) -> tuple[Path, Path]:
    """Write a certificate and its private key, creating parent directories.

    Each file is written to a temporary sibling and renamed into place, so a server
    that is (re)loading the pair never sees a truncated file, and the key never exists
    on disk with permissions wider than 0600, not even briefly.

    Returns:
        The two paths as ``Path`` objects (asgiri 0.3 callers unpack them).
    """
    cert_file = Path(cert_path)
    key_file = Path(key_path)
    _atomic_write(cert_file, cert_pem, 0o644)
    _atomic_write(key_file, key_pem, 0o600)
    logger.info("wrote certificate to %s and private key to %s", cert_file, key_file)
    return cert_file, key_file


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Replace *path* with *data*; the temp file is born 0600 (mkstemp) before chmod."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


# --------------------------------------------------------------------------------------
# SSL context
# --------------------------------------------------------------------------------------


def create_ssl_context(
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
    cert_data: bytes | None = None,
    key_data: bytes | None = None,
    verify_mode: ssl.VerifyMode | None = None,
    cafile: str | os.PathLike[str] | None = None,
    *,
    password: str | None = None,
    ciphers: str | None = None,
    alpn_protocols: Sequence[str] = ("h2", "http/1.1"),
) -> ssl.SSLContext:
    """Build a hardened server-side ``SSLContext``.

    The defaults are chosen for HTTP serving: TLS 1.2 is the floor (HTTP/2 forbids
    older versions), TLS compression is off (CRIME), renegotiation is off (forbidden
    by HTTP/2 and a cheap DoS lever), the server's cipher order wins so the client
    cannot steer the handshake onto a weaker suite, and TLS 1.2 suites are limited to
    ECDHE+AEAD (:data:`DEFAULT_CIPHERS`).

    The certificate can come from files (``certfile``/``keyfile``) or PEM bytes
    (``cert_data``/``key_data``), or one of each.  ``ssl`` can only load key material
    from a path, so PEM bytes are written to a private temporary directory that is
    removed as soon as they are loaded.  If no key is given, the certificate PEM must
    contain the key as well (a combined PEM file).

    Args:
        certfile: Path to the PEM certificate chain (leaf first).
        keyfile: Path to the PEM private key.
        cert_data: The certificate chain as PEM bytes.
        key_data: The private key as PEM bytes.
        verify_mode: Client-certificate policy for mutual TLS.  Defaults to
            ``CERT_REQUIRED`` when *cafile* is given (a CA with nothing checked against
            it would silently disable the intended authentication), else ``CERT_NONE``.
        cafile: PEM file (or directory of hashed certificates) of CAs trusted to sign
            client certificates.  Without it, client certificates are verified against
            the system trust store.
        password: Passphrase for an encrypted private key.
        ciphers: OpenSSL cipher string for TLS 1.2, replacing :data:`DEFAULT_CIPHERS`.
        alpn_protocols: ALPN identifiers to offer, in server preference order.  The
            default offers HTTP/2 and HTTP/1.1, as asgiri 0.3 did; the server replaces
            it with what its ``http_version`` serves.  Empty means no ALPN at all.

    Raises:
        ValueError: when arguments are missing or contradictory, a file does not exist
            (:class:`CertificateFileNotFoundError`, which is also a FileNotFoundError),
            or the material cannot be loaded (bad PEM, key does not match the
            certificate, wrong or missing passphrase, unusable cipher string).
    """
    certfile = _optional_path(certfile)
    keyfile = _optional_path(keyfile)
    cafile = _optional_path(cafile)

    if certfile is None and cert_data is None:
        raise ValueError(
            "Either certfile/keyfile or cert_data/key_data must be provided to enable TLS"
        )
    if certfile is not None and cert_data is not None:
        raise ValueError("pass either certfile or cert_data, not both")
    if keyfile is not None and key_data is not None:
        raise ValueError("pass either keyfile or key_data, not both")

    if certfile is not None:
        _require_file(certfile, "certificate file")
    if keyfile is not None:
        _require_file(keyfile, "private key file")
    if cafile is not None:
        _require_file(cafile, "CA file", allow_directory=True)

    if keyfile is None and key_data is None:
        cert_pem = cert_data if cert_data is not None else _read(certfile, "certificate file")
        if b"PRIVATE KEY-----" not in _as_bytes(cert_pem):
            source = "cert_data" if cert_data is not None else f"certificate file {certfile!r}"
            raise ValueError(
                f"no private key: pass keyfile or key_data ({source} does not contain a key)"
            )

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    try:
        ctx.set_ciphers(ciphers if ciphers is not None else DEFAULT_CIPHERS)
    except ssl.SSLError as exc:
        raise ValueError(f"no usable cipher in cipher string {ciphers!r}") from exc

    _load_cert_chain(ctx, certfile, keyfile, cert_data, key_data, password)

    if verify_mode is None:
        verify_mode = ssl.CERT_REQUIRED if cafile is not None else ssl.CERT_NONE
    ctx.verify_mode = ssl.VerifyMode(verify_mode)
    if cafile is not None:
        try:
            if os.path.isdir(cafile):
                ctx.load_verify_locations(capath=cafile)
            else:
                ctx.load_verify_locations(cafile=cafile)
        except ssl.SSLError as exc:
            raise ValueError(f"could not load CA certificates from {cafile!r}: {exc}") from exc
    elif ctx.verify_mode != ssl.CERT_NONE:
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)

    if isinstance(alpn_protocols, str):
        # A bare string would otherwise be offered one character at a time.
        alpn_protocols = (alpn_protocols,)
    protocols = [p for p in alpn_protocols if p]
    if protocols:
        ctx.set_alpn_protocols(protocols)
    return ctx


def _load_cert_chain(
    ctx: ssl.SSLContext,
    certfile: str | None,
    keyfile: str | None,
    cert_data: bytes | None,
    key_data: bytes | None,
    password: str | None,
) -> None:
    """Load the certificate/key into *ctx*, spilling in-memory PEM to private temp files.

    ``TemporaryDirectory`` is created 0700 and the files 0600, so no other local user
    can read the key in the short window it is on disk; the ``with`` block deletes it
    even when loading fails.
    """
    described = (
        f"certificate {certfile!r}" if certfile is not None else "certificate from cert_data"
    )
    if keyfile is not None:
        described += f" and key {keyfile!r}"
    elif key_data is not None:
        described += " and key from key_data"

    with tempfile.TemporaryDirectory(prefix="asgiri-tls-") as private_dir:
        if cert_data is not None:
            certfile = _write_private(Path(private_dir, "cert.pem"), cert_data)
        if key_data is not None:
            keyfile = _write_private(Path(private_dir, "key.pem"), key_data)
        assert certfile is not None  # guaranteed by create_ssl_context's checks
        try:
            ctx.load_cert_chain(
                certfile, keyfile, password if password is not None else _no_passphrase
            )
        except ssl.SSLError as exc:
            reason = str(exc)
            hint = ""
            if "KEY_VALUES_MISMATCH" in reason:
                hint = " (the private key does not belong to the certificate)"
            elif password is not None and ("BAD_DECRYPT" in reason or "PEM lib" in reason):
                hint = " (wrong password for the private key, or malformed PEM)"
            elif "PEM lib" in reason or "NO_START_LINE" in reason:
                hint = " (malformed or empty PEM data)"
            raise ValueError(f"could not load {described}{hint}: {exc}") from exc
        except OSError as exc:
            raise ValueError(f"could not read {described}: {exc}") from exc


def _no_passphrase() -> str:
    """Passphrase callback used when the caller gave no password.

    With ``password=None`` and an encrypted key, OpenSSL's default callback reads a
    passphrase from /dev/tty, which hangs a server started by a supervisor.  Raising
    here turns that into an immediate, explanatory error instead.
    """
    raise ValueError("the private key is encrypted: pass password= to decrypt it")


def _optional_path(value: str | os.PathLike[str] | None) -> str | None:
    """Normalise a path argument; ``""`` counts as absent, as it did in asgiri 0.3."""
    if value is None:
        return None
    path = os.fspath(value)
    return path or None


def _require_file(path: str, what: str, *, allow_directory: bool = False) -> None:
    """Fail early with a message naming *path*, rather than OpenSSL's bare errno."""
    if not os.path.exists(path):
        raise CertificateFileNotFoundError(errno.ENOENT, f"{what} not found", path)
    if os.path.isdir(path) and not allow_directory:
        raise ValueError(f"{what} is a directory, not a file: {path}")


def _read(path: str | None, what: str) -> bytes:
    assert path is not None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"could not read {what} {path!r}: {exc}") from exc


def _as_bytes(data: bytes | str) -> bytes:
    """Accept PEM given as ``str`` too; PEM is ASCII by definition."""
    return data.encode("ascii") if isinstance(data, str) else bytes(data)


def _write_private(path: Path, data: bytes) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(_as_bytes(data))
    return str(path)


# --------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------


def cert_sha256(cert_pem: bytes) -> bytes:
    """SHA-256 of a certificate's DER: what a browser's WebTransport
    ``serverCertificateHashes`` names (with an ECDSA certificate valid at most
    14 days, Chromium then trusts it without a CA).  PEM or DER input."""
    data = _as_bytes(cert_pem)
    if b"-----BEGIN" in data:
        data = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(data).digest()


def spki_sha256_base64(cert_pem: bytes) -> str:
    """Return base64(SHA-256(DER SubjectPublicKeyInfo)) of a certificate.

    This is the pin format of HPKP and of Chromium's
    ``--ignore-certificate-errors-spki-list``, which lets a headless browser trust one
    self-signed development certificate without disabling verification wholesale.
    Hashing the key rather than the certificate keeps the pin valid when the same key
    is re-certified.  DER input is accepted too.
    """
    data = _as_bytes(cert_pem)
    if b"-----BEGIN" in data:
        cert = x509.load_pem_x509_certificate(data)
    else:
        cert = x509.load_der_x509_certificate(data)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")
