"""Issue 27, class 7: errors that name the problem.

Wrong argument types to the exec functions say which argument and what it accepts,
before any request; a live view whose API stops answering says it timed out, after how
long, and where (never the token).
"""

from __future__ import annotations

import re
import time

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.poller import Poller

from .hostile import TOKEN, HostileServer, assert_token_absent, http_reply, until

IID = "5b1f7f0e-1111-4222-8333-444455556666"
ACCEPTS = r"a DataFrame from load_instances.*or an iterable of instance id strings"


@pytest.fixture(scope="module")
def silent():
    """A server that records whether anything reached it (nothing should)."""
    def handler(conn, srv):
        srv.next_request(conn)
    with HostileServer(handler) as srv:
        yield srv


def run_against(silent, call):
    client = ka.KoyebClient(TOKEN, base_url=silent.url, max_retries=0, timeout=2)
    before = silent.connections
    with pytest.raises(TypeError) as err:
        call(client)
    assert silent.connections == before  # nothing was sent
    return str(err.value)


@pytest.mark.parametrize("fn", ["exec_many", "exec_table"])
@pytest.mark.parametrize("instances, got", [
    (123, "int"), (4.5, "float"), (None, "NoneType"), (b"5b1f7f0e", "bytes"),
])
def test_a_wrong_instances_argument_is_named_with_what_it_accepts(silent, fn, instances, got):
    call = getattr(ka, fn)
    message = run_against(silent, lambda c: call(c, "uptime", instances=instances))
    assert message.startswith("instances must be ")
    assert re.search(ACCEPTS, message)
    assert message.endswith(f"got {got}")


@pytest.mark.parametrize("fn", ["exec_many", "exec_table"])
@pytest.mark.parametrize("command, words", [
    (123, r"^command must be a string \(run through sh -c\) or a list of strings, got int$"),
    (b"uptime", r"^command must be a string .*, got bytes \(decode it first\)$"),
    ({"ps"}, r"^command must be .*, got set$"),
    (["ps", 5], r"^command must be a list of strings: item 1 is int \(5\)$"),
    (["ps", None], r"^command must be a list of strings: item 1 is NoneType \(None\)$"),
])
def test_a_wrong_command_argument_is_named_with_what_it_accepts(silent, fn, command, words):
    call = getattr(ka, fn)
    message = run_against(silent, lambda c: call(c, command, instances=[IID]))
    assert re.search(words, message), message


@pytest.mark.parametrize("fn", ["exec_many", "exec_table"])
def test_instances_and_command_swapped_says_which_goes_where(silent, fn):
    frame = pd.DataFrame({"id": [IID]})
    message = run_against(silent, lambda c: getattr(ka, fn)(c, frame, instances=[IID]))
    assert message.startswith("command must be a string")
    assert "got DataFrame" in message
    assert f"{fn}(client, command, instances=...)" in message
    # the old positional habit is refused by the signature, before anything is sent
    message = run_against(silent, lambda c: getattr(ka, fn)(c, frame, "uptime"))
    assert "positional argument" in message


# -- follow against an API that stops answering ---------------------------------------
def answers_then_stops(conn, srv):
    """Answer listings with empty pages while ``srv.state["answer"]``; then read each
    request and never answer it."""
    deadline = time.monotonic() + 20
    while until(deadline):
        req = srv.next_request(conn)
        if req is None:
            return
        if not srv.state.get("answer", True):
            while until(deadline) and not srv.state.get("closed"):
                time.sleep(0.05)
            return
        key = "events" if req.path.endswith("instance_events") else "instances"
        http_reply(conn, 200, {key: [], "count": 0, "has_next": False,
                               "limit": int(req.query.get("limit", 100)), "offset": 0})


def test_follow_says_the_api_timed_out_and_where():
    with HostileServer(answers_then_stops) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, timeout=1.0, max_retries=0)
        view = ka.follow(client, window="1h", every="1s", start=False)
        try:
            assert view.poll_once().error is None  # the API answers at first
            srv.state["answer"] = False
            result = view.poll_once()
            shown = view.status.value  # what the notebook shows
        finally:
            view.close()
            srv.state["closed"] = True
    error = result.error
    assert error is not None
    assert "timed out after 1 s" in error
    assert f"{srv.url}/v1/instance_events" in error
    assert "stopped answering" in error
    assert view.poller.last_error == error and view.poller.backing_off
    assert "timed out after 1 s" in shown and f"{srv.url}/v1/instance_events" in shown
    assert_token_absent(None, error, shown)


def test_the_poller_names_the_listing_that_timed_out_with_its_tries():
    with HostileServer(answers_then_stops) as srv:
        srv.state["answer"] = False
        client = ka.KoyebClient(TOKEN, base_url=srv.url, timeout=0.5, max_retries=1,
                                backoff_factor=0, backoff_max=0)
        try:
            result = Poller(client, window="1h", every="1s").poll()
        finally:
            srv.state["closed"] = True
    assert result.error is not None
    assert result.error == (f"the API did not answer: GET {srv.url}/v1/instance_events "
                            "timed out after 0.5 s (each of 2 tries)")
    assert_token_absent(None, result.error)
