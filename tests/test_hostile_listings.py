"""Classes 3 and 4: a listing never silently loses rows, never loops, never floods.

The servers here hold 250 instances (or endless events) and lie about them in one way
each. Every test bounds the requests it allows and the time it takes.
"""

from __future__ import annotations

import resource
import time
import warnings
import zlib

import pytest

import koyeb_analytics as ka
from koyeb_analytics.api._paging import PaginationWarning

from .hostile import TOKEN, HostileServer, rest, until

N = 250


def rows(start: int, stop: int) -> list[dict]:
    return [{"id": f"5b1f7f0e-1111-4222-8333-{k:012d}", "created_at":
             f"2026-11-20T00:{k // 60 % 60:02d}:{k % 60:02d}Z", "status": "HEALTHY"}
            for k in range(start, stop)]


ALL = rows(0, N)


def lying(kind: str):
    def route(req, srv):
        limit = int(req.query.get("limit", 100))
        offset = int(req.query.get("offset", 0))
        if kind == "cap7":  # silently caps pages at 7 rows and echoes the asked limit
            return 200, {"instances": ALL[offset:offset + 7], "count": N,
                         "limit": limit}, {}
        if kind == "ignore_offset":
            return 200, {"instances": ALL[:limit], "count": N}, {}
        if kind == "count_low":
            return 200, {"instances": ALL[offset:offset + limit], "count": 100}, {}
        if kind == "null_list":
            if offset == 0:
                return 200, {"instances": ALL[:limit], "count": N}, {}
            return 200, {"instances": None, "count": N}, {}
        if kind == "no_count":
            return 200, {"instances": ALL[offset:offset + limit]}, {}
        raise AssertionError(kind)
    return route


def load(srv, **options):
    options.setdefault("read_ahead", "threads")
    client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=5, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = ka.load_instances(client, names=False, progress=False)
    return df, [w for w in caught if issubclass(w.category, PaginationWarning)]


@pytest.mark.parametrize("read_ahead", ["threads", "pipelined", "none"])
def test_silently_capped_pages_are_read_to_the_end(read_ahead):
    with HostileServer(rest(lying("cap7"))) as srv:
        df, warned = load(srv, read_ahead=read_ahead)
    assert len(df) == N and df["id"].is_unique
    assert any("7 rows" in n for n in df.attrs["notes"])
    assert len(srv.requests) <= -(-N // 7) + 4


@pytest.mark.parametrize("read_ahead", ["threads", "pipelined"])
def test_a_server_ignoring_offset_stops_with_a_warning(read_ahead):
    with HostileServer(rest(lying("ignore_offset"))) as srv:
        df, warned = load(srv, read_ahead=read_ahead)
    assert len(df) == 100
    assert warned and "ignore offset" in str(warned[0].message)
    assert any("ignore offset" in n for n in df.attrs["notes"])
    assert len(srv.requests) <= 2 + 4  # a few pages in flight at most


def test_a_count_too_low_is_read_past_and_reported():
    with HostileServer(rest(lying("count_low"))) as srv:
        df, warned = load(srv)
    assert len(df) == N
    assert warned and "lower than the rows" in str(warned[0].message)
    assert any("count (100)" in n for n in df.attrs["notes"])


def test_no_count_reads_until_a_short_page():
    with HostileServer(rest(lying("no_count"))) as srv:
        df, _ = load(srv)
    assert len(df) == N and len(srv.requests) == 3


def test_a_null_list_is_malformed_and_keeps_the_rows():
    with HostileServer(rest(lying("null_list"))) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=5)
        with pytest.raises(ka.MalformedResponseError, match="null") as err:
            ka.load_instances(client, progress=False)
    assert isinstance(err.value, ka.IncompleteListingError)
    assert len(err.value.partial) == 100


def test_the_same_page_for_every_offset_ends_quickly():
    def route(req, srv):
        return 200, {"instances": ALL[:100], "count": 10**6}, {}

    with HostileServer(rest(route)) as srv:
        start = time.monotonic()
        df, warned = load(srv, concurrency=4)
    assert len(df) == 100 and warned
    assert len(srv.requests) <= 1 + 4 + 4
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("read_ahead", ["threads", "pipelined"])
def test_a_huge_count_with_empty_pages_costs_a_few_requests(read_ahead):
    def route(req, srv):
        if req.query.get("offset", "0") == "0":
            return 200, {"instances": ALL[:100], "count": 10**12}, {}
        return 200, {"instances": [], "count": 10**12}, {}

    with HostileServer(rest(route)) as srv:
        df, warned = load(srv, concurrency=4, read_ahead=read_ahead)
    assert len(df) == 100 and warned and "empty" in str(warned[0].message)
    assert len(srv.requests) <= 1 + 4 + 1


@pytest.mark.parametrize("bad_rows", [
    [{"when": "2026-11-20T00:00:00Z", "type": "x"}] * 100,  # no ids
    ["not an object"] * 100,
    [{"id": ["a", "list"], "when": "2026-11-20T00:00:00Z"}] * 100,
])
def test_events_without_usable_ids_and_has_next_forever_stop(bad_rows):
    def route(req, srv):
        return 200, {"events": bad_rows, "has_next": True, "limit": 100}, {}

    with HostileServer(rest(route)) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PaginationWarning)
            ev = ka.load_events(client, progress=False)
    assert len(srv.requests) <= 3
    assert len(ev) <= 100 and ev.attrs["notes"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_gzip_bomb_is_stopped_at_the_cap():
    # 256 MiB of JSON in well under a megabyte, compressed in pieces (the test itself
    # must not hold what the client is to refuse).
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * 2**20
    bomb = packer.compress(b"[") + b"".join(packer.compress(block) for _ in range(256))
    bomb += packer.compress(b"]") + packer.flush()
    assert len(bomb) < 2**20

    def handler(conn, srv):
        if srv.next_request(conn) is None:
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                     % len(bomb) + bomb)

    before = peak_rss_mb()
    with HostileServer(handler) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=10,
                                max_response_bytes=8 * 2**20)
        with pytest.raises(ka.MalformedResponseError, match="decoded from gzip"):
            client.get("/v1/instances")
    assert peak_rss_mb() - before < 100


def test_an_endless_chunked_body_is_stopped_at_the_cap():
    def handler(conn, srv):
        if srv.next_request(conn) is None:
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        deadline = time.monotonic() + 20
        while until(deadline):
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    with HostileServer(handler) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=10,
                                max_response_bytes=4 * 2**20)
        start = time.monotonic()
        with pytest.raises(ka.MalformedResponseError, match="cap"):
            client.get("/v1/instances")
        assert time.monotonic() - start < 5


def test_a_declared_length_over_the_cap_is_refused_before_reading():
    def handler(conn, srv):
        if srv.next_request(conn) is None:
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n{}")

    with HostileServer(handler) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=5)
        with pytest.raises(ka.MalformedResponseError, match="announces"):
            client.get("/v1/instances")
