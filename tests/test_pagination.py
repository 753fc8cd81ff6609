"""The page generators, on in-memory servers and on the simulator."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koyeb_analytics.api._paging import PageStats, PaginationWarning, count_pages, has_next_pages

from .conftest import fast_client


def count_server(n, cap=100, lie=0):
    rows = [{"id": str(i)} for i in range(n)]

    def fetch(offset, limit):
        limit = min(limit, cap)
        return {"items": rows[offset:offset + limit], "count": n + lie, "limit": limit,
                "offset": offset}
    return fetch


def has_next_server(n, cap=100, always_more=False):
    rows = [{"id": str(i)} for i in range(n)]

    def fetch(offset, limit):
        limit = min(limit, cap)
        page = rows[offset:offset + limit]
        return {"items": page, "limit": limit, "has_next": always_more or offset + limit < n}
    return fetch


@given(n=st.integers(0, 950), limit=st.integers(1, 100), cap=st.integers(1, 100),
       concurrency=st.integers(1, 6))
@settings(max_examples=60, deadline=None)
def test_count_pages_reads_every_row_once(n, limit, cap, concurrency):
    stats = PageStats()
    pages = list(count_pages(count_server(n, cap), "items", limit=limit, concurrency=concurrency,
                             stats=stats, progress=False))
    ids = [r["id"] for p in pages for r in p]
    assert sorted(ids, key=int) == [str(i) for i in range(n)]
    size = min(limit, cap)
    # One request past the end when the last page is full: a count may be too low.
    assert stats.pages == max(1, -(-n // size)) + (n > 0 and n % size == 0)


@given(n=st.integers(0, 950), limit=st.integers(1, 100), cap=st.integers(1, 100))
@settings(max_examples=60, deadline=None)
def test_has_next_pages_reads_every_row_once(n, limit, cap):
    pages = list(has_next_pages(has_next_server(n, cap), "items", limit=limit, progress=False))
    assert [r["id"] for p in pages for r in p] == [str(i) for i in range(n)]



def pipelined(fetch, requests):
    """An in-memory ``fetch_each`` with KoyebClient.get_each's order: without ``last``,
    the next request goes out before a reply is handed over; with it, after the reply
    is checked, and not at all once ``last`` says so."""
    def fetch_each(offsets, limit, last=None):
        offsets = iter(offsets)
        at = next(offsets)
        requests.append(at)
        while True:
            reply = fetch(at, limit)
            if last is not None and last(reply):
                yield reply
                return
            at = next(offsets)
            requests.append(at)
            yield reply
    return fetch_each


@given(n=st.integers(0, 950), limit=st.integers(2, 100), cap=st.integers(2, 100),
       short=st.sets(st.integers(0, 20), max_size=3), since=st.none() | st.integers(0, 950))
@settings(max_examples=80, deadline=None)
def test_has_next_pages_ahead_reads_every_row_once(n, limit, cap, short, since):
    # Pages are requested one ahead, assuming full pages; a short page that still has
    # a next one (``short``: page numbers answered one row short) returns to plain
    # requests. Every request is either a page used or a page counted as discarded.
    rows = [{"id": str(i)} for i in range(n)]
    requests: list[int] = []

    def fetch(offset, lim):
        lim = min(lim, cap)
        size = lim - 1 if offset // lim in short else lim
        return {"items": rows[offset:offset + size], "limit": lim,
                "has_next": offset + size < n}

    def plain(offset, lim):
        requests.append(offset)
        return fetch(offset, lim)

    stats = PageStats()
    stop = None if since is None else (lambda p: int(p[-1]["id"]) >= since)
    pages = list(has_next_pages(plain, "items", limit=limit, stats=stats, progress=False,
                                stop=stop, fetch_each=pipelined(fetch, requests)))
    ids = [r["id"] for p in pages for r in p]
    assert ids == [str(i) for i in range(len(ids))]  # in order, none twice, no gap
    if since is None:
        assert len(ids) == n
    else:  # stopped at the first page reaching ``since``
        assert all(int(p[-1]["id"]) < since for p in pages[:-1])
        assert len(ids) == n or int(ids[-1]) >= since
    assert len(requests) == stats.pages + stats.discarded
    # With a window each reply is checked before the next request: none wasted;
    # without, one request past the end (or past the first short page).
    assert stats.discarded == 0 if since is not None else stats.discarded <= 1

def test_server_claiming_more_ends_with_a_warning():
    with pytest.warns(PaginationWarning, match="empty"):
        pages = list(count_pages(count_server(150, lie=1000), "items", concurrency=1,
                                 progress=False))
    assert sum(map(len, pages)) == 150
    seen: set[str] = set()

    def count_new(page):
        new = sum(r["id"] not in seen for r in page)
        seen.update(r["id"] for r in page)
        return new

    def repeating(offset, limit):
        return {"items": [{"id": "a"}, {"id": "b"}], "has_next": True}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pages = list(has_next_pages(repeating, "items", seen=count_new, progress=False))
    assert len(pages) == 2  # the second page brought nothing new
    assert any(issubclass(w.category, PaginationWarning) for w in caught)

    def empty_but_more(offset, limit):
        return {"items": [], "has_next": True}

    with pytest.warns(PaginationWarning, match="has_next"):
        assert list(has_next_pages(empty_but_more, "items", progress=False)) == []


def test_failure_keeps_pages_already_received():
    def flaky(offset, limit):
        if offset >= 500:
            raise RuntimeError("boom")
        return count_server(1000)(offset, limit)

    got = []
    with pytest.raises(RuntimeError, match="boom"):
        for page in count_pages(flaky, "items", concurrency=3, progress=False):
            got.append(page)
    # Every page before the failure, none after it: offsets 0 to 400.
    assert sum(map(len, got)) == 500
    assert sorted(int(r["id"]) for page in got for r in page) == list(range(500))


def test_stop_predicate_ends_after_the_page():
    pages = list(has_next_pages(has_next_server(1000), "items", progress=False,
                                stop=lambda p: int(p[-1]["id"]) >= 250))
    assert len(pages) == 3


@given(limit=st.integers(1, 100), concurrency=st.integers(1, 5))
@settings(max_examples=15, deadline=None)
def test_against_the_simulator(sim, limit, concurrency):
    client = fast_client(sim)

    def fetch(offset, lim):
        return client.get("/v1/instances", {"limit": lim, "offset": offset, "order": "asc"})

    ids = [r["id"] for p in count_pages(fetch, "instances", limit=limit,
                                        concurrency=concurrency, progress=False) for r in p]
    assert sorted(ids) == sorted(sim.fleet.inst["id"])


def test_read_ahead_is_the_callers_choice_not_a_timing_rule():
    import threading

    def make():
        threads = set()

        def fetch(offset, limit):
            threads.add(threading.current_thread().name)
            return count_server(1000)(offset, limit)
        return fetch, threads

    # Without fetch_each and with concurrency, pages go to worker threads, however
    # fast the server; with concurrency 1, in order on the caller's thread.
    fetch, threads = make()
    assert sum(map(len, count_pages(fetch, "items", concurrency=4, progress=False))) == 1000
    assert any(t.startswith("koyeb-page") for t in threads)  # the first page: here
    fetch, threads = make()
    assert sum(map(len, count_pages(fetch, "items", concurrency=1, progress=False))) == 1000
    assert threads == {threading.current_thread().name}


def head_inserting_server(n, limit_cap=100):
    """Newest first, like events in desc order; ``insert(k)`` adds k rows at the head."""
    import threading

    rows = [{"id": f"r{i}"} for i in range(n)]
    lock = threading.Lock()
    requests: list[int] = []

    def fetch(offset, limit):
        with lock:
            requests.append(offset)
            page = rows[offset:offset + min(limit, limit_cap)]
            return {"items": [dict(r) for r in page], "has_next": offset + len(page) < len(rows)}

    def insert(k):
        with lock:
            rows[:0] = [{"id": f"new{len(rows)}-{j}"} for j in range(k)]

    return fetch, insert, requests


def test_overlapped_pages_detect_a_gap_from_out_of_order_handling():
    import time

    fetch, insert, requests = head_inserting_server(100)

    def racing(offset, limit):
        if offset == 9:  # the first page ahead: handled last, after 5 new rows
            time.sleep(0.1)
            insert(5)
        return fetch(offset, limit)

    seen: set[str] = set()

    def count_new(page):
        new = {r["id"] for r in page} - seen
        seen.update(new)
        return len(new)

    stats = PageStats()
    list(has_next_pages(racing, "items", limit=10, concurrency=3, stats=stats,
                        seen=count_new, progress=False))
    # Pages at 18 and 27 were answered before the insert; without the overlap check
    # the rows r14..r17 would fall between the page at 9 and the page at 18.
    assert {f"r{i}" for i in range(100)} <= seen
    assert stats.discarded >= 1 and len(requests) == stats.pages + stats.discarded


@pytest.mark.parametrize("seed", range(12))
def test_overlapped_pages_under_random_inserts_miss_nothing(seed):
    import random
    import time

    rnd = random.Random(seed)
    fetch, insert, requests = head_inserting_server(rnd.randint(0, 400))

    def jittery(offset, limit):
        time.sleep(rnd.random() * 0.004)
        if rnd.random() < 0.3:
            insert(rnd.randint(1, 15))
        return fetch(offset, limit)

    first = fetch(0, 10**6)["items"]
    original = {r["id"] for r in first}
    requests.clear()
    stats = PageStats()
    pages = list(has_next_pages(jittery, "items", limit=rnd.randint(2, 30),
                                concurrency=rnd.randint(2, 5), stats=stats,
                                progress=False))
    got = {r["id"] for p in pages for r in p}
    assert original <= got
    assert len(requests) == stats.pages + stats.discarded


# -- a window read ahead on threads, and the small checks (mutation testing found these)

@given(n=st.integers(150, 900), stop_at=st.integers(0, 899), concurrency=st.integers(2, 6))
@settings(max_examples=40, deadline=None)
def test_a_window_read_ahead_stops_near_its_start(n, stop_at, concurrency):
    # Rows newest first, one a second; the window reaches back to row ``stop_at``.
    stop_at = min(stop_at, n - 1)
    rows = [{"id": str(i), "t": n - i} for i in range(n)]
    asked: list[int] = []

    def fetch(offset, limit):
        asked.append(offset)
        return {"items": rows[offset:offset + limit], "has_next": offset + limit < n}

    since = n - stop_at
    stats = PageStats()
    seen: set[str] = set()

    def count_new(page):
        new = sum(r["id"] not in seen for r in page)
        seen.update(r["id"] for r in page)
        return new

    read = [0]

    def left(page):
        read[0] += 1
        per_page = (rows[0]["t"] - page[-1]["t"]) / read[0]
        return (page[-1]["t"] - since) / per_page if per_page > 0 else float("nan")

    pages = list(has_next_pages(fetch, "items", stats=stats, progress=False,
                                stop=lambda p: p[-1]["t"] < since, seen=count_new,
                                concurrency=concurrency, left=left))
    got = {r["id"] for p in pages for r in p}
    assert {str(i) for i in range(stop_at + 1)} <= got  # the whole window
    assert stats.discarded <= concurrency - 1
    assert len(asked) == stats.pages + stats.discarded
    # Pages overlap by a row (99 new rows each): never more than the window needs.
    assert stats.pages <= -(-(stop_at + 1) // 99) + 1


def test_without_an_estimate_a_window_is_read_plainly():
    asked: list[int] = []

    def fetch(offset, limit):
        asked.append(offset)
        return {"items": [{"id": str(i)} for i in range(offset, offset + limit)],
                "has_next": True}

    pages = list(has_next_pages(fetch, "items", progress=False, concurrency=4,
                                stop=lambda p: int(p[-1]["id"]) >= 399))
    assert asked == [0, 100, 200, 300] and len(pages) == 4


def test_the_small_checks_exactly():
    from koyeb_analytics.api._paging import _echoed_limit, _holds, _items, _new_rows

    assert _echoed_limit({"limit": 100}, 100) == 100
    assert _echoed_limit({"limit": 7}, 100) == 7
    assert _echoed_limit({"limit": 0}, 100) == 100
    assert _echoed_limit({"limit": True}, 100) == 100
    assert _new_rows([{"id": "a"}, {"id": 3}, "x", {"id": "b"}]) == 2
    assert _holds({"items": [{"id": "a"}, {"id": "b"}]}, "items", "b")
    assert not _holds({"items": [{"uid": "b"}]}, "items", "b")
    assert not _holds({"items": None}, "items", "b")
    with pytest.raises(Exception) as err:
        _items({"items": None}, "items", "rows")
    assert str(err.value) == "rows: 'items' is null, not a list"
    with pytest.raises(Exception) as err:
        _items({"items": "oops"}, "items", "rows")
    assert str(err.value) == "rows: 'items' is str, not a list"
    assert _items({}, "items", "rows") == []  # protojson omits empty lists


def test_counts_pages_rows_and_words_exactly():
    stats = PageStats()
    pages = list(count_pages(count_server(250), "items", stats=stats, progress=False,
                             desc="rows"))
    assert [len(p) for p in pages] == [100, 100, 50]
    assert (stats.pages, stats.rows, stats.notes) == (3, 250, [])
    stats = PageStats()
    list(has_next_pages(has_next_server(250), "items", stats=stats, progress=False))
    assert (stats.pages, stats.rows) == (3, 250)
    # A server ignoring offset: the warning says so, and names the listing.
    same = {"items": [{"id": "a"}, {"id": "b"}], "count": 10}
    stats = PageStats()
    with pytest.warns(PaginationWarning, match="rows: the page at offset [0-9]+ repeats rows"):
        list(count_pages(lambda o, n: same, "items", limit=2, stats=stats, progress=False,
                         desc="rows", seen=_counting_new()))
    assert "ignore offset" in stats.notes[0]
    # An empty first page: a warning only when the count says there were rows.
    with pytest.warns(PaginationWarning, match="claims 1 rows but sent none"):
        assert list(count_pages(lambda o, n: {"items": [], "count": 1}, "items",
                                progress=False)) == [[]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(count_pages(lambda o, n: {"items": [], "count": 0}, "items",
                                progress=False)) == [[]]


def _counting_new():
    seen: set[str] = set()

    def count_new(page):
        new = sum(r["id"] not in seen for r in page)
        seen.update(r["id"] for r in page)
        return new
    return count_new


@pytest.mark.parametrize("concurrency", [2, 3, 5])
def test_concurrent_pages_never_exceed_the_concurrency(concurrency):
    import threading
    import time as _time

    lock = threading.Lock()
    now = [0]
    peak = [0]
    server = count_server(1500)

    def fetch(offset, limit):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        _time.sleep(0.01)
        with lock:
            now[0] -= 1
        return server(offset, limit)

    pages = list(count_pages(fetch, "items", concurrency=concurrency, progress=False))
    assert sum(map(len, pages)) == 1500
    assert peak[0] == concurrency


def test_a_failed_page_among_concurrent_ones_is_raised_after_the_good_ones():
    server = count_server(800)

    def fetch(offset, limit):
        if offset == 300:
            raise RuntimeError("page 300 failed")
        return server(offset, limit)

    got = []
    with pytest.raises(RuntimeError, match="page 300 failed"):
        for page in count_pages(fetch, "items", concurrency=3, progress=False):
            got.append(page)
    offsets = sorted(int(p[0]["id"]) for p in got)
    assert 300 not in offsets and offsets[:3] == [0, 100, 200]


class RecordingBar:
    """Stands in for tqdm: what a progress bar was asked to show."""

    made: list[RecordingBar] = []

    def __init__(self, total=None, desc=None, unit=None, leave=None):
        self.total, self.desc, self.unit, self.leave = total, desc, unit, leave
        self.n = 0
        self.closed = False
        RecordingBar.made.append(self)

    def update(self, k):
        self.n += k

    def close(self):
        self.closed = True


@pytest.fixture
def bars(monkeypatch):
    import tqdm.auto

    RecordingBar.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    return RecordingBar.made


def test_a_progress_bar_appears_only_for_long_listings(bars):
    list(count_pages(count_server(250), "items", progress=True, desc="rows"))
    assert bars == []  # three pages: no bar
    list(count_pages(count_server(1000), "items", progress=True))
    (bar,) = bars
    assert (bar.total, bar.desc, bar.unit, bar.leave) == (10, "pages", "page", False)
    assert bar.n == 11 and bar.closed  # and the page read past a full last page
    bars.clear()
    list(count_pages(count_server(1000), "items", progress=False))
    assert bars == []
    # Without a count, the bar appears after the fourth page and counts them all.
    list(has_next_pages(has_next_server(950), "items", progress=True, desc="events"))
    (bar,) = bars
    assert (bar.total, bar.desc, bar.n, bar.closed) == (None, "events", 10, True)
    bars.clear()
    list(has_next_pages(has_next_server(300), "items", progress=True))  # 3 pages
    assert bars == []
