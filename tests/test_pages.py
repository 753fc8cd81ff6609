"""``KoyebClient.pages``: the one listing primitive, over real sockets.

Against the simulator (a count listing read oldest first, an event listing read newest
first with a stop rule) and against small hostile servers that page the way the
activities endpoint does (``has_next``, no ``count``), repeat a page, or never end.
"""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.api import _paging
from koyeb_analytics.api._paging import PageStats, PaginationWarning

from .conftest import fast_client
from .hostile import TOKEN, HostileServer, rest

MODES = ("pipelined", "threads", "none")
N = 250


def activity(k: int) -> dict:
    return {"id": f"act-{k:06d}", "type": "autoscaled",
            "created_at": (pd.Timestamp("2026-11-20T12:00:00Z")
                           - pd.Timedelta(minutes=k)).isoformat()}


def has_next_only(total: int | None = N, *, repeat: bool = False, count: bool = False):
    """Activities as the API pages them: limit/offset, ``has_next``, no ``count``;
    ``total=None`` never ends; ``repeat`` ignores ``offset`` (every page is the first);
    ``count`` adds one, as deployments have (newest first, like activities)."""
    def route(req, srv):
        limit, offset = int(req.query["limit"]), int(req.query["offset"])
        if repeat:
            offset = 0
        end = offset + limit if total is None else min(offset + limit, total)
        extra = {"count": total} if count else {}
        return 200, {"activities": [activity(k) for k in range(offset, end)],
                     "limit": limit, "offset": offset,
                     "has_next": total is None or end < total, **extra}, {}
    return rest(route)


def client_for(srv: HostileServer, read_ahead: str, **options) -> ka.KoyebClient:
    return ka.KoyebClient(TOKEN, base_url=srv.url, read_ahead=read_ahead, concurrency=4,
                          max_retries=0, timeout=5, **options)


def received(srv: HostileServer, stats: PageStats) -> list:
    """The requests the server received, once it has read each one the pager counted
    (a request sent ahead on a pipelined connection may still be on its way)."""
    deadline = time.monotonic() + 2
    while len(srv.requests) < stats.pages + stats.discarded and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(srv.requests)


def offsets(requests) -> list[int]:
    return [int(dict(r.query)["offset"]) for r in requests]


# -- the simulator ---------------------------------------------------------------------
@pytest.mark.parametrize("read_ahead", MODES)
def test_a_count_listing_reads_every_row_once_with_the_planned_requests(sim, read_ahead):
    client = fast_client(sim, read_ahead=read_ahead, concurrency=4)
    n = len(sim.fleet.inst["id"])
    n0 = len(sim.requests)
    stats = PageStats()
    ids = [r["id"] for page in client.pages("/v1/instances", [("order", "asc")],
                                            key="instances", stats=stats) for r in page]
    sent = [r for r in sim.requests[n0:] if r.path == "/v1/instances"]
    assert sorted(ids) == sorted(sim.fleet.inst["id"]) and len(ids) == n
    # the first reply's count chose count paging: offsets step by the page size, and
    # exactly the pages up to the count are requested
    assert sorted(offsets(sent)) == list(range(0, n, 100))
    assert (stats.pages, stats.rows, stats.discarded, stats.complete) == \
        (math.ceil(n / 100), n, 0, True)


@pytest.mark.parametrize("read_ahead", MODES)
def test_a_stop_rule_ends_a_newest_first_listing_after_its_page(sim, read_ahead):
    client = fast_client(sim, read_ahead=read_ahead, concurrency=4)
    since = sim.now - pd.Timedelta(days=1)

    def older(page):
        return pd.Timestamp(page[-1]["when"]) < since

    n0 = len(sim.requests)
    stats = PageStats()
    pages = list(client.pages("/v1/instance_events", {"order": "desc"}, key="events",
                              stop=older, stats=stats))
    sent = [r for r in sim.requests[n0:] if r.path == "/v1/instance_events"]
    assert [older(p) for p in pages] == [False] * (len(pages) - 1) + [True]
    assert len(pages) > 2
    # no page requested past the one that stopped it (pipelined sends none after a
    # reply that ends the listing; threads without an estimate read a window plainly)
    assert len(sent) == stats.pages == len(pages) and stats.discarded == 0
    received = {r["id"] for p in pages for r in p}
    every = [r for p in client.pages("/v1/instance_events", {"order": "desc"},
                                     key="events") for r in p]
    assert {r["id"] for r in every if pd.Timestamp(r["when"]) >= since} <= received


def test_an_estimate_lets_a_window_read_ahead_on_threads_within_its_bound(sim):
    client = fast_client(sim, read_ahead="threads", concurrency=4)
    since = sim.now - pd.Timedelta(days=2)
    n0 = len(sim.requests)
    stats = PageStats()
    pages = list(client.pages(
        "/v1/instance_events", {"order": "desc"}, key="events", stats=stats,
        stop=lambda page: pd.Timestamp(page[-1]["when"]) < since,
        left=lambda page: (pd.Timestamp(page[-1]["when"]) - since) / pd.Timedelta("4h")))
    sent = [r for r in sim.requests[n0:] if r.path == "/v1/instance_events"]
    assert pd.Timestamp(pages[-1][-1]["when"]) < since
    # read ahead on threads: pages after the first overlap the previous one by a row
    assert sorted(offsets(sent))[:3] == [0, 99, 198]
    assert len(sent) == stats.pages + stats.discarded <= stats.pages + 3


def test_nothing_is_requested_before_the_first_page_is_asked_for(sim):
    client = fast_client(sim)
    n0 = len(sim.requests)
    listing = client.pages("/v1/instances", key="instances")
    assert len(sim.requests) == n0
    first = next(listing)
    assert len(first) == 100 and len(sim.requests) == n0 + 1
    listing.close()


# -- hostile servers ---------------------------------------------------------------------
@pytest.mark.parametrize("read_ahead", MODES)
def test_has_next_without_count_is_read_to_the_end(read_ahead):
    with HostileServer(has_next_only()) as srv:
        stats = PageStats()
        pages = list(client_for(srv, read_ahead).pages("/v1/activities", key="activities",
                                                       stats=stats))
        sent = received(srv, stats)
    ids = [r["id"] for p in pages for r in p]
    assert set(ids) == {activity(k)["id"] for k in range(N)} and stats.complete
    assert len(sent) == stats.pages + stats.discarded
    if read_ahead == "threads":
        # has_next paging read ahead: each page overlaps the previous one by a row
        assert sorted(offsets(sent))[:3] == [0, 99, 198] and len(sent) <= 3 + 4
    elif read_ahead == "pipelined":
        assert offsets(sent) == [0, 100, 200, 300] and stats.discarded == 1
    else:
        assert offsets(sent) == [0, 100, 200] and len(ids) == N


@pytest.mark.parametrize("paging, offsets_seen", [(None, [0, 99, 198]),
                                                   ("count", [0, 100, 200])])
def test_a_reply_with_has_next_is_paged_by_it_even_with_a_count(paging, offsets_seen):
    # deployments carry both and come newest first: only has_next paging's overlap
    # check notices rows inserted at the head, so it is the default; count is asked for
    with HostileServer(has_next_only(count=True)) as srv:
        stats = PageStats()
        pages = list(client_for(srv, "threads").pages("/v1/deployments", key="activities",
                                                      paging=paging, stats=stats))
        sent = received(srv, stats)
    assert {r["id"] for p in pages for r in p} == {activity(k)["id"] for k in range(N)}
    got = sorted(offsets(sent))
    assert got[:3] == offsets_seen and len(got) == stats.pages + stats.discarded
    assert got == offsets_seen if paging == "count" else len(got) <= 3 + 4


@pytest.mark.parametrize("paging", [None, "has_next"])
@pytest.mark.parametrize("read_ahead", MODES)
def test_a_page_that_repeats_ends_the_listing_with_a_warning(read_ahead, paging):
    with HostileServer(has_next_only(None, repeat=True)) as srv:
        stats = PageStats()
        with pytest.warns(PaginationWarning, match="repeated rows already received"):
            pages = list(client_for(srv, read_ahead).pages(
                "/v1/activities", key="activities", paging=paging, stats=stats,
                seen=_new_ids()))
        sent = len(srv.requests)
    assert len(pages) == 2 and pages[0] == pages[1] and not stats.complete
    assert sent <= 2 + 4


def _new_ids():
    """A ``seen`` that remembers ids, as the loaders' collectors do."""
    known: set[str] = set()

    def seen(page):
        fresh = {r["id"] for r in page} - known
        known.update(fresh)
        return len(fresh)
    return seen


@pytest.mark.parametrize("read_ahead", MODES)
def test_a_server_that_never_ends_is_held_to_the_page_bound(read_ahead, monkeypatch):
    monkeypatch.setattr(_paging, "MAX_PAGES", 12)
    with HostileServer(has_next_only(None)) as srv:
        stats = PageStats()
        with pytest.warns(PaginationWarning, match=r"activities: stopped after 12 pages"):
            pages = list(client_for(srv, read_ahead).pages("/v1/activities",
                                                           key="activities", stats=stats))
        sent = len(received(srv, stats))
    assert len(pages) == 12 and not stats.complete
    assert sent == stats.pages + stats.discarded <= 12 + 4


@pytest.mark.parametrize("read_ahead", MODES)
def test_a_stop_rule_ends_a_listing_the_server_never_ends(read_ahead):
    since = pd.Timestamp("2026-11-20T12:00:00Z") - pd.Timedelta(minutes=450)
    with HostileServer(has_next_only(None)) as srv:
        stats = PageStats()
        pages = list(client_for(srv, read_ahead).pages(
            "/v1/activities", key="activities", stats=stats,
            stop=lambda page: pd.Timestamp(page[-1]["created_at"]) < since))
        sent = len(srv.requests)
    assert len(pages) == 5 and stats.complete and sent == stats.pages == 5


@pytest.mark.parametrize("read_ahead", MODES)
def test_pages_received_before_a_failure_are_yielded_then_it_raises(read_ahead):
    def route(req, srv):
        limit, offset = int(req.query["limit"]), int(req.query["offset"])
        if offset >= 150:
            return 500, {"code": "internal", "message": "boom"}, {}
        return 200, {"activities": [activity(k) for k in range(offset, offset + limit)],
                     "has_next": True}, {}

    got = []
    with HostileServer(rest(route)) as srv:
        with pytest.raises(ka.ServerError) as caught:
            for page in client_for(srv, read_ahead).pages("/v1/activities",
                                                          key="activities"):
                got.append(page)
    assert caught.value.status == 500 and TOKEN not in str(caught.value)
    assert {activity(k)["id"] for k in range(150)} <= {r["id"] for p in got for r in p}


BAD = [
    ({"path": "v1/activities"}, ValueError, "path must be a string starting with '/'"),
    ({"key": ""}, TypeError, "key must be a non-empty string"),
    ({"paging": "cursor"}, ValueError, "paging must be 'count', 'has_next' or None"),
    ({"limit": 0}, ValueError, "limit must be a positive integer"),
    ({"limit": True}, ValueError, "limit must be a positive integer"),
    ({"stop": "old"}, TypeError, "stop must be callable"),
    ({"left": 3}, TypeError, "left must be callable"),
    ({"paging": "count", "stop": lambda page: True}, ValueError,
     "stop needs paging='has_next'"),
    ({"stats": {}}, TypeError, "stats must be a PageStats"),
    ({"params": {"limit": 10}}, ValueError, "params must not set limit"),
    ({"params": [("offset", "5"), ("types", "x")]}, ValueError,
     "params must not set offset"),
    ({"params": "types=x"}, TypeError, "params must be a mapping or a list"),
]


@pytest.mark.parametrize("change, cls, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_arguments_fail_at_the_call_before_any_request(change, cls, message):
    call = {"path": "/v1/activities", "key": "activities", **change}
    with HostileServer(has_next_only()) as srv:
        client = client_for(srv, "none")
        with pytest.raises(cls, match=message.replace("(", r"\(")):
            client.pages(call.pop("path"), call.pop("params", None), **call)
        assert srv.requests == []


def test_stats_add_up_over_listings_and_warnings_name_the_listing():
    with HostileServer(has_next_only()) as srv:
        client = client_for(srv, "none")
        stats = PageStats()
        list(client.pages("/v1/activities", key="activities", stats=stats))
        list(client.pages("/v1/activities", {"types": ["autoscaled", "paused"]},
                          key="activities", stats=stats))
        queries = [r.target.split("?", 1)[1] for r in srv.requests]
    assert (stats.pages, stats.rows, stats.complete) == (6, 500, True)
    assert queries == [f"limit=100&offset={o}" for o in (0, 100, 200)] + [
        f"types=autoscaled&types=paused&limit=100&offset={o}" for o in (0, 100, 200)]
    with HostileServer(has_next_only(None, repeat=True)) as srv:
        with pytest.warns(PaginationWarning) as caught:
            list(client_for(srv, "none").pages("/v1/activities", key="activities",
                                               desc="activity feed", seen=_new_ids()))
    assert [str(w.message) for w in caught] == [
        "activity feed: the page at offset 100 repeated rows already received; stopping"]
