"""The network both paths use: TLS trust, proxies, ``NO_PROXY``, and total deadlines.

REST and the exec websocket open their sockets here, so they agree on which CA bundle
is trusted, which proxy is used and which hosts bypass it. Every socket opened for a
request is watched by one :class:`Watchdog`, which shuts it down when the request's
total deadline passes: a server that drips one byte a second, or sends pings forever,
cannot hold a caller past its deadline, whatever it sends.
"""

from __future__ import annotations

import base64
import heapq
import ipaddress
import itertools
import os
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ConfigurationError, DeadlineExceeded, TransportError

CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")
"""Environment variables naming a CA bundle, in the order they are read."""


class Watchdog:
    """Shuts down watched sockets once their deadline passes: one daemon thread for all.

    A per-read socket timeout does not bound a request: each byte that arrives resets
    it. Shutting the socket makes whatever read is blocked on it return at once.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also run in a forked child: the thread did not come along, and its lock may
        # have been held at the fork. The child's own requests start a new thread.
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, socket.socket]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        """Shut ``sock`` down at ``deadline`` (monotonic) unless :meth:`forget` comes first."""
        key = next(self._ids)
        with self._cond:
            self._live.add(key)
            heapq.heappush(self._heap, (deadline, key, sock))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="koyeb-deadlines",
                                                daemon=True)
                self._thread.start()
            if self._heap[0][1] == key:
                self._cond.notify()
        return key

    def forget(self, key: int) -> None:
        with self._cond:
            self._live.discard(key)
            if len(self._heap) > 2 * len(self._live) + 1024:  # drop what is done, at once
                self._heap = [e for e in self._heap if e[1] in self._live]
                heapq.heapify(self._heap)

    @contextmanager
    def guard(self, sock: socket.socket, deadline: float) -> Iterator[None]:
        """Shut ``sock`` down if the block is still running at ``deadline`` (monotonic)."""
        key = self.watch(sock, deadline)
        try:
            yield
        finally:
            self.forget(key)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, key, sock = self._heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(key)
            try:
                # The plain socket's shutdown, also for TLS sockets: it leaves the TLS
                # object alone for the thread still reading it.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


WATCHDOG = Watchdog()
os.register_at_fork(after_in_child=WATCHDOG._reset)


def _port(parts: object, scheme: str) -> int:
    port = getattr(parts, "port", None)
    return int(port) if port else (443 if scheme in ("https", "wss") else 80)


@dataclass(frozen=True)
class NoProxy:
    """One reading of ``NO_PROXY``: hosts, domain suffixes, ``host:port``, CIDR, ``*``."""

    entries: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str | None) -> NoProxy:
        items = [e.strip().lower() for e in (value or "").replace(";", ",").split(",")]
        return cls(tuple(e for e in items if e))

    def bypass(self, host: str, port: int) -> bool:
        """True when ``host:port`` is to be reached directly."""
        host = host.lower().strip("[]").rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        for entry in self.entries:
            if entry == "*":
                return True
            name, want_port = entry, None
            if entry.startswith("[") and "]" in entry:  # [::1] or [::1]:8080
                name, _, rest = entry[1:].partition("]")
                want_port = rest[1:] if rest.startswith(":") else None
            elif entry.count(":") == 1:
                name, _, want_port = entry.partition(":")
            if want_port is not None and want_port != str(port):
                continue
            if "/" in name or address is not None:
                try:
                    if address is not None and address in ipaddress.ip_network(
                            name, strict=False):
                        return True
                except ValueError:
                    pass
                continue
            name = name.lstrip("*").lstrip(".").rstrip(".")
            if name and (host == name or host.endswith("." + name)):
                return True
        return False


def _env(name: str) -> str | None:
    return os.environ.get(name) or os.environ.get(name.lower()) or None


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    authorization: str | None = None

    @classmethod
    def parse(cls, url: str) -> Proxy:
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigurationError(
                f"proxy {parts.scheme}://{parts.hostname}: only http:// proxies are supported")
        auth = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(pair.encode()).decode()
        return cls(parts.hostname, _port(parts, "http"), auth)

    def __repr__(self) -> str:  # credentials stay out of reprs
        return f"Proxy({self.host}:{self.port})"


class Network:
    """Where and how to connect: one decision for REST and exec alike.

    Parameters
    ----------
    ca_bundle
        A PEM file of the certificate authorities to trust. Default: the first of
        ``$REQUESTS_CA_BUNDLE``, ``$SSL_CERT_FILE``, ``$CURL_CA_BUNDLE``, else certifi's.
    client_cert, client_key
        A client certificate (and its key, if not in the same file) to present.
    proxy
        ``http://[user:pass@]host:port`` for every request; default from
        ``$HTTPS_PROXY``/``$HTTP_PROXY`` by the target's scheme. ``""`` disables it.
    no_proxy
        Hosts reached directly (``NO_PROXY`` syntax: names, ``.suffix``, ``host:port``,
        CIDR blocks, ``*``); default ``$NO_PROXY``.

    Examples
    --------
    >>> net = Network(proxy="http://proxy.example:3128", no_proxy="10.0.0.0/8,.internal")
    >>> net.proxy_for("https", "app.koyeb.com", 443)
    Proxy(proxy.example:3128)
    >>> net.proxy_for("https", "10.1.2.3", 443) is None
    True
    """

    def __init__(self, *, ca_bundle: str | os.PathLike[str] | None = None,
                 client_cert: str | os.PathLike[str] | None = None,
                 client_key: str | os.PathLike[str] | None = None,
                 proxy: str | None = None, no_proxy: str | None = None) -> None:
        source = "ca_bundle="
        if ca_bundle is None:
            for name in CA_VARIABLES:
                if os.environ.get(name):
                    ca_bundle, source = os.environ[name], f"${name}"
                    break
        if ca_bundle is None:
            import certifi

            ca_bundle, source = certifi.where(), "certifi"
        path = Path(ca_bundle)
        if not path.is_file():
            raise ConfigurationError(f"CA bundle {str(path)!r} (from {source}) is not a file")
        self.ca_bundle = str(path)
        self.ca_source = source
        self._client_cert = (str(client_cert), str(client_key) if client_key else None) \
            if client_cert else None
        self._proxy_setting = proxy
        self.no_proxy = NoProxy.parse(no_proxy if no_proxy is not None else _env("NO_PROXY"))
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Network(ca_bundle={self.ca_bundle!r} from {self.ca_source})"

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context both paths use (made once)."""
        with self._lock:
            if self._context is None:
                ctx = ssl.create_default_context(cafile=self.ca_bundle)
                if self._client_cert is not None:
                    ctx.load_cert_chain(*self._client_cert)
                self._context = ctx
            return self._context

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for a target, or None to connect directly."""
        if self._proxy_setting is not None:
            url = self._proxy_setting
        else:
            url = _env("HTTPS_PROXY" if scheme in ("https", "wss") else "HTTP_PROXY") or \
                _env("ALL_PROXY") or ""
            if not url:
                # urllib's reading covers platform settings (registry, macOS) too.
                url = urllib.request.getproxies().get(
                    "https" if scheme in ("https", "wss") else "http", "")
        if not url or self.no_proxy.bypass(host, port):
            return None
        return Proxy.parse(url)

    def open(self, scheme: str, host: str, port: int, *, deadline: float) -> socket.socket:
        """A connected socket to ``host:port`` (TLS for https/wss), via the proxy if any.

        Through a proxy, https, ws and wss go through a ``CONNECT`` tunnel (the proxy
        never sees the request, nor the token in it when TLS is used); for plain http
        the socket goes to the proxy, and requests must use the absolute URL. All of it
        happens before ``deadline`` or raises :class:`DeadlineExceeded`.
        """
        tls = scheme in ("https", "wss")
        proxy = self.proxy_for(scheme, host, port)
        target = (proxy.host, proxy.port) if proxy else (host, port)
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"no time left to connect to {host}")
        try:
            sock = socket.create_connection(target, timeout=left)
        except TimeoutError:
            raise DeadlineExceeded(f"connecting to {target[0]}:{target[1]} timed out") from None
        except OSError as exc:
            via = f" through the proxy {proxy.host}:{proxy.port}" if proxy else ""
            raise TransportError(f"cannot connect to {host}:{port}{via}: "
                                 f"{exc.strerror or type(exc).__name__}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            with WATCHDOG.guard(sock, deadline):
                if proxy is not None and scheme != "http":
                    _tunnel(sock, proxy, host, port)
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"connecting to {host} timed out")
            if tls:
                sock = self._wrap(sock, host, deadline)
        except BaseException as exc:
            sock.close()
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"connecting to {host} timed out") from None
            if isinstance(exc, OSError) and not isinstance(exc, TransportError):
                raise TransportError(f"connecting to {host} failed: "
                                     f"{type(exc).__name__}") from None
            raise
        return sock

    def _wrap(self, sock: socket.socket, host: str, deadline: float) -> socket.socket:
        tls = self.ssl_context.wrap_socket(sock, server_hostname=host,
                                           do_handshake_on_connect=False)
        try:
            with WATCHDOG.guard(tls, deadline):
                tls.do_handshake()
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"TLS with {host} timed out")
            return tls
        except BaseException as exc:
            tls.close()
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"TLS with {host} timed out") from None
            error = self._handshake_error(exc, host)
        raise error

    def _handshake_error(self, exc: BaseException, host: str) -> BaseException:
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = exc.verify_message or "verification failed"
            hint = ("; set REQUESTS_CA_BUNDLE or ca_bundle= to your company's CA file"
                    if "issuer" in why or "self-signed" in why or "self signed" in why else "")
            return TransportError(f"certificate verify failed for {host}: {why} (CA bundle "
                                  f"from {self.ca_source}){hint}")
        if isinstance(exc, (ssl.SSLError, OSError)):
            return TransportError(f"TLS with {host} failed: {type(exc).__name__}: "
                                  f"{getattr(exc, 'reason', None) or exc}")
        return exc


def _tunnel(sock: socket.socket, proxy: Proxy, host: str, port: int) -> None:
    """Ask the proxy for a CONNECT tunnel; the token only ever travels inside TLS."""
    lines = [f"CONNECT {host}:{port} HTTP/1.1", f"Host: {host}:{port}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise TransportError(f"the proxy {proxy.host}:{proxy.port} closed the tunnel")
        head += chunk
        if len(head) > 65536:
            raise TransportError(f"the proxy {proxy.host}:{proxy.port} sent an oversized answer")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if status == 407:
        raise TransportError(f"the proxy {proxy.host}:{proxy.port} requires authentication "
                             "(407): put user:password in the proxy URL")
    if not 200 <= status < 300:
        raise TransportError(f"the proxy {proxy.host}:{proxy.port} refused the tunnel to "
                             f"{host}:{port}: {status_line[:100]!r}")
    if head.index(b"\r\n\r\n") + 4 != len(head):
        raise TransportError(f"the proxy {proxy.host}:{proxy.port} sent data before TLS")


def target_of(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path)`` of an http(s)/ws(s) URL."""
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", _port(parts, parts.scheme), parts.path
