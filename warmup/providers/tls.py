"""The process's one verifying SSL context, shared by both HTTP clients of the providers: the pooled httpx
client of `http` (sends) and the keep-alive reads of `keepalive`. It lives here, below both, so neither
of them imports the other for it.
"""

from __future__ import annotations

import ssl
import threading

import httpx

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """The process's ONE verifying SSL context (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``, as httpx
    picks by default), built on first use.

    Each `httpx.Client` would otherwise load the CA bundle into a context of its own: 20-45 ms of CPU
    and about 0.8 MiB per client, i.e. per number a worker touches. A context is safe to share between
    clients and threads once built; certificate and host name verification stay on.
    """
    global _context
    with _lock:
        if _context is None:
            _context = httpx.create_ssl_context()
        return _context
