"""One network for REST and exec: certificate authorities, proxies, NO_PROXY.

A loopback HTTPS/WSS simulator signed by a throwaway CA (trustme), and a loopback
forward/CONNECT proxy written here. Each trust mechanism makes both paths work;
without one both refuse; every NO_PROXY form gives the same decision on both paths;
through CONNECT the proxy never sees the token.
"""

from __future__ import annotations

import base64
import select
import socket
import ssl
import time

import pytest

import koyeb_analytics as ka
from koyeb_analytics.api._network import NoProxy

from .conftest import NOW
from .hostile import HostileServer, until

trustme = pytest.importorskip("trustme")

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy",
                   "http_proxy", "all_proxy", "no_proxy", "REQUESTS_CA_BUNDLE",
                   "SSL_CERT_FILE", "CURL_CA_BUNDLE")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("ca") / "company-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def serving_context(ca, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def tls_sim(ca):
    with ka.simulate(seed=3, days=1, services=2, now=NOW,
                     ssl_context=serving_context(ca, "127.0.0.1", "localhost")) as sim:
        yield sim


@pytest.fixture(scope="module")
def iid(tls_sim):
    return next(i for i, s in zip(tls_sim.fleet.inst["id"], tls_sim.fleet.inst["status"],
                                  strict=True) if ka.STATUSES[s] == "HEALTHY")


def works(client: ka.KoyebClient, iid: str) -> None:
    """Both paths: a REST listing and an exec run."""
    assert ka.load_instances(client, progress=False, statuses="HEALTHY")["id"].size
    result = ka.exec_command(client, ["echo", "through"], instance_id=iid, timeout=20)
    assert result.ok and result.stdout == b"through\n", result


def refuses(client: ka.KoyebClient, iid: str, match: str) -> None:
    with pytest.raises(ka.TransportError, match=match):
        client.get("/v1/instances")
    with pytest.raises(ka.TransportError, match=match):
        ka.exec_command(client, ["echo", "x"], instance_id=iid, timeout=20)


def test_an_untrusted_issuer_is_refused_on_both_paths_with_a_hint(tls_sim, iid):
    n = len(tls_sim.requests)
    client = tls_sim.client(max_retries=0)
    refuses(client, iid, "certificate verify failed .*REQUESTS_CA_BUNDLE or ca_bundle=")
    assert len(tls_sim.requests) == n  # nothing, token included, was sent


@pytest.mark.parametrize("how", ["ca_bundle", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE",
                                 "CURL_CA_BUNDLE"])
def test_each_trust_mechanism_makes_both_paths_work(tls_sim, iid, ca_file, monkeypatch, how):
    options = {}
    if how == "ca_bundle":
        options["ca_bundle"] = ca_file
    else:
        monkeypatch.setenv(how, ca_file)
    client = tls_sim.client(**options)
    assert client.network.ca_bundle == ca_file
    works(client, iid)


def test_a_hostname_mismatch_is_refused_on_both_paths(ca, ca_file):
    with ka.simulate(seed=3, days=1, services=1, now=NOW,
                     ssl_context=serving_context(ca, "other.example")) as sim:
        iid = sim.fleet.inst["id"][0]
        refuses(sim.client(ca_bundle=ca_file, max_retries=0), iid, "certificate verify failed")


# -- a proxy written for these tests ----------------------------------------------
class RecordingProxy(HostileServer):
    """A forward (absolute-form) and CONNECT proxy that records what it carried."""

    def __init__(self, password: str | None = None) -> None:
        super().__init__(self._handle)
        self.password = password
        self.tunnels: list[str] = []
        self.forwarded: list[str] = []
        self.seen = bytearray()

    def _authorised(self, req) -> bool:
        if self.password is None:
            return True
        want = "Basic " + base64.b64encode(f"user:{self.password}".encode()).decode()
        return req.headers.get("proxy-authorization") == want

    def _handle(self, conn, srv) -> None:
        req = self.next_request(conn)
        if req is None:
            return
        if not self._authorised(req):
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
            return
        if req.method == "CONNECT":
            host, _, port = req.target.rpartition(":")
            self.tunnels.append(req.target)
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            from urllib.parse import urlsplit

            parts = urlsplit(req.target)
            self.forwarded.append(f"{req.method} {req.target}")
            upstream = socket.create_connection((parts.hostname, parts.port), timeout=5)
            lines = [f"{req.method} {parts.path}{'?' + parts.query if parts.query else ''} "
                     "HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in req.headers.items()
                      if not k.startswith("proxy-") and k != "connection"]
            lines.append("Connection: close")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode()
            self.seen += req.raw
            upstream.sendall(head)
        self._relay(conn, upstream)

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        deadline = time.monotonic() + 30
        try:
            while until(deadline):
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is a:
                        self.seen += data
                    (b if s is a else a).sendall(data)
        finally:
            b.close()


@pytest.fixture
def proxy():
    with RecordingProxy() as p:
        yield p


def test_through_connect_the_proxy_carries_both_paths_and_never_sees_the_token(
        tls_sim, iid, ca_file, proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    client = tls_sim.client(ca_bundle=ca_file)
    works(client, iid)
    assert set(proxy.tunnels) == {f"127.0.0.1:{tls_sim.port}"}
    assert len(proxy.tunnels) >= 2  # REST and the exec websocket
    assert tls_sim.token.encode() not in bytes(proxy.seen)
    assert b"Bearer" not in bytes(proxy.seen)


def test_plain_http_goes_through_the_proxy_too(proxy, monkeypatch):
    with ka.simulate(seed=3, days=1, services=1, now=NOW) as sim:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = sim.client(max_retries=1, backoff_factor=0, backoff_max=0)
        iid = next(i for i, s in zip(sim.fleet.inst["id"], sim.fleet.inst["status"],
                                     strict=True) if ka.STATUSES[s] == "HEALTHY")
        assert ka.load_instances(client, progress=False)["id"].size
        assert ka.exec_command(client, ["true"], instance_id=iid, timeout=20).ok
        url = sim.url
    assert any(f.startswith(f"GET {url}/v1/instances?") for f in proxy.forwarded)
    assert proxy.tunnels == [f"127.0.0.1:{sim.port}"]  # the websocket, tunnelled


@pytest.mark.parametrize("no_proxy, bypass", [
    ("127.0.0.1", True), ("localhost,127.0.0.1", True), ("127.0.0.0/8", True),
    ("*", True), ("10.0.0.0/8, 127.0.0.1:{port}", True), ("example.com", False),
    ("127.0.0.1:1", False), ("10.0.0.0/8", False), ("", False),
])
def test_no_proxy_gives_the_same_decision_on_both_paths(tls_sim, iid, ca_file, proxy,
                                                        monkeypatch, no_proxy, bypass):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy.format(port=tls_sim.port))
    client = tls_sim.client(ca_bundle=ca_file)
    client.get("/v1/instances", {"limit": 1})
    rest_through = len(proxy.tunnels)
    ka.exec_command(client, ["true"], instance_id=iid, timeout=20)
    exec_through = len(proxy.tunnels) - rest_through
    assert (rest_through, exec_through) == ((0, 0) if bypass else (1, 1))


def test_a_proxy_asking_for_credentials_is_a_clear_error(tls_sim, iid, ca_file, monkeypatch):
    with RecordingProxy(password="s3cret") as p:
        monkeypatch.setenv("HTTPS_PROXY", p.url)
        refuses(tls_sim.client(ca_bundle=ca_file, max_retries=0), iid,
                "requires authentication \\(407\\)")
        host = p.url.removeprefix("http://")
        monkeypatch.setenv("HTTPS_PROXY", f"http://user:s3cret@{host}")
        client = tls_sim.client(ca_bundle=ca_file)
        assert "s3cret" not in repr(client.network.proxy_for("https", "127.0.0.1", 1))
        works(client, iid)


@pytest.mark.parametrize("entry, host, port, bypass", [
    ("example.com", "api.example.com", 443, True), (".example.com", "example.com", 443, True),
    ("example.com", "badexample.com", 443, False), ("*.example.com", "a.example.com", 1, True),
    ("EXAMPLE.com:8443", "example.com", 8443, True), ("example.com:8443", "example.com", 443,
                                                      False),
    ("192.168.0.0/16", "192.168.4.2", 80, True), ("::1", "::1", 80, True),
    ("[::1]:80", "[::1]", 80, True), ("fd00::/8", "fd12::1", 80, True),
    ("192.168.0.0/16", "example.com", 80, False),
])
def test_no_proxy_forms(entry, host, port, bypass):
    assert NoProxy.parse(entry).bypass(host, port) is bypass


def test_one_network_object_serves_both_paths(tls_sim, ca_file):
    network = ka.Network(ca_bundle=ca_file)
    client = tls_sim.client(network=network)
    assert client.network is network
    assert network.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert network.ssl_context is client.network.ssl_context  # made once, shared


def test_a_client_certificate_is_presented_on_both_paths(ca, ca_file, tmp_path):
    server_ctx = serving_context(ca, "127.0.0.1")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_ctx)
    cert = ca.issue_cert("analyst@example.com")
    cert_file = tmp_path / "client.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    with ka.simulate(seed=3, days=1, services=2, now=NOW, ssl_context=server_ctx) as sim:
        iid = next(i for i, s in zip(sim.fleet.inst["id"], sim.fleet.inst["status"],
                                     strict=True) if ka.STATUSES[s] == "HEALTHY")
        with pytest.raises(ka.TransportError):
            sim.client(ca_bundle=ca_file, max_retries=0).get("/v1/instances")
        works(sim.client(ca_bundle=ca_file, client_cert=str(cert_file)), iid)
