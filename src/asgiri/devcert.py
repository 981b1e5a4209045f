"""Mint a self-signed development certificate: ``python -m asgiri.devcert [DIR]``.

Writes ``DIR/cert.pem`` and ``DIR/key.pem`` (DIR defaults to ``certs``) and prints the
certificate's SPKI pin, which is what a headless Chromium needs in
``--ignore-certificate-errors-spki-list`` to trust exactly this certificate, and its
SHA-256, which a page gives WebTransport as ``serverCertificateHashes``.  For the latter
to work the certificate is ECDSA (P-256) and valid for :data:`VALIDITY_DAYS` days: browsers
accept a certificate by hash only when it lives at most 14 days, so a development
certificate is renewed (``make demo`` does it when it is about to expire).
``asgiri --generate-cert DIR`` reuses :func:`write_dev_cert`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence

from asgiri.ssl_utils import (
    cert_sha256,
    generate_self_signed_cert,
    save_cert_and_key,
    spki_sha256_base64,
)

__all__ = [
    "CERT_FILENAME",
    "KEY_FILENAME",
    "VALIDITY_DAYS",
    "CertificateExistsError",
    "main",
    "write_dev_cert",
]

CERT_FILENAME = "cert.pem"
KEY_FILENAME = "key.pem"
#: Under the 14 days WebTransport's serverCertificateHashes allows, with a day to spare.
VALIDITY_DAYS = 13


class CertificateExistsError(FileExistsError):
    """``cert.pem`` or ``key.pem`` is already there and ``force`` was not given."""


def write_dev_cert(
    directory: str | os.PathLike[str],
    hostname: str = "localhost",
    ips: Sequence[str] | None = None,
    *,
    force: bool = False,
) -> tuple[str, str]:
    """Generate a certificate for *hostname* (plus loopback and *ips*) into *directory*.

    A pair already in *directory* is kept unless ``force`` is given: it may be
    a real certificate someone put there, or the one a browser was told to
    trust.  With ``force`` the files are replaced atomically, so a server
    watching them never reads a half-written pair.  The directory is created
    if needed.

    Returns:
        ``(cert_path, key_path)`` as strings, ready for ``--certfile``/``--keyfile``.

    Raises:
        CertificateExistsError: a file is in the way and ``force`` is false.
    """
    cert_path = os.path.join(os.fspath(directory), CERT_FILENAME)
    key_path = os.path.join(os.fspath(directory), KEY_FILENAME)
    if not force:
        existing = [path for path in (cert_path, key_path) if os.path.lexists(path)]
        if existing:
            raise CertificateExistsError(
                f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                "add --force to replace"
            )
    cert_pem, key_pem = generate_self_signed_cert(
        hostname=hostname,
        ip_addresses=list(ips) if ips else None,
        validity_days=VALIDITY_DAYS,
        key_type="ec",
    )
    save_cert_and_key(cert_pem, key_pem, cert_path, key_path)
    return cert_path, key_path


def _ip_address(value: str) -> str:
    """Reject typos at the command line; the library would only warn and skip them."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {value!r}") from None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m asgiri.devcert",
        description="Generate a self-signed TLS certificate for local development.",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        default="certs",
        metavar="DIR",
        help="output directory for cert.pem and key.pem (default: %(default)s)",
    )
    parser.add_argument(
        "--hostname",
        default="localhost",
        metavar="H",
        help="DNS name the certificate is for (default: %(default)s); "
        "localhost, 127.0.0.1 and ::1 are always included",
    )
    parser.add_argument(
        "--ip",
        dest="ips",
        action="extend",
        nargs="+",
        type=_ip_address,
        default=[],
        metavar="IP",
        help="extra IP address(es) to include; may be repeated",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace cert.pem and key.pem when they exist (by default they are kept)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    args = _build_parser().parse_args(argv)
    try:
        cert_path, key_path = write_dev_cert(
            args.directory, args.hostname, args.ips, force=args.force
        )
        with open(cert_path, "rb") as handle:
            cert_pem = handle.read()
        pin = spki_sha256_base64(cert_pem)
        digest = cert_sha256(cert_pem).hex()
    except CertificateExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: could not write development certificate: {exc}", file=sys.stderr)
        return 1
    print(f"certificate: {cert_path}")
    print(f"private key: {key_path}")
    print(f"SPKI sha256: {pin}")
    print(f"  chromium --ignore-certificate-errors-spki-list={pin}")
    print(f"certificate sha256 (WebTransport serverCertificateHashes): {digest}")
    print(f"valid for {VALIDITY_DAYS} days")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
