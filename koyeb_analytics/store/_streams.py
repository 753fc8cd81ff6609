"""The history store's logs and metrics: what the system said, kept by day.

A sync with ``metrics=`` reads, for each service, the samples from where the last sync
of that metric ended (less the store's overlap; ``backfill`` before ``until`` the first
time) up to the last whole step before ``until``; a sample already kept (same metric,
time and labels) is not written again. A sync with ``logs=`` reads each service's
lines the same way, deduplicated on the whole line identity (time to the nanosecond,
instance, stream, message), and then holds the logs within a byte budget: when their
Parquet files take more than ``max_log_bytes``, the oldest days are dropped whole
(never the newest one), that is said in the sync's notes, and the store keeps no line
older than what it dropped from then on. A read reaching before what the store holds
says so in ``attrs["notes"]``.

Layout, beside the tables of :mod:`._history`::

    metrics/date=YYYY-MM-DD/part-*.parquet  one row per sample, by its day
    logs/date=YYYY-MM-DD/part-*.parquet     one row per line, by its day (ts in ns)

The manifest keeps, per table, each service's marks (``from``: where the first read
started, ``to``: where the last complete read ended; per metric for metrics) and, for
logs, the bytes of each file, the days dropped and ``dropped_before``.

Long because two tables share one life cycle here (marks per service, whole steps or
deduplicated lines, the byte budget, reads with their notes); split, each half would
repeat the other's marks and notes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from ..api._checks import check_ids
from ..api._client import KoyebClient
from ..errors import IncompleteListingError
from ..load._streams import check_metric_names, load_logs, load_metrics
from ..schema import LOG_COLUMNS, METRIC_COLUMNS, METRIC_NAMES, METRIC_UNITS, STRING_DTYPE
from ..timewindow import DurationLike, TimeLike, parse_duration, resolve_window
from ._files import Files

STREAM_TABLES = ("metrics", "logs")
DEFAULT_MAX_LOG_BYTES = 256 * 2**20
"""The logs' byte budget when none is given: 256 MiB of Parquet files."""
DEFAULT_BACKFILL = "1d"
"""How far before ``until`` the first sync of a service's logs or metrics reads."""
MAX_STEPS_PER_READ = 10_000
"""The most samples per series one metrics request asks for (the API bounds a range)."""
LOG_SLICE = pd.Timedelta("15min")
"""One log time slice per this much of a read (a resumed read is a single slice)."""
LOG_KEY = ["ts", "instance_id", "stream", "msg"]
"""A log line's identity: ``koyeb`` lines carry no instance id, and lines share times."""
_STEP = re.compile(r"^[1-9]\d*[mh]$")
_UNITS = sorted(set(METRIC_UNITS.values()))
_RANK = {name: i for i, name in enumerate(METRIC_NAMES)}
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_NS_TIME_DTYPE = "datetime64[ns, UTC]"


class Store(Protocol):
    """What this module needs of a :class:`~koyeb_analytics.HistoryStore`."""

    files: Files
    overlap: pd.Timedelta

    def _write_part(self, table: str, day: str, data: pa.Table) -> dict[str, Any]: ...

    def _query(self, names: list[str], where: list[str], params: list[Any],
               columns: str = "*") -> pa.Table: ...

    def _files_for(self, manifest: dict[str, Any], table: str, since: pd.Timestamp | None,
                   until: pd.Timestamp | None, columns_only: bool = False) -> list[str]: ...


@dataclass(frozen=True)
class StreamPlan:
    """The logs and metrics one sync keeps, checked before any request."""

    metric_names: tuple[str, ...] = ()
    step: str = "5m"
    log_services: tuple[str, ...] | None = None
    """None: logs are not synced; empty: every listed service's."""
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
    backfill: pd.Timedelta = pd.Timedelta(days=1)
    until: pd.Timestamp | None = None

    @property
    def active(self) -> bool:
        return bool(self.metric_names) or self.log_services is not None


@dataclass
class StreamCounts:
    """What one sync did to the logs and metrics."""

    metric_samples_read: int = 0
    metric_samples_added: int = 0
    metric_requests: int = 0
    log_lines_read: int = 0
    log_lines_added: int = 0
    log_pages: int = 0
    log_bytes: int = 0
    log_days_dropped: list[str] = field(default_factory=list)
    obsolete: list[str] = field(default_factory=list)
    """Files of dropped days: removed once the manifest no longer lists them."""

    def result_fields(self) -> dict[str, Any]:
        """The counts a :class:`SyncResult` reports (all but ``obsolete``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "obsolete"}


def plan_streams(*, metrics: bool | Iterable[str] | str, step: str,
                 logs: bool | Iterable[str] | str, max_log_bytes: int,
                 backfill: DurationLike, until: TimeLike | None) -> StreamPlan:
    """Check a sync's logs and metrics arguments; raise before anything is read."""
    if metrics is True:
        names: tuple[str, ...] = METRIC_NAMES
    elif metrics is False or metrics is None:
        names = ()
    else:
        names = tuple(sorted(check_metric_names("metrics", metrics) or [],
                             key=_RANK.__getitem__))
    if not isinstance(step, str) or not _STEP.match(step):
        raise ValueError(f"step must be a number of minutes or hours such as '5m' or '1h', "
                         f"got {step!r}")
    if logs is True:
        services: tuple[str, ...] | None = ()
    elif logs is False or logs is None:
        services = None
    else:
        listed = check_ids("logs", logs) or []
        if not listed:
            raise ValueError("logs is empty; pass True for every service's logs, or False")
        services = tuple(listed)
    if isinstance(max_log_bytes, bool) or not isinstance(max_log_bytes, int) \
            or max_log_bytes < 1:
        raise ValueError(f"max_log_bytes must be a positive number of bytes, got "
                         f"{max_log_bytes!r}")
    depth = parse_duration(backfill, "backfill")
    end = None if until is None else resolve_window(None, until, None).until
    return StreamPlan(metric_names=names, step=step, log_services=services,
                      max_log_bytes=max_log_bytes, backfill=depth, until=end)


def step_delta(step: str) -> pd.Timedelta:
    return pd.Timedelta(int(step[:-1]), "min" if step[-1] == "m" else "h")


def stream_tables() -> dict[str, Any]:
    """The manifest entries of the tables schema version 3 added."""
    return {"metrics": {"files": {}, "rows": 0, "step": None, "marks": {}},
            "logs": {"files": {}, "rows": 0, "bytes": 0, "max_bytes": None, "marks": {},
                     "dropped": [], "dropped_before": None}}


def check_plan(manifest: dict[str, Any], plan: StreamPlan) -> None:
    """Refuse a step other than the one the store keeps metrics at."""
    kept = manifest["metrics"].get("step")
    if plan.metric_names and kept is not None and kept != plan.step:
        raise ValueError(f"step={plan.step!r}, but this store keeps metrics at step {kept!r}; "
                         "sync with that step, or keep another step in another store")


def sync_streams(store: Store, client: KoyebClient, manifest: dict[str, Any],
                 plan: StreamPlan, listed: Iterable[str], synced_at: pd.Timestamp,
                 notes: list[str], progress: bool,
                 ) -> tuple[StreamCounts, IncompleteListingError | None]:
    """Read the plan's logs and metrics from their marks on, keep what is new."""
    counts = StreamCounts()
    services = sorted({s for s in listed if isinstance(s, str) and s})
    until = synced_at if plan.until is None else min(plan.until, synced_at)
    failure: IncompleteListingError | None = None
    if plan.metric_names:
        failure = _sync_metrics(store, client, manifest, plan, services, until, notes,
                                counts)
    if plan.log_services is not None:
        chosen = list(plan.log_services) or services
        lost = _sync_logs(store, client, manifest, plan, chosen, until, notes, counts,
                          progress)
        failure = failure or lost
        _hold_budget(manifest, plan.max_log_bytes, synced_at, notes, counts)
    counts.log_bytes = int(manifest["logs"]["bytes"])
    return counts, failure


# -- metrics ---------------------------------------------------------------------


def _sync_metrics(store: Store, client: KoyebClient, manifest: dict[str, Any],
                  plan: StreamPlan, services: list[str], until: pd.Timestamp,
                  notes: list[str], counts: StreamCounts) -> IncompleteListingError | None:
    entry = manifest["metrics"]
    entry["step"] = plan.step
    step = step_delta(plan.step)
    # Only whole steps: the newest sample's step may still be filling, and a sample is
    # written once (the next sync reads it again, complete).
    end = until.floor(step)
    failure: IncompleteListingError | None = None
    for svc in services:
        marks = entry["marks"].setdefault(svc, {})
        groups: dict[pd.Timestamp, list[str]] = {}
        for name in plan.metric_names:
            to = (marks.get(name) or {}).get("to")
            since = pd.Timestamp(to) - store.overlap if to else end - plan.backfill
            groups.setdefault(since, []).append(name)
        frames = []
        for since, names in sorted(groups.items()):
            if since >= end:
                continue
            ok = True
            for a, b in _spans(since, end, step * MAX_STEPS_PER_READ):
                try:
                    frame = load_metrics(client, names=names, service_id=svc, since=a,
                                         until=b, step=plan.step)
                except IncompleteListingError as exc:
                    frame, ok, failure = exc.partial, False, failure or exc
                counts.metric_requests += int(frame.attrs.get("requests", len(names)))
                notes += [f"metrics of service {svc}: {n}" for n in frame.attrs.get("notes", [])]
                frames.append(frame)
                if not ok:
                    break
            for name in names:
                mark = marks.setdefault(name, {})
                mark.setdefault("from", since.isoformat())
                if ok:
                    mark["to"] = end.isoformat()
        frames = [f for f in frames if len(f)]
        if frames:
            df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            df = df[df["ts"] < end]
            counts.metric_samples_read += len(df)
            counts.metric_samples_added += _append_metrics(store, manifest, df, svc)
    return failure


def _spans(since: pd.Timestamp, end: pd.Timestamp,
           most: pd.Timedelta) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    out = []
    while since < end:
        out.append((since, min(since + most, end)))
        since = out[-1][1]
    return out


def _metric_key(df: pd.DataFrame) -> list[str]:
    """A sample's identity: metric, time and every label."""
    return ["metric", "ts", "service_id", "instance_id", "code",
            *[c for c in df.columns if c not in METRIC_COLUMNS]]


def _append_metrics(store: Store, manifest: dict[str, Any], df: pd.DataFrame,
                    svc: str) -> int:
    if df.empty:
        return 0
    key = _metric_key(df)
    # Chunks meet on a sample (the API's range includes both ends).
    df = df.drop_duplicates(subset=key)
    oldest = df["ts"].min()
    stored = _stored(store, manifest, "metrics", svc, oldest,
                     "ts >= ?", oldest.to_pydatetime())
    new = _unseen(df, stored, key)
    if new.empty:
        return 0
    out = new.copy()
    for col in ("metric", "unit"):
        out[col] = out[col].astype(STRING_DTYPE)
    entry = manifest["metrics"]
    _write_days(store, entry, "metrics", out, bytes_too=False)
    return len(new)


# -- logs ------------------------------------------------------------------------


def _sync_logs(store: Store, client: KoyebClient, manifest: dict[str, Any],
               plan: StreamPlan, services: list[str], until: pd.Timestamp,
               notes: list[str], counts: StreamCounts,
               progress: bool) -> IncompleteListingError | None:
    entry = manifest["logs"]
    floor = entry.get("dropped_before")
    failure: IncompleteListingError | None = None
    for svc in services:
        mark = dict(entry["marks"].get(svc) or {})
        to = mark.get("to")
        since = pd.Timestamp(to) - store.overlap if to else until - plan.backfill
        if floor is not None:
            since = max(since, pd.Timestamp(floor))
        if since >= until:
            continue
        slices = max(1, min(4 * max(1, client.concurrency),
                            math.ceil((until - since) / LOG_SLICE)))
        complete = True
        try:
            frame = load_logs(client, service_id=svc, since=since, until=until,
                              slices=slices, progress=progress)
        except IncompleteListingError as exc:
            frame, complete, failure = exc.partial, False, failure or exc
        complete = complete and bool(frame.attrs.get("complete", True))
        counts.log_pages += int(frame.attrs.get("pages", 0))
        counts.log_lines_read += len(frame)
        notes += [f"logs of service {svc}: {n}" for n in frame.attrs.get("notes", [])]
        counts.log_lines_added += _append_logs(store, manifest, frame, svc, since)
        # Where the read really started: load_logs clips to the log retention.
        mark.setdefault("from", pd.Timestamp(frame.attrs.get("since") or since).isoformat())
        if complete:
            mark["to"] = until.isoformat()
        entry["marks"][svc] = mark
    return failure


def _append_logs(store: Store, manifest: dict[str, Any], frame: pd.DataFrame, svc: str,
                 since: pd.Timestamp) -> int:
    if frame.empty:
        return 0
    entry = manifest["logs"]
    df = frame
    floor = entry.get("dropped_before")
    if floor is not None:
        df = df[df["ts"] >= pd.Timestamp(floor)]
    if df.empty:
        return 0
    stored = _stored(store, manifest, "logs", svc, since, "epoch_ns(ts) >= ?",
                     int((since - _EPOCH) // pd.Timedelta(1, "ns")), columns=LOG_KEY)
    new = _unseen(df, stored, LOG_KEY)
    if new.empty:
        return 0
    out = pd.DataFrame({c: new[c].astype(STRING_DTYPE)
                        if isinstance(new[c].dtype, pd.CategoricalDtype) else new[c]
                        for c in new.columns})
    # The lines were asked for by this service: a line without the label is its line.
    out["service_id"] = out["service_id"].fillna(svc)
    _write_days(store, entry, "logs", out, bytes_too=True)
    return len(new)


def _hold_budget(manifest: dict[str, Any], budget: int, synced_at: pd.Timestamp,
                 notes: list[str], counts: StreamCounts) -> None:
    """Drop the oldest days of logs until their files fit ``budget`` (never the newest)."""
    entry = manifest["logs"]
    entry["max_bytes"] = budget
    by_day: dict[str, list[str]] = {}
    for name, part in entry["files"].items():
        by_day.setdefault(part["date"], []).append(name)
    size = {day: sum(int(entry["files"][n].get("bytes", 0)) for n in names)
            for day, names in by_day.items()}
    total = sum(size.values())
    dropped: list[dict[str, Any]] = []
    for day in sorted(by_day)[:-1]:
        if total <= budget:
            break
        rows = sum(int(entry["files"][n]["rows"]) for n in by_day[day])
        for name in by_day[day]:
            del entry["files"][name]
        counts.obsolete += by_day[day]
        total -= size[day]
        entry["rows"] -= rows
        dropped.append({"date": day, "rows": rows, "bytes": size[day],
                        "at": synced_at.isoformat()})
    entry["bytes"] = total
    if dropped:
        after = pd.Timestamp(dropped[-1]["date"], tz="UTC") + pd.Timedelta("1D")
        old = entry.get("dropped_before")
        if old is None or after > pd.Timestamp(old):
            entry["dropped_before"] = after.isoformat()
        entry["dropped"] = (entry["dropped"] + dropped)[-100:]
        counts.log_days_dropped = [d["date"] for d in dropped]
        days = ", ".join(d["date"] for d in dropped)
        notes.append(
            f"logs of {days} dropped from the store ({sum(d['rows'] for d in dropped)} "
            f"lines, {_size(sum(d['bytes'] for d in dropped))}): the logs took "
            f"{_size(total + sum(d['bytes'] for d in dropped))}, over max_log_bytes="
            f"{budget} ({_size(budget)}); the oldest days go first, and the store keeps "
            f"no line before {entry['dropped_before']} from now on")
    if total > budget and by_day:
        newest = max(d for d in by_day if d not in {x["date"] for x in dropped})
        notes.append(f"the newest day of logs ({newest}) alone takes {_size(total)}, over "
                     f"max_log_bytes={budget} ({_size(budget)}): kept, since the newest "
                     "day is never dropped; sync fewer services' logs or raise the budget")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


# -- shared by both ---------------------------------------------------------------


def _stored(store: Store, manifest: dict[str, Any], table: str, svc: str,
            since: pd.Timestamp, condition: str, bound: Any,
            columns: list[str] | None = None) -> pd.DataFrame:
    """The rows ``svc`` already has in ``table`` from ``since`` on (for the dedupe)."""
    names = store._files_for(manifest, table, since, None)
    if not names:
        return pd.DataFrame()
    cols = "*" if columns is None else ", ".join(f'"{c}"' for c in columns)
    found = store._query(names, ["service_id = ?", condition], [svc, bound], columns=cols)
    return found.to_pandas()


def _unseen(new: pd.DataFrame, old: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """The rows of ``new`` whose ``key`` is not among ``old``'s (missing equals missing)."""
    if old.empty:
        return new
    seen = _keys(old, key)
    return new[~_keys(new, key).isin(seen)]


def _keys(df: pd.DataFrame, key: list[str]) -> pd.MultiIndex:
    arrays = []
    for col in key:
        if col not in df:
            arrays.append(np.full(len(df), "", dtype=object))
        elif col == "ts":
            ts = pd.to_datetime(df[col], utc=True)
            arrays.append(((ts - _EPOCH) // pd.Timedelta(1, "ns")).to_numpy(np.int64))
        else:
            values = df[col].astype(object)
            arrays.append(values.where(values.notna(), "").to_numpy(object))
    return pd.MultiIndex.from_arrays(arrays)


def _write_days(store: Store, entry: dict[str, Any], table: str, df: pd.DataFrame, *,
                bytes_too: bool) -> None:
    # Midnights, formatted once per day (strftime on every row costs seconds at a million).
    day = df["ts"].dt.tz_convert("UTC").dt.normalize()
    for midnight, part in df.groupby(day, sort=True):
        value = pd.Timestamp(midnight).strftime("%Y-%m-%d")
        order = ["ts"] if table == "logs" else ["metric", "ts"]
        part = part.sort_values(order, kind="stable").reset_index(drop=True)
        part.attrs = {}  # the loader's attrs describe its read, not this file
        data = pa.Table.from_pandas(part, preserve_index=False)
        written = store._write_part(table, str(value), data)
        name = written.pop("file")
        if bytes_too:
            written["bytes"] = file_bytes(store.files, name)
            entry["bytes"] = int(entry.get("bytes", 0)) + written["bytes"]
        entry["files"][name] = written
        entry["rows"] += len(part)


def file_bytes(files: Files, name: str) -> int:
    """The size of a store file, as the budget counts it."""
    return int(files.fs.size(files.path(name)))


# -- reading ---------------------------------------------------------------------


def metrics_frame(table: pa.Table | None) -> pd.DataFrame:
    """Stored samples as ``load_metrics`` returns them: same columns, dtypes, order."""
    cols = [] if table is None else table.column_names
    df = table.to_pandas() if table is not None else pd.DataFrame()
    n = len(df)
    extras = [c for c in cols if c not in METRIC_COLUMNS]
    metric = df["metric"].astype(object) if n else pd.Series([], dtype=object)
    out = pd.DataFrame({
        "ts": pd.to_datetime(df["ts"], utc=True).astype("datetime64[us, UTC]") if n else
        pd.Series([], dtype="datetime64[us, UTC]"),
        "metric": pd.Categorical(metric, categories=list(METRIC_NAMES)),
        "value": (df["value"] if n else pd.Series([], dtype=float)).astype(np.float64),
        "unit": pd.Categorical(metric.map(METRIC_UNITS), categories=_UNITS),
        **{c: (df[c] if n and c in df else pd.Series([None] * n, dtype=object)).astype(
            STRING_DTYPE) for c in ("instance_id", "code", "service_id", *extras)},
    })
    if n > 1:
        # As load_metrics orders them (by metric, then series labels, then time), the
        # service first among the labels: one read holds one service, a store many.
        order = pd.DataFrame({
            "r": out["metric"].cat.codes, "s": out["service_id"].fillna(""),
            "i": out["instance_id"].fillna(""), "c": out["code"].fillna(""),
            "t": out["ts"]})
        out = out.iloc[order.sort_values(["r", "s", "i", "c", "t"], kind="stable").index]
    return out.reset_index(drop=True)


def logs_frame(table: pa.Table | None) -> pd.DataFrame:
    """Stored lines as ``load_logs`` returns them: ns times, labels as categoricals."""
    cols = [] if table is None else table.column_names
    n = 0 if table is None else table.num_rows
    labels = [c for c in LOG_COLUMNS if c not in ("ts", "msg")] + \
        [c for c in cols if c not in LOG_COLUMNS]
    data: dict[str, Any] = {}
    if table is not None and n:
        data["ts"] = pd.to_datetime(table.column("ts").to_pandas(), utc=True).astype(
            _NS_TIME_DTYPE)
        data["msg"] = pd.Series(table.column("msg"), dtype=STRING_DTYPE)
    else:
        data["ts"] = pd.Series([], dtype=_NS_TIME_DTYPE)
        data["msg"] = pd.Series([], dtype=STRING_DTYPE)
    for col in labels:
        values = pd.Series(table.column(col) if table is not None and col in cols
                           else [None] * n, dtype=STRING_DTYPE)
        cats = pd.Index(sorted(values.dropna().unique()), dtype=STRING_DTYPE)
        data[col] = pd.Categorical(values, categories=cats)
    return pd.DataFrame(data, index=pd.RangeIndex(n))


def _marks(manifest: dict[str, Any], table: str, service_id: str | None,
           names: Iterable[str]) -> list[dict[str, Any]]:
    """The marks of the selection: per service (logs), per service and metric (metrics)."""
    marks: dict[str, Any] = manifest[table]["marks"]
    services = [service_id] if service_id is not None else sorted(marks)
    if table == "metrics":
        wanted = list(names)
        return [(marks.get(s) or {}).get(n) or {} for s in services for n in wanted]
    return [marks.get(s) or {} for s in services]


def read_end(manifest: dict[str, Any], table: str) -> pd.Timestamp | None:
    """Where the newest complete read of ``table`` ended: a window ends there."""
    ends = [m.get("to") for m in _marks(manifest, table, None, METRIC_NAMES)]
    known = [pd.Timestamp(t) for t in ends if t]
    return max(known) if known else None


def held_note(manifest: dict[str, Any], table: str, since: pd.Timestamp | None,
              until: pd.Timestamp | None, service_id: str | None,
              names: Iterable[str] = ()) -> list[str]:
    """Say when a read reaches outside what the store holds of ``table``."""
    entry = manifest[table]
    marks = _marks(manifest, table, service_id, names)
    whose = f" of service {service_id}" if service_id is not None else ""
    known = [pd.Timestamp(m["from"]) for m in marks if m.get("from")]
    if not known:
        how = "metrics=True" if table == "metrics" else "logs=True"
        return [f"the store holds no {table}{whose}: sync with {how}"]
    notes = []
    held = min(known)
    why = "its first sync of them started there"
    floor = entry.get("dropped_before")
    if floor is not None and pd.Timestamp(floor) > held:
        held = pd.Timestamp(floor)
        why = (f"older days were dropped to keep the logs within max_log_bytes="
               f"{entry.get('max_bytes')}")
    if since is not None and since < held:
        notes.append(f"the store holds {table}{whose} from {held.isoformat()} on ({why}); "
                     f"the window starts at {since.isoformat()}")
    elif since is not None and table == "metrics" and since < max(known):
        notes.append(f"some of these metrics{whose} are held only from "
                     f"{max(known).isoformat()} on; the window starts at {since.isoformat()}")
    ends = [pd.Timestamp(m["to"]) for m in marks if m.get("to")]
    if until is not None and (not ends or until > max(ends)):
        upto = f"up to {max(ends).isoformat()} (its last complete read)" if ends else \
            "from no complete read yet"
        notes.append(f"the store holds {table}{whose} {upto}; the window ends at "
                     f"{until.isoformat()}")
    return notes
