"""TLS for the TCP listener and the ASGI ``tls`` scope extension."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from ..config import TLSConfig
from ..errors import StartupError
from ..ssl_utils import create_ssl_context

if TYPE_CHECKING:
    from .context import ServerContext

_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def build_ssl_context(tls: TLSConfig, alpn: list[str]) -> ssl.SSLContext | None:
    """The server's SSLContext, or None for cleartext; errors name the bad option."""
    if not tls.enabled:
        return None
    if tls.ssl_context is not None:
        context = tls.ssl_context
        context.set_alpn_protocols(alpn)
        return context
    try:
        return create_ssl_context(
            certfile=tls.certfile,
            keyfile=tls.keyfile,
            cert_data=tls.cert_data
            if isinstance(tls.cert_data, bytes | None)
            else tls.cert_data.encode(),
            key_data=tls.key_data,
            verify_mode=ssl.VerifyMode(tls.cert_reqs) if tls.cert_reqs else None,
            cafile=tls.ca_certs,
            password=tls.keyfile_password,
            ciphers=tls.ciphers,
            alpn_protocols=alpn,
        )
    except (ValueError, OSError, ssl.SSLError) as exc:
        raise StartupError(f"TLS configuration error: {exc}") from exc


class TLSInfo:
    """Per-server facts the ``tls`` extension repeats on every connection."""

    def __init__(self, context: ssl.SSLContext, server_cert: str | None) -> None:
        self.server_cert = server_cert
        self.cipher_ids = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}


def read_server_cert(tls: TLSConfig) -> str | None:
    """The server certificate as PEM text, for the ``server_cert`` key."""
    if tls.cert_data is not None:
        data = tls.cert_data.decode() if isinstance(tls.cert_data, bytes) else tls.cert_data
        return _first_cert(data)
    if tls.certfile:
        try:
            with open(tls.certfile) as fh:
                return _first_cert(fh.read())
        except OSError:
            return None
    return None


def _first_cert(pem: str) -> str | None:
    start = pem.find("-----BEGIN CERTIFICATE-----")
    end_marker = "-----END CERTIFICATE-----"
    end = pem.find(end_marker, start)
    if start < 0 or end < 0:
        return None
    return pem[start : end + len(end_marker)] + "\n"


def tls_extension(ssl_object: Any, ctx: ServerContext) -> dict[str, Any]:
    """The ASGI ``tls`` extension with the value types the spec gives."""
    info: TLSInfo | None = getattr(ctx, "tls_info", None)
    chain: list[str] = []
    client_name = None
    error = None
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        chain.append(ssl.DER_cert_to_PEM_cert(der))
        cert = ssl_object.getpeercert()
        if cert:
            client_name = _rfc4514(cert.get("subject", ()))
    cipher = ssl_object.cipher()
    cipher_id = None
    if cipher and info is not None:
        cipher_id = info.cipher_ids.get(cipher[0])
    return {
        "server_cert": info.server_cert if info is not None else None,
        "client_cert_chain": chain,
        "client_cert_name": client_name,
        "client_cert_error": error,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": cipher_id,
    }


def _rfc4514(subject: Any) -> str:
    names = {
        "commonName": "CN",
        "organizationName": "O",
        "organizationalUnitName": "OU",
        "countryName": "C",
        "localityName": "L",
        "stateOrProvinceName": "ST",
    }
    parts = []
    for rdn in reversed(subject):
        # A multi-valued RDN is one element, its attributes joined by "+".
        parts.append("+".join(f"{names.get(key, key)}={_escape_dn(value)}" for key, value in rdn))
    return ",".join(parts)


_DN_SPECIAL = frozenset('"+,;<>\\')


def _escape_dn(value: str) -> str:
    """RFC 4514 section 2.4: escape what would otherwise end or split the value."""
    out = "".join("\\" + c if c in _DN_SPECIAL else "\\00" if c == "\0" else c for c in value)
    if out[:1] in ("#", " "):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out
