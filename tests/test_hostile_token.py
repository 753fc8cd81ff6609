"""Class 1: the token never leaves for another host, never lands in a log or an error."""

from __future__ import annotations

import logging
import math

import pytest

import koyeb_analytics as ka

from .hostile import (
    TOKEN,
    HostileServer,
    assert_token_absent,
    exceptions_in_chain,
    http_reply,
    rest,
    ws_accept,
)

IID = "5b1f7f0e-1111-4222-8333-444455556666"


def counting_server() -> HostileServer:
    """A server that only counts who knocks (and what they sent)."""
    def handler(conn, srv):
        srv.next_request(conn)
    return HostileServer(handler)


def redirecting(to: str, status: int = 302) -> HostileServer:
    def handler(conn, srv):
        req = srv.next_request(conn)
        if req is not None:
            http_reply(conn, status, b"", {"Location": to + req.target})
    return HostileServer(handler)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_exec_never_follows_a_redirect(status, caplog):
    caplog.set_level(logging.DEBUG)
    with counting_server() as foreign, \
            redirecting(foreign.url.replace("http", "ws"), status) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=5)
        with pytest.raises(ka.KoyebError) as err:
            ka.exec_command(client, ["id"], instance_id=IID, timeout=5)
        assert str(status) in str(err.value) and "redirect" in str(err.value)
        assert foreign.connections == 0
        # The token went to the API host only, in the subprotocol header.
        assert TOKEN in srv.requests[0].headers["sec-websocket-protocol"]
    assert_token_absent(err.value, caplog.text)


def test_rest_never_follows_a_redirect(caplog):
    caplog.set_level(logging.DEBUG)
    with counting_server() as foreign, redirecting(foreign.url) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=5)
        with pytest.raises(ka.MalformedResponseError, match="302") as err:
            client.get("/v1/instances")
        with pytest.raises(ka.IncompleteListingError) as listing:
            ka.load_instances(client, progress=False)
        assert foreign.connections == 0
    assert_token_absent(err.value, caplog.text)
    assert_token_absent(listing.value)


@pytest.mark.parametrize("protocol", [None, "Other", TOKEN, f"Bearer, {TOKEN}"])
def test_a_handshake_answer_with_another_subprotocol_logs_nothing(protocol, caplog):
    # Accepting the upgrade without the Bearer subprotocol is tolerated (no answer);
    # naming any other one is an error; neither logs or raises the token.
    def handler(conn, srv):
        req = srv.next_request(conn)
        if req is not None:
            ws_accept(conn, req, protocol)
            conn.recv(65536)  # the command frame; then close without an exit
    caplog.set_level(logging.DEBUG)
    with HostileServer(handler) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=5)
        try:
            result = ka.exec_command(client, ["id"], instance_id=IID, timeout=5)
        except ka.KoyebError as exc:
            assert protocol is not None and "subprotocol" in str(exc)
            assert_token_absent(exc)
        else:
            assert protocol is None and not result.exited and result.error
            assert_token_absent(None, result.error, repr(result))
    assert_token_absent(None, caplog.text)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("bad", [math.nan, -1, 0, "5", math.inf, True])
def test_bad_timeouts_are_refused_before_any_connection(bad):
    with counting_server() as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=5)
        with pytest.raises((ValueError, TypeError)) as err:
            ka.exec_command(client, ["id"], instance_id=IID, timeout=bad)
        assert "timeout" in str(err.value)
        with pytest.raises((ValueError, TypeError)) as err2:
            ka.KoyebClient(TOKEN, base_url=srv.url, timeout=bad)
        assert "timeout" in str(err2.value)
        assert srv.connections == 0
    assert_token_absent(err.value)
    assert_token_absent(err2.value)


def test_refusals_and_failures_carry_no_token(caplog):
    # A 401 whose body echoes the request headers back, a dropped connection and a
    # non-JSON body: every error, every log line, every exec_many row is clean.
    def route(req, srv):
        sent = req.headers.get("authorization") or req.headers.get("sec-websocket-protocol")
        echo = f"you sent {sent}; " + req.raw.decode("latin-1")
        if req.path.endswith("/exec"):
            return 403, {"code": echo, "message": echo, "fields": [{"field": echo}]}, {}
        if req.query.get("offset") == "0":
            return 200, {"instances": [{"id": IID}], "count": 5}, {}
        return 500, echo.encode(), {}
    caplog.set_level(logging.DEBUG)
    with HostileServer(rest(route)) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=1, timeout=5,
                                backoff_factor=0, backoff_max=0)
        with pytest.raises(ka.IncompleteListingError) as err:
            ka.load_instances(client, progress=False)
        with pytest.raises(ka.PermissionDeniedError) as denied:
            ka.exec_command(client, ["id"], instance_id=IID, timeout=5)
        runs = ka.exec_many(client, ["id"], instances=[IID], timeout=5)
    assert len(err.value.partial) == 1 and isinstance(err.value.cause, ka.ServerError)
    assert any(isinstance(e, ka.ServerError) for e in exceptions_in_chain(err.value))
    assert_token_absent(err.value, caplog.text, runs.to_string(), repr(client))
    assert_token_absent(denied.value)
    assert runs["error"].notna().all()
