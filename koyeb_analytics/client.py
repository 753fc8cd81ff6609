"""KoyebClient: one request path with auth, timeouts, retries and error mapping."""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.request
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.retry import Retry

from .errors import ConfigurationError, MalformedResponseError, TransportError, error_class

log = logging.getLogger("koyeb_analytics")

DEFAULT_BASE_URL = "https://app.koyeb.com"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
Params = Mapping[str, Any] | Sequence[tuple[str, Any]]
_END = object()


def _read_cli_config(path: Path) -> dict[str, str]:
    """Read the flat ``key: value`` YAML the Koyeb CLI writes (token, url, …)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if ":" not in line or line.lstrip().startswith("#") or line.startswith((" ", "\t")):
            continue
        key, _, value = line.partition(":")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def discover_credentials() -> tuple[str, str | None]:
    """Find a token and base URL the way the Koyeb tools do.

    The token comes from ``KOYEB_TOKEN``, then ``KOYEB_API_TOKEN``, then the CLI config
    file (``$KOYEB_CONFIG`` or ``~/.koyeb.yaml``, key ``token``). The base URL comes from
    ``KOYEB_URL``, then the config file's ``url``, else ``None`` (the default).

    Raises
    ------
    ConfigurationError
        When no token is found; the message says where it looked.
    """
    config_path = Path(os.environ.get("KOYEB_CONFIG") or Path.home() / ".koyeb.yaml")
    config: dict[str, str] = {}
    config_note = "not found"
    if config_path.is_file():
        try:
            config = _read_cli_config(config_path)
            config_note = "no 'token' key" if not config.get("token") else "found"
        except (OSError, UnicodeDecodeError) as exc:
            config_note = f"unreadable ({type(exc).__name__})"
    token = (os.environ.get("KOYEB_TOKEN") or os.environ.get("KOYEB_API_TOKEN")
             or config.get("token"))
    if not token:
        raise ConfigurationError(
            "no Koyeb API token found: looked in $KOYEB_TOKEN, $KOYEB_API_TOKEN and the "
            f"CLI config file {config_path} ({config_note}). Set KOYEB_TOKEN, or use "
            "ka.simulate() to work without an account."
        )
    base_url = os.environ.get("KOYEB_URL") or config.get("url") or None
    return token, base_url


def _pool_manager(base_url: str, maxsize: int) -> urllib3.PoolManager:
    """A connection pool, through the environment's proxy when one applies."""
    import certifi

    parts = urlsplit(base_url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    options: dict[str, Any] = {"num_pools": 4, "maxsize": maxsize, "ca_certs": certifi.where()}
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


class KoyebClient:
    """A client for the Koyeb instance API.

    Every call goes through one request path that adds the bearer token, a timeout,
    retries (GETs only, on 429/502/503/504 and connection errors, honouring
    ``Retry-After``, exponential backoff with jitter) and maps failures onto the
    :class:`~koyeb_analytics.errors.KoyebError` tree. The token never appears in a
    repr, a log line or an error message.

    Parameters
    ----------
    token
        A Koyeb API token. ``None`` looks it up like :meth:`from_env`.
    base_url
        API root; defaults to ``https://app.koyeb.com``.
    timeout
        Seconds to wait for a connection and for each read.
    max_retries
        Retries of one request before its error is raised.
    backoff_factor, backoff_max
        Exponential backoff between retries: ``backoff_factor * 2**n`` seconds (plus
        jitter), at most ``backoff_max``.
    concurrency
        How many pages or instances the loaders fetch at once (1: sequentially).
    session
        A ``urllib3.PoolManager`` to send requests through (for custom certificates or
        proxies); by default one is made with a pool of ``max(concurrency, 10)``
        connections per host, certifi's CA bundle, and the proxy from
        ``HTTPS_PROXY``/``HTTP_PROXY`` unless ``NO_PROXY`` covers the host.

    Examples
    --------
    >>> client = KoyebClient.from_env()        # doctest: +SKIP
    >>> client.get("/v1/instances", {"limit": 1})["count"]   # doctest: +SKIP
    42
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff_factor: float = 0.5,
        backoff_max: float = 30.0,
        concurrency: int = 4,
        session: urllib3.PoolManager | None = None,
    ) -> None:
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ValueError("token must be a non-empty string")
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        if session is not None and not isinstance(session, urllib3.PoolManager):
            raise TypeError("session must be a urllib3.PoolManager (or ProxyManager)")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if token is None:
            token, found_url = discover_credentials()
            base_url = base_url or found_url
        base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.concurrency = concurrency
        self._token = token
        self._headers = {"Accept": "application/json", "User-Agent": "koyeb-analytics",
                         "Authorization": f"Bearer {token}"}
        self._retry = Retry(
            total=max_retries, connect=max_retries, read=max_retries, status=max_retries,
            other=0, allowed_methods=frozenset({"GET"}), status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_factor, backoff_max=backoff_max,
            backoff_jitter=backoff_factor, respect_retry_after_header=True,
            raise_on_status=False,
        )
        self._timeout = urllib3.Timeout(connect=self.timeout, read=self.timeout)
        self._own_session = session is None
        self.session = session or _pool_manager(base_url, max(concurrency, 10))
        self._prefix = parts.path

    @classmethod
    def from_env(cls, **options: Any) -> KoyebClient:
        """Build a client from ``KOYEB_TOKEN``/``KOYEB_API_TOKEN`` or the CLI config file.

        Raises :class:`~koyeb_analytics.errors.ConfigurationError` naming the places it
        looked when no token is found.
        """
        token, base_url = discover_credentials()
        options.setdefault("base_url", base_url)
        return cls(token, **options)

    def __repr__(self) -> str:
        return (f"KoyebClient(base_url={self.base_url!r}, token=<hidden>, "
                f"concurrency={self.concurrency})")

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.clear()

    def __enter__(self) -> KoyebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "<hidden>") if self._token else text

    def get(self, path: str, params: Params | None = None) -> dict[str, Any]:
        """GET ``path`` (e.g. ``/v1/instances``) and return the decoded JSON object.

        List values in ``params`` are sent as repeated keys, as the API expects.
        """
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params, doseq=True)
        started = time.perf_counter()
        try:
            resp = self.session.request("GET", url, headers=self._headers, retries=self._retry,
                                        timeout=self._timeout, preload_content=True,
                                        redirect=False)
            content = resp.data
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            log.debug("GET %s failed: %s", path, type(reason).__name__)
            raise TransportError(self._scrub(
                f"GET {path} failed: {type(reason).__name__}: {reason}")) from None
        log.debug("GET %s -> %s (%d bytes, %.1f ms)", path, resp.status, len(content),
                  (time.perf_counter() - started) * 1000)
        return self._decode(resp.status, content, path)

    def _decode(self, status: int, content: bytes, path: str) -> dict[str, Any]:
        """Map an error status onto the exception tree, else decode the JSON object."""
        if status >= 400:
            raise self._api_error(status, content, path)
        try:
            data = json.loads(content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            snippet = self._scrub(content[:200].decode("utf-8", "replace"))
            raise MalformedResponseError(
                f"GET {path} returned {status} with a body that is not a JSON "
                f"object ({len(content)} bytes, starting {snippet!r})",
                status=status, body=snippet)
        return data

    def get_each(self, path: str, params: Iterable[Params], *,
                 last: Callable[[dict[str, Any]], bool] | None = None,
                 ) -> Generator[dict[str, Any], None, None]:
        """GET ``path`` once per item of ``params``; yield the decoded replies in order.

        From this one thread, on a connection of this call's own, the next request goes
        out as soon as a reply's bytes are in: the server prepares it while this reply is
        decoded and used. Meant for fast servers (loopback, same network), where worker
        threads would only contend for the interpreter lock. A request that fails in
        transit or answers anything but 200 is sent again through :meth:`get`, with its
        retries and error mapping. A consumer that stops early leaves one request
        unread. With ``last``, each reply is decoded and passed to it before the next
        request goes out, and none does once it returns true: no request is wasted on
        a listing that ends (the server then works while the caller uses the reply).
        Through a proxy or a caller-supplied ``session`` this is :meth:`get` in a loop.
        """
        items = iter(params)
        if not self._own_session or isinstance(self.session, urllib3.ProxyManager):
            for params_item in items:
                reply = self.get(path, params_item)
                yield reply
                if last is not None and last(reply):
                    return
            return
        conn: HTTPConnection | None = None

        def send(query: Params) -> bool:
            nonlocal conn
            if conn is None:
                conn = self._new_connection()
            target = self._prefix + path + ("?" + urlencode(query, doseq=True) if query else "")
            try:
                conn.request("GET", target, headers=self._headers)
                return True
            except (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException):
                conn.close()
                conn = None
                return False

        try:
            item: Any = next(items, _END)
            sent = item is not _END and send(item)
            while item is not _END:
                content = None
                if sent and conn is not None:
                    content = self._receive(conn)
                    if content is None:
                        conn = None  # closed by _receive
                    else:
                        log.debug("GET %s -> 200 (%d bytes, pipelined)", path, len(content))
                if last is None:  # the next request goes out before decoding
                    following: Any = next(items, _END)
                    sent = following is not _END and send(following)
                reply = (self._decode(200, content, path) if content is not None
                         else self.get(path, item))
                if last is not None:
                    following = _END if last(reply) else next(items, _END)
                    sent = following is not _END and send(following)
                yield reply
                item = following
        finally:
            if conn is not None:
                conn.close()

    def _new_connection(self) -> HTTPConnection:
        parts = urlsplit(self.base_url)
        if parts.scheme == "https":
            import certifi

            return HTTPSConnection(parts.hostname or "", parts.port, timeout=self.timeout,
                                   ca_certs=certifi.where())
        return HTTPConnection(parts.hostname or "", parts.port, timeout=self.timeout)

    @staticmethod
    def _receive(conn: HTTPConnection) -> bytes | None:
        """The body of a 200 reply on ``conn``; None (connection closed) on anything else."""
        try:
            resp = conn.getresponse()
            content = resp.data
            if resp.status == 200:
                return content
        except (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException):
            pass
        conn.close()
        return None

    def _api_error(self, status: int, content: bytes, path: str) -> Exception:
        code, message = "", ""
        fields: list[Any] = []
        try:
            body = json.loads(content) if content else None
        except ValueError:
            body = None
        if isinstance(body, dict):
            raw_code = body.get("code", "")
            code = raw_code if isinstance(raw_code, str) else str(raw_code)
            message = str(body.get("message") or "")
            raw_fields = body.get("fields")
            fields = raw_fields if isinstance(raw_fields, list) else []
        elif status == 429:
            code, message = "rate_limit_exceeded", "Rate limit exceeded"
        elif content:
            message = "non-JSON error body: " + content[:120].decode("utf-8", "replace").strip()
        cls = error_class(status)
        return cls(status, self._scrub(code), self._scrub(message), fields, path=path)
