"""The page generators, on in-memory servers and on the simulator."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koyeb_analytics.pagination import PageStats, PaginationWarning, count_pages, has_next_pages

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
                             stats=stats, progress=False, sequential_below=0))
    ids = [r["id"] for p in pages for r in p]
    assert sorted(ids, key=int) == [str(i) for i in range(n)]
    assert stats.pages == max(1, -(-n // min(limit, cap)))


@given(n=st.integers(0, 950), limit=st.integers(1, 100), cap=st.integers(1, 100))
@settings(max_examples=60, deadline=None)
def test_has_next_pages_reads_every_row_once(n, limit, cap):
    pages = list(has_next_pages(has_next_server(n, cap), "items", limit=limit, progress=False))
    assert [r["id"] for p in pages for r in p] == [str(i) for i in range(n)]


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
        for page in count_pages(flaky, "items", concurrency=3, progress=False,
                                sequential_below=0):
            got.append(page)
    assert sum(map(len, got)) >= 500


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
                                        concurrency=concurrency, progress=False,
                                        sequential_below=0) for r in p]
    assert sorted(ids) == sorted(sim.fleet.inst["id"])


def test_fast_servers_are_read_in_order_slow_ones_concurrently():
    import threading
    import time

    def make(delay):
        threads = set()

        def fetch(offset, limit):
            threads.add(threading.current_thread().name)
            time.sleep(delay)
            return count_server(1000)(offset, limit)
        return fetch, threads

    fast, fast_threads = make(0)
    assert sum(map(len, count_pages(fast, "items", concurrency=4, progress=False))) == 1000
    assert len(fast_threads) == 1
    slow, slow_threads = make(0.01)
    assert sum(map(len, count_pages(slow, "items", concurrency=4, progress=False))) == 1000
    assert len(slow_threads) > 1
