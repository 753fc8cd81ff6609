"""Loaders: instance and event listings as typed DataFrames.

Long because its loaders document every parameter; the frame-building machinery is
in ``_frames``, and every listing is read through ``KoyebClient.pages``.

Each loader validates its arguments before any request, collects rows page by page
(deduplicated by id), builds the frame once, applies the schema from
:mod:`koyeb_analytics.schema`, and records in ``df.attrs`` what was asked and read.
A listing that fails part way raises
:class:`~koyeb_analytics.errors.IncompleteListingError` carrying the rows received.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pandas as pd

from ..analysis._classify import KNOWN_TYPES, status_from_message, status_from_metadata
from ..api._checks import check_bool, check_client, check_ids, check_statuses, check_str
from ..api._client import KoyebClient
from ..api._paging import Page, PageStats
from ..errors import (
    IncompleteListingError,
    KoyebError,
    MalformedListingError,
    MalformedResponseError,
    NotFoundError,
)
from ..schema import (
    EVENT_COLUMNS,
    INSTANCE_COLUMNS,
    INSTANCE_DETAIL_COLUMNS,
    TERMINAL_STATUSES,
    is_full_id,
)
from ..timewindow import DurationLike, TimeLike, TimeWindow, resolve_window, to_rfc3339, utcnow
from ._frames import Collector, build_frame, cyclic_gc_paused
from ._names import add_names, load_names

# Query strings longer than this risk a 414 from proxies; id lists are split to fit.
MAX_QUERY_CHARS = 6000
# Event columns whose few distinct strings are shared while collecting: a million events
# repeat a few thousand instance ids and a handful of types and messages.
_SHARED_EVENT_COLUMNS = frozenset({"organization_id", "instance_id", "type", "message"})


def _attrs(df: pd.DataFrame, client: KoyebClient, query: dict[str, Any], stats: PageStats,
           collector: Collector, fetched_at: pd.Timestamp) -> pd.DataFrame:
    df.attrs.update({
        "source": client.base_url,
        "simulated": bool(client.simulated),
        "query": query,
        "fetched_at": fetched_at,
        "pages": stats.pages,
        "pages_discarded": stats.discarded,
        "rows_received": stats.rows,
        "duplicates_dropped": collector.duplicates,
        # False when the listing ended on a warning (rows may be missing): a caller
        # keeping a high-water mark must not move it past a possible gap.
        "complete": stats.complete,
        "notes": list(stats.notes) + collector.notes(),
    })
    return df


def _collect(pages: Iterator[Page], collector: Collector, finish: Callable[[], pd.DataFrame],
             what: str, stats: PageStats) -> None:
    try:
        with cyclic_gc_paused():
            for page in pages:
                collector.add(page)
    except KoyebError as exc:
        cls = MalformedListingError if isinstance(exc, MalformedResponseError) else \
            IncompleteListingError
        raise cls(what, finish(), stats.pages, exc) from exc


def _window_query(window: TimeWindow) -> dict[str, Any]:
    return {k: v for k, v in window.as_dict().items() if v is not None}


def load_instances(
    client: KoyebClient,
    *,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    window: DurationLike | None = None,
    statuses: Iterable[str] | str | None = None,
    app_id: str | None = None,
    service_id: str | None = None,
    deployment_id: str | None = None,
    regional_deployment_id: str | None = None,
    allocation_id: str | None = None,
    replica_index: int | None = None,
    details: bool = False,
    names: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Load every instance, of every status, as a DataFrame.

    Parameters
    ----------
    client
        A :class:`KoyebClient` (``sim.client()`` for the simulator).
    since, until, window
        Keep instances whose life overlaps ``[since, until)``; ``window="24h"`` means
        the last 24 hours. Sent to the API as ``starting_time``/``ending_time`` and
        applied again here.
    statuses
        Statuses to list; all eight by default (the Koyeb CLI hides STOPPED, ERROR and
        SLEEPING).
    app_id, service_id, deployment_id, regional_deployment_id, allocation_id, replica_index
        Exact filters, passed to the API.
    details
        Also fetch every instance (concurrently) for ``hypervisor``, ``started_at``,
        ``succeeded_at`` and ``terminated_at``, which listings lack.
    names
        Add ``app_name`` and ``service_name`` (one listing of apps and one of services;
        short ids stand in, with a note, where the API does not say).
    progress
        Show a progress bar when the listing spans more than a few pages.

    Returns
    -------
    DataFrame
        One row per instance, sorted by ``created_at`` then ``id``; see
        :data:`koyeb_analytics.schema.INSTANCE_COLUMNS`. ``df.attrs`` holds the query,
        ``fetched_at``, pages read and duplicates dropped.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     df = ka.load_instances(sim.client(), window="12h", progress=False)
    >>> str(df["status"].dtype)
    'category'
    """
    check_client(client)
    tw = resolve_window(since, until, window)
    status_list = check_statuses(statuses)
    filters = {name: check_str(name, value) for name, value in (
        ("app_id", app_id), ("service_id", service_id), ("deployment_id", deployment_id),
        ("regional_deployment_id", regional_deployment_id), ("allocation_id", allocation_id))}
    if replica_index is not None:
        if not isinstance(replica_index, int) or isinstance(replica_index, bool) \
                or replica_index < 0:
            raise ValueError(f"replica_index must be a non-negative integer, got {replica_index!r}")
    check_bool("details", details)
    check_bool("names", names)
    check_bool("progress", progress)

    params: list[tuple[str, str]] = [(k, v) for k, v in filters.items() if v is not None]
    if replica_index is not None:
        params.append(("replica_index", str(replica_index)))
    params += [("statuses", s) for s in status_list]
    if tw.since is not None:
        params.append(("starting_time", to_rfc3339(tw.since)))
    if tw.until is not None:
        params.append(("ending_time", to_rfc3339(tw.until)))
    params.append(("order", "asc"))  # new rows land at the end: offsets stay stable
    query: dict[str, Any] = {**{k: v for k, v in filters.items() if v is not None},
                             "statuses": status_list, **_window_query(tw)}
    if replica_index is not None:
        query["replica_index"] = replica_index

    collector = Collector(INSTANCE_COLUMNS)
    stats = PageStats()
    fetched_at = utcnow()

    def listed() -> pd.DataFrame:
        df = collector.frame(order=("created_at", "id"), needs=("status", "updated_at"),
                             select=lambda cols: overlapping(cols, tw))
        if details:
            df = pd.concat([df, build_frame({}, INSTANCE_DETAIL_COLUMNS).reindex(df.index)],
                           axis=1)
        return _attrs(df, client, query, stats, collector, fetched_at)

    # Names are listed while the instances are: on a remote API they then cost nothing.
    namer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="koyeb-names")
    found = namer.submit(load_names, client) if names else None
    try:
        # Oldest first, so count paging is safe: rows added meanwhile land at the end.
        _collect(client.pages("/v1/instances", params, key="instances", paging="count",
                              stats=stats, progress=progress, seen=collector.count_new),
                 collector, listed, "/v1/instances", stats)
    finally:
        namer.shutdown(wait=False)
    df = listed()
    if details:
        # The listing was already narrowed to the window, so fewer GETs; the exact
        # terminated_at may narrow it a little further.
        df = _hydrate(client, df.iloc[:, : len(INSTANCE_COLUMNS)], progress)
        keep = overlapping(df, tw)
        if keep is not None:
            df = df[keep].reset_index(drop=True)
        df = _attrs(df, client, query, stats, collector, fetched_at)
    if found is not None:
        df = add_names(df, client, found.result())
    return df


def overlapping(cols: Mapping[str, pd.Series], tw: TimeWindow) -> pd.Series | None:
    """Mask of instances whose life overlaps the window (None: no window)."""
    if tw.since is None and tw.until is None:
        return None
    keep = pd.Series(True, index=cols["created_at"].index)
    if tw.until is not None:
        keep &= ~(cols["created_at"] >= tw.until)
    if tw.since is not None:
        end = cols["updated_at"].where(cols["status"].isin(TERMINAL_STATUSES))
        if "terminated_at" in cols:
            end = cols["terminated_at"].fillna(end)
        keep &= ~(end < tw.since)
    return keep


def _hydrate(client: KoyebClient, df: pd.DataFrame, progress: bool) -> pd.DataFrame:
    """Add the detail columns by fetching each instance, ``client.concurrency`` at a time."""
    ids = df["id"].tolist()
    details: dict[str, dict[str, Any]] = {}
    missing: list[str] = []

    def one(iid: str) -> tuple[str, dict[str, Any] | None]:
        try:
            path = f"/v1/instances/{quote(iid, safe='')}"
            return iid, _instance_of(client.get(path), path)
        except NotFoundError:
            return iid, None

    def merged() -> pd.DataFrame:
        cols = {c: [details.get(i, {}).get(c) for i in ids] for c in INSTANCE_DETAIL_COLUMNS}
        extra = build_frame(cols, INSTANCE_DETAIL_COLUMNS)
        return pd.concat([df.reset_index(drop=True), extra], axis=1)

    bar = None
    if progress and len(ids) > 100:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ids), desc="instance details", unit="instance", leave=False)
    try:
        with ThreadPoolExecutor(max_workers=client.concurrency) as pool:
            for iid, body in pool.map(one, ids):
                if body is None:
                    missing.append(iid)
                else:
                    details[iid] = body
                if bar is not None:
                    bar.update(1)
    except KoyebError as exc:
        partial = merged()
        partial.attrs.update(df.attrs)
        raise IncompleteListingError("/v1/instances/{id}", partial, df.attrs.get("pages", 0),
                                     exc) from exc
    finally:
        if bar is not None:
            bar.close()
    out = merged()
    out.attrs.update(df.attrs)
    if missing:
        out.attrs["details_missing"] = missing
    return out


def _id_chunks(ids: list[str]) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    size = 0
    for i in ids:
        cost = len("&instance_ids=") + len(quote(i, safe=""))
        if chunks[-1] and size + cost > MAX_QUERY_CHARS:
            chunks.append([])
            size = 0
        chunks[-1].append(i)
        size += cost
    return chunks


def load_events(
    client: KoyebClient,
    *,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    window: DurationLike | None = None,
    instance_ids: Iterable[str] | str | None = None,
    types: Iterable[str] | str | None = None,
    expand_metadata: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Load instance events of a time window as a DataFrame.

    The API has no time filter, so events are read newest first and the listing stops
    at the first page that reaches back past ``since``: a short window reads only its
    own pages (plus one), not the whole history. Pages are requested ahead as the
    client's ``read_ahead`` says (see :meth:`~koyeb_analytics.KoyebClient.pages`):
    ``"pipelined"`` (the default on loopback), the next one while the current one is
    used (with ``since``, only once it is known not to be the last); ``"threads"``
    (the default elsewhere), ``client.concurrency`` at a time, each overlapping the
    previous one by a row so that events arriving meanwhile cannot open a gap
    unnoticed. Pages requested past the end are counted in
    ``df.attrs["pages_discarded"]``.

    Parameters
    ----------
    client
        A :class:`KoyebClient`.
    since, until, window
        Keep events with ``since <= when < until``; ``window="1h"`` means the last hour.
    instance_ids
        Only these instances' events; long lists are split over several requests.
    types
        Only these event types (opaque strings; the real vocabulary is not public).
    expand_metadata
        Add one ``metadata_<key>`` column per metadata key (``metadata`` stays).
    progress
        Show a progress bar when the listing spans more than a few pages.

    Returns
    -------
    DataFrame
        One row per event, sorted by ``when`` then ``id``; see
        :data:`koyeb_analytics.schema.EVENT_COLUMNS`. ``df.attrs`` holds the query,
        ``fetched_at``, pages read (and discarded) and duplicates dropped.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     ev = ka.load_events(sim.client(), window="6h", progress=False)
    >>> list(ev.columns[:3])
    ['id', 'when', 'organization_id']
    """
    check_client(client)
    tw = resolve_window(since, until, window)
    ids = check_ids("instance_ids", instance_ids)
    type_list = check_ids("types", types)
    check_bool("expand_metadata", expand_metadata)
    check_bool("progress", progress)
    if ids is not None and not ids:
        raise ValueError("instance_ids is empty; pass None for every instance")
    return read_events(client, tw, ids=ids, types=type_list,
                       expand_metadata=expand_metadata, progress=progress)


def read_events(client: KoyebClient, tw: TimeWindow, *, ids: list[str] | None = None,
                types: list[str] | None = None, expand_metadata: bool = False,
                progress: bool = False, reach: pd.Timestamp | None = None,
                wanted: set[str] | None = None) -> pd.DataFrame:
    """The events of ``tw`` (arguments already checked), and with ``reach`` those
    before ``tw.since`` back to ``reach`` too (a look-behind).

    A look-behind stops early, at the first page that reaches before ``tw.since`` once
    every instance in ``wanted`` has shown an event with a status before ``tw.since``
    (``wanted`` is emptied as they are found). ``attrs["lookbehind_pages"]`` counts the
    pages read for it.
    """
    type_list = types
    base: list[tuple[str, str]] = [("types", t) for t in type_list or []]
    base.append(("order", "desc"))
    query: dict[str, Any] = {**_window_query(tw)}
    if ids is not None:
        query["instance_ids"] = ids
    if type_list is not None:
        query["types"] = type_list
    collector = Collector(EVENT_COLUMNS, _SHARED_EVENT_COLUMNS)
    stats = PageStats()
    fetched_at = utcnow()
    since_ts = tw.since
    read_to = reach if reach is not None and since_ts is not None and reach < since_ts \
        else since_ts
    pages_before = [0]

    def stop(page: Page) -> bool:
        oldest = _time(page[-1])
        if oldest is None or read_to is None:
            return False
        if since_ts is None or read_to is since_ts or oldest >= since_ts:
            return bool(oldest < read_to)
        if wanted is not None:
            for row in page:
                t = _time(row)
                if t is not None and read_to <= t < since_ts and _announces_status(row):
                    wanted.discard(row.get("instance_id"))
        return bool(oldest < read_to or not wanted)

    def select(cols: Mapping[str, pd.Series]) -> pd.Series | None:
        if read_to is None and tw.until is None:
            return None
        when = cols["when"]
        keep = pd.Series(True, index=when.index)
        if read_to is not None:
            keep &= when >= read_to
        if tw.until is not None:
            keep &= when < tw.until
        return keep

    def finish() -> pd.DataFrame:
        df = collector.frame(order=("when", "id"), select=select)
        if expand_metadata:
            df = _expand_metadata(df)
        df = _attrs(df, client, query, stats, collector, fetched_at)
        if read_to is not since_ts:
            df.attrs["lookbehind_pages"] = pages_before[0]
        return df

    def counted(pages: Iterator[Page]) -> Iterator[Page]:
        for page in pages:
            newest = _time(page[0]) if page else None
            if newest is not None and since_ts is not None and newest < since_ts:
                pages_before[0] += 1
            yield page

    def pages() -> Iterator[Page]:
        for chunk in _id_chunks(ids) if ids is not None else [None]:
            params = base + [("instance_ids", i) for i in chunk or []]
            # Newest first: has_next paging, whose read-ahead checks each page overlaps
            # the previous one (events arriving meanwhile shift every offset).
            yield from counted(client.pages(
                "/v1/instance_events", params, key="events", paging="has_next",
                stats=stats, progress=progress, stop=stop if read_to is not None else None,
                seen=collector.count_new,
                left=_pages_left(read_to)))  # one estimate per listing

    _collect(pages(), collector, finish, "/v1/instance_events", stats)
    return finish()


_STATUS_CACHE: dict[tuple[Any, Any], bool] = {}


def _announces_status(row: dict[str, Any]) -> bool:
    """Whether a raw event row tells a status (by its metadata or its message)."""
    if status_from_metadata(row.get("metadata")) is not None:
        return True
    key = (row.get("type"), row.get("message"))
    hit = _STATUS_CACHE.get(key)
    if hit is None:
        hit = bool((isinstance(key[0], str) and key[0] in KNOWN_TYPES)
                   or status_from_message(key[1])[0] is not None)
        if len(_STATUS_CACHE) < 10_000:
            _STATUS_CACHE[key] = hit
    return hit


def _pages_left(since: pd.Timestamp | None) -> Callable[[Page], float]:
    """An estimate of the pages a newest-first listing still needs to reach ``since``:
    the time left divided by the time each page covered so far (NaN: no idea)."""
    span: list[pd.Timestamp] = []  # newest time seen, then the oldest so far
    read = [0]

    def left(page: Page) -> float:
        read[0] += 1
        times = [t for t in (_time(page[0]), _time(page[-1])) if t is not None]
        if not times or since is None:
            return math.nan
        span[:] = [span[0] if span else times[0], times[-1]]
        covered = (span[0] - span[1]) / read[0]
        if covered <= pd.Timedelta(0):
            return math.nan
        return max(0.0, float((span[1] - since) / covered))
    return left


def _time(row: Any) -> pd.Timestamp | None:
    """An event's ``when``, or None when it is missing or unreadable."""
    value = row.get("when") if isinstance(row, dict) else None
    if not isinstance(value, str):
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if ts is pd.NaT or ts.tzinfo is None:
        return None
    return ts


def _expand_metadata(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    meta = pd.json_normalize([m if isinstance(m, dict) else {} for m in df["metadata"]],
                             sep="_")
    meta.columns = [f"metadata_{c}" for c in meta.columns]
    meta.index = df.index
    return pd.concat([df, meta.drop(columns=[c for c in meta if c in df])], axis=1)


def get_instance(client: KoyebClient, instance_id: str) -> pd.Series:
    """Fetch one instance with every field (lifecycle timestamps included).

    Parameters
    ----------
    client
        A :class:`KoyebClient`.
    instance_id
        The full instance id (a UUID).

    Returns
    -------
    Series
        Indexed by the instance columns plus ``hypervisor``, ``started_at``,
        ``succeeded_at`` and ``terminated_at``; named after the id.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     c = sim.client()
    ...     iid = ka.load_instances(c, progress=False)["id"][0]
    ...     row = ka.get_instance(c, iid)
    >>> row["id"] == iid
    True
    """
    if not isinstance(instance_id, str):
        raise TypeError(f"instance_id must be a string, got {type(instance_id).__name__}")
    if not is_full_id(instance_id):
        raise ValueError(f"instance_id must be a full instance id (a UUID), got {instance_id!r}")
    check_client(client)
    path = f"/v1/instances/{quote(instance_id, safe='')}"
    body = _instance_of(client.get(path), path)
    if body.get("id") != instance_id:
        raise MalformedResponseError(
            f"GET {path} answered with another instance ({str(body.get('id'))[:40]!r})")
    schema = {**INSTANCE_COLUMNS, **INSTANCE_DETAIL_COLUMNS}
    collector = Collector(schema)
    collector.add([body])
    row = collector.frame().iloc[0].copy()
    row.name = instance_id
    notes = collector.notes()
    if notes:
        row.attrs["notes"] = notes
    return row


def _instance_of(reply: dict[str, Any], path: str) -> dict[str, Any]:
    body = reply.get("instance")
    if not isinstance(body, dict):
        kind = "null" if body is None else type(body).__name__
        raise MalformedResponseError(f"GET {path}: 'instance' is {kind}, not an object")
    return body
