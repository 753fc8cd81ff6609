"""KoyebClient: one request path with auth, total deadlines, retries, size caps, errors.

Long because the one request path is here whole (credentials, the attempt with its
deadline and size cap, retries, error mapping, and the pipelined reads that share
them); split, one mechanism would be spread over several files. The network itself
(TLS, proxies, deadlines on sockets) is ``_network``.
"""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import json
import logging
import math
import os
import random
import time
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import (
    ConfigurationError,
    DeadlineExceeded,
    MalformedResponseError,
    TransportError,
    error_class,
)
from ._network import WATCHDOG, Network, target_of
from ._paging import MAX_LIMIT, PAGING_STYLES, Page, PageStats, listing

log = logging.getLogger("koyeb_analytics")

DEFAULT_BASE_URL = "https://app.koyeb.com"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_MAX_RESPONSE_BYTES = 64 * 2**20
Params = Mapping[str, Any] | Sequence[tuple[str, Any]]
_END = object()


def _read_cli_config(path: Path) -> dict[str, str]:
    """Read the flat ``key: value`` YAML the Koyeb CLI writes (token, url, …)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if ":" not in line or line.startswith(("#", " ", "\t")):
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

    Examples
    --------
    >>> from unittest import mock
    >>> env = {"KOYEB_TOKEN": "a-token", "KOYEB_URL": "http://127.0.0.1:8000"}
    >>> with mock.patch.dict("os.environ", env):
    ...     token, url = ka.api.discover_credentials()
    >>> url
    'http://127.0.0.1:8000'
    """
    config_path = Path(os.environ.get("KOYEB_CONFIG") or Path.home() / ".koyeb.yaml")
    config: dict[str, str] = {}
    config_note = "not found"
    if config_path.is_file():
        try:
            config = _read_cli_config(config_path)
            config_note = "no 'token' key"  # said only when no token was found
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


def _positive(name: str, value: Any, *, zero: bool = False) -> float:
    """A finite positive (or, with ``zero``, non-negative) number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or value < 0 or (value == 0 and not zero):
        kind = "non-negative" if zero else "positive"
        raise ValueError(f"{name} must be a finite {kind} number, got {value!r}")
    return float(value)


def _whole(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "positive" if low == 1 else "non-negative"
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}")
    return value


def retry_after_seconds(value: str | None) -> float | None:
    """The delay a ``Retry-After`` header asks for, or None when it says nothing usable.

    Both forms are read (seconds, or an HTTP date); anything else is no hint.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def read_body(resp: http.client.HTTPResponse, cap: int, what: str) -> bytes:
    """Read a reply's body, decoding gzip/deflate, refusing more than ``cap`` bytes.

    The cap holds for what is decoded, so a small gzip body that would inflate past it
    (a decompression bomb) is stopped after ``cap`` bytes, as is an endless chunked
    body. Raises :class:`MalformedResponseError` saying which.
    """
    declared = resp.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > cap:
        raise MalformedResponseError(
            f"{what}: the reply announces {int(declared)} bytes, over the "
            f"{cap}-byte cap (max_response_bytes)", status=resp.status)
    encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding in ("identity", "") and declared and declared.strip().isdigit():
        return resp.read()  # bounded by the check above; the watchdog bounds the time
    if encoding in ("gzip", "x-gzip", "deflate"):
        decoder: Any = zlib.decompressobj(47)  # gzip or zlib header, detected
    elif encoding in ("identity", ""):
        decoder = None
    else:
        raise MalformedResponseError(f"{what}: unsupported Content-Encoding {encoding!r}",
                                     status=resp.status)
    parts: list[bytes] = []
    size = 0
    while True:
        data = resp.read1(1 << 16)
        if not data:
            break
        if decoder is not None:
            try:
                data = decoder.decompress(data, cap + 1 - size)
            except zlib.error as exc:
                raise MalformedResponseError(f"{what}: the {encoding} body is corrupt ({exc})",
                                             status=resp.status) from None
        size += len(data)
        if size > cap:
            how = f"decoded from {encoding} " if decoder is not None else ""
            raise MalformedResponseError(
                f"{what}: the reply {how}holds more than the {cap}-byte cap "
                "(max_response_bytes); stopped reading", status=resp.status)
        parts.append(data)
    return b"".join(parts)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Reply:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class KoyebClient:
    """A client for the Koyeb instance API.

    Every call goes through one request path that adds the bearer token, holds a total
    deadline per attempt (connect, send and every read), caps the size of a reply,
    retries (GETs on 429/502/503/504 and transport failures, with exponential backoff
    and jitter; ``Retry-After`` is honoured up to ``backoff_max``) and maps failures
    onto the :class:`~koyeb_analytics.errors.KoyebError` tree. Redirects are never
    followed. The token never appears in a repr, a log line or an error message.

    Parameters
    ----------
    token
        A Koyeb API token. ``None`` looks it up like :meth:`from_env`.
    base_url
        API root; defaults to ``https://app.koyeb.com``.
    timeout
        Seconds one attempt of a request may take in all (connect, send, every read).
    max_retries
        Retries of one request before its error is raised. A request with its retries
        takes at most ``(max_retries + 1) * timeout + max_retries * backoff_max``.
    backoff_factor, backoff_max
        Exponential backoff between retries: ``backoff_factor * 2**n`` seconds (plus
        jitter), at most ``backoff_max``; also the cap of a ``Retry-After``.
    concurrency
        How many pages or instances the loaders fetch at once (1: sequentially).
    max_response_bytes
        The most one reply may hold, after decoding (default 64 MiB).
    ca_bundle, client_cert, client_key, proxy, no_proxy
        The network, shared by REST and exec: see :class:`~koyeb_analytics.Network`.
        By default the CA bundle comes from ``$REQUESTS_CA_BUNDLE``, ``$SSL_CERT_FILE``
        or ``$CURL_CA_BUNDLE``, else certifi; the proxy from ``$HTTPS_PROXY``/
        ``$HTTP_PROXY`` unless ``$NO_PROXY`` covers the host.
    network
        A ready :class:`~koyeb_analytics.Network` instead of the five options above.
    read_ahead
        How listings request pages ahead: ``"pipelined"`` (one connection; the next
        request goes out while a reply is used: best when the server answers in well
        under a millisecond, as on loopback), ``"threads"`` (``concurrency`` requests
        at a time: best over a real network), or ``"none"``. Default: pipelined for a
        loopback host, threads otherwise. A setting, never a timing rule, so the same
        code runs on every machine.

    Examples
    --------
    >>> client = KoyebClient.from_env()  # needs a Koyeb account's token  # doctest: +SKIP
    >>> client.get("/v1/instances", {"limit": 1})["count"]  # needs it too  # doctest: +SKIP
    42
    >>> local = KoyebClient(sim.token, base_url=sim.url)   # the simulator of the doctests
    >>> local.get("/v1/instances", {"limit": 1})["count"] > 0
    True
    """

    simulated: bool = False
    """True for a client of the embedded simulator: what it loads is labelled simulated."""

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
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ca_bundle: str | os.PathLike[str] | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        proxy: str | None = None,
        no_proxy: str | None = None,
        network: Network | None = None,
        read_ahead: str | None = None,
    ) -> None:
        if token is not None and (not isinstance(token, str) or not token.strip()
                                  or any(c in token for c in "\r\n\0,")):
            raise ValueError("token must be a non-empty string without commas or line breaks")
        self.concurrency = _whole("concurrency", concurrency, 1)
        self.max_retries = _whole("max_retries", max_retries, 0)
        self.max_response_bytes = _whole("max_response_bytes", max_response_bytes, 1)
        self.timeout = _positive("timeout", timeout)
        self.backoff_factor = _positive("backoff_factor", backoff_factor, zero=True)
        self.backoff_max = _positive("backoff_max", backoff_max, zero=True)
        if base_url is not None and not isinstance(base_url, str):
            raise TypeError(f"base_url must be a string, got {type(base_url).__name__}")
        if network is not None and not isinstance(network, Network):
            raise TypeError("network must be a koyeb_analytics.Network")
        if token is None:
            token, found_url = discover_credentials()
            base_url = base_url or found_url
        base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
                or parts.fragment:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if read_ahead is None:
            read_ahead = "pipelined" if _is_loopback(parts.hostname or "") else "threads"
        if read_ahead not in ("pipelined", "threads", "none"):
            raise ValueError(f"read_ahead must be 'pipelined', 'threads' or 'none', "
                             f"got {read_ahead!r}")
        self.read_ahead = read_ahead
        self.base_url = base_url
        self.network = network or Network(ca_bundle=ca_bundle, client_cert=client_cert,
                                          client_key=client_key, proxy=proxy,
                                          no_proxy=no_proxy)
        self._token = token
        self._headers = {"Accept": "application/json", "Accept-Encoding": "gzip",
                         "User-Agent": "koyeb-analytics", "Authorization": f"Bearer {token}"}
        self._scheme, self._host, self._port, self._prefix = target_of(base_url)
        # Plain http through a proxy: requests name the whole URL (decided once).
        route = self.network.proxy_for(self._scheme, self._host, self._port)
        self._forward_proxy = route is not None and self._scheme == "http"
        if self._forward_proxy and route is not None and route.authorization:
            self._headers["Proxy-Authorization"] = route.authorization
        self._idle: deque[http.client.HTTPConnection] = deque()
        self._pool_size = max(concurrency, 10)

    @classmethod
    def from_env(cls, **options: Any) -> KoyebClient:
        """Build a client from ``KOYEB_TOKEN``/``KOYEB_API_TOKEN`` or the CLI config file.

        The network (CA bundle, proxy, ``NO_PROXY``) comes from the environment as for
        any client. Raises :class:`~koyeb_analytics.errors.ConfigurationError` naming
        the places it looked when no token is found.
        """
        token, base_url = discover_credentials()
        options.setdefault("base_url", base_url)
        return cls(token, **options)

    def __repr__(self) -> str:
        return (f"KoyebClient(base_url={self.base_url!r}, token=<hidden>, "
                f"concurrency={self.concurrency})")

    def close(self) -> None:
        """Close the pooled connections."""
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:
                break

    def __enter__(self) -> KoyebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what exec needs ----------------------------------------------------------
    def scrub(self, text: str) -> str:
        """``text`` with the token replaced by ``<hidden>``."""
        return text.replace(self._token, "<hidden>")  # never empty: checked at init

    def websocket_url(self, path: str) -> str:
        """The ws(s):// URL of ``path`` on this API."""
        scheme = "wss" if self._scheme == "https" else "ws"
        return f"{scheme}://{urlsplit(self.base_url).netloc}{self._prefix}{path}"

    def auth_subprotocols(self) -> list[str]:
        """The websocket subprotocols that carry the token: ``["Bearer", token]``."""
        return ["Bearer", self._token]

    def error_from_reply(self, status: int, content: bytes, path: str) -> Exception:
        """The :class:`~koyeb_analytics.errors.APIError` for an error reply's body."""
        return self._api_error(status, content, path)

    # -- the request path ---------------------------------------------------------
    def _target(self, path: str, params: Params | None) -> str:
        target = self._prefix + path + ("?" + urlencode(params, doseq=True) if params else "")
        if self._forward_proxy:
            return f"http://{urlsplit(self.base_url).netloc}{target}"  # absolute form
        return target

    def _connection(self, deadline: float) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self._host, self._port)
        # Never let http.client reconnect by itself (after a "Connection: close" reply):
        # its own socket would skip TLS, the proxy and the deadline, and an https token
        # would go out in the clear. A closed connection raises; the caller opens anew.
        conn.auto_open = 0
        conn.sock = self.network.open(self._scheme, self._host, self._port, deadline=deadline)
        return conn

    def _send(self, conn: http.client.HTTPConnection, target: str, deadline: float) -> None:
        sock = conn.sock
        if sock is not None:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
        conn.request("GET", target, headers=self._headers)

    def _receive(self, conn: http.client.HTTPConnection, path: str, deadline: float,
                 stage: list[str] | None = None) -> _Reply:
        assert conn.sock is not None
        with WATCHDOG.guard(conn.sock, deadline):
            resp = conn.getresponse()
            if stage is not None:
                stage.append("answered")
            body = read_body(resp, self.max_response_bytes, f"GET {path}")
        if time.monotonic() >= deadline:
            # The watchdog shut the socket: what was read may look whole and is not.
            raise DeadlineExceeded(f"GET {path}: no complete reply in time")
        return _Reply(resp.status, resp.msg, body)

    def _exchange(self, target: str, path: str) -> _Reply:
        """One attempt: a pooled connection (or a new one), the request, the whole reply.

        A kept-alive connection that the server closed meanwhile fails before any answer;
        the request then goes once more on a new connection, within the same deadline.
        """
        deadline = time.monotonic() + self.timeout
        error: TransportError | None = None
        for reused in (True, False):
            conn = None
            if reused:
                try:
                    conn = self._idle.pop()
                except IndexError:
                    continue
            stage: list[str] = []
            try:
                if conn is None:
                    conn = self._connection(deadline)
                self._send(conn, target, deadline)
                reply = self._receive(conn, path, deadline, stage)
            except (OSError, http.client.HTTPException, TransportError) as exc:
                if conn is not None:
                    conn.close()
                if time.monotonic() >= deadline or isinstance(exc, DeadlineExceeded):
                    error = DeadlineExceeded(
                        f"GET {path}: no complete reply within {self.timeout:g} s")
                elif reused and not stage:
                    continue
                else:
                    why = str(exc) if isinstance(exc, TransportError) else \
                        f"{type(exc).__name__}: {exc}"
                    error = TransportError(self.scrub(f"GET {path} failed: {why}"))
                break
            except BaseException:
                if conn is not None:
                    conn.close()
                raise
            if conn.sock is None or len(self._idle) >= self._pool_size:
                conn.close()
            else:
                self._idle.append(conn)
            return reply
        assert error is not None
        raise error

    def _delay(self, attempt: int, retry_after: str | None = None) -> float:
        hint = retry_after_seconds(retry_after)
        if hint is not None:
            return min(hint, self.backoff_max)
        backoff = self.backoff_factor * 2 ** attempt + random.uniform(0, self.backoff_factor)
        return float(min(backoff, self.backoff_max))

    def _request(self, path: str, params: Params | None = None) -> _Reply:
        """Send a GET with retries; return the final reply (any status)."""
        target = self._target(path, params)
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                reply = self._exchange(target, path)
            except TransportError as exc:
                log.debug("GET %s failed: %s", path, type(exc).__name__)
                if attempt >= self.max_retries:
                    raise
                delay = self._delay(attempt)
                log.info("%s: %s; retrying in %.1f s (retry %d of %d)", self._host, exc,
                         delay, attempt + 1, self.max_retries)
                time.sleep(delay)
                attempt += 1
                continue
            log.debug("GET %s -> %s (%d bytes, %.1f ms)", path, reply.status, len(reply.body),
                      (time.perf_counter() - started) * 1000)
            if reply.status in RETRY_STATUSES and attempt < self.max_retries:
                delay = self._delay(attempt, reply.headers.get("Retry-After"))
                log.info("%s answered %d to GET %s; retrying in %.1f s (retry %d of %d)",
                         self._host, reply.status, path, delay, attempt + 1,
                         self.max_retries)
                time.sleep(delay)
                attempt += 1
                continue
            return reply

    def get(self, path: str, params: Params | None = None, *,
            errors: str = "strict") -> dict[str, Any]:
        """GET ``path`` (e.g. ``/v1/instances``) and return the decoded JSON object.

        List values in ``params`` are sent as repeated keys, as the API expects. With
        ``errors="replace"``, bytes of the body that are not UTF-8 (an application's
        log line passed through) become U+FFFD instead of failing the whole reply.
        """
        reply = self._request(path, params)
        body = reply.body
        if errors != "strict" and reply.status < 300:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                body = body.decode("utf-8", errors).encode("utf-8")
        return self._decode(reply.status, body, path)

    def get_parsed(self, path: str, params: Params | None,
                   parse: Callable[[bytes], Any]) -> Any:
        """GET ``path`` and read a successful reply's body with ``parse``.

        For a reader of large replies that builds columns without a Python object per
        value. Where ``parse`` returns ``None`` (a body it does not take), the body is
        decoded as :meth:`get` decodes it; error statuses raise as in :meth:`get`.
        """
        reply = self._request(path, params)
        if reply.status < 300:
            parsed = parse(reply.body)
            if parsed is not None:
                return parsed
        return self._decode(reply.status, reply.body, path)

    def _decode(self, status: int, content: bytes, path: str) -> dict[str, Any]:
        """Map an error status onto the exception tree, else decode the JSON object."""
        if status >= 300:
            if 300 <= status < 400:
                raise MalformedResponseError(
                    f"GET {path} answered {status} (a redirect): not followed, so that the "
                    "token never goes to another host", status=status)
            raise self._api_error(status, content, path)
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            snippet = self.scrub(content[:200].decode("utf-8", "replace"))
            raise MalformedResponseError(
                f"GET {path} returned {status} with a body that is not a JSON "
                f"object ({len(content)} bytes, starting {snippet!r})",
                status=status, body=snippet)
        return data

    def get_each(self, path: str, params: Iterable[Params], *,
                 last: Callable[[dict[str, Any]], bool] | None = None,
                 ) -> Generator[dict[str, Any], None, None]:
        """GET ``path`` once per item of ``params``; yield the decoded replies in order.

        On one connection, the next request goes out as soon as a reply's bytes are in:
        the server prepares it while this reply is decoded and used. A request that
        fails in transit or answers anything but 200 is sent again through :meth:`get`,
        with its retries and error mapping. With ``last``, each reply is decoded and
        passed to it before the next request goes out, and none does once it returns
        true: no request is wasted on a listing that ends. A consumer that stops early
        leaves at most one request unread. Each request has the client's total deadline
        and size cap, as through :meth:`get`.
        """
        items = iter(params)
        conn: http.client.HTTPConnection | None = None
        deadline = 0.0

        def send(query: Params) -> bool:
            nonlocal conn, deadline
            deadline = time.monotonic() + self.timeout
            try:
                if conn is None:
                    conn = self._connection(deadline)
                self._send(conn, self._target(path, query), deadline)
                return True
            except (OSError, http.client.HTTPException, TransportError):
                if conn is not None:
                    conn.close()
                conn = None
                return False

        def receive() -> bytes | None:
            nonlocal conn
            assert conn is not None
            try:
                reply = self._receive(conn, path, deadline)
                if reply.status == 200:
                    return reply.body
            except (OSError, http.client.HTTPException, MalformedResponseError):
                pass
            conn.close()
            conn = None
            return None

        try:
            item: Any = next(items, _END)
            sent = item is not _END and send(item)
            while item is not _END:
                content = receive() if sent and conn is not None else None
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

    def pages(self, path: str, params: Params | None = None, *, key: str,
              paging: str | None = None, limit: int = MAX_LIMIT,
              stop: Callable[[Page], bool] | None = None,
              left: Callable[[Page], float] | None = None,
              seen: Callable[[Page], int] | None = None,
              stats: PageStats | None = None, progress: bool = False,
              desc: str | None = None) -> Iterator[Page]:
        """Yield the pages of a limit/offset listing, each a list of row dicts.

        The one way the package reads a listing: this method chooses the paging style
        and how pages are requested ahead (as :attr:`read_ahead` says), applies the
        stop rule, counts what it read in ``stats``, and never loops forever (a page
        that brings no new row, an empty page while the server claims more, or
        :data:`~koyeb_analytics.api._paging.MAX_PAGES` ends it with a
        :class:`~koyeb_analytics.errors.PaginationWarning`, kept in ``stats.notes``).
        Rows are not deduplicated here: ``seen`` tells the pager how many are new.
        Arguments are checked before any request; a request that fails raises after
        the pages received before it were yielded.

        Parameters
        ----------
        path
            The listing's path, e.g. ``"/v1/instances"``.
        params
            Query parameters (a mapping, or ``(name, value)`` pairs; list values are
            sent as repeated keys). ``limit`` and ``offset`` are added here.
        key
            The reply field that holds the rows (``"instances"``, ``"events"``...).
        paging
            ``"count"``: replies carry the total ``count``; after the first page, the
            pages up to it are requested ahead (on threads they arrive out of order),
            then read on while pages bring new rows. Only for listings whose new rows
            land at the end (oldest first). ``"has_next"``: pages in order, each at the
            offset of the rows received so far, while ``has_next`` (or a full page
            where the reply has no ``has_next``); read ahead with each page
            overlapping the previous one by a row, so rows inserted at the head cannot
            open a gap unnoticed: safe for newest-first listings. ``None`` (default):
            count style when there is no ``stop`` rule and the first reply carries a
            ``count`` but no ``has_next`` (the instance listing), has_next style
            otherwise (events, activities, deployments).
        limit
            Rows asked per page; a server that echoes or sends fewer is followed.
        stop
            ``stop(page)`` is called after each page, in order; true ends the listing
            after that page (e.g. a newest-first page whose oldest row is older than
            the window's start). Needs has_next paging.
        left
            With ``stop``: ``left(page)`` estimates how many more pages the listing
            needs (NaN: unknown), so that reading ahead on threads wastes at most
            ``concurrency - 1`` requests past the page that stops it; without it, a
            listing with a stop rule is read ahead only when pipelined.
        seen
            ``seen(page)`` returns how many of the page's rows are new (default: rows
            with an ``id``); a page with none ends the listing with a warning.
        stats
            A :class:`~koyeb_analytics.api._paging.PageStats` to add to (pages,
            rows, pages requested ahead and discarded, notes, ``complete``); share one
            over several listings to count them together.
        progress
            Show a progress bar once the listing spans more than a few pages.
        desc
            How warnings and the progress bar name the listing (default ``key``).

        Returns
        -------
        Iterator of list of dict
            Lazy: nothing is requested before the first page is asked for.

        Examples
        --------
        >>> import koyeb_analytics as ka, pandas as pd
        >>> with ka.simulate(seed=1, days=1, services=2) as sim:
        ...     client = sim.client()
        ...     every = [r for page in client.pages("/v1/instances", {"order": "asc"},
        ...                                         key="instances") for r in page]
        ...     since = sim.now - pd.Timedelta("1h")
        ...     recent = list(client.pages(
        ...         "/v1/instance_events", {"order": "desc"}, key="events",
        ...         stop=lambda page: pd.Timestamp(page[-1]["when"]) < since))
        >>> len(every) > 0, len(recent) >= 1
        (True, True)
        """
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"path must be a string starting with '/', got {path!r}")
        if not isinstance(key, str) or not key:
            raise TypeError(f"key must be a non-empty string, got {key!r}")
        if paging is not None and paging not in PAGING_STYLES:
            raise ValueError(f"paging must be 'count', 'has_next' or None, got {paging!r}")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        for name, value in (("stop", stop), ("left", left), ("seen", seen)):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable, got {type(value).__name__}")
        if paging == "count" and stop is not None:
            raise ValueError("stop needs paging='has_next' (or None): count-style pages "
                             "may arrive out of order")
        if stats is not None and not isinstance(stats, PageStats):
            raise TypeError(f"stats must be a PageStats, got {type(stats).__name__}")
        if params is None:
            base: list[tuple[str, Any]] = []
        elif isinstance(params, Mapping):
            base = list(params.items())
        elif isinstance(params, Sequence) and not isinstance(params, (str, bytes)) \
                and all(isinstance(p, tuple) and len(p) == 2 for p in params):
            base = list(params)
        else:
            raise TypeError("params must be a mapping or a list of (name, value) pairs, "
                            f"got {type(params).__name__}")
        taken = sorted({name for name, _ in base} & {"limit", "offset"})
        if taken:
            raise ValueError(f"params must not set {' or '.join(taken)}: pages() sets them")

        def query(offset: int, limit: int) -> list[tuple[str, Any]]:
            return base + [("limit", str(limit)), ("offset", str(offset))]

        def fetch(offset: int, limit: int) -> dict[str, Any]:
            return self.get(path, query(offset, limit))

        def fetch_each(offsets: Iterable[int], limit: int,
                       last: Callable[[dict[str, Any]], bool] | None = None,
                       ) -> Generator[dict[str, Any], None, None]:
            return self.get_each(path, (query(offset, limit) for offset in offsets),
                                 last=last)

        return listing(fetch, fetch_each, key, read_ahead=self.read_ahead,
                       concurrency=self.concurrency, paging=paging, limit=limit,
                       stop=stop, left=left, seen=seen, stats=stats, progress=progress,
                       desc=desc or key)

    def _api_error(self, status: int, content: bytes, path: str) -> Exception:
        code, message = "", ""
        fields: list[Any] = []
        try:
            body = json.loads(content)
        except (ValueError, RecursionError):
            body = None
        if isinstance(body, dict):
            code = str(body.get("code", ""))
            message = str(body.get("message") or "")[:500]
            raw_fields = body.get("fields")
            fields = [f for f in raw_fields if isinstance(f, dict)][:50] \
                if isinstance(raw_fields, list) else []
        elif status == 429:
            code, message = "rate_limit_exceeded", "Rate limit exceeded"
        elif content:
            message = "non-JSON error body: " + content[:120].decode("utf-8", "replace").strip()
        cls = error_class(status)
        return cls(status, self.scrub(code[:100]), self.scrub(message),
                   [{k: self.scrub(str(v)) for k, v in f.items()} for f in fields], path=path)
