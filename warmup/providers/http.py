"""What the HTTP providers share: the process's one pooled httpx client (each request carries its
number's token; TLS with the one context of `tls`), reads through the keep-alive client (`keepalive`),
and the POST of a JSON send up to where each provider reads its own 2xx answer.

Actors run in threads; `httpx.Client` is thread-safe and reuses connections, so a provider object is
built once per number and shared by the worker's threads, and all of them share one client.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Self
from urllib.parse import urlencode

import httpx

from warmup import __version__
from warmup.providers import keepalive
from warmup.providers.base import OutcomeAction, SendResult
from warmup.providers.errors import (
    ProviderKind,
    Rule,
    classify_error_response,
    classify_transport_error,
    clean_reason,
    transport_rule,
)
from warmup.providers.tls import shared_ssl_context
from warmup.secrets import Secret

USER_AGENT = f"warmup/{__version__}"

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0, write=10.0, pool=5.0)
"""Read 30 s: a send with typing_time up to 60 s may hold the answer, callers pass more when needed."""


def as_secret(token: str | Secret) -> Secret:
    """Wrap a plain token (tests, factory) so it is masked from here on."""
    return token if isinstance(token, Secret) else Secret(token)


def as_timeout(timeout: httpx.Timeout | float | None) -> httpx.Timeout:
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(float(timeout))


_lock = threading.Lock()
_env_proxies: bool | None = None


def proxies_in_env() -> bool:
    """Whether the environment names a proxy (``HTTPS_PROXY``...), looked up once per process.

    httpx scans the whole environment for proxy variables in every new client; a fleet worker's
    environment holds a token variable per number, so that scan cost ~10 ms per client at 2,000
    numbers. Without proxy variables the scan finds nothing, and skipping it changes nothing.
    """
    global _env_proxies
    with _lock:
        if _env_proxies is None:
            _env_proxies = bool(urllib.request.getproxies())
        return _env_proxies


SHARED_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=4.0)
"""The process's one connection pool: every worker thread and risk-meter thread at once, with room.
Idle connections are dropped before typical server keep-alive timeouts (uvicorn: 5 s), so a send is
rarely written onto a socket the server is closing, which would make its outcome UNKNOWN."""

_client: httpx.Client | None = None


def shared_client() -> httpx.Client:
    """The process's ONE httpx client and connection pool, used by every number's provider, built on
    first use (verifying TLS with `shared_ssl_context`); redirects are not followed (a POST must not
    be replayed).

    Each request carries its number's own Authorization header, so sharing never shares a token. With
    a client per number, every number a worker touched for the first time paid a client (~0.1 ms of
    CPU) and a TCP (and TLS) handshake: in a fleet whose numbers each send now and then, most sends.
    """
    global _client
    context = shared_ssl_context()
    proxies = proxies_in_env()  # proxies only: the shared SSL context already honours SSL_CERT_*
    with _lock:
        if _client is None:
            _client = httpx.Client(
                transport=httpx.HTTPTransport(verify=context, limits=SHARED_LIMITS),
                trust_env=proxies,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                timeout=DEFAULT_TIMEOUT,
                follow_redirects=False,
            )
        return _client


def read_failure(exc: BaseException) -> Rule:
    """What an exception raised by `HttpProvider._read` means: httpx's own by `transport_rule`; from
    `keepalive`, a URL that is not http(s) is the number's misconfiguration, anything else (refused,
    reset, timed out, a broken answer) is worth trying again later."""
    if isinstance(exc, httpx.HTTPError):
        return transport_rule(exc)
    if isinstance(exc, ValueError):
        return Rule(OutcomeAction.STOP_NUMBER, "provider URL misconfigured (not an http(s) URL)")
    return Rule(OutcomeAction.RETRY, f"the call failed ({type(exc).__name__})")


JSON_HEADERS = {"Content-Type": "application/json"}


def encode_json(payload: Any) -> bytes:
    """Serialise a request body BEFORE the call, so a bad body is a FAIL (never sent), not a transport
    error whose outcome would be unknown. Raises TypeError/ValueError for non-JSON values."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class HttpProvider:
    """Base of the HTTP providers: the masked token, the client, reasons scrubbed of the token, and
    `_post_send` (build, POST and classify a send; only a 2xx answer is left to the provider)."""

    kind: ProviderKind  # which error tables `classify_error_response` uses

    def __init__(self, token: str | Secret, base_url: str, timeout: httpx.Timeout | float | None) -> None:
        self._token = as_secret(token)
        self.base_url = base_url.rstrip("/")
        self.timeout = as_timeout(timeout)
        self._auth = {"Authorization": f"Bearer {self._token.reveal()}"}
        self._read_headers = {**self._auth, "Accept": "application/json", "User-Agent": USER_AGENT}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: connections belong to the process's one client (`shared_client`)."""

    def _request(self, method: str, path: str, **options: Any) -> httpx.Response:
        """One request through the process's client, with this number's token; ``path`` is relative
        to the base URL, or absolute."""
        headers = {**options.pop("headers", {}), **self._auth}
        return shared_client().request(
            method, self._url(path), headers=headers, timeout=self.timeout, **options
        )

    def _url(self, path: str) -> str:
        """``path`` relative to the base URL, or an absolute URL as it is."""
        return path if "://" in path else self.base_url + path

    def _read(
        self, path: str, params: Mapping[str, str | int] | None = None, *, method: str = "GET"
    ) -> httpx.Response | keepalive.Answer:
        """A read that is safe to repeat (a list, the health check, the risk meter): through `keepalive`
        (a quarter of httpx's CPU per request), or httpx when the environment names a proxy. ``path``
        is relative to the base URL, or absolute. Raises as the client does; see `read_failure`."""
        url = self._url(path)
        if params:
            url += "?" + urlencode(params)
        if proxies_in_env():
            return self._request(method, url)
        return keepalive.request(
            method,
            url,
            self._read_headers,
            connect_timeout=self.timeout.connect or DEFAULT_TIMEOUT.connect or 5.0,
            read_timeout=self.timeout.read or DEFAULT_TIMEOUT.read or 30.0,
        )

    def _reason(self, text: str) -> str:
        return clean_reason(text, [self._token])

    def _error_answer(self, response: httpx.Response | keepalive.Answer) -> SendResult:
        """A non-2xx answer classified by the provider's tables."""
        return classify_error_response(
            self.kind, response.status_code, response.headers, response.content, [self._token]
        )

    def _post_send(
        self, path: str, payload: Any, read_answer: Callable[[httpx.Response], SendResult]
    ) -> SendResult:
        """POST one send; never raises. A body that is not JSON is a FAIL (nothing went out), a failed
        call or a non-2xx answer is classified (`warmup.providers.errors`), a 2xx goes to `read_answer`."""
        try:
            content = encode_json(payload)
        except Exception as exc:  # e.g. a body that is not text: our bug, nothing was sent
            return SendResult(
                OutcomeAction.FAIL, None, self._reason(f"not sent: cannot build the request: {exc!r}")
            )
        try:
            response = self._request("POST", path, content=content, headers=JSON_HEADERS)
        except Exception as exc:  # any failure of the call is an outcome, never a crash
            return classify_transport_error(exc, [self._token])
        if not 200 <= response.status_code < 300:
            return self._error_answer(response)
        return read_answer(response)
