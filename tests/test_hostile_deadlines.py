"""Class 2: every wait has a total deadline, whatever the server sends or withholds."""

from __future__ import annotations

import multiprocessing
import time

import pytest

import koyeb_analytics as ka

from .hostile import (
    TOKEN,
    HostileServer,
    http_reply,
    rest,
    result_frame,
    until,
    ws_accept,
    ws_frame,
)

IIDS = [f"5b1f7f0e-1111-4222-8333-44445555666{i}" for i in range(3)]


def client_for(srv: HostileServer, **options) -> ka.KoyebClient:
    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 1.0)
    return ka.KoyebClient(TOKEN, base_url=srv.url, **options)


def dripping_body(conn, srv):
    if srv.next_request(conn) is None:
        return
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n"
                 b"Content-Type: application/json\r\n\r\n{")
    deadline = time.monotonic() + 20
    while until(deadline):
        conn.sendall(b" ")
        time.sleep(0.05)


def dripping_head(conn, srv):
    if srv.next_request(conn) is None:
        return
    deadline = time.monotonic() + 20
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while until(deadline):
        conn.sendall(b"X-Drip: a\r\n")
        time.sleep(0.05)


@pytest.mark.parametrize("handler", [dripping_body, dripping_head])
def test_a_dripping_reply_ends_at_the_deadline(handler):
    with HostileServer(handler) as srv:
        client = client_for(srv, timeout=1.0, max_retries=1, backoff_factor=0, backoff_max=0)
        start = time.monotonic()
        with pytest.raises(ka.DeadlineExceeded, match="within 1 s"):
            client.get("/v1/instances")
        elapsed = time.monotonic() - start
    # Two attempts of one second each, not the 20 s the server would drip for.
    assert 1.9 < elapsed < 4


def _get_in_child(url: str, out) -> None:
    client = ka.KoyebClient(TOKEN, base_url=url, timeout=1.0, max_retries=0)
    start = time.monotonic()
    try:
        client.get("/v1/instances")
        out.send(("answered", time.monotonic() - start))
    except ka.KoyebError as exc:
        out.send((type(exc).__name__, time.monotonic() - start))


def test_deadlines_hold_in_a_forked_process():
    # The deadline thread runs in this process already; a fork does not copy it, and
    # the child must not count on it.
    with HostileServer(dripping_body) as srv:
        with pytest.raises(ka.DeadlineExceeded):
            client_for(srv, timeout=0.5).get("/v1/instances")
        ctx = multiprocessing.get_context("fork")
        here, there = ctx.Pipe()
        child = ctx.Process(target=_get_in_child, args=(srv.url, there))
        child.start()
        finished = here.poll(15)
        child.join(5)
        if child.is_alive():
            child.kill()
    assert finished, "the forked child's request did not end at its deadline"
    what, elapsed = here.recv()
    assert what == "DeadlineExceeded" and 0.9 < elapsed < 3


def test_retry_after_is_capped_and_garbage_is_no_hint():
    hints = iter(["3600", "soon", "Wed, 21 Oct 2099 07:28:00 GMT", "-5", "nan"])

    def route(req, srv):
        hint = next(hints, None)
        if hint is None:
            return 200, {"instances": [], "count": 0}, {}
        return 429, b"", {"Retry-After": hint}

    with HostileServer(rest(route)) as srv:
        client = client_for(srv, max_retries=5, backoff_factor=0.01, backoff_max=0.3)
        start = time.monotonic()
        assert client.get("/v1/instances") == {"instances": [], "count": 0}
        elapsed = time.monotonic() - start
    assert len(srv.requests) == 6
    assert elapsed < 3  # five waits of at most backoff_max


def test_a_listing_with_a_stalling_page_keeps_what_came_before():
    def route(req, srv):
        if req.query.get("offset", "0") == "0":
            rows = [{"id": f"i{k}", "created_at": "2026-11-20T00:00:00Z"} for k in range(100)]
            return 200, {"instances": rows, "count": 250, "limit": 100}, {}
        time.sleep(3)
        return 200, {"instances": [], "count": 250}, {}

    with HostileServer(rest(route)) as srv:
        client = client_for(srv, timeout=0.5, concurrency=2)
        start = time.monotonic()
        with pytest.raises(ka.IncompleteListingError) as err:
            ka.load_instances(client, progress=False)
        assert time.monotonic() - start < 3
    assert len(err.value.partial) == 100
    assert isinstance(err.value.cause, ka.DeadlineExceeded)


# -- exec ---------------------------------------------------------------------------
def ws_server(after_accept):
    """An exec endpoint that accepts the upgrade, then does ``after_accept(conn)``."""
    def handler(conn, srv):
        req = srv.next_request(conn)
        if req is None:
            return
        ws_accept(conn, req)
        after_accept(conn, time.monotonic() + 20)
    return HostileServer(handler)


def pings_forever(conn, deadline):
    while until(deadline):
        conn.sendall(ws_frame(b"", 0x9))
        time.sleep(0.1)


def frame_byte_by_byte(conn, deadline):
    frame = result_frame(b"x" * 5000)
    for b in frame:
        if not until(deadline):
            return
        conn.sendall(bytes([b]))
        time.sleep(0.01)


def continuation_without_end(conn, deadline):
    conn.sendall(ws_frame(b'{"result":', 0x1, fin=False))
    while until(deadline):
        conn.sendall(ws_frame(b" ", 0x0, fin=False))
        time.sleep(0.02)


def output_then_silence(conn, deadline):
    conn.sendall(result_frame(b"partial output\n"))
    while until(deadline):
        time.sleep(0.1)


@pytest.mark.parametrize("behaviour", [pings_forever, frame_byte_by_byte,
                                       continuation_without_end, output_then_silence])
def test_exec_ends_at_its_timeout_whatever_arrives(behaviour):
    with ws_server(behaviour) as srv:
        client = client_for(srv, timeout=5)
        start = time.monotonic()
        result = ka.exec_command(client, ["sleep", "100"], instance_id=IIDS[0], timeout=1.5)
        elapsed = time.monotonic() - start
    assert result.timed_out and not result.exited and result.exit_code is None
    assert 1.4 < elapsed < 3.5
    if behaviour is output_then_silence:
        assert result.stdout == b"partial output\n"  # what arrived is kept


def test_exec_many_ends_at_its_timeout_with_a_row_per_instance():
    with ws_server(pings_forever) as srv:
        client = client_for(srv, timeout=5)
        start = time.monotonic()
        runs = ka.exec_many(client, "sleep 100", instances=IIDS, timeout=1.5, concurrency=3)
        elapsed = time.monotonic() - start
    assert list(runs["instance_id"]) == IIDS and runs["timed_out"].all()
    assert elapsed < 4


def test_a_dripped_handshake_answer_ends_at_the_connect_deadline():
    def handler(conn, srv):
        if srv.next_request(conn) is None:
            return
        deadline = time.monotonic() + 20
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
        while until(deadline):
            conn.sendall(b"X: y\r\n")
            time.sleep(0.05)

    with HostileServer(handler) as srv:
        client = client_for(srv, timeout=1.0)
        start = time.monotonic()
        with pytest.raises(ka.DeadlineExceeded):
            ka.exec_command(client, ["id"], instance_id=IIDS[0], timeout=30)
        assert time.monotonic() - start < 3


def test_a_huge_refusal_body_is_not_read_to_its_end():
    def handler(conn, srv):
        if srv.next_request(conn) is None:
            return
        body = b'{"code":"forbidden","message":"no"' + b" " * 65536
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n")
        deadline = time.monotonic() + 20
        conn.sendall(b"%x\r\n%s\r\n" % (len(body), body))
        chunk = b"x" * 65536
        while until(deadline):
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    with HostileServer(handler) as srv:
        client = client_for(srv, timeout=5)
        start = time.monotonic()
        with pytest.raises(ka.PermissionDeniedError):
            ka.exec_command(client, ["id"], instance_id=IIDS[0], timeout=5)
        assert time.monotonic() - start < 2


def test_exec_without_a_timeout_still_bounds_the_handshake():
    def handler(conn, srv):
        srv.next_request(conn)
        time.sleep(5)  # never answers

    with HostileServer(handler) as srv:
        client = client_for(srv, timeout=1.0)
        start = time.monotonic()
        with pytest.raises(ka.DeadlineExceeded):
            with ka.exec_stream(client, ["id"], instance_id=IIDS[0], timeout=None):
                pass
        assert time.monotonic() - start < 3


def test_a_dropped_connection_right_after_the_exit_frame_is_a_clean_exit():
    def after(conn, deadline):
        conn.recv(65536)
        conn.sendall(result_frame(b"done\n") + result_frame(None, exited=True, code=3))

    with ws_server(after) as srv:
        result = ka.exec_command(client_for(srv, timeout=5), ["id"], instance_id=IIDS[0], timeout=5)
    assert result.exited and result.exit_code == 3 and result.stdout == b"done\n"
    assert result.error is None


def test_http_reply_helper_is_not_the_simulator():
    # The helpers here speak HTTP by hand: a sanity check that a plain reply parses.
    def handler(conn, srv):
        if srv.next_request(conn) is not None:
            http_reply(conn, 200, {"instances": [], "count": 0})

    with HostileServer(handler) as srv:
        assert client_for(srv).get("/v1/instances") == {"instances": [], "count": 0}
