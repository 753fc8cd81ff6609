"""Loaders for what the system said: logs and metrics as frames, and the instance catalog.

Logs come from a time-window cursor (``has_more``, ``next_start``/``next_end``), not
offsets, so a long window is cut into time slices, each read by its own bounded cursor
loop, several at once. Lines are deduplicated on their whole identity (time, instance,
stream, message): the cursor sends again the lines that share the last time of a page,
and ``koyeb`` lines carry no instance id. A window reaching past the organisation's log
retention is clipped, and the clipping is a finding in ``attrs["notes"]``.

Metrics come one metric per call, each a list of labelled series; the loader fetches
them concurrently (a per-instance metric of a service over a long window as time slices),
reads plain replies into columns with Arrow's JSON reader, and returns one long frame
with stated units.

Long because both loaders check every argument before any request, bound every loop
whatever the server says, and keep what was read when a request fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ..api._checks import check_bool, check_client, check_ids, check_str
from ..api._client import KoyebClient
from ..errors import IncompleteListingError, KoyebError, MalformedResponseError
from ..schema import (
    LOG_COLUMNS,
    LOG_STREAMS,
    METRIC_NAMES,
    METRIC_UNITS,
    STRING_DTYPE,
    TIME_DTYPE,
)
from ..timewindow import DurationLike, TimeLike, parse_duration, resolve_window, utcnow

QUERY_PATH = "/v1/streams/logs/query"
METRICS_PATH = "/v1/streams/metrics"
CATALOG_PATH = "/v1/catalog/instances"
LOG_LIMIT = 1000
"""The most lines one query may ask for (the API's maximum)."""
METRIC_SLICE_STEPS = 500
"""Steps of one request for a per-instance metric of a service; a longer window is read
as time slices at once."""
MAX_METRIC_SLICES = 8
"""The most time slices one per-instance metric is cut into."""
PER_INSTANCE_METRICS = frozenset({"CPU_TOTAL_PERCENT", "MEM_RSS"})
"""The metrics served as one series per instance (koyeb-api-beyond-instances.md §4)."""
MAX_LOG_PAGES = 50_000
"""The most pages one load reads (50 million lines): a bound whatever a server claims."""
DEFAULT_RETENTION = "30d"
"""The log retention assumed when none is given. The real value is per organisation
(``Quotas.logs_retention``, in days) and its per-plan values are not public."""
_STEP = re.compile(r"^[1-9]\d*[mh]$")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NS_TIME_DTYPE = "datetime64[ns, UTC]"


def _rfc3339_ns(ts: pd.Timestamp) -> str:
    return str(ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.")) + f"{ts.value % 10**9:09d}Z"


def _parse_times(values: list[Any], unit: str) -> np.ndarray:
    """RFC 3339 strings to integers since the epoch (``unit``), ``-1`` where unreadable."""
    if not values:
        return np.empty(0, np.int64)
    try:
        # map keeps the per-value checks in C (a non-string raises TypeError)
        if all(map(str.endswith, values, repeat("Z"))):
            out: np.ndarray = np.array([v[:-1] for v in values],
                                       dtype=f"datetime64[{unit}]").astype(np.int64)
            return out
    except (TypeError, ValueError):
        pass
    parsed = pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce",
                            format="ISO8601")
    ints = parsed.astype(f"datetime64[{unit}, UTC]").array.asi8.copy()
    ints[parsed.isna().to_numpy()] = -1
    result: np.ndarray = ints
    return result


def _label(labels: dict[str, Any], key: str) -> str | None:
    """A label's value as the frame keeps it (a value that is not a string, as text)."""
    v = labels.get(key)
    return v if v is None or isinstance(v, str) else str(v)


def _every(values: list[Any], kind: type) -> bool:
    return all(map(isinstance, values, repeat(kind)))


def _clean(msg: Any) -> tuple[str, bool]:
    """A message as text: lone surrogates and bytes that are not UTF-8 become U+FFFD."""
    if not isinstance(msg, str):
        return ("" if msg is None else str(msg)), msg is not None
    if msg.isascii():
        return msg, False
    try:
        msg.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", msg), True
    return msg, "\ufffd" in msg


class _Slice:
    """What one time slice read: columns as compact arrays, and its cursor's state."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.cursor = start
        self.t: list[np.ndarray] = []
        self.msg: list[pa.Array] = []
        # labels as codes into this slice's own dictionaries (remapped when joined), a
        # dict of arrays per page
        self.codes: list[dict[str, np.ndarray]] = []
        self.values: dict[str, dict[str | None, int]] = {}
        self.pages = 0
        self.lines = 0
        self.repeats = 0
        self.outside = 0
        self.bad_time = 0
        self.bad_text = 0
        self.done = False
        self.notes: list[str] = []
        self._edge: set[tuple[Any, ...]] = set()
        self._edge_t = -1

    def _codes(self, labels: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Each label of these lines as codes into this slice's own dictionaries."""
        keys: list[str] = []
        for one in (labels[0], labels[-1]):
            keys += [key for key in one if key not in keys]
        if set(map(len, labels)) != {len(keys)}:
            for one in labels:
                keys += [key for key in one if key not in keys]
        codes: dict[str, np.ndarray] = {}
        for key in keys:
            table = self.values.setdefault(key, {None: 0})
            values = list(map(dict.get, labels, repeat(key)))
            if not all(map(isinstance, values, repeat((str, type(None))))):
                values = [v if v is None or isinstance(v, str) else str(v) for v in values]
            for v in set(values) - table.keys():
                table[v] = len(table)
            codes[key] = np.fromiter(map(table.__getitem__, values), np.int32, len(values))
        return codes

    def add(self, data: list[Any]) -> None:
        """Keep a page's lines, column by column."""
        # The per-line work is in map over C functions, or in comprehensions.
        rows = data if _every(data, dict) else [e for e in data if isinstance(e, dict)]
        self.bad_time += len(data) - len(rows)
        if not rows:
            return
        t = _parse_times(list(map(dict.get, rows, repeat("created_at"))), "ns")
        keep = (t >= self.start) & (t < self.end)
        self.bad_time += int((t < 0).sum())
        self.outside += int(((t >= 0) & ~keep).sum())
        labels: list[Any] = list(map(dict.get, rows, repeat("labels")))
        if not _every(labels, dict):
            labels = [v if isinstance(v, dict) else {} for v in labels]
        msgs: list[Any] = list(map(dict.get, rows, repeat("msg")))
        if not (_every(msgs, str) and all(map(str.isascii, msgs))):
            cleaned = [_clean(m) for m in msgs]
            msgs = [m for m, _ in cleaned]
            self.bad_text += sum(bad for (_, bad), k in zip(cleaned, keep.tolist(),
                                                             strict=True) if k)
        # Repeats come only where the cursor met the previous page: at its last time.
        edge, edge_t = self._edge, self._edge_t
        if edge_t >= 0:
            for k in np.flatnonzero(keep & (t <= edge_t)).tolist():
                ident = (int(t[k]), _label(labels[k], "instance_id"),
                         _label(labels[k], "stream"), msgs[k])
                if ident in edge:
                    keep[k] = False
                    self.repeats += 1
                else:
                    edge.add(ident)
        idx = np.flatnonzero(keep)
        if not len(idx):
            return
        top = int(t[idx].max())
        if top > edge_t:
            edge = set()
            edge_t = top
        for k in idx[t[idx] == top].tolist():
            edge.add((top, _label(labels[k], "instance_id"), _label(labels[k], "stream"),
                      msgs[k]))
        self._edge, self._edge_t = edge, edge_t
        take = idx.tolist()
        codes = self._codes(labels if len(take) == len(labels)
                            else [labels[k] for k in take])
        self.t.append(t[idx])
        # The system allocator: Arrow's own keeps per-thread caches that double the
        # resident memory of a load on eight threads.
        self.msg.append(pa.array([msgs[k] for k in take], type=pa.large_string(),
                                 memory_pool=pa.system_memory_pool()))
        self.codes.append(codes)
        self.lines += len(take)


def _bool(name: str, value: Any) -> bool:
    return check_bool(name, value)


def check_line_filters(streams: Iterable[str] | str | None, text: str | None,
                        regex: str | None) -> list[str] | None:
    """Check the filters of a logs query or tail; return the streams asked for."""
    stream_list = check_ids("streams", streams)
    if stream_list is not None:
        bad = [s for s in stream_list if s not in LOG_STREAMS]
        if bad or not stream_list:
            raise ValueError(f"streams: unknown stream {bad[0] if bad else ''!r}; expected "
                             f"some of {', '.join(LOG_STREAMS)}")
    check_str("text", text)
    check_str("regex", regex)
    if text is not None and regex is not None:
        raise ValueError("pass text or regex, not both (the API refuses the two together)")
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(f"regex {regex!r} does not compile: {exc}") from None
    return stream_list


def load_logs(
    client: KoyebClient,
    *,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    window: DurationLike | None = None,
    app_id: str | None = None,
    service_id: str | None = None,
    deployment_id: str | None = None,
    instance_ids: Iterable[str] | str | None = None,
    streams: Iterable[str] | str | None = None,
    text: str | None = None,
    regex: str | None = None,
    type: str = "runtime",
    retention: DurationLike = DEFAULT_RETENTION,
    slices: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Load the log lines of a time window as a DataFrame.

    The window is cut into ``slices`` time slices read at once (``client.concurrency``
    at a time), each by its own cursor loop with ``limit=1000``, oldest first. Every
    loop is bounded whatever the server says (a cursor that does not move on, or
    :data:`MAX_LOG_PAGES`, ends it with a note), and lines outside the slice asked for
    are dropped and counted.

    Parameters
    ----------
    client
        A :class:`KoyebClient`.
    since, until, window
        The window ``[since, until)``; ``window="1h"`` means the last hour. With none
        of them, the last 15 minutes (the API's default).
    app_id, service_id, deployment_id, instance_ids
        Whose lines; at least one is needed (the API refuses a query without).
    streams
        Some of ``"stdout"``, ``"stderr"`` and ``"koyeb"`` (platform messages); all
        three by default.
    text, regex
        Keep lines containing ``text``, or matching ``regex`` (not both). A regex is
        checked here before any request (the API's engine is RE2: a pattern Python
        accepts may still be refused).
    type
        ``"runtime"`` or ``"build"``.
    retention
        The organisation's log retention (default 30 days, an assumption: the API
        has it per organisation in ``Quotas.logs_retention``). A window reaching
        further back is clipped, and that is said in ``attrs["notes"]``.
    slices
        How many time slices to cut the window into (default: four per concurrent
        request, for balance).
    progress
        Show a progress bar over the slices when there are several.

    Returns
    -------
    DataFrame
        ``ts`` (UTC, to the nanosecond: the one exception to the microsecond rule),
        ``msg``, ``stream``, ``instance_id`` (NaN on ``koyeb`` lines), ``service_id``,
        ``app_id``, ``type``, then any other label as its own column (labels are
        categoricals: a million lines repeat a few hundred values); sorted by time,
        deduplicated on (ts, instance_id, stream, msg). ``attrs`` hold the query, the
        pages read, the repeats dropped, the lines whose text was not UTF-8
        (``bad_text``: kept, with U+FFFD for the bytes) and the notes.

    Raises
    ------
    IncompleteListingError
        When a request fails for good; ``partial`` holds every line read and its
        ``attrs["gaps"]`` the time ranges not read.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2, now="2026-11-20T12:00:00Z") as sim:
    ...     svc = sim.fleet.services[0].service_id
    ...     logs = ka.load_logs(sim.client(), service_id=svc, since="2026-11-20T11:00Z",
    ...                         until="2026-11-20T11:10Z", progress=False)
    >>> list(logs.columns[:4]), str(logs["ts"].dtype)
    (['ts', 'msg', 'stream', 'instance_id'], 'datetime64[ns, UTC]')
    """
    check_client(client)
    now = utcnow()
    if since is None and until is None and window is None:
        window = "15min"
    tw = resolve_window(since, until, window, now=now)
    start = tw.since
    end = tw.until if tw.until is not None else now
    if start is None:
        start = end - pd.Timedelta("15min")
    if start >= end:
        raise ValueError(f"since ({start.isoformat()}) must be earlier than until "
                         f"({end.isoformat()})")
    filters = {name: check_str(name, value) for name, value in (
        ("app_id", app_id), ("service_id", service_id), ("deployment_id", deployment_id))}
    ids = check_ids("instance_ids", instance_ids)
    if ids is not None and not ids:
        raise ValueError("instance_ids is empty; pass None to read by app or service")
    if not any(filters.values()) and not ids:
        raise ValueError("load_logs needs whose lines to read: app_id, service_id, "
                         "deployment_id or instance_ids")
    stream_list = check_line_filters(streams, text, regex)
    if type not in ("runtime", "build"):
        raise ValueError(f"type must be 'runtime' or 'build', got {type!r}")
    kept = parse_duration(retention, "retention")
    if slices is not None and (isinstance(slices, bool) or not isinstance(slices, int)
                               or slices < 1):
        raise ValueError(f"slices must be a positive integer, got {slices!r}")
    _bool("progress", progress)

    notes: list[str] = []
    asked = (start, end)
    floor = now - kept
    if start < floor:
        notes.append(
            f"the window starts at {start.isoformat()}, before the log retention "
            f"({_days(kept)}): the API keeps no line older than {floor.isoformat()}, so "
            f"the frame starts there" if end > floor else
            f"the whole window ends before the log retention ({_days(kept)}, from "
            f"{floor.isoformat()}): the API keeps none of its lines")
        start = min(floor, end)
    params: list[tuple[str, str]] = [(k, v) for k, v in filters.items() if v is not None]
    params += [("instance_ids", i) for i in ids or []]
    params += [("streams", s) for s in stream_list or []]
    if text is not None:
        params.append(("text", text))
    if regex is not None:
        params.append(("regex", regex))
    params += [("type", type), ("order", "asc"), ("limit", str(LOG_LIMIT))]
    query: dict[str, Any] = {**{k: v for k, v in filters.items() if v is not None},
                             "since": asked[0].isoformat(), "until": asked[1].isoformat(),
                             "type": type}
    if ids:
        query["instance_ids"] = ids
    if stream_list:
        query["streams"] = stream_list
    if text is not None:
        query["text"] = text
    if regex is not None:
        query["regex"] = regex

    workers = max(1, client.concurrency)
    count = slices or 4 * workers
    lo, hi = int(start.value), int(end.value)
    count = max(1, min(count, (hi - lo) // 10**9 or 1))
    edges = [lo + (hi - lo) * k // count for k in range(count + 1)]
    parts = [_Slice(a, b) for a, b in zip(edges, edges[1:], strict=False) if a < b]
    budget = [MAX_LOG_PAGES]

    def read(part: _Slice) -> None:
        _read_slice(client, params, part, budget)

    failure: BaseException | None = None
    bar = _bar(progress and len(parts) > 1, len(parts))
    started = time.perf_counter()
    if lo < hi:
        with ThreadPoolExecutor(max_workers=min(workers, len(parts)),
                                thread_name_prefix="koyeb-logs") as pool:
            futures = [pool.submit(read, p) for p in parts]
            for fut in futures:
                try:
                    fut.result()
                except KoyebError as exc:
                    failure = failure or exc
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    df = _log_frame(parts)
    pages = sum(p.pages for p in parts)
    for p in parts:
        notes += p.notes
    bad_text = sum(p.bad_text for p in parts)
    if bad_text:
        notes.append(f"{bad_text} line(s) held text that is not UTF-8: kept, with U+FFFD "
                     "in place of the bytes")
    gaps = [(pd.Timestamp(p.cursor, tz="UTC").isoformat(),
             pd.Timestamp(p.end, tz="UTC").isoformat()) for p in parts if not p.done]
    df.attrs.update({
        "source": client.base_url,
        "simulated": bool(getattr(client, "simulated", False)),
        "query": query,
        "since": start.isoformat(),
        "until": end.isoformat(),
        "fetched_at": now,
        "pages": pages,
        "slices": len(parts),
        "rows_received": sum(p.lines + p.repeats for p in parts),
        "duplicates_dropped": sum(p.repeats for p in parts) + df.attrs.pop("_dups", 0),
        "outside_window": sum(p.outside for p in parts),
        "bad_time": sum(p.bad_time for p in parts),
        "bad_text": bad_text,
        "retention": str(kept),
        "seconds": round(time.perf_counter() - started, 3),
        "complete": failure is None and not gaps,
        "gaps": gaps,
        "notes": notes,
    })
    if failure is not None:
        raise IncompleteListingError(QUERY_PATH, df, pages, failure) from failure
    return df


def _days(delta: pd.Timedelta) -> str:
    days = delta / pd.Timedelta("1D")
    return f"{days:g} day{'s' if days != 1 else ''}"


def _bar(enabled: bool, total: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="log slices", unit="slice", leave=False)


def _read_slice(client: KoyebClient, params: list[tuple[str, str]], part: _Slice,
                budget: list[int]) -> None:
    """Follow the cursor over one slice, oldest line first, within bounds."""
    start, end = part.start, part.end
    while True:
        if budget[0] <= 0:
            part.notes.append(f"stopped after {MAX_LOG_PAGES} pages (the bound of one load)")
            return
        budget[0] -= 1
        reply = client.get(QUERY_PATH, params + [
            ("start", _rfc3339_ns(pd.Timestamp(start, tz="UTC"))),
            ("end", _rfc3339_ns(pd.Timestamp(end, tz="UTC")))], errors="replace")
        part.pages += 1
        data = reply.get("data", [])
        if data is None:
            data = []
        if not isinstance(data, list):
            raise MalformedResponseError(f"GET {QUERY_PATH}: 'data' is "
                                         f"{type(data).__name__}, not a list")
        part.add(data)
        page = reply.get("pagination")
        more = isinstance(page, dict) and page.get("has_more") is True
        if not more:
            part.cursor, part.done = end, True
            return
        assert isinstance(page, dict)
        nxt = _parse_times([page.get("next_start")], "ns")[0]
        if nxt < 0:
            part.notes.append(
                f"the server said more lines follow {pd.Timestamp(start, tz='UTC')} but gave "
                "no readable next_start; the rest of the slice is a gap")
            part.cursor = start
            return
        if nxt <= start:
            # A page whose lines all share one time: step past it, and say what may be lost.
            if nxt < start or not data:
                part.notes.append(f"the cursor went back or stood still at "
                                  f"{pd.Timestamp(start, tz='UTC')}; the rest is a gap")
                part.cursor = start
                return
            part.notes.append(f"more than {LOG_LIMIT} lines share the time "
                              f"{pd.Timestamp(start, tz='UTC')}; lines of that time beyond "
                              "those read may be missing")
            nxt = start + 1
        start = nxt
        part.cursor = start
        if start >= end:
            part.done = True
            return


def _labels(parts: list[_Slice], key: str, n: int) -> pd.Categorical:
    """One label column of every slice, as a categorical over the values seen."""
    cats = sorted({v for p in parts for v in p.values.get(key, {}) if v is not None})
    index = {v: i for i, v in enumerate(cats)}
    chunks = []
    for p in parts:
        table = p.values.get(key, {None: 0})
        remap = np.full(len(table), -1, np.int32)
        for v, code in table.items():
            if v is not None:
                remap[code] = index[v]
        for page, t in zip(p.codes, p.t, strict=True):
            got = page.get(key)
            chunks.append(remap[got] if got is not None else np.full(len(t), -1, np.int32))
    codes = np.concatenate(chunks) if chunks else np.empty(0, np.int32)
    assert len(codes) == n
    return pd.Categorical.from_codes(codes, categories=pd.Index(cats, dtype=STRING_DTYPE))


def _log_frame(parts: list[_Slice]) -> pd.DataFrame:
    t_chunks = [c for p in parts for c in p.t]
    t = np.concatenate(t_chunks) if t_chunks else np.empty(0, np.int64)
    msg = pa.chunked_array([c for p in parts for c in p.msg], type=pa.large_string())
    keys: list[str] = [k for k in LOG_COLUMNS if k not in ("ts", "msg")]
    for p in parts:
        for page in p.codes:
            keys += [k for k in page if k not in keys]
    columns: dict[str, Any] = {
        "ts": pd.Series(t.view("datetime64[ns]")).dt.tz_localize("UTC")
        if len(t) else pd.Series([], dtype=_NS_TIME_DTYPE),
        "msg": pd.Series(msg, dtype=STRING_DTYPE),
    }
    for key in keys:
        columns[key] = _labels(parts, key, len(t))
    df = pd.DataFrame(columns)
    if len(df) > 1 and not df["ts"].is_monotonic_increasing:
        df = df.sort_values("ts", kind="stable").reset_index(drop=True)
    dups = 0
    if len(df) > 1:
        # Lines are repeated only where slices or pages meet: compare within equal times
        # (times are sorted, so equal ones are neighbours).
        ns = df["ts"].array.asi8
        same = ns[1:] == ns[:-1]
        tied = np.zeros(len(ns), bool)
        tied[1:] |= same
        tied[:-1] |= same
        if tied.any():
            sub = df.loc[tied, ["ts", "instance_id", "stream", "msg"]]
            repeat = sub.duplicated()
            dups = int(repeat.sum())
            if dups:
                df = df.drop(index=sub.index[repeat.to_numpy()]).reset_index(drop=True)
    df.attrs["_dups"] = dups
    return df


# ---------------------------------------------------------------------------- metrics


def check_metric_names(name: str, values: Iterable[str] | str | None) -> list[str] | None:
    """Return the metric names asked for (None stays None), or raise naming ``name``."""
    listed = check_ids(name, values)
    if listed is not None and not listed:
        raise ValueError(f"{name} is empty; name some of {', '.join(METRIC_NAMES)}")
    unknown = [n for n in listed or [] if n not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"{name}: unknown metric {unknown[0]!r}; the API knows "
                         f"{', '.join(METRIC_NAMES)}")
    return listed


def load_metrics(
    client: KoyebClient,
    *,
    names: Iterable[str] | str | None = None,
    service_id: str | None = None,
    instance_id: str | None = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    window: DurationLike | None = None,
    step: str = "5m",
) -> pd.DataFrame:
    """Load metrics of a service or an instance as one long DataFrame.

    One request per metric (the API serves one at a time), ``client.concurrency`` at
    once; CPU and memory of a service over more than :data:`METRIC_SLICE_STEPS` steps
    are read as time slices (at most :data:`MAX_METRIC_SLICES`), edges on the step. Every
    series keeps its labels: ``instance_id`` for CPU and memory, ``code`` (``2xx`` …)
    for throughput.

    Parameters
    ----------
    client
        A :class:`KoyebClient`.
    names
        Metric names (see :data:`~koyeb_analytics.schema.METRIC_NAMES`); all nine by
        default.
    service_id, instance_id
        Whose metrics: exactly one of them.
    since, until, window
        The time range (``window="7d"``: the last seven days); by default the last hour.
    step
        The spacing of samples: minutes or hours (``"5m"``, ``"1h"``).

    Returns
    -------
    DataFrame
        ``ts, metric, value, unit, instance_id, code, service_id`` (other labels as
        extra columns), sorted by metric, labels and time. Units are in
        :data:`~koyeb_analytics.schema.METRIC_UNITS`. Samples whose value is missing or
        not finite are kept with ``value`` NaN and counted in ``attrs["non_finite"]``;
        latency percentiles are as served (pre-aggregated estimates: never average them).

    Raises
    ------
    IncompleteListingError
        When a metric's request fails for good; ``partial`` holds the others.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2, now="2026-11-20T12:00:00Z") as sim:
    ...     svc = sim.fleet.services[0].service_id
    ...     m = ka.load_metrics(sim.client(), names=["CPU_TOTAL_PERCENT", "HTTP_THROUGHPUT"],
    ...                         service_id=svc, since="2026-11-20T10:00Z",
    ...                         until="2026-11-20T11:00Z")
    >>> sorted(m["unit"].unique())
    ['percent', 'requests/s']
    """
    check_client(client)
    now = utcnow()
    name_list = list(METRIC_NAMES) if names is None else \
        check_metric_names("names", names) or []
    check_str("service_id", service_id)
    check_str("instance_id", instance_id)
    if (service_id is None) == (instance_id is None):
        raise ValueError("pass exactly one of service_id and instance_id")
    if not isinstance(step, str) or not _STEP.match(step):
        raise ValueError(f"step must be a number of minutes or hours such as '5m' or '1h', "
                         f"got {step!r}")
    if since is None and until is None and window is None:
        window = "1h"
    tw = resolve_window(since, until, window, now=now)
    end = tw.until if tw.until is not None else now
    start = tw.since if tw.since is not None else end - pd.Timedelta("1h")
    if start >= end:
        raise ValueError(f"since ({start.isoformat()}) must be earlier than until "
                         f"({end.isoformat()})")
    who = ("service_id", service_id) if service_id else ("instance_id", instance_id or "")
    # A per-instance metric of a whole service over a long window is hundreds of
    # thousands of samples: it is read as time slices at once (edges on the step, each
    # slice ending just before the next begins), so that the server's work on one slice
    # and the reading of another overlap.
    step_ns = int(step[:-1]) * (60 if step.endswith("m") else 3600) * 10**9
    steps = (end.value - start.value) // step_ns
    count = min(MAX_METRIC_SLICES, -(-steps // METRIC_SLICE_STEPS)) if service_id else 1
    edges = [start + pd.Timedelta(k * -(-steps // count) * step_ns, "ns")
             for k in range(count)] if count > 1 else [start]
    whole = [who, ("start", _rfc3339_ns(start)), ("end", _rfc3339_ns(end)), ("step", step)]
    requests: list[tuple[str, int, list[tuple[str, str]]]] = []
    for k in range(len(edges) if len(edges) > 1 else 0):
        upto = end if k + 1 == len(edges) else edges[k + 1] - pd.Timedelta(1, "ns")
        requests += [(n, k, [who, ("start", _rfc3339_ns(edges[k])), ("end", _rfc3339_ns(upto)),
                             ("step", step), ("name", n)])
                     for n in name_list if n in PER_INSTANCE_METRICS]
    requests += [(n, 0, whole + [("name", n)]) for n in name_list
                 if len(edges) == 1 or n not in PER_INSTANCE_METRICS]

    def one(query: list[tuple[str, str]]) -> dict[str, Any] | _Columns:
        reply: dict[str, Any] | _Columns = client.get_parsed(METRICS_PATH, query,
                                                             _read_metric)
        return reply

    got: list[tuple[str, int, dict[str, Any] | _Columns]] = []
    failed: set[str] = set()
    failure: BaseException | None = None
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, min(client.concurrency, len(requests))),
                            thread_name_prefix="koyeb-metrics") as pool:
        futures = [(n, k, pool.submit(one, query)) for n, k, query in requests]
        for n, k, fut in futures:
            try:
                got.append((n, k, fut.result()))
            except KoyebError as exc:
                failure = failure or exc
                failed.add(n)
    # A metric with a slice missing is missing: no frame holds part of a series.
    replies = [(n, k, r) for n, k, r in sorted(got, key=lambda item: item[1])
               if n not in failed]
    df, counts = _metric_frame(replies, service_id)
    df.attrs.update({
        "source": client.base_url,
        "simulated": bool(getattr(client, "simulated", False)),
        "query": {"names": name_list, "service_id": service_id, "instance_id": instance_id,
                  "since": start.isoformat(), "until": end.isoformat(), "step": step},
        "fetched_at": now,
        "requests": len(requests),
        "slices": len(edges),
        "seconds": round(time.perf_counter() - started, 3),
        "non_finite": counts["non_finite"],
        "bad_time": counts["bad_time"],
        "missing": [n for n in name_list if n in failed],
        "complete": failure is None,
        "notes": counts["notes"],
    })
    if failure is not None:
        raise IncompleteListingError(METRICS_PATH, df, len(got), failure) from failure
    return df


def _metric_frame(replies: list[tuple[str, int, dict[str, Any] | _Columns]],
                  service_id: str | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One long frame of the replies, each ``(metric, time slice, reply)`` in time order.

    Each reply's samples stay in one array (its series end to end): the checks, the
    drops and the final order are array operations, the per-series work is bookkeeping.
    """
    # per series: (metric, instance, code), metric, labels, time slice, where, how many
    found: list[tuple[tuple[int, str, str], str, dict[str, str], int, int, int]] = []
    times: list[np.ndarray] = []
    numbers: list[np.ndarray] = []
    non_finite: dict[str, int] = {}
    bad_time = 0
    notes: list[str] = []
    rank = {n: i for i, n in enumerate(METRIC_NAMES)}
    # Every series of a metric repeats the same few thousand timestamps: each text is
    # parsed once.
    seen: dict[Any, int] = {}
    at = 0
    for name, part, reply in replies:
        labels_of, sizes, t, values = _block_of(name, reply, seen, notes)
        series = np.repeat(np.arange(len(sizes)), sizes)
        ok = t >= 0
        if not ok.all():
            bad_time += int((~ok).sum())
            t, values, series = t[ok], values[ok], series[ok]
            sizes = np.bincount(series, minlength=len(sizes))
        finite = np.isfinite(values)
        if not finite.all():
            non_finite[name] = non_finite.get(name, 0) + int((~finite).sum())
            values = np.where(finite, values, np.nan)
        if len(t) > 1 and ((np.diff(t) < 0) & (series[1:] == series[:-1])).any():
            order = np.lexsort((t, series))  # each series in time order (a stable sort)
            t, values = t[order], values[order]
        firsts = (at + np.cumsum(sizes) - sizes).tolist()
        for labels, first, size in zip(labels_of, firsts, sizes.tolist(), strict=True):
            key = (rank[name], labels.get("instance_id", ""), labels.get("code", ""))
            found.append((key, name, labels, part, first, size))
        times.append(t)
        numbers.append(values)
        at += len(t)
    if non_finite:
        notes.append("samples without a finite value, kept as NaN: " + ", ".join(
            f"{k} {v}" for k, v in non_finite.items()))
    if bad_time:
        notes.append(f"{bad_time} sample(s) without a readable timestamp were dropped")
    all_t = np.concatenate(times) if times else np.empty(0, np.int64)
    all_values = np.concatenate(numbers) if numbers else np.empty(0, np.float64)
    # Series in the frame's order (metric, labels), each in time order: no global sort.
    found.sort(key=lambda item: item[0])
    # A series read in time slices comes in pieces, one after the other: where a server
    # sent a slice's edge in both, the sample is kept once.
    for k in range(1, len(found)):
        prev, item = found[k - 1], found[k]
        if item[3] != prev[3] and item[:3] == prev[:3] and prev[5] and item[5]:
            last = all_t[prev[4] + prev[5] - 1]
            if all_t[item[4]] <= last:
                skip = int(np.searchsorted(all_t[item[4]:item[4] + item[5]], last, "right"))
                found[k] = (*item[:4], item[4] + skip, item[5] - skip)
    sizes_list = [item[5] for item in found]
    sizes = np.array(sizes_list, np.int64)
    n = int(sizes.sum())
    take = np.repeat(np.array([item[4] for item in found], np.int64), sizes) + _runs(sizes)
    t, values = all_t[take], all_values[take]
    series_list = found
    keys: list[str] = []
    for item in series_list:
        keys += [k for k in item[2] if k not in keys]
    names = list(METRIC_NAMES)
    metric_codes = np.repeat(np.array([rank[item[1]] for item in series_list], np.int8),
                             sizes)
    units = sorted(set(METRIC_UNITS.values()))
    unit_of = np.array([units.index(METRIC_UNITS[m]) for m in names], np.int8)

    which = pa.array(np.repeat(np.arange(len(series_list)), sizes))

    def label(key: str) -> pd.Series:
        # a value per series, repeated by Arrow (a million Python strings are slow to convert)
        per = pa.array([item[2].get(key) for item in series_list], type=pa.large_string())
        return pd.Series(per.take(which), dtype=STRING_DTYPE)

    df = pd.DataFrame({
        "ts": pd.Series(t.view("datetime64[us]")).dt.tz_localize("UTC") if n else
        pd.Series([], dtype=TIME_DTYPE),
        "metric": pd.Categorical.from_codes(metric_codes, categories=names),
        "value": values.astype(np.float64),
        "unit": pd.Categorical.from_codes(unit_of[metric_codes], categories=units),
        "instance_id": label("instance_id"),
        "code": label("code"),
        "service_id": pd.Series(pa.array([service_id], type=pa.large_string())
                                .take(pa.array(np.zeros(n, np.int64))), dtype=STRING_DTYPE),
        **{k: label(k) for k in keys if k not in ("instance_id", "code")},
    })
    return df, {"non_finite": non_finite, "bad_time": bad_time, "notes": notes}


class _Columns(NamedTuple):
    """A metric reply read by Arrow: each series' labels and length, and the samples of
    every series end to end (times in microseconds, -1 where missing)."""

    labels: list[dict[str, str]]
    sizes: list[int]
    t: np.ndarray
    values: np.ndarray


def _read_metric(body: bytes) -> _Columns | None:
    """Read a metric reply with Arrow's JSON reader, or return None to have it decoded.

    A week of a few hundred instances is hundreds of thousands of samples: Arrow reads
    them into columns in C++, without the GIL and without a Python object per sample.
    Only the plain shape is taken (one line; series with string labels and samples of a
    time and a number); anything else is left to the JSON decoder and the checks of
    :func:`_series_of`, so that both readings give the same frame.
    """
    try:
        table = pa_json.read_json(io.BytesIO(body), read_options=pa_json.ReadOptions(
            block_size=len(body) + 1024, use_threads=False))
        if table.num_rows != 1 or table.column_names.count("metrics") != 1:
            return None
        column = table.column("metrics").combine_chunks()
        if not pa.types.is_list(column.type) or column.null_count:
            return None
        series = pc.list_flatten(column)
        kind = series.type
        if not pa.types.is_struct(kind) or series.null_count or \
                kind.get_field_index("samples") < 0:
            return None
        labels: list[dict[str, str]] = [{} for _ in range(len(series))]
        if kind.get_field_index("labels") >= 0:
            raw = series.field("labels")
            if pa.types.is_struct(raw.type):
                present = raw.is_valid()  # a series without labels has none of them
                for field in raw.type:
                    values = raw.field(field.name)
                    # A null could be an absent label or a JSON null: the decoder tells.
                    if not pa.types.is_string(field.type) or \
                            pc.sum(pc.and_(present, values.is_null())).as_py():
                        return None
                    for one, v in zip(labels, values.to_pylist(), strict=True):
                        if v is not None:
                            one[field.name] = v
            elif not pa.types.is_null(raw.type) or raw.null_count != len(raw):
                return None
        samples = series.field("samples")
        if not (pa.types.is_list(samples.type) and pa.types.is_struct(samples.type.value_type)):
            return None
        flat = pc.list_flatten(samples)
        if flat.null_count or flat.type.get_field_index("timestamp") < 0 or \
                flat.type.get_field_index("value") < 0:
            return None
        stamps, values = flat.field("timestamp"), flat.field("value")
        if not pa.types.is_timestamp(stamps.type) or stamps.type.tz is not None or \
                stamps.type.unit not in ("s", "ms", "us") or not (
                    pa.types.is_floating(values.type) or pa.types.is_integer(values.type)
                    or pa.types.is_null(values.type)):
            return None
        t = stamps.cast(pa.timestamp("us")).cast(pa.int64()).fill_null(-1).to_numpy()
        v = values.cast(pa.float64()).fill_null(math.nan).to_numpy()
        sizes = pc.list_value_length(samples).fill_null(0).to_numpy().tolist()
    except (pa.ArrowException, ValueError, TypeError):
        return None
    return _Columns(labels, sizes, t, v)


def _block_of(name: str, reply: dict[str, Any] | _Columns, seen: dict[Any, int],
              notes: list[str]) -> tuple[list[dict[str, str]], np.ndarray, np.ndarray,
                                         np.ndarray]:
    """A reply's series: their labels and lengths, and their samples end to end (times in
    microseconds, -1 where unreadable)."""
    if isinstance(reply, _Columns):
        return reply.labels, np.asarray(reply.sizes, np.int64), reply.t, reply.values
    labels, sizes, times, values = [], [], [], []
    for one, t, v in _series_of(name, reply, seen, notes):
        labels.append(one)
        sizes.append(len(t))
        times.append(t)
        values.append(v)
    return (labels, np.array(sizes, np.int64),
            np.concatenate(times) if times else np.empty(0, np.int64),
            np.concatenate(values) if values else np.empty(0, np.float64))


def _runs(count: np.ndarray) -> np.ndarray:
    """0 .. count[0] - 1, 0 .. count[1] - 1, ...: each item's place within its run."""
    out: np.ndarray = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return out


def _series_of(name: str, reply: dict[str, Any], seen: dict[Any, int],
               notes: list[str]) -> Iterator[tuple[dict[str, str], np.ndarray, np.ndarray]]:
    """Each series of a decoded reply: its labels, sample times (-1 where unreadable),
    values."""
    series = reply.get("metrics", [])
    if series is None:
        series = []
    if not isinstance(series, list):
        notes.append(f"{name}: 'metrics' is {type(series).__name__}, not a list; skipped")
        return
    for s in series:
        if not isinstance(s, dict):
            continue
        raw = s.get("labels")
        labels = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        samples = s.get("samples")
        if not isinstance(samples, list):
            samples = []
        if not _every(samples, dict):
            samples = [x for x in samples if isinstance(x, dict)]
        yield (labels, _known_times(list(map(dict.get, samples, repeat("timestamp"))), seen),
               _values(list(map(dict.get, samples, repeat("value")))))


def _known_times(values: list[Any], seen: dict[Any, int]) -> np.ndarray:
    """:func:`_parse_times` (microseconds) through ``seen``, the texts already parsed."""
    try:
        return np.fromiter(map(seen.__getitem__, values), np.int64, len(values))
    except (KeyError, TypeError):
        pass
    t = _parse_times(values, "us")
    with contextlib.suppress(TypeError):  # a value that cannot be a key is parsed each time
        seen.update(zip(values, t.tolist(), strict=True))
    return t


def _values(raw: list[Any]) -> np.ndarray:
    try:
        out: np.ndarray = np.asarray(raw, dtype=np.float64)
        return out
    except (TypeError, ValueError):
        pass
    vals = []
    for v in raw:
        try:
            vals.append(float(v) if not isinstance(v, bool) and v is not None else math.nan)
        except (TypeError, ValueError):
            vals.append(math.nan)
    return np.asarray(vals, dtype=np.float64)


def load_instance_types(client: KoyebClient) -> pd.DataFrame:
    """Load the instance catalog: memory and vCPU of every instance type.

    Parameters
    ----------
    client
        A :class:`KoyebClient`.

    Returns
    -------
    DataFrame
        ``type, memory_bytes, vcpu_shares, display_name`` (the catalog's ``memory``,
        a string such as ``"512MB"``, read as bytes), one row per type.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=1) as sim:
    ...     types = ka.load_instance_types(sim.client())
    >>> int(types.set_index("type").loc["nano", "memory_bytes"])
    268435456
    """
    check_client(client)
    rows: list[dict[str, Any]] = []
    offset = 0
    for _ in range(100):  # a catalog is a few dozen types: a bound, whatever the server says
        reply = client.get(CATALOG_PATH, {"limit": 100, "offset": offset})
        items = reply.get("instances") or []
        if not isinstance(items, list):
            raise MalformedResponseError(f"GET {CATALOG_PATH}: 'instances' is not a list")
        rows += [i for i in items if isinstance(i, dict)]
        offset += len(items)
        count = reply.get("count")
        if not items or not isinstance(count, int) or offset >= count:
            break
    return pd.DataFrame({
        "type": pd.Series([r.get("id") for r in rows], dtype=STRING_DTYPE),
        "memory_bytes": pd.Series([_bytes(r.get("memory")) for r in rows], dtype="float64"),
        "vcpu_shares": pd.Series([_number(r.get("vcpu_shares")) for r in rows],
                                 dtype="float64"),
        "display_name": pd.Series([r.get("display_name") for r in rows], dtype=STRING_DTYPE),
    })


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*$", re.IGNORECASE)
_SCALE = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _bytes(value: Any) -> float:
    """``"512MB"`` → bytes (binary multiples, as the console reads them); NaN if unreadable."""
    m = _SIZE.match(value) if isinstance(value, str) else None
    return float(m.group(1)) * _SCALE[m.group(2)[0].upper()] if m else math.nan


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        return math.nan


# ---------------------------------------------------------------------------- tail

TAIL_PATH = "/v1/streams/logs/tail"


def tail_logs(
    client: KoyebClient,
    *,
    app_id: str | None = None,
    service_id: str | None = None,
    instance_ids: Iterable[str] | str | None = None,
    streams: Iterable[str] | str | None = None,
    text: str | None = None,
    regex: str | None = None,
    since: TimeLike | None = None,
    duration: DurationLike = "1min",
    max_lines: int = 10_000,
    reconnects: int = 3,
    reconnect_wait: float = 1.0,
) -> Iterator[dict[str, Any]]:
    """Follow log lines as they are written (the tail websocket), for a bounded time.

    The server first replays a backlog (the lines since ``since``, by default its own
    choice: the last 24 hours, at most 1000 lines), then sends new lines. When the
    connection drops, it is opened again (at most ``reconnects`` times, ``reconnect_wait``
    seconds apart) from the last line's time, and the line that comes back twice is
    dropped, as the Koyeb CLI does.

    Parameters
    ----------
    client
        A :class:`KoyebClient`.
    app_id, service_id, instance_ids
        Whose lines (at least one).
    streams, text, regex
        As for :func:`load_logs`.
    since
        Where the backlog starts.
    duration
        How long to follow before returning (the deadline of the whole tail).
    max_lines
        Stop after this many lines.
    reconnects, reconnect_wait
        How often, and how long apart, a dropped connection is opened again.

    Returns
    -------
    Iterator of dict
        A generator of lines, each ``ts`` (a Timestamp to the nanosecond), ``msg``,
        ``stream``, ``instance_id``, ``service_id``, ``app_id``. Arguments are checked
        at the call, before anything is opened.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=1, now="2026-11-20T12:00:00Z") as sim:
    ...     svc = sim.fleet.services[0].service_id
    ...     lines = list(ka.tail_logs(sim.client(), service_id=svc, max_lines=5,
    ...                               duration="5s"))
    >>> len(lines), sorted(lines[0])[:3]
    (5, ['app_id', 'instance_id', 'msg'])
    """
    check_client(client)
    filters = {name: check_str(name, value) for name, value in (
        ("app_id", app_id), ("service_id", service_id))}
    ids = check_ids("instance_ids", instance_ids)
    if not any(filters.values()) and not ids:
        raise ValueError("tail_logs needs whose lines to follow: app_id, service_id or "
                         "instance_ids")
    stream_list = check_line_filters(streams, text, regex)
    seconds = parse_duration(duration, "duration").total_seconds()
    if isinstance(max_lines, bool) or not isinstance(max_lines, int) or max_lines < 1:
        raise ValueError(f"max_lines must be a positive integer, got {max_lines!r}")
    if isinstance(reconnects, bool) or not isinstance(reconnects, int) or reconnects < 0:
        raise ValueError(f"reconnects must be a non-negative integer, got {reconnects!r}")
    start_ts = None if since is None else resolve_window(since, None, None).since
    return _tail(client, filters, ids, stream_list, text, regex, start_ts, seconds,
                 max_lines, reconnects, float(reconnect_wait))


def _tail(client: KoyebClient, filters: dict[str, str | None], ids: list[str] | None,
          stream_list: list[str] | None, text: str | None, regex: str | None,
          start: pd.Timestamp | None, seconds: float, max_lines: int, reconnects: int,
          wait: float) -> Iterator[dict[str, Any]]:
    from urllib.parse import urlencode

    from ..api._websocket import OP_BINARY, OP_CLOSE, OP_TEXT, WebSocket

    end = time.monotonic() + seconds
    sent = 0
    last_t = -1
    last_keys: set[tuple[Any, ...]] = set()
    attempts = 0
    while sent < max_lines and time.monotonic() < end:
        params: list[tuple[str, str]] = [(k, v) for k, v in filters.items() if v]
        params += [("instance_ids", i) for i in ids or []]
        params += [("streams", s) for s in stream_list or []]
        if text is not None:
            params.append(("text", text))
        if regex is not None:
            params.append(("regex", regex))
        if last_t >= 0:
            params.append(("start", _rfc3339_ns(pd.Timestamp(last_t, tz="UTC"))))
        elif start is not None:
            params.append(("start", _rfc3339_ns(start)))
        url = client.websocket_url(TAIL_PATH) + "?" + urlencode(params)
        try:
            ws = WebSocket.connect(client.network, url,
                                   subprotocols=client.auth_subprotocols(),
                                   deadline=min(end, time.monotonic() + client.timeout),
                                   max_message=client.max_response_bytes)
        except KoyebError:
            if attempts >= reconnects or time.monotonic() + wait >= end:
                raise
            attempts += 1
            time.sleep(wait)
            continue
        try:
            ws.set_deadline(end)
            while sent < max_lines:
                try:
                    opcode, payload = ws.recv()
                except KoyebError:
                    break  # dropped (or the deadline shut it): reconnect if time is left
                if opcode == OP_CLOSE:
                    end = 0.0  # the server ended the tail
                    break
                if opcode not in (OP_TEXT, OP_BINARY) or not payload.strip():
                    continue
                try:
                    frame = json.loads(payload.decode("utf-8", "replace"))
                except ValueError:
                    continue
                if not isinstance(frame, dict):
                    continue
                if isinstance(frame.get("error"), dict):
                    err = frame["error"]
                    raise MalformedResponseError(client.scrub(
                        f"the log tail answered an error: {str(err.get('message'))[:200]}"))
                entry = frame.get("result")
                if not isinstance(entry, dict):
                    continue
                t = _parse_times([entry.get("created_at")], "ns")[0]
                raw = entry.get("labels")
                labels: dict[str, Any] = raw if isinstance(raw, dict) else {}
                msg, _ = _clean(entry.get("msg"))
                key = (t, labels.get("instance_id"), labels.get("stream"), msg)
                if t < last_t or (t == last_t and key in last_keys):
                    continue  # the line the reconnect sends again
                if t > last_t:
                    last_t, last_keys = t, set()
                last_keys.add(key)
                sent += 1
                yield {"ts": pd.Timestamp(t, tz="UTC") if t >= 0 else pd.NaT, "msg": msg,
                       "stream": labels.get("stream"), "instance_id": labels.get("instance_id"),
                       "service_id": labels.get("service_id"), "app_id": labels.get("app_id")}
        finally:
            ws.close()
        if attempts >= reconnects or time.monotonic() + wait >= end:
            return
        attempts += 1
        time.sleep(wait)

