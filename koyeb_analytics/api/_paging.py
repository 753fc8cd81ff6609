"""Generators over the API's limit/offset pages: count style and has_next style.

:meth:`KoyebClient.pages <koyeb_analytics.KoyebClient.pages>` is the one way in:
:func:`listing` picks the paging style and the read-ahead there, and no module outside
``api/`` uses the generators below or reads ``read_ahead`` (a test walks the imports).

Both are lazy and trust what pages hold over what a server says: they adopt the page
size pages actually have (a server that silently caps ``limit`` is still read to the
end), read on past ``count`` while pages bring new rows, and never loop forever: a
page that brings nothing new, or :data:`MAX_PAGES`, ends the loop with a
:class:`PaginationWarning` that is also kept in ``PageStats.notes``.

How pages are requested ahead is the caller's choice, never a timing rule: through a
``fetch_each`` (one connection, the next request sent while a reply is used; for fast
servers), on ``concurrency`` worker threads (for servers further away), or in order.

Long because both paging styles, and the read-ahead that serves them, share one set of
checks (page size, repeats, empty pages, the page bound); apart they would drift.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from ..errors import MalformedResponseError, PaginationWarning

__all__ = ["MAX_LIMIT", "MAX_PAGES", "PAGING_STYLES", "Page", "PageStats", "PaginationWarning"]
"""What modules outside ``api/`` may import from here; the rest serves ``pages()``."""

MAX_LIMIT = 100
MAX_PAGES = 200_000
"""The most pages one listing reads (20 million rows at 100 a page): a bound that holds
whatever a server claims, even one that invents new rows forever."""
Page = list[dict[str, Any]]
Fetch = Callable[[int, int], dict[str, Any]]
PAGING_STYLES = ("count", "has_next")


class FetchEach(Protocol):
    """Fetch pages at ``offsets`` in order, the next request sent ahead (see
    ``KoyebClient.get_each``); with ``last``, none after a reply for which it is true."""

    def __call__(self, offsets: Iterable[int], limit: int,
                 last: Callable[[dict[str, Any]], bool] | None = None,
                 ) -> Generator[dict[str, Any], None, None]: ...



@dataclass
class PageStats:
    """What a listing read: pages, rows, and the anomalies it noticed."""

    pages: int = 0
    rows: int = 0
    discarded: int = 0
    """Pages requested ahead (pipelined) that the listing turned out not to need."""
    notes: list[str] = field(default_factory=list)
    complete: bool = True
    """False once a warning said rows may be missing."""

    def warn(self, message: str) -> None:
        """Keep ``message`` and warn with it: rows may be missing."""
        self.complete = False
        self.notes.append(message)
        warnings.warn(message, PaginationWarning, stacklevel=4)

    def note(self, message: str) -> None:
        """Keep ``message``: the server behaved oddly, but no row is missing."""
        self.notes.append(message)


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


def _items(reply: dict[str, Any], key: str, what: str) -> Page:
    """The reply's rows. A missing key is an empty page (protojson omits empty lists);
    a null or a non-list is a :class:`~koyeb_analytics.errors.MalformedResponseError`."""
    if key not in reply:
        return []
    items = reply[key]
    if not isinstance(items, list):
        kind = "null" if items is None else type(items).__name__
        raise MalformedResponseError(f"{what}: '{key}' is {kind}, not a list")
    return items


def _echoed_limit(reply: dict[str, Any], asked: int) -> int:
    echoed = reply.get("limit")
    if isinstance(echoed, int) and not isinstance(echoed, bool) and 0 < echoed < asked:
        return echoed
    return asked


def _count(reply: dict[str, Any]) -> int | None:
    count = reply.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    return None


def _new_rows(page: Page) -> int:
    """Rows that could be new, without a record of what came before: those with an id."""
    return sum(1 for r in page if isinstance(r, dict) and isinstance(r.get("id"), str))


def count_pages(fetch: Fetch, key: str, *, limit: int = MAX_LIMIT, concurrency: int = 1,
                stats: PageStats | None = None, progress: bool = True,
                desc: str = "pages", fetch_each: FetchEach | None = None,
                seen: Callable[[Page], int] | None = None) -> Iterator[Page]:
    """Yield the pages of a listing whose replies carry a total ``count``.

    The first page is read alone. It sets the page size: the ``limit`` the server
    echoes, or the number of rows the page holds when that is fewer than asked while
    ``count`` says there are more. The pages up to ``count`` are then requested through
    ``fetch_each`` (in order, pipelined) when given, else ``concurrency`` at a time on
    threads (yielded as they arrive), else in order. After them, while the last page
    was full or the ``count`` grew, pages are read in order for as long as they bring
    new rows: rows added while paging, or a ``count`` that was too low (noted).

    ``seen(page)`` says how many of a page's rows are new (default: rows with an id);
    a page with none ends the listing with a warning (a server ignoring ``offset``), as
    does an empty page before ``count``. On a failure, pages already received are
    yielded before the error propagates.
    """
    stats = stats if stats is not None else PageStats()
    seen = seen or _new_rows
    bar = _Progress(progress, desc)
    try:
        first = fetch(0, limit)
        page = _items(first, key, desc)
        count = _count(first)
        asked, limit = limit, _echoed_limit(first, limit)
        if 0 < len(page) < limit and count is not None and count > len(page):
            stats.note(f"{desc}: pages hold {len(page)} rows although {asked} were asked "
                       f"for; reading {len(page)} at a time")
            limit = len(page)
        stats.pages += 1
        stats.rows += len(page)
        yield page
        if count is None:
            # No usable count: read until a short page (the bar counts the first one too).
            bar.update(False)
            yield from _sequential(fetch, key, len(page), limit, stats, bar, desc, seen)
            return
        if not page:
            if count > 0:
                stats.warn(f"{desc}: the server claims {count} rows but sent none; stopping")
            return
        planned = range(limit, count, limit)  # empty after a short page: count <= its rows
        bar.start(len(planned) + 1)
        bar.update(True)
        latest, end, last_full = count, len(page), len(page) >= limit
        replies: Iterator[tuple[int, dict[str, Any]]]
        if fetch_each is not None and len(planned) > 1:
            replies = zip(planned, fetch_each(planned, limit), strict=False)
        elif concurrency > 1 and len(planned) > 1:
            replies = _window(fetch, planned, limit, concurrency)
        else:
            replies = ((offset, fetch(offset, limit)) for offset in planned)
        try:
            for offset, reply in replies:
                got = _items(reply, key, desc)
                stats.pages += 1
                stats.rows += len(got)
                bar.update(True)
                latest = max(latest, _count(reply) or 0)
                if not got:
                    stats.warn(f"{desc}: the server claims {count} rows but the page at "
                               f"offset {offset} is empty; stopping")
                    return
                fresh = seen(got)
                yield got
                if fresh == 0:
                    stats.warn(f"{desc}: the page at offset {offset} repeats rows already "
                               "received (the server seems to ignore offset); stopping")
                    return
                if offset + len(got) >= end:
                    end, last_full = offset + len(got), len(got) >= limit
        finally:
            close = getattr(replies, "close", None)
            if close is not None:
                close()
        if latest > end or last_full:
            # Rows appeared while paging (ascending order puts them at the end), or
            # the count was too low: read on while pages bring new rows.
            before = stats.rows
            yield from _sequential(fetch, key, end, limit, stats, bar, desc, seen)
            if stats.rows > before and stats.rows > latest:
                stats.warn(f"{desc}: the server's count ({latest}) is lower than the rows "
                           f"it sent ({stats.rows}); read on while pages brought new rows")
    finally:
        bar.close()


def _window(fetch: Fetch, offsets: range, limit: int,
            concurrency: int) -> Generator[tuple[int, dict[str, Any]], None, None]:
    """Yield ``(offset, reply)`` as requests complete, ``concurrency`` in flight at most.

    Offsets are submitted lazily, so a huge claimed count costs nothing up front, and
    a consumer that stops (an empty page) leaves at most ``concurrency`` requests.
    """
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="koyeb-page")
    todo = iter(offsets)
    pending: dict[Future[dict[str, Any]], int] = {}

    def submit() -> None:
        for offset in itertools.islice(todo, concurrency - len(pending)):
            pending[pool.submit(fetch, offset, limit)] = offset

    try:
        submit()
        failure: BaseException | None = None
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                offset = pending.pop(fut)
                if fut.exception() is None:
                    yield offset, fut.result()
                elif failure is None:
                    failure = fut.exception()
            if failure is None:
                submit()
        if failure is not None:
            raise failure
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _sequential(fetch: Fetch, key: str, offset: int, limit: int, stats: PageStats,
                bar: _Progress, desc: str, seen: Callable[[Page], int]) -> Iterator[Page]:
    while stats.pages < MAX_PAGES:
        reply = fetch(offset, limit)
        page = _items(reply, key, desc)
        stats.pages += 1
        stats.rows += len(page)
        bar.update(False)
        if not page:
            return
        fresh = seen(page)
        yield page
        if fresh == 0:
            stats.warn(f"{desc}: the page at offset {offset} repeats rows already received "
                       "(the server seems to ignore offset); stopping")
            return
        offset += len(page)
        if len(page) < limit:
            return
    stats.warn(f"{desc}: stopped after {MAX_PAGES} pages (MAX_PAGES)")


def has_next_pages(fetch: Fetch, key: str, *, limit: int = MAX_LIMIT,
                   stats: PageStats | None = None, progress: bool = True,
                   desc: str = "pages",
                   stop: Callable[[Page], bool] | None = None,
                   seen: Callable[[Page], int] | None = None,
                   fetch_each: FetchEach | None = None,
                   concurrency: int = 1,
                   left: Callable[[Page], float] | None = None) -> Iterator[Page]:
    """Yield the pages of a listing whose replies carry ``has_next``, in order.

    The next offset is the number of rows received so far. ``stop(page)`` returning
    true ends the listing after that page (used to stop at the start of a time window).
    ``seen(page)`` returns how many of the page's rows are new (default: rows with an
    id); a page with none ends the listing with a warning, so a server that keeps
    claiming more cannot loop us, nor can rows without ids; :data:`MAX_PAGES` bounds
    the rest.

    Pages are requested ahead, assuming full pages, when that can be checked:

    * ``fetch_each`` is given (a fast server): the next page is requested as soon
      as a reply is in, before it is decoded; with ``stop``, once the reply is
      decoded and known not to be the last (full, ``has_next``, not ``stop``), so
      that none is wasted. The server handles
      these requests in order, so offsets hold;
    * otherwise, with ``concurrency > 1``: up to ``concurrency`` pages ahead on
      worker threads, each page overlapping the previous one by a row. With ``stop``
      (a window), ``left(page)`` estimates how many pages are still wanted after
      ``page`` (from the times seen so far) and no more than that are in flight,
      never more than ``concurrency``: at most ``concurrency - 1`` pages are requested
      past the one that stops the listing. Without ``left``, a window is read plainly.
      Rows inserted at the head while paging shift later offsets; since
      requests may then be handled out of order, a page that does not contain the
      previous page's last row (by ``id``) may have left a gap, and is read again in
      order from there.

    A short page that still has a next one, or any doubt, is followed by a plain
    request; overlapped reading then resumes, unless the pages requested ahead and
    not used (counted in ``stats.discarded``) exceed a quarter of those read.
    """
    stats = stats if stats is not None else PageStats()
    seen = seen or _new_rows
    bar = _Progress(progress, desc)
    ahead = _Ahead(stats)
    try:
        reply = fetch(0, limit)
        # Overlapped pages are requested blindly, several past the end of a window:
        # only for listings read to their end.
        mode = (Mode.PIPELINED if fetch_each is not None else
                Mode.OVERLAPPED if concurrency > 1 and (stop is None or left is not None)
                else Mode.PLAIN)
        ahead.wanted = concurrency

        def last(reply: dict[str, Any]) -> bool:
            """No page after this one is wanted, or its offset is not predictable."""
            items = reply.get(key)
            if not isinstance(items, list) or len(items) < limit:
                return True
            return reply.get("has_next") is False or (stop is not None and stop(items))

        page_at = 0
        while stats.pages < MAX_PAGES:
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
            fresh = seen(page)
            yield page
            if fresh == 0:
                stats.warn(f"{desc}: the page at offset {page_at} repeated rows already "
                           "received; stopping")
                return
            if stop is not None and stop(page):
                return
            if stop is not None and left is not None:
                estimate = left(page)
                ahead.wanted = concurrency if math.isnan(estimate) else \
                    max(1, min(concurrency, math.ceil(estimate)))
            if has_next is False or (has_next is None and len(page) < limit):
                return
            offset = page_at + len(page)  # where a plain read continues
            last_id = page[-1].get("id") if isinstance(page[-1], dict) else None
            if not ahead.active and mode is Mode.PIPELINED and fetch_each is not None:
                # Checking each reply before the next request costs the overlap of
                # decoding (10-15% of a full listing's time): only where waste matters,
                # at the start of a window.
                ahead.start(functools.partial(fetch_each, limit=limit,
                                              last=last if stop is not None else None),
                            offset, limit)
            elif not ahead.active and mode is Mode.OVERLAPPED and limit > 1 \
                    and last_id is not None:
                ahead.start(functools.partial(
                    _in_order, fetch, limit=limit, concurrency=concurrency,
                    unsent=ahead.unsend,
                    wanted=(lambda: ahead.wanted) if stop is not None else None),
                    offset - 1, limit - 1)
            next_reply = None
            candidate = None
            if ahead.active and (mode is Mode.OVERLAPPED or ahead.at == offset):
                candidate = ahead.next()  # None: ``last`` ended the pipeline
            if candidate is not None:
                if mode is Mode.PIPELINED or _holds(candidate, key, last_id):
                    next_reply, page_at = candidate, ahead.at
                    ahead.advance()
                else:
                    stats.discarded += 1
            if next_reply is None:
                # Read the next page plainly; overlapped reading resumes after it,
                # unless requesting ahead has wasted more than a quarter of the pages.
                ahead.drop()
                if mode is Mode.PIPELINED or \
                        stats.discarded > stats.pages // 4 + concurrency:
                    mode = Mode.PLAIN
                next_reply, page_at = fetch(offset, limit), offset
            reply = next_reply
        stats.discarded += 1  # the reply in hand was requested, and is not used
        stats.warn(f"{desc}: stopped after {MAX_PAGES} pages (MAX_PAGES)")
    finally:
        ahead.drop()
        bar.close()


class Mode(Enum):
    """How :func:`has_next_pages` requests pages ahead, at a given moment."""

    PIPELINED = "pipelined"
    """On one connection, the next request sent while a reply is used (fast servers)."""
    OVERLAPPED = "overlapped"
    """On worker threads, each page overlapping the previous one by a row."""
    PLAIN = "plain"
    """One request at a time (also where requesting ahead stopped paying)."""


class _Ahead:
    """Pages requested ahead at ``at, at + step, ...``: what was sent, used, never sent.

    Whatever was sent and not used when it is dropped counts in ``stats.discarded``, so
    every request is a page used or one counted.
    """

    def __init__(self, stats: PageStats) -> None:
        self.stats = stats
        self.replies: Generator[dict[str, Any], None, None] | None = None
        self.at = self.step = self.sent = self.used = self.unsent = 0
        self.wanted = 1
        """How many requests a window's read-ahead may keep in flight (see ``left``)."""

    @property
    def active(self) -> bool:
        return self.replies is not None

    def start(self, make: Callable[[Iterator[int]], Generator[dict[str, Any], None, None]],
              at: int, step: int) -> None:
        self.at, self.step = at, step
        self.replies = make(self._offsets(at, step))

    def _offsets(self, start: int, step: int) -> Iterator[int]:
        for at in itertools.count(start, step):
            self.sent += 1
            yield at

    def unsend(self, n: int) -> None:
        """``n`` offsets handed out were cancelled before their request went out."""
        self.unsent += n

    def next(self) -> dict[str, Any] | None:
        assert self.replies is not None
        reply = next(self.replies, None)
        if reply is not None:
            self.used += 1
        return reply

    def advance(self) -> None:
        self.at += self.step

    def drop(self) -> None:
        if self.replies is not None:
            self.replies.close()
            self.stats.discarded += self.sent - self.used - self.unsent
            self.replies = None
            self.sent = self.used = self.unsent = 0


def _holds(reply: dict[str, Any], key: str, row_id: Any) -> bool:
    items = reply.get(key)
    return isinstance(items, list) and any(
        isinstance(r, dict) and r.get("id") == row_id for r in items)


def _in_order(fetch: Fetch, offsets: Iterator[int], limit: int, concurrency: int,
              unsent: Callable[[int], None], wanted: Callable[[], int] | None = None,
              ) -> Generator[dict[str, Any], None, None]:
    """Yield the replies for ``offsets`` in order, ``concurrency`` requests in flight.

    With ``wanted`` (a window whose end is near), requests are topped up only when the
    next reply is asked for, to ``wanted()`` in flight: none is sent while the reply
    that may end the listing is being looked at. On close, requests not yet started
    are cancelled and reported to ``unsent``.
    """
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="koyeb-page")
    pending: deque[Future[dict[str, Any]]] = deque()
    try:
        if wanted is not None:
            while True:
                for at in itertools.islice(offsets, max(0, max(1, wanted()) - len(pending))):
                    pending.append(pool.submit(fetch, at, limit))
                yield pending.popleft().result()
        for at in itertools.islice(offsets, concurrency):
            pending.append(pool.submit(fetch, at, limit))
        while True:
            reply = pending.popleft().result()
            pending.append(pool.submit(fetch, next(offsets), limit))
            yield reply
    finally:
        unsent(sum(fut.cancel() for fut in pending))
        pool.shutdown(wait=True)


def listing(fetch: Fetch, fetch_each: FetchEach, key: str, *, read_ahead: str,
            concurrency: int, paging: str | None = None, limit: int = MAX_LIMIT,
            stop: Callable[[Page], bool] | None = None,
            left: Callable[[Page], float] | None = None,
            seen: Callable[[Page], int] | None = None, stats: PageStats | None = None,
            progress: bool = False, desc: str = "pages") -> Iterator[Page]:
    """Yield a listing's pages, paged in ``paging`` style with the client's read-ahead.

    The one place where ``read_ahead`` becomes a way of requesting pages:
    ``"pipelined"`` hands ``fetch_each`` to the generator (when ``concurrency > 1``),
    ``"threads"`` lets it keep ``concurrency`` requests in flight, ``"none"`` neither.
    With ``paging=None`` the first reply decides: count style when it carries a
    ``count`` and no ``has_next`` and there is no ``stop`` rule, has_next style
    otherwise, since it is safe whatever the listing's order (that first reply is
    used, not requested again).
    """
    each = fetch_each if read_ahead == "pipelined" and concurrency > 1 else None
    threads = concurrency if read_ahead == "threads" else 1
    if paging is None:
        if stop is not None:
            paging = "has_next"
        else:
            first = fetch(0, limit)
            paging = "count" if _count(first) is not None and \
                not isinstance(first.get("has_next"), bool) else "has_next"
            fetch = _replaying(first, fetch)
    if paging == "count":
        yield from count_pages(fetch, key, limit=limit, concurrency=threads, stats=stats,
                               progress=progress, desc=desc, fetch_each=each, seen=seen)
    else:
        yield from has_next_pages(fetch, key, limit=limit, stats=stats, progress=progress,
                                  desc=desc, stop=stop, seen=seen, fetch_each=each,
                                  concurrency=threads, left=left)


def _replaying(first: dict[str, Any], fetch: Fetch) -> Fetch:
    """``fetch``, except that the first request for offset 0 is answered by ``first``."""
    kept = [first]

    def replay(offset: int, limit: int) -> dict[str, Any]:
        if kept and offset == 0:
            return kept.pop()
        return fetch(offset, limit)
    return replay
