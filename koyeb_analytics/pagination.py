"""Generators over the API's limit/offset pages: count style and has_next style.

Both are lazy, adopt the ``limit`` the server echoes (a server that silently caps it
is still read to the end), stop on ``count``, ``has_next`` or a short page, and never
loop forever: a page that brings nothing new ends the loop with a warning.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_LIMIT = 100
SEQUENTIAL_BELOW = 0.005
"""Seconds. When the first page answers faster than this (loopback, a local simulator),
the other pages are read in order, from one thread, with the next request already out
while a reply is decoded (``KoyebClient.get_each``): the server keeps up with the
client's own work, and threads would only contend for the interpreter lock. Measured
on 2 cores with 107k instances: 1.41 s in order against 1.67 s with 8 threads, and
sending each request before the previous reply is decoded takes a further 0.3 s off."""
Page = list[dict[str, Any]]
Fetch = Callable[[int, int], dict[str, Any]]


class FetchEach(Protocol):
    """Fetch pages at ``offsets`` in order, the next request sent ahead (see
    ``KoyebClient.get_each``); with ``last``, none after a reply for which it is true."""

    def __call__(self, offsets: Iterable[int], limit: int,
                 last: Callable[[dict[str, Any]], bool] | None = None,
                 ) -> Generator[dict[str, Any], None, None]: ...



class PaginationWarning(UserWarning):
    """A listing ended early because the server's paging did not add up."""


@dataclass
class PageStats:
    """What a listing read: pages, rows, and the anomalies it noticed."""

    pages: int = 0
    rows: int = 0
    discarded: int = 0
    """Pages requested ahead (pipelined) that the listing turned out not to need."""
    notes: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.notes.append(message)
        warnings.warn(message, PaginationWarning, stacklevel=4)


class _Progress:
    """A tqdm.auto bar that only appears once a listing spans more than a few pages."""

    THRESHOLD = 3

    def __init__(self, enabled: bool, desc: str) -> None:
        self.enabled = enabled
        self.desc = desc
        self.bar: Any = None
        self.done = 0

    def start(self, total: int | None) -> None:
        if self.enabled and self.bar is None and (total is None or total > self.THRESHOLD):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="page", leave=False)
            self.bar.update(self.done)

    def update(self, total_known: bool) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif not total_known and self.done > self.THRESHOLD:
            self.start(None)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _threshold(sequential_below: float | None) -> float:
    return SEQUENTIAL_BELOW if sequential_below is None else sequential_below


def _items(reply: dict[str, Any], key: str, what: str) -> Page:
    items = reply.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        from .errors import MalformedResponseError

        raise MalformedResponseError(f"{what}: '{key}' is {type(items).__name__}, not a list")
    return items


def _echoed_limit(reply: dict[str, Any], asked: int) -> int:
    echoed = reply.get("limit")
    if isinstance(echoed, int) and not isinstance(echoed, bool) and 0 < echoed < asked:
        return echoed
    return asked


def count_pages(fetch: Fetch, key: str, *, limit: int = MAX_LIMIT, concurrency: int = 1,
                stats: PageStats | None = None, progress: bool = True,
                desc: str = "pages", sequential_below: float | None = None,
                fetch_each: FetchEach | None = None) -> Iterator[Page]:
    """Yield the pages of a listing whose replies carry a total ``count``.

    The first page is read alone; the remaining ones are fetched ``concurrency`` at a
    time and yielded as they arrive. When the first page took less than
    ``sequential_below`` seconds (default :data:`SEQUENTIAL_BELOW`) they are read in
    order instead, through ``fetch_each(offsets, limit)`` (pipelined) when it is given
    and ``concurrency > 1``. Rows added while paging (the ``count`` grew) are read from
    the end afterwards. On a failure, pages already received are yielded before the
    error propagates.
    """
    stats = stats if stats is not None else PageStats()
    bar = _Progress(progress, desc)
    try:
        started = time.perf_counter()
        first = fetch(0, limit)
        fast = time.perf_counter() - started < _threshold(sequential_below)
        page = _items(first, key, desc)
        limit = _echoed_limit(first, limit)
        stats.pages += 1
        stats.rows += len(page)
        yield page
        count = first.get("count")
        if not isinstance(count, int) or isinstance(count, bool):
            # No usable count: fall back to reading until a short page.
            yield from _sequential(fetch, key, len(page), limit, stats, bar, desc)
            return
        offsets = list(range(limit, count, limit)) if len(page) >= limit else []
        bar.start(len(offsets) + 1)
        bar.update(True)
        latest = count
        in_order = fast or concurrency <= 1 or len(offsets) <= 1
        replies: Iterator[dict[str, Any]]
        if not in_order:
            replies = _concurrent(fetch, offsets, limit, concurrency)
        elif fetch_each is not None and concurrency > 1:
            replies = fetch_each(offsets, limit)
        else:
            replies = (fetch(offset, limit) for offset in offsets)
        try:
            for offset, reply in zip(offsets, replies, strict=False):
                got = _items(reply, key, desc)
                stats.pages += 1
                stats.rows += len(got)
                bar.update(True)
                latest = max(latest, reply.get("count") or 0)
                if in_order and not got:
                    stats.warn(f"{desc}: the server claims {count} rows but page at offset "
                               f"{offset} is empty; stopping")
                    return
                yield got
        finally:
            close = getattr(replies, "close", None)
            if close is not None:
                close()
        end = (offsets[-1] + limit) if offsets else limit
        if latest > end:
            # Rows appeared while paging; with ascending order they are at the end.
            yield from _sequential(fetch, key, end, limit, stats, bar, desc)
    finally:
        bar.close()


def _concurrent(fetch: Fetch, offsets: list[int], limit: int,
                concurrency: int) -> Iterator[dict[str, Any]]:
    """Yield replies as they complete, so the caller's work overlaps the network wait."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="koyeb-page")
    pending: set[Future[dict[str, Any]]] = set()
    try:
        pending = {pool.submit(fetch, off, limit) for off in offsets}
        failure: BaseException | None = None
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                if fut.exception() is None:
                    yield fut.result()
                elif failure is None:
                    failure = fut.exception()
                    # Stop what has not started; what is in flight still lands.
                    for other in pending:
                        other.cancel()
                    pending = {f for f in pending if not f.cancelled()}
        if failure is not None:
            raise failure
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _sequential(fetch: Fetch, key: str, offset: int, limit: int, stats: PageStats,
                bar: _Progress, desc: str) -> Iterator[Page]:
    while True:
        reply = fetch(offset, limit)
        page = _items(reply, key, desc)
        stats.pages += 1
        stats.rows += len(page)
        bar.update(False)
        if not page:
            return
        yield page
        offset += len(page)
        if len(page) < limit:
            return


def has_next_pages(fetch: Fetch, key: str, *, limit: int = MAX_LIMIT,
                   stats: PageStats | None = None, progress: bool = True,
                   desc: str = "pages",
                   stop: Callable[[Page], bool] | None = None,
                   seen: Callable[[Page], int] | None = None,
                   fetch_each: FetchEach | None = None, concurrency: int = 1,
                   sequential_below: float | None = None) -> Iterator[Page]:
    """Yield the pages of a listing whose replies carry ``has_next``, in order.

    The next offset is the number of rows received so far. ``stop(page)`` returning
    true ends the listing after that page (used to stop at the start of a time window).
    ``seen(page)`` returns how many of the page's rows are new; a page with none ends
    the listing with a warning, so a server that keeps claiming more cannot loop us.

    Pages are requested ahead, assuming full pages, when that can be checked:

    * the first page took less than ``sequential_below`` seconds and ``fetch_each`` is
      given: the next page is requested as soon as a reply is in, before it is
      decoded; with ``stop``, once the reply is decoded and known not to be the last
      (full, ``has_next``, not ``stop``), so that none is wasted. The server handles
      these requests in order, so offsets hold;
    * otherwise, with ``concurrency > 1`` and no ``stop``: up to ``concurrency``
      pages ahead on worker threads, each page overlapping the previous one by a
      row. Rows inserted at the head while paging shift later offsets; since
      requests may then be handled out of order, a page that does not contain the
      previous page's last row (by ``id``) may have left a gap, and is read again in
      order from there.

    A short page that still has a next one, or any doubt, is followed by a plain
    request; overlapped reading then resumes, unless the pages requested ahead and
    not used (counted in ``stats.discarded``) exceed a quarter of those read.
    """
    stats = stats if stats is not None else PageStats()
    bar = _Progress(progress, desc)
    ahead: Generator[dict[str, Any], None, None] | None = None
    sent = used = unsent = 0

    def offsets(start: int, step: int) -> Iterator[int]:
        nonlocal sent
        for at in itertools.count(start, step):
            sent += 1
            yield at

    def unsend(n: int) -> None:
        nonlocal unsent
        unsent += n

    def drop_ahead() -> None:
        nonlocal ahead, sent, used, unsent
        if ahead is not None:
            ahead.close()
            stats.discarded += sent - used - unsent
            ahead, sent, used, unsent = None, 0, 0, 0

    try:
        started = time.perf_counter()
        reply = fetch(0, limit)
        fast = time.perf_counter() - started < _threshold(sequential_below)
        # Overlapped pages are requested blindly, several past the end of a window:
        # only for listings read to their end.
        mode = ("pipelined" if fast and fetch_each is not None else
                "overlapped" if not fast and concurrency > 1 and stop is None else "")

        def last(reply: dict[str, Any]) -> bool:
            """No page after this one is wanted, or its offset is not predictable."""
            items = reply.get(key)
            if not isinstance(items, list) or len(items) < limit:
                return True
            return reply.get("has_next") is False or (stop is not None and stop(items))

        page_at = at = step = 0
        while True:
            page = _items(reply, key, desc)
            limit = _echoed_limit(reply, limit)
            stats.pages += 1
            stats.rows += len(page)
            bar.update(False)
            has_next = reply.get("has_next")
            if not page:
                if has_next:
                    stats.warn(f"{desc}: the server says has_next but sent an empty page at "
                               f"offset {page_at}; stopping")
                return
            fresh = seen(page) if seen is not None else len(page)
            yield page
            if fresh == 0:
                stats.warn(f"{desc}: the page at offset {page_at} repeated rows already "
                           "received; stopping")
                return
            if stop is not None and stop(page):
                return
            if has_next is False or (has_next is None and len(page) < limit):
                return
            offset = page_at + len(page)  # where a plain read continues
            last_id = page[-1].get("id") if isinstance(page[-1], dict) else None
            if ahead is None and mode == "pipelined" and fetch_each is not None:
                # Checking each reply before the next request costs the overlap of
                # decoding (10-15% of a full listing's time): only where waste matters,
                # at the start of a window.
                step, at = limit, offset
                ahead = fetch_each(offsets(at, step), limit,
                                   last if stop is not None else None)
            elif ahead is None and mode == "overlapped" and limit > 1 and last_id is not None:
                step, at = limit - 1, offset - 1
                ahead = _in_order(fetch, offsets(at, step), limit, concurrency, unsend)
            next_reply = None
            candidate = None
            if ahead is not None and (mode == "overlapped" or at == offset):
                candidate = next(ahead, None)  # None: ``last`` ended the pipeline
            if candidate is not None:
                used += 1
                if mode == "pipelined" or _holds(candidate, key, last_id):
                    next_reply, page_at = candidate, at
                    at += step
                else:
                    stats.discarded += 1
            if next_reply is None:
                # Read the next page plainly; overlapped reading resumes after it,
                # unless requesting ahead has wasted more than a quarter of the pages.
                drop_ahead()
                if mode == "pipelined" or stats.discarded > stats.pages // 4 + concurrency:
                    mode = ""
                next_reply, page_at = fetch(offset, limit), offset
            reply = next_reply
    finally:
        drop_ahead()
        bar.close()


def _holds(reply: dict[str, Any], key: str, row_id: Any) -> bool:
    items = reply.get(key)
    return isinstance(items, list) and any(
        isinstance(r, dict) and r.get("id") == row_id for r in items)


def _in_order(fetch: Fetch, offsets: Iterator[int], limit: int, concurrency: int,
              unsent: Callable[[int], None]) -> Generator[dict[str, Any], None, None]:
    """Yield the replies for ``offsets`` in order, ``concurrency`` requests in flight.

    On close, requests not yet started are cancelled and reported to ``unsent``.
    """
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="koyeb-page")
    pending: deque[Future[dict[str, Any]]] = deque()
    try:
        for at in itertools.islice(offsets, concurrency):
            pending.append(pool.submit(fetch, at, limit))
        while True:
            reply = pending.popleft().result()
            pending.append(pool.submit(fetch, next(offsets), limit))
            yield reply
    finally:
        unsent(sum(fut.cancel() for fut in pending))
        pool.shutdown(wait=True)
