"""Paging rules one by one on in-memory servers: which request goes how, what each
anomaly's note says word for word, shared statistics, bounds, the read-ahead budget."""

from __future__ import annotations

import math
import threading
import warnings

import pytest

from koyeb_analytics.api import _paging as pagination
from koyeb_analytics.api._paging import PageStats, PaginationWarning, count_pages, has_next_pages

from .test_pagination import RecordingBar, bars, count_server, has_next_server  # noqa: F401


class Server:
    """Rows ``0..n-1``; records every request as ``(how, offset)``."""

    def __init__(self, n, *, cap=100, count=None, counts=None, has_next=True, null_at=None,
                 echo=True):
        self.rows = [{"id": str(i)} for i in range(n)]
        self.cap, self.count, self.counts = cap, count, counts or {}
        self.has_next, self.null_at, self.echo = has_next, null_at, echo
        self.requests: list[tuple[str, int]] = []
        self.threads: set[str] = set()

    def reply(self, offset, limit):
        limit = min(limit, self.cap)
        items = None if offset == self.null_at else self.rows[offset:offset + limit]
        reply = {"items": items, "limit": limit} if self.echo else {"items": items}
        count = self.counts.get(offset, self.count)
        if count is not None:
            reply["count"] = count
        if self.has_next:
            reply["has_next"] = offset + limit < len(self.rows)
        return reply

    def fetch(self, offset, limit):
        self.requests.append(("get", offset))
        self.threads.add(threading.current_thread().name.split("_")[0])
        return self.reply(offset, limit)

    def fetch_each(self, offsets, limit, last=None):
        for offset in offsets:
            self.requests.append(("each", offset))
            reply = self.reply(offset, limit)
            yield reply
            if last is not None and last(reply):
                return


def pages(gen):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return [len(p) for p in gen]


# -- count_pages --------------------------------------------------------------------
def test_count_pages_requests_by_plan():
    srv = Server(150, count=150)
    assert pages(count_pages(srv.fetch, "items", progress=False, fetch_each=srv.fetch_each,
                             concurrency=4)) == [100, 50]
    assert srv.requests == [("get", 0), ("get", 100)]   # one page planned: plainly
    assert srv.threads == {"MainThread"}
    srv = Server(250, count=250)
    assert pages(count_pages(srv.fetch, "items", progress=False,
                             fetch_each=srv.fetch_each)) == [100, 100, 50]
    assert srv.requests == [("get", 0), ("each", 100), ("each", 200)]
    srv = Server(250, count=250)
    assert sorted(pages(count_pages(srv.fetch, "items", progress=False, concurrency=2))) == [
        50, 100, 100]
    assert srv.threads == {"MainThread", "koyeb-page"}
    srv = Server(250, count=250)
    assert pages(count_pages(srv.fetch, "items", progress=False)) == [100, 100, 50]
    assert srv.requests == [("get", 0), ("get", 100), ("get", 200)]


def test_count_pages_statistics_add_up_over_listings():
    stats = PageStats(pages=5, rows=7)
    pages(count_pages(Server(250, count=250).fetch, "items", stats=stats, progress=False))
    assert (stats.pages, stats.rows, stats.notes, stats.complete) == (8, 257, [], True)
    stats = PageStats(pages=1, rows=1)
    pages(count_pages(Server(150).fetch, "items", stats=stats, progress=False))  # no count
    assert (stats.pages, stats.rows) == (3, 151)


def test_pages_smaller_than_asked_set_the_page_size_with_a_note():
    stats = PageStats()
    srv = Server(3, cap=1, count=3, echo=False)   # the page size, told by the rows only
    assert pages(count_pages(srv.fetch, "items", stats=stats, progress=False,
                             desc="rows")) == [1, 1, 1]
    assert stats.notes == ["rows: pages hold 1 rows although 100 were asked for; "
                           "reading 1 at a time"]
    # the last page was full: one more request, in case rows arrived meanwhile
    assert srv.requests == [("get", 0), ("get", 1), ("get", 2), ("get", 3)]
    stats = PageStats()
    with pytest.warns(PaginationWarning):
        list(count_pages(Server(0, count=1).fetch, "items", stats=stats, progress=False,
                         desc="rows"))
    assert stats.notes == ["rows: the server claims 1 rows but sent none; stopping"]


def test_a_count_growing_while_paging_is_read_on_without_a_warning():
    srv = Server(250, count=200, counts={100: 250})
    stats = PageStats()
    assert pages(count_pages(srv.fetch, "items", stats=stats, progress=False)) == [100, 100,
                                                                                   50]
    assert (stats.rows, stats.notes, stats.complete) == (250, [], True)


def test_a_count_lower_than_the_rows_is_read_on_and_said():
    stats = PageStats()
    with pytest.warns(PaginationWarning):
        got = list(count_pages(Server(350, count=150).fetch, "items", stats=stats,
                               progress=False, desc="rows"))
    assert [len(p) for p in got] == [100, 100, 100, 50]
    assert stats.notes == ["rows: the server's count (150) is lower than the rows it sent "
                           "(350); read on while pages brought new rows"]
    # rows beyond the count, none found by reading on: nothing to say
    stats = PageStats()
    assert pages(count_pages(Server(200, count=150).fetch, "items", stats=stats,
                             progress=False)) == [100, 100]
    assert stats.notes == []


@pytest.mark.parametrize("where, kind", [(0, "count first"), (100, "planned"),
                                         (200, "read on")])
def test_a_page_that_is_not_a_list_names_the_listing(where, kind):
    count = 150 if kind == "read on" else 250
    srv = Server(300, count=count, null_at=where)
    with pytest.raises(pagination.MalformedResponseError) as info:
        list(count_pages(srv.fetch, "items", progress=False, desc="rows"))
    assert str(info.value) == "rows: 'items' is null, not a list"
    srv = Server(300, null_at=100)     # no count: read in order
    with pytest.raises(pagination.MalformedResponseError, match="^rows: 'items' is null"):
        list(count_pages(srv.fetch, "items", progress=False, desc="rows"))


def test_count_pages_warnings_word_for_word():
    same = {"items": [{"id": "a"}], "count": 10, "limit": 1}
    stats = PageStats()
    with pytest.warns(PaginationWarning):
        list(count_pages(lambda o, n: same, "items", limit=1, stats=stats, progress=False,
                         desc="rows", seen=lambda page: 0))
    assert stats.notes == ["rows: the page at offset 1 repeats rows already received (the "
                           "server seems to ignore offset); stopping"]
    stats = PageStats()
    with pytest.warns(PaginationWarning):
        list(count_pages(Server(100, count=300).fetch, "items", stats=stats, progress=False,
                         desc="rows"))
    assert stats.notes == ["rows: the server claims 300 rows but the page at offset 100 is "
                           "empty; stopping"]


def test_progress_is_on_by_default(bars):  # noqa: F811
    list(count_pages(Server(1000, count=1000).fetch, "items"))
    list(has_next_pages(Server(950).fetch, "items"))
    assert [(b.total, b.desc, b.n) for b in bars] == [(10, "pages", 11), (None, "pages", 10)]


# -- has_next_pages -----------------------------------------------------------------
def test_has_next_pages_warnings_word_for_word_and_shared_statistics():
    stats = PageStats(pages=2, rows=3)
    with pytest.warns(PaginationWarning):
        list(has_next_pages(lambda o, n: {"items": [{"id": "a"}], "has_next": True}, "items",
                            stats=stats, progress=False, desc="rows", seen=lambda p: 0))
    assert (stats.pages, stats.rows) == (3, 4)
    assert stats.notes == ["rows: the page at offset 0 repeated rows already received; "
                           "stopping"]
    stats = PageStats()
    with pytest.warns(PaginationWarning):
        list(has_next_pages(lambda o, n: {"items": [], "has_next": True}, "items",
                            stats=stats, progress=False, desc="rows"))
    assert stats.notes == ["rows: the server says has_next but sent an empty page at offset "
                           "0; stopping"]
    with pytest.raises(pagination.MalformedResponseError, match="^rows: 'items' is str"):
        list(has_next_pages(lambda o, n: {"items": "x"}, "items", progress=False,
                            desc="rows"))


def test_max_pages_bounds_every_loop(monkeypatch):
    monkeypatch.setattr(pagination, "MAX_PAGES", 5)
    forever = has_next_server(10_000, always_more=True)
    stats = PageStats()
    with pytest.warns(PaginationWarning):
        got = list(has_next_pages(forever, "items", stats=stats, progress=False,
                                  desc="rows"))
    assert len(got) == 5 and stats.notes == ["rows: stopped after 5 pages (MAX_PAGES)"]
    stats = PageStats()
    with pytest.warns(PaginationWarning):
        got = list(count_pages(Server(10_000).fetch, "items", stats=stats, progress=False,
                               desc="rows"))
    assert len(got) == 5 and stats.notes == ["rows: stopped after 5 pages (MAX_PAGES)"]


def newest_first_stop(below):
    return lambda page: int(page[-1]["id"]) >= below


def test_pipelined_with_a_stop_sends_nothing_past_it():
    srv = Server(1000)
    got = pages(has_next_pages(srv.fetch, "items", progress=False, fetch_each=srv.fetch_each,
                               stop=newest_first_stop(250)))
    assert got == [100, 100, 100]
    assert srv.requests == [("get", 0), ("each", 100), ("each", 200)]
    srv = Server(1000)      # without a stop: pipelined to the end
    assert len(pages(has_next_pages(srv.fetch, "items", progress=False,
                                    fetch_each=srv.fetch_each))) == 10
    assert srv.requests == [("get", 0)] + [("each", k) for k in range(100, 1000, 100)]


def test_pipelined_stops_at_a_short_page_or_has_next_false():
    srv = Server(250, has_next=False)
    assert pages(has_next_pages(srv.fetch, "items", progress=False, fetch_each=srv.fetch_each,
                                stop=newest_first_stop(10**6))) == [100, 100, 50]
    assert srv.requests == [("get", 0), ("each", 100), ("each", 200)]
    srv = Server(200)        # the last full page says has_next false: nothing after it
    assert pages(has_next_pages(srv.fetch, "items", progress=False, fetch_each=srv.fetch_each,
                                stop=newest_first_stop(10**6))) == [100, 100]
    assert srv.requests == [("get", 0), ("each", 100)]


@pytest.mark.parametrize("estimate, in_flight", [(0.0, 1), (0.4, 1), (1.5, 2), (9.0, 3),
                                                 (math.nan, 3)])
def test_the_read_ahead_budget_follows_the_estimate(estimate, in_flight):
    lock = threading.Lock()
    state = {"now": 0, "most": 0}
    srv = Server(3000, has_next=True)
    gate = threading.Event()

    def fetch(offset, limit):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        if offset:
            gate.wait(0.05)
        with lock:
            state["now"] -= 1
        return srv.reply(offset, limit)
    stats = PageStats()
    got = list(has_next_pages(fetch, "items", progress=False, concurrency=3, stats=stats,
                              stop=newest_first_stop(1000), left=lambda page: estimate))
    assert sum(len(p) for p in got) >= 1000 and state["most"] == in_flight


def test_a_listing_without_count_ends_at_a_page_of_repeats(bars):  # noqa: F811
    same = {"items": [{"id": str(i)} for i in range(100)]}       # offset ignored, no count
    stats = PageStats()
    kept: set[str] = set()      # what the consumer holds, as the loaders' collector does
    got = []
    with pytest.warns(PaginationWarning):
        for page in count_pages(lambda o, n: same, "items", stats=stats, desc="rows",
                                seen=lambda page: sum(r["id"] not in kept for r in page)):
            got.append(page)
            kept.update(r["id"] for r in page)
    assert len(got) == 2 and stats.complete is False
    assert stats.notes == ["rows: the page at offset 100 repeats rows already received (the "
                           "server seems to ignore offset); stopping"]
    list(count_pages(Server(950).fetch, "items"))           # no count: a bar after page 4
    assert [(b.total, b.desc, b.n, b.closed) for b in bars] == [(None, "pages", 10, True)]


def test_planned_pages_keep_the_concurrency_busy_on_worker_threads():
    lock = threading.Lock()
    state = {"now": 0, "most": 0, "workers": 0}
    srv = Server(1000, count=1000)

    def fetch(offset, limit):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            state["workers"] += threading.current_thread().name.startswith("koyeb-page")
        threading.Event().wait(0.02)
        with lock:
            state["now"] -= 1
        return srv.reply(offset, limit)
    stats = PageStats()
    got = list(count_pages(fetch, "items", stats=stats, concurrency=2, progress=False))
    assert sorted(len(p) for p in got) == [100] * 10 + [0] * (len(got) - 10)
    assert (state["most"], state["workers"]) == (2, 9)   # every planned page, two at a time
    assert stats.complete is True


def test_overlapped_reading_wastes_at_most_the_concurrency():
    srv = Server(1000)
    stats = PageStats()
    rows = [r["id"] for p in has_next_pages(srv.fetch, "items", stats=stats, concurrency=3,
                                            progress=False) for r in p]
    assert len(set(rows)) == 1000
    assert stats.discarded <= 3 and len(srv.requests) <= stats.pages + 3
    assert stats.pages == 11     # 100, then 99 new rows a page (each overlaps by one)
