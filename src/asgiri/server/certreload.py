"""Certificates renewed without a restart: SIGUSR1 and ``--ssl-watch``.

Let's Encrypt and cert-manager replace certificates every few weeks; a
server that needs a restart for that drops connections or needs an
orchestrated rollout each time.  Here the files named by ``--certfile``,
``--keyfile`` and ``--ca-certs`` are read again, in place:

- **Validated first, then swapped.**  The new files are loaded into a fresh
  ``SSLContext`` built exactly like the first one (which checks that the key
  belongs to the certificate) and into a scratch QUIC configuration.  If
  either fails (a half-written file, a key that does not match) nothing
  changes and one line says why; the next change of the files tries again.
- **New handshakes only.**  TCP: the listeners keep the context they were
  created with; from the first reload on, its SNI callback (which OpenSSL
  runs for every ClientHello, with or without a server name) hands each new
  handshake the newest context (``SSLObject.context = ...``), certificate,
  key, CA bundle and all, so a change of key type (RSA to ECDSA) leaves no
  old certificate behind, as loading into the live context would.  QUIC:
  the certificate and key on the shared ``QuicConfiguration`` are replaced;
  aioquic copies them into a connection when its first packet arrives.
  Connections already open keep what they negotiated.
- **Watching** (``--ssl-watch``) is a stat of the few files once a second
  (following symlinks, so the ``..data`` swap of a Kubernetes secret volume
  counts); a change is loaded once the files have stopped changing for a
  second, so writing the certificate and then the key is one reload.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
from typing import Any

from ..config import Config
from ..errors import StartupError
from .tls import build_ssl_context, read_server_cert

logger = logging.getLogger("asgiri.error")

__all__ = ["WATCH_INTERVAL", "CertificateReloader"]

#: Seconds between two looks at the files under ``--ssl-watch``.
WATCH_INTERVAL = 1.0

FileState = tuple[int, int, int, int] | None
Signature = tuple[FileState, ...]


class CertificateReloader:
    """Swaps in the current certificate files for new TLS and QUIC handshakes."""

    def __init__(
        self,
        config: Config,
        ssl_context: ssl.SSLContext | None,
        alpn: list[str],
        quic: Any,
        ctx: Any,
    ) -> None:
        self.config = config
        self._alpn = alpn
        #: The context the listeners were created with; its SNI callback picks ``_current``.
        self._listening = ssl_context
        self._current = ssl_context
        self._quic = quic
        self._ctx = ctx
        tls = config.tls
        self.files = [path for path in (tls.certfile, tls.keyfile, tls.ca_certs) if path]
        #: Why there is nothing to reload (certificate from memory or a ready context).
        self.unavailable: str | None = None
        if tls.ssl_context is not None:
            self.unavailable = "the TLS context was given ready-made (ssl_context)"
        elif not tls.certfile:
            self.unavailable = "the certificate was given in memory (cert_data, --selfcert)"
        self._timer: asyncio.TimerHandle | None = None
        self._seen: Signature = self._signature()
        self._pending: Signature | None = None

    # ------------------------------------------------------------ reloading

    def reload(self, reason: str) -> bool:
        """Read the files again and use them for new handshakes; False if they are unusable."""
        if self.unavailable is not None:
            logger.warning("Received %s: nothing to reload, %s", reason, self.unavailable)
            return False
        try:
            fresh = build_ssl_context(self.config.tls, self._alpn) if self._current else None
            quic_material = self._load_quic() if self._quic is not None else None
        except StartupError as exc:
            logger.error(
                "TLS certificate reload (%s) failed; keeping the current certificate: %s",
                reason,
                str(exc).removeprefix("TLS configuration error: "),
            )
            return False
        if fresh is not None:
            self._current = fresh
            if self._listening is not None:
                # From the first reload on; until then handshakes pay for no callback.
                self._listening.sni_callback = self._choose_context
        if quic_material is not None:
            certificate, chain, key = quic_material
            self._quic.certificate = certificate
            self._quic.certificate_chain = chain
            self._quic.private_key = key
        info = getattr(self._ctx, "tls_info", None)
        if info is not None:
            info.server_cert = read_server_cert(self.config.tls)
        logger.info(
            "Reloaded the TLS certificate (%s): %s; new handshakes use it", reason, self.describe()
        )
        return True

    def _choose_context(
        self, ssl_object: Any, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        """SNI callback of the listeners' context: each handshake gets the newest one."""
        current = self._current
        if current is not None and current is not context:
            ssl_object.context = current

    def _load_quic(self) -> tuple[Any, list[Any], Any]:
        from .h3 import quic_configuration

        scratch = quic_configuration(self.config)
        return scratch.certificate, list(scratch.certificate_chain), scratch.private_key

    def describe(self) -> str:
        """``certs/cert.pem, CN=example.com, valid until ..., SHA-256 AB:CD:...`` of the leaf."""
        path = self.config.tls.certfile or "?"
        try:
            from cryptography import x509

            with open(path, "rb") as fh:
                leaf = x509.load_pem_x509_certificates(fh.read())[0]
        except (OSError, ValueError):
            return path
        der = leaf.public_bytes(encoding=_der())
        digest = hashlib.sha256(der).hexdigest().upper()
        fingerprint = ":".join(digest[i : i + 2] for i in range(0, 16, 2))
        # cryptography < 42 has only the naive (UTC) not_valid_after.
        expiry = getattr(leaf, "not_valid_after_utc", None) or leaf.not_valid_after
        until = expiry.strftime("%Y-%m-%d %H:%M UTC")
        return (
            f"{path}, {leaf.subject.rfc4514_string()}, valid until {until}, SHA-256 {fingerprint}…"
        )

    # ------------------------------------------------------------ watching

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """``--ssl-watch``: look at the files every :data:`WATCH_INTERVAL` seconds."""
        if self.unavailable is not None:
            logger.warning("--ssl-watch: nothing to watch, %s", self.unavailable)
            return
        logger.info("Watching %s for a renewed certificate", ", ".join(self.files))
        self._timer = loop.call_later(WATCH_INTERVAL, self._look, loop)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _look(self, loop: asyncio.AbstractEventLoop) -> None:
        current = self._signature()
        if current != self._seen:
            if current == self._pending:
                # Unchanged for one interval: the writer is done.
                self._seen, self._pending = current, None
                self.reload("the files changed")
            else:
                self._pending = current
        else:
            self._pending = None
        self._timer = loop.call_later(WATCH_INTERVAL, self._look, loop)

    def _signature(self) -> Signature:
        signature: list[FileState] = []
        for path in self.files:
            try:
                info = os.stat(path)
            except OSError:
                signature.append(None)
                continue
            signature.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns))
        return tuple(signature)


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER
