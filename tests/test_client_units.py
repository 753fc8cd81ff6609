"""The client's parts one by one: credentials, options, Retry-After, body reading, error
mapping, the request path's retries and reconnects, against scripted servers."""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import math
import socket
import time
import zlib

import pytest

import koyeb_analytics as ka
from koyeb_analytics.api import _client as client_module
from koyeb_analytics.api._client import (
    DEFAULT_MAX_RESPONSE_BYTES,
    RETRY_STATUSES,
    _is_loopback,
    _read_cli_config,
    discover_credentials,
    retry_after_seconds,
)

from .hostile import TOKEN, HostileServer, http_reply, rest


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    for name in ("KOYEB_TOKEN", "KOYEB_API_TOKEN", "KOYEB_URL", "KOYEB_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


# -- credentials --------------------------------------------------------------------
def test_cli_config_is_read_as_flat_key_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# token: commented\ntoken: 'abc'\nurl: \"https://x\"\n  nested: no\n"
                    "\tnested2: no\nplain line\nempty:\nkey : spaced : value\nx: Xy\n")
    assert _read_cli_config(path) == {"token": "abc", "url": "https://x", "empty": "",
                                      "key": "spaced : value", "x": "Xy"}


def test_credentials_in_order(no_env, monkeypatch):
    cfg = no_env / "koyeb.yaml"
    cfg.write_text("token: from-file\nurl: https://file.example\n")
    monkeypatch.setenv("KOYEB_CONFIG", str(cfg))
    assert discover_credentials() == ("from-file", "https://file.example")
    monkeypatch.setenv("KOYEB_API_TOKEN", "api")
    assert discover_credentials() == ("api", "https://file.example")
    monkeypatch.setenv("KOYEB_TOKEN", "tok")
    monkeypatch.setenv("KOYEB_URL", "https://env.example")
    assert discover_credentials() == ("tok", "https://env.example")
    (no_env / ".koyeb.yaml").write_text("token: home\n")
    monkeypatch.delenv("KOYEB_CONFIG")
    monkeypatch.delenv("KOYEB_TOKEN")
    monkeypatch.delenv("KOYEB_API_TOKEN")
    monkeypatch.delenv("KOYEB_URL")
    assert discover_credentials() == ("home", None)


@pytest.mark.parametrize("content, note", [
    (None, "not found"), ("url: https://x\n", "no 'token' key"),
    ("token: ''\n", "no 'token' key"),
    (b"\xff\xfe", "unreadable (UnicodeDecodeError)")])
def test_no_token_says_where_it_looked(no_env, monkeypatch, content, note):
    cfg = no_env / "k.yaml"
    if content is not None:
        cfg.write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.setenv("KOYEB_CONFIG", str(cfg))
    with pytest.raises(ka.ConfigurationError) as info:
        discover_credentials()
    assert str(info.value) == (
        "no Koyeb API token found: looked in $KOYEB_TOKEN, $KOYEB_API_TOKEN and the CLI "
        f"config file {cfg} ({note}). Set KOYEB_TOKEN, or use ka.simulate() to work "
        "without an account.")


def test_from_env_and_token_none_use_the_found_url(no_env, monkeypatch):
    monkeypatch.setenv("KOYEB_TOKEN", "tok")
    monkeypatch.setenv("KOYEB_URL", "http://127.0.0.1:9/api/")
    c = ka.KoyebClient.from_env(timeout=3)
    assert (c.base_url, c.timeout, c.scrub("tok")) == ("http://127.0.0.1:9/api", 3.0,
                                                        "<hidden>")
    assert ka.KoyebClient.from_env(base_url="http://127.0.0.1:8").base_url == \
        "http://127.0.0.1:8"
    assert ka.KoyebClient(None).base_url == "http://127.0.0.1:9/api"
    assert ka.KoyebClient(None, base_url="http://127.0.0.1:7").base_url == \
        "http://127.0.0.1:7"
    monkeypatch.delenv("KOYEB_URL")
    assert ka.KoyebClient(None).base_url == "https://app.koyeb.com"


# -- options ------------------------------------------------------------------------
def test_defaults():
    c = ka.KoyebClient("t")
    assert (c.timeout, c.max_retries, c.backoff_factor, c.backoff_max, c.concurrency,
            c.max_response_bytes, c.read_ahead) == (30.0, 4, 0.5, 30.0, 4,
                                                     DEFAULT_MAX_RESPONSE_BYTES, "threads")
    assert DEFAULT_MAX_RESPONSE_BYTES == 64 * 2**20
    assert RETRY_STATUSES == {429, 502, 503, 504}
    assert repr(c) == "KoyebClient(base_url='https://app.koyeb.com', token=<hidden>, " \
                      "concurrency=4)"
    assert ka.KoyebClient("t", base_url="http://localhost:1").read_ahead == "pipelined"
    assert ka.KoyebClient("t", base_url="http://[::1]:1").read_ahead == "pipelined"
    assert ka.KoyebClient("t", base_url="http://127.0.0.1:1", read_ahead="none").read_ahead \
        == "none"
    zero = ka.KoyebClient("t", backoff_factor=0, backoff_max=0, max_retries=0)
    assert (zero.backoff_factor, zero.backoff_max, zero.max_retries) == (0.0, 0.0, 0)


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"timeout": 0}, ValueError, "timeout must be a finite positive number, got 0"),
    ({"timeout": True}, ValueError, "timeout must be a finite positive number, got True"),
    ({"timeout": "5"}, ValueError, "timeout must be a finite positive number, got '5'"),
    ({"timeout": math.inf}, ValueError, "timeout must be a finite positive number, got inf"),
    ({"backoff_max": -1}, ValueError,
     "backoff_max must be a finite non-negative number, got -1"),
    ({"backoff_factor": math.nan}, ValueError,
     "backoff_factor must be a finite non-negative number, got nan"),
    ({"concurrency": 0}, ValueError, "concurrency must be a positive integer, got 0"),
    ({"concurrency": True}, ValueError, "concurrency must be a positive integer, got True"),
    ({"concurrency": 2.0}, ValueError, "concurrency must be a positive integer, got 2.0"),
    ({"max_retries": -1}, ValueError, "max_retries must be a non-negative integer, got -1"),
    ({"max_response_bytes": 0}, ValueError,
     "max_response_bytes must be a positive integer, got 0"),
    ({"base_url": 5}, TypeError, "base_url must be a string, got int"),
    ({"base_url": "ftp://x"}, ValueError, "base_url must be an http(s) URL, got 'ftp://x'"),
    ({"base_url": "http://"}, ValueError, "base_url must be an http(s) URL"),
    ({"base_url": "http://x/?q=1"}, ValueError, "base_url must be an http(s) URL"),
    ({"base_url": "http://x/#f"}, ValueError, "base_url must be an http(s) URL"),
    ({"read_ahead": "fast"}, ValueError,
     "read_ahead must be 'pipelined', 'threads' or 'none', got 'fast'"),
    ({"network": object()}, TypeError, "network must be a koyeb_analytics.Network"),
])
def test_options_are_checked(kwargs, exc, message):
    with pytest.raises(exc) as info:
        ka.KoyebClient("t", **kwargs)
    assert str(info.value) == message or str(info.value).startswith(message)


@pytest.mark.parametrize("token", ["", "  ", "a,b", "a\nb", "a\rb", "a\0b", 5])
def test_tokens_that_cannot_be_a_header_are_refused(token):
    with pytest.raises(ValueError, match="^token must be a non-empty string without commas "
                                         "or line breaks$"):
        ka.KoyebClient(token)


def test_what_exec_needs():
    c = ka.KoyebClient("tok-1", base_url="https://api.example/prefix")
    assert c.websocket_url("/v1/x") == "wss://api.example/prefix/v1/x"
    assert ka.KoyebClient("t", base_url="http://127.0.0.1:5").websocket_url("/p") == \
        "ws://127.0.0.1:5/p"
    assert c.auth_subprotocols() == ["Bearer", "tok-1"]
    assert c.scrub("a tok-1 b tok-1") == "a <hidden> b <hidden>"
    err = c.error_from_reply(404, b'{"code": "not_found", "message": "tok-1 gone"}', "/p")
    assert isinstance(err, ka.NotFoundError) and err.message == "<hidden> gone"
    assert (err.path, err.status, err.code) == ("/p", 404, "not_found")


def test_is_loopback():
    for host in ("localhost", "LOCALHOST", "127.0.0.1", "127.5.5.5", "::1", "[::1]"):
        assert _is_loopback(host), host
    for host in ("example.com", "10.0.0.1", "localhost.example", "", "[::2]"):
        assert not _is_loopback(host), host


# -- Retry-After --------------------------------------------------------------------
def test_retry_after_seconds(monkeypatch):
    monkeypatch.setattr(client_module.time, "time", lambda: 1_700_000_000.0)
    later = email.utils.formatdate(1_700_000_042, usegmt=True)
    earlier = email.utils.formatdate(1_699_999_000, usegmt=True)
    assert retry_after_seconds(later) == 42.0
    assert retry_after_seconds(earlier) == 0.0
    assert retry_after_seconds(" 7 ") == 7.0
    assert retry_after_seconds("1.5") == 1.5
    assert retry_after_seconds("-3") == 0.0
    for value in (None, "", "soon", "inf", "nan", "Wed, 99 Foo 2026 00:00:00",
                  "Wed, 21 Oct 2015 07:28:00"):
        assert retry_after_seconds(value) is None, value


def test_delay_is_exponential_with_jitter_and_capped(monkeypatch):
    c = ka.KoyebClient("t", backoff_factor=0.5, backoff_max=3)
    monkeypatch.setattr(client_module.random, "uniform", lambda a, b: b)
    assert [c._delay(n) for n in range(4)] == [1.0, 1.5, 2.5, 3.0]
    monkeypatch.setattr(client_module.random, "uniform", lambda a, b: a)
    assert [c._delay(n) for n in range(3)] == [0.5, 1.0, 2.0]
    assert c._delay(0, "2") == 2.0 and c._delay(5, "100") == 3.0
    assert c._delay(1, "garbage") == 1.0


# -- replies ------------------------------------------------------------------------
def one_reply(status, body=b"", headers=None, reason="X"):
    def handler(conn, srv):
        while srv.next_request(conn) is not None:
            http_reply(conn, status, body, headers, reason)
    return HostileServer(handler)


def client_for(srv, **options):
    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 5)
    return ka.KoyebClient(TOKEN, base_url=srv.url, **options)


def test_gzip_and_deflate_bodies_are_decoded():
    payload = json.dumps({"ok": 1, "pad": "x" * 1000}).encode()
    for encoding, body in (("gzip", gzip.compress(payload)), ("deflate", zlib.compress(payload)),
                           ("x-gzip", gzip.compress(payload)), ("identity", payload),
                           (" GZIP ", gzip.compress(payload)), ("", payload)):
        with one_reply(200, body, {"Content-Encoding": encoding}) as srv:
            assert client_for(srv).get("/p") == {"ok": 1, "pad": "x" * 1000}, encoding


def chunked(conn, srv, pieces, headers=()):
    if srv.next_request(conn) is None:
        return
    head = ["HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "Content-Type: application/json",
            *headers]
    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    for piece in pieces:
        conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    conn.sendall(b"0\r\n\r\n")


def test_caps_hold_for_declared_chunked_and_decoded_sizes():
    with one_reply(200, b'{"a": "' + b"x" * 200 + b'"}') as srv, \
            pytest.raises(ka.MalformedResponseError) as info:
        client_for(srv, max_response_bytes=100).get("/p")
    assert str(info.value) == ("GET /p: the reply announces 209 bytes, over the 100-byte cap "
                               "(max_response_bytes)")
    assert info.value.status == 200
    with one_reply(200, b'{"a": 1}') as srv:    # exactly at the cap: read
        assert client_for(srv, max_response_bytes=8).get("/p") == {"a": 1}
    pieces = [b'{"a": "', b"x" * 60, b"x" * 60, b'"}']
    with HostileServer(lambda c, s: chunked(c, s, pieces)) as srv, \
            pytest.raises(ka.MalformedResponseError) as info:
        client_for(srv, max_response_bytes=100).get("/p")
    assert str(info.value) == ("GET /p: the reply holds more than the 100-byte cap "
                               "(max_response_bytes); stopped reading")
    assert info.value.status == 200
    with HostileServer(lambda c, s: chunked(c, s, pieces)) as srv:
        assert client_for(srv, max_response_bytes=129).get("/p") == {"a": "x" * 120}
    bomb = gzip.compress(b'{"a": "' + b"0" * 100_000 + b'"}')
    with HostileServer(lambda c, s: chunked(c, s, [bomb], ["Content-Encoding: gzip"])) as srv, \
            pytest.raises(ka.MalformedResponseError) as info:
        client_for(srv, max_response_bytes=1000).get("/p")
    assert str(info.value) == ("GET /p: the reply decoded from gzip holds more than the "
                               "1000-byte cap (max_response_bytes); stopped reading")
    assert info.value.status == 200


def test_bodies_that_cannot_be_decoded():
    with one_reply(200, b"not gzip at all", {"Content-Encoding": "gzip"}) as srv, \
            pytest.raises(ka.MalformedResponseError) as info:
        client_for(srv).get("/p")
    assert str(info.value).startswith("GET /p: the gzip body is corrupt (")
    assert info.value.status == 200
    with one_reply(200, b"{}", {"Content-Encoding": "br"}) as srv, \
            pytest.raises(ka.MalformedResponseError) as info:
        client_for(srv).get("/p")
    assert str(info.value) == "GET /p: unsupported Content-Encoding 'br'"
    assert info.value.status == 200
    for body, start in ((b"[1, 2]", "[1, 2]"), (b"\xff" + TOKEN.encode(), "\ufffd<hidden>"),
                        (b"x" * 300, "x" * 200)):
        with one_reply(200, body) as srv, pytest.raises(ka.MalformedResponseError) as info:
            client_for(srv).get("/p")
        assert str(info.value) == (f"GET /p returned 200 with a body that is not a JSON "
                                   f"object ({len(body)} bytes, starting {start!r})")
        assert info.value.body == start and info.value.status == 200


@pytest.mark.parametrize("status, body, cls, code, message", [
    (404, {"code": "not_found", "message": "gone", "fields": [{"field": "id"}, "x"]},
     ka.NotFoundError, "not_found", "gone"),
    (400, {"code": 3, "message": None}, ka.BadRequestError, "3", ""),
    (429, b"", ka.RateLimitError, "rate_limit_exceeded", "Rate limit exceeded"),
    (500, b"<html>oops</html>  ", ka.ServerError, "", "non-JSON error body: <html>oops</html>"),
    (502, b"", ka.ServerError, "", ""),
    (500, b"\xff" + b"y" * 300, ka.ServerError, "", "non-JSON error body: \ufffd" + "y" * 119),
    (400, {"message": "no code"}, ka.BadRequestError, "", "no code"),
    (400, {"code": None}, ka.BadRequestError, "None", ""),
    (403, {"code": "c" * 150, "message": "m" * 600}, ka.PermissionDeniedError, "c" * 100,
     "m" * 500),
    (401, {"code": "unauth", "message": f"bad {TOKEN}"}, ka.AuthenticationError, "unauth",
     "bad <hidden>"),
])
def test_error_replies_map_onto_the_tree(status, body, cls, code, message):
    with one_reply(status, body) as srv, pytest.raises(ka.APIError) as info:
        client_for(srv).get("/v1/p")
    err = info.value
    assert type(err) is cls and (err.status, err.code, err.message, err.path) == (
        status, code, message, "/v1/p")
    if status == 404:
        assert err.fields == [{"field": "id"}]


def test_fields_are_capped_and_scrubbed():
    fields = [{"field": f"f{i}", "description": TOKEN} for i in range(80)]
    with one_reply(400, {"fields": fields}) as srv, pytest.raises(ka.APIError) as info:
        client_for(srv).get("/p")
    assert len(info.value.fields) == 50
    assert info.value.fields[0] == {"field": "f0", "description": "<hidden>"}


@pytest.mark.parametrize("status", [300, 301, 302, 307, 308, 399])
def test_redirects_are_an_error_naming_why(status):
    with one_reply(status, b"", {"Location": "http://elsewhere.example/"}) as srv, \
            pytest.raises(ka.MalformedResponseError) as info:
        client_for(srv).get("/p")
    assert str(info.value) == (f"GET /p answered {status} (a redirect): not followed, so that "
                               "the token never goes to another host")
    assert info.value.status == status


# -- retries ------------------------------------------------------------------------
def flaky(statuses):
    """Answers each request with the next status of ``statuses`` (then 200)."""
    todo = list(statuses)

    def route(req, srv):
        status = todo.pop(0) if todo else 200
        return status, {"n": len(srv.requests)}, {"Retry-After": "0"}
    return HostileServer(rest(route))


def test_each_retry_status_is_retried_and_others_are_not(caplog):
    with flaky([429, 502, 503, 504]) as srv, caplog.at_level(logging.INFO, "koyeb_analytics"):
        assert client_for(srv, max_retries=4).get("/p") == {"n": 5}
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retried == [f"127.0.0.1 answered {s} to GET /p; retrying in 0.0 s (retry {k} of 4)"
                       for k, s in enumerate((429, 502, 503, 504), start=1)]
    for status in (500, 501, 400):
        with flaky([status]) as srv, pytest.raises(ka.APIError):
            client_for(srv, max_retries=3).get("/p")
        assert len(srv.requests) == 1
    with flaky([503, 503]) as srv, pytest.raises(ka.ServerError):
        client_for(srv, max_retries=1).get("/p")
    assert len(srv.requests) == 2


def test_transport_failures_are_retried_then_raised(caplog):
    calls = []

    def handler(conn, srv):
        if srv.next_request(conn) is None:
            return
        calls.append(1)
        if len(calls) < 3:
            conn.shutdown(socket.SHUT_RDWR)  # no answer at all
            return
        http_reply(conn, 200, {"ok": True})
    with HostileServer(handler) as srv, caplog.at_level(logging.DEBUG, "koyeb_analytics"):
        c = client_for(srv, max_retries=2, backoff_factor=0, backoff_max=0)
        assert c.get("/p") == {"ok": True}
    assert len(calls) == 3
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG][:2] == [
        "GET /p failed: TransportError", "GET /p failed: TransportError"]
    assert sum("retrying in 0.0 s" in r.getMessage() for r in caplog.records) == 2
    info_lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert info_lines[0].startswith("127.0.0.1: GET /p failed: ")
    assert [line.rsplit("; ", 1)[1] for line in info_lines] == [
        "retrying in 0.0 s (retry 1 of 2)", "retrying in 0.0 s (retry 2 of 2)"]
    calls.clear()
    with HostileServer(handler) as srv, pytest.raises(ka.TransportError) as info:
        client_for(srv, max_retries=1, backoff_factor=0, backoff_max=0).get("/p")
    assert str(info.value).startswith("GET /p failed: ")
    assert len(calls) == 2

    def never(conn, srv):
        if srv.next_request(conn) is not None:
            calls.append(1)
            conn.shutdown(socket.SHUT_RDWR)
    calls.clear()
    with HostileServer(never) as srv, pytest.raises(ka.TransportError):
        client_for(srv, max_retries=3, backoff_factor=0, backoff_max=0).get("/p")
    assert len(calls) == 4      # the first attempt and three retries, no more


def test_each_reply_is_logged_with_its_time(caplog):
    def route(req, srv):
        time.sleep(0.05)
        return 200, {"ok": 1}, {}
    with HostileServer(rest(route)) as srv, caplog.at_level(logging.DEBUG, "koyeb_analytics"):
        client_for(srv).get("/p")
    (line,) = [r.getMessage() for r in caplog.records if "->" in r.getMessage()]
    head, ms = line.rsplit(", ", 1)
    assert head == "GET /p -> 200 (9 bytes" and 45 <= float(ms.removesuffix(" ms)")) < 5000


def test_a_kept_alive_connection_closed_by_the_server_is_replaced():
    def handler(conn, srv):
        if srv.next_request(conn) is None:
            return
        http_reply(conn, 200, {"n": len(srv.requests)})
        time.sleep(0.05)   # answer one request, then close the kept-alive connection
    with HostileServer(handler) as srv:
        c = client_for(srv, max_retries=0)
        assert [c.get("/p")["n"] for _ in range(3)] == [1, 2, 3]
        assert srv.connections == 3
        c.close()
        c.close()
    with one_reply(200, {"a": 1}) as srv, client_for(srv) as c:
        for _ in range(3):
            c.get("/p")
        assert srv.connections == 1 and len(c._idle) == 1
    assert len(c._idle) == 0


def test_query_parameters_repeat_list_values():
    with one_reply(200, {}) as srv:
        c = client_for(srv)
        c.get("/v1/x", {"a": ["1", "2"], "b": "c d"})
        c.get("/v1/y", [("k", "v"), ("k", "w")])
        c.get("/v1/z")
        targets = [r.target for r in srv.requests]
        headers = srv.requests[0].headers
    assert targets == ["/v1/x?a=1&a=2&b=c+d", "/v1/y?k=v&k=w", "/v1/z"]
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["host"] == f"127.0.0.1:{srv.port}"
    assert (headers["accept"], headers["accept-encoding"], headers["user-agent"]) == (
        "application/json", "gzip", "koyeb-analytics")


def test_a_refused_connection_names_its_cause():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    c = ka.KoyebClient(TOKEN, base_url=f"http://127.0.0.1:{port}", max_retries=0, timeout=2)
    with pytest.raises(ka.TransportError) as info:
        c.get("/p")
    assert str(info.value) == f"GET /p failed: cannot connect to 127.0.0.1:{port}: " \
                              "Connection refused"

    def garbage(conn, srv):
        if srv.next_request(conn) is not None:
            conn.sendall(b"SPAM/9 nonsense\r\n\r\n")
    with HostileServer(garbage) as srv, pytest.raises(ka.TransportError) as info:
        client_for(srv).get("/p")
    assert str(info.value) == "GET /p failed: BadStatusLine: SPAM/9 nonsense\r\n"


def test_connections_are_pooled_up_to_the_pool_size():
    import concurrent.futures
    import threading

    gate = threading.Barrier(11, timeout=10)

    def route(req, srv):
        gate.wait()          # eleven requests in flight at once: eleven connections
        return 200, {}, {}
    with HostileServer(rest(route)) as srv:
        c = client_for(srv, concurrency=1)
        with concurrent.futures.ThreadPoolExecutor(11) as pool:
            list(pool.map(lambda _: c.get("/p"), range(11)))
        assert srv.connections == 11 and len(c._idle) == 10   # max(concurrency, 10)
    with one_reply(200, {}, {"Connection": "close"}) as srv:
        c = client_for(srv)
        c.get("/p")
        c.get("/p")
        assert len(c._idle) == 0 and srv.connections == 2


def test_get_each_pipelines_on_one_connection_in_order():
    def route(req, srv):
        return 200, {"q": req.query.get("n")}, {}
    with HostileServer(rest(route)) as srv:
        c = client_for(srv)
        assert [r["q"] for r in c.get_each("/p", [{"n": i} for i in range(5)])] == [
            "0", "1", "2", "3", "4"]
        assert srv.connections == 1 and len(srv.requests) == 5
        assert list(c.get_each("/p", [])) == [] and len(srv.requests) == 5


def test_get_each_with_last_sends_nothing_after_the_last():
    def route(req, srv):
        return 200, {"q": int(req.query["n"])}, {}
    with HostileServer(rest(route)) as srv:
        c = client_for(srv)
        got = list(c.get_each("/p", ({"n": i} for i in range(10)),
                              last=lambda reply: reply["q"] == 3))
        time.sleep(0.2)
        assert [r["q"] for r in got] == [0, 1, 2, 3]
        assert [r.query["n"] for r in srv.requests] == ["0", "1", "2", "3"]
        assert srv.connections == 1
        assert list(c.get_each("/p", [{"n": 7}], last=lambda reply: False)) == [{"q": 7}]


def test_get_each_sends_again_what_failed_on_the_way():
    def handler(conn, srv):
        # one answer per connection, and a 503 for n=2 the first time
        req = srv.next_request(conn)
        if req is None:
            return
        if req.query["n"] == "2" and not srv.state.get("failed"):
            srv.state["failed"] = True
            http_reply(conn, 503, {"code": "unavailable"})
            return
        http_reply(conn, 200, {"q": req.query["n"]}, {"Connection": "close"})
    with HostileServer(handler) as srv:
        c = client_for(srv, max_retries=2, backoff_factor=0, backoff_max=0)
        got = [r["q"] for r in c.get_each("/p", [{"n": i} for i in range(4)])]
    assert got == ["0", "1", "2", "3"]
    assert sorted(r.query["n"] for r in srv.requests).count("2") == 2


def test_a_decompression_bomb_never_inflates_past_the_cap():
    import tracemalloc

    bomb = gzip.compress(b"0" * (64 * 2**20))
    with one_reply(200, bomb, {"Content-Encoding": "gzip"}) as srv:
        c = client_for(srv, max_response_bytes=2**20)
        tracemalloc.start()
        with pytest.raises(ka.MalformedResponseError, match="decoded from gzip"):
            c.get("/p")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 16 * 2**20     # a few times the cap, never the 64 MiB inside


def test_every_connection_goes_through_the_network_layer():
    # A "Connection: close" reply closes the socket; http.client would then open a plain
    # one by itself on the next request: no TLS (an https token in the clear), no proxy,
    # no deadline. Every connection must come from Network.open instead.
    def route(req, srv):
        return 200, {"q": req.query.get("n")}, {"Connection": "close"}
    with HostileServer(rest(route)) as srv:
        c = client_for(srv)
        opened = []
        real_open = c.network.open

        def counting_open(*args, **kwargs):
            opened.append(args)
            return real_open(*args, **kwargs)
        c.network.open = counting_open
        assert [r["q"] for r in c.get_each("/p", [{"n": i} for i in range(3)])] == [
            "0", "1", "2"]
        assert [c.get("/p", {"n": 9})["q"] for _ in range(2)] == ["9", "9"]
        assert len(opened) == srv.connections == 5


def test_options_reach_the_network_and_the_url(tmp_path, monkeypatch):
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    c = ka.KoyebClient("aXb", base_url="http://127.0.0.1:9/apiX/", client_cert="c.pem",
                       client_key="k.pem", proxy="http://proxy.example:3128",
                       no_proxy="skip.example")
    assert c.base_url == "http://127.0.0.1:9/apiX" and c.scrub("aXb") == "<hidden>"
    assert c.network._client_cert == ("c.pem", "k.pem")
    assert c.network.proxy_for("https", "skip.example", 443) is None
    route = c.network.proxy_for("https", "app.koyeb.com", 443)
    assert (route.host, route.port) == ("proxy.example", 3128)
    assert ka.KoyebClient("t", base_url="http://[::1]:9").read_ahead == "pipelined"


def test_a_plain_http_api_through_a_proxy_with_credentials():
    def proxy(conn, srv):
        if srv.next_request(conn) is not None:
            http_reply(conn, 200, {"via": "proxy"})
    with HostileServer(proxy) as srv:
        c = ka.KoyebClient(TOKEN, base_url="http://api.example:8000/base", max_retries=0,
                           timeout=5, proxy=f"http://user:pa%20ss@127.0.0.1:{srv.port}",
                           no_proxy="")
        assert c.get("/v1/x", {"a": 1}) == {"via": "proxy"}
        req = srv.requests[0]
    assert req.target == "http://api.example:8000/base/v1/x?a=1"    # the absolute form
    assert req.headers["proxy-authorization"] == "Basic dXNlcjpwYSBzcw=="  # user:pa ss
    assert req.headers["host"] == "api.example:8000"
