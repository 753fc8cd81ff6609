"""The history store's platform lines: the ``koyeb`` stream around events that never arrived.

Two consecutive events of an instance that cannot follow each other betray a lost event
between them (:func:`~koyeb_analytics.lifecycles`, ``attrs["lost_events"]``, those with
``betrayed`` True). Each sync looks for such gaps among the events the store holds over
a bounded recent range, reads the platform's lines of each gap it has not read yet
(:func:`~koyeb_analytics.load.read_platform`: one query per gap), and keeps them, so that
:func:`~koyeb_analytics.load_window` on the store places the lost changes where the
lines say, with no request.

The range a sync looks at starts where the previous one's ended (the newest event the
store held then, whoever wrote it: a sync or the live view's ``append``), less the
store's overlap, less :data:`PLATFORM_LOOKBACK` (the event before a new one may be older
than the new events: the pair is seen only if it is in the range), and never later than
the oldest gap a previous sync failed to read or left over
:data:`~koyeb_analytics.load._platform.MAX_PLATFORM_GAPS`. The first sync that reads
platform lines (a new store, or one written before they were kept) looks back
:data:`PLATFORM_BACKFILL`; no range reaches further back than that from now, since the
API keeps no older log line.

Layout, beside the tables of :mod:`._history`::

    platform/date=YYYY-MM-DD/part-*.parquet  one row per line (ts in ns, instance_id, msg)

The manifest's ``platform`` entry lists the files and keeps the gaps read (instance,
the two events' times in ns; those older than the range are dropped, and at most
:data:`MAX_READ_RECORD`), ``from`` (where the first read's range started), ``to`` (the
newest event when the last one ran) and ``retry_from`` (the oldest gap to read again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from ..analysis._lifecycle import lifecycles
from ..api._client import KoyebClient
from ..load._platform import MAX_PLATFORM_GAPS, PLATFORM_COLUMNS, empty_platform, read_gaps
from ..load._streams import DEFAULT_RETENTION
from ..schema import STRING_DTYPE
from ..timewindow import parse_duration, utcnow
from ._streams import Store as StreamStore

PLATFORM_LOOKBACK = pd.Timedelta("2D")
"""How far before the events a sync reads (less the overlap) it looks for gaps: a gap
whose first event is older than that, and whose second is new, is not seen."""
PLATFORM_BACKFILL = parse_duration(DEFAULT_RETENTION, "retention")
"""How far before the newest event the first sync reading platform lines looks (the
API's log retention, as ``load_logs`` assumes it, counted from now as it counts it)."""
MAX_READ_RECORD = 20_000
"""The most gaps the manifest remembers as read (the newest kept)."""
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_NS_TIME_DTYPE = "datetime64[ns, UTC]"


class Store(StreamStore, Protocol):
    """What this module needs of a :class:`~koyeb_analytics.HistoryStore`: what the
    streams' module needs, and its events and latest instance records."""

    def _stored_events(self, manifest: dict[str, Any], since: pd.Timestamp) -> pd.DataFrame: ...

    def _latest_instances(self, manifest: dict[str, Any]) -> pd.DataFrame: ...


@dataclass(frozen=True)
class PlatformCounts:
    """What one sync did to the platform lines."""

    platform_gaps_read: int = 0
    platform_requests: int = 0
    platform_lines_added: int = 0


def platform_table() -> dict[str, Any]:
    """The manifest entry schema version 4 added."""
    return {"files": {}, "rows": 0, "read": [], "from": None, "to": None,
            "retry_from": None}


def sync_platform(store: Store, client: KoyebClient, manifest: dict[str, Any],
                  notes: list[str]) -> PlatformCounts:
    """Read the platform lines of the lost-event gaps not read yet, and keep them.

    A failed read is a note, never an exception: its gap is read again by the next sync.
    """
    entry = manifest["platform"]
    newest = manifest["high_water"]["events"]
    if newest is None:
        return PlatformCounts()
    floor = utcnow() - PLATFORM_BACKFILL
    start = floor
    if entry.get("to") is not None:
        start = pd.Timestamp(entry["to"]) - store.overlap - PLATFORM_LOOKBACK
        if entry.get("retry_from") is not None:
            start = min(start, pd.Timestamp(entry["retry_from"]))
        start = max(start, floor)
    entry["from"] = entry.get("from") or start.isoformat()
    entry["to"] = newest
    events = store._stored_events(manifest, start)
    if events.empty:
        return PlatformCounts()
    found = lifecycles(store._latest_instances(manifest), events,
                       since=start).attrs["lost_events"]
    done = set(_record(entry))
    todo = [g for g in found if g["betrayed"] and _key(g) not in done]
    got = read_gaps(client, todo, max_gaps=MAX_PLATFORM_GAPS)
    added = append_lines(store, manifest, got.lines)
    notes += [f"platform lines: {n}" for n in got.lines.attrs.get("notes", [])]
    if got.failed:
        errors = ", ".join(sorted({error for _, error in got.failed}))
        notes.append(f"platform lines of {len(got.failed)} gap(s) could not be read "
                     f"({errors}): the next sync reads them again (until then their lost "
                     "events keep the median's guess)")
    if got.skipped:
        notes.append(f"platform lines of {len(got.skipped)} older gap(s) over the bound of "
                     f"{MAX_PLATFORM_GAPS} per sync were not read: the next sync reads them")
    again = [g for g, _ in got.failed] + got.skipped
    entry["retry_from"] = min(g["after"] for g in again).isoformat() if again else None
    kept = [g for g in _record(entry) if g[1] >= _ns(start)] + [_key(g) for g in got.read]
    kept.sort(key=lambda g: (g[2], g[0], g[1]))
    entry["read"] = [list(g) for g in kept[-MAX_READ_RECORD:]]
    return PlatformCounts(platform_gaps_read=len(got.read),
                          platform_requests=int(got.lines.attrs.get("requests", 0)),
                          platform_lines_added=added)


def _record(entry: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(str(i), int(a), int(b)) for i, a, b in entry.get("read", [])]


def _key(gap: Mapping[str, Any]) -> tuple[str, int, int]:
    return (str(gap["instance_id"]), _ns(pd.Timestamp(gap["after"])),
            _ns(pd.Timestamp(gap["before"])))


def _ns(ts: pd.Timestamp) -> int:
    return int((ts - _EPOCH) // pd.Timedelta(1, "ns"))


def append_lines(store: Store, manifest: dict[str, Any], lines: pd.DataFrame) -> int:
    """Write the lines not kept yet (same time to the nanosecond, instance and text)."""
    if lines.empty:
        return 0
    entry = manifest["platform"]
    df = lines[list(PLATFORM_COLUMNS)].drop_duplicates()
    oldest = df["ts"].min()
    names = store._files_for(manifest, "platform", oldest, None)
    if names:
        ids = sorted(set(df["instance_id"].astype(object)))
        old = store._query(names, ["epoch_ns(ts) >= ?", "instance_id IN (SELECT unnest(?))"],
                           [_ns(oldest), ids], columns="ts, instance_id, msg").to_pandas()
        if len(old):
            df = df[~_keys(df).isin(_keys(old))]
    if df.empty:
        return 0
    day = df["ts"].dt.tz_convert("UTC").dt.normalize()
    for midnight, part in df.groupby(day, sort=True):
        part = part.sort_values(["instance_id", "ts", "msg"], kind="stable")
        data = pa.Table.from_pandas(pd.DataFrame({
            "ts": part["ts"].to_numpy(), "instance_id": part["instance_id"].astype(object),
            "msg": part["msg"].astype(object)}), preserve_index=False)
        written = store._write_part("platform", pd.Timestamp(midnight).strftime("%Y-%m-%d"),
                                    data)
        entry["files"][written.pop("file")] = written
        entry["rows"] += len(part)
    return len(df)


def _keys(df: pd.DataFrame) -> pd.MultiIndex:
    ts = pd.to_datetime(df["ts"], utc=True)
    return pd.MultiIndex.from_arrays([
        ((ts - _EPOCH) // pd.Timedelta(1, "ns")).to_numpy(np.int64),
        df["instance_id"].astype(object).to_numpy(object),
        df["msg"].astype(object).to_numpy(object)])


def platform_frame(table: pa.Table | None) -> pd.DataFrame:
    """Stored lines as ``read_platform`` returns them: columns, dtypes, order."""
    if table is None or table.num_rows == 0:
        return empty_platform()
    df = pd.DataFrame({
        "ts": pd.to_datetime(table.column("ts").to_pandas(), utc=True).astype(_NS_TIME_DTYPE),
        "instance_id": pd.Series(table.column("instance_id").to_pylist(), dtype=object),
        "msg": pd.Series(table.column("msg").to_pylist(), dtype=STRING_DTYPE)})
    return df.sort_values(["instance_id", "ts", "msg"], kind="stable").reset_index(drop=True)


def held_note(manifest: dict[str, Any], since: pd.Timestamp | None) -> list[str]:
    """Say when a read of platform lines reaches before what the store looked for."""
    held = manifest["platform"].get("from")
    if held is None:
        return ["the store holds no platform lines: a sync with platform=True (the "
                "default) reads them"]
    if since is not None and since < pd.Timestamp(held):
        return [f"the store holds platform lines from {held} on (its first read of them "
                f"looked back to there); the read starts at {since.isoformat()}"]
    return []


def in_gaps(lines: pd.DataFrame, gaps: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The lines of each gap's instance from its first event's time up to (not including)
    its second's, as :func:`~koyeb_analytics.load.read_platform` would have read them."""
    frame = pd.DataFrame([{"instance_id": str(g["instance_id"]),
                           "after": pd.Timestamp(g["after"]).as_unit("ns"),
                           "before": pd.Timestamp(g["before"]).as_unit("ns")} for g in gaps],
                         columns=["instance_id", "after", "before"])
    if lines.empty or frame.empty:
        return lines.iloc[:0].reset_index(drop=True)
    frame["instance_id"] = pd.Series(frame["instance_id"].to_numpy(object), dtype=object)
    frame["after"] = pd.to_datetime(frame["after"], utc=True).astype(_NS_TIME_DTYPE)
    frame["before"] = pd.to_datetime(frame["before"], utc=True).astype(_NS_TIME_DTYPE)
    # The gaps of one instance never overlap (each lies between two consecutive events):
    # the latest gap starting at or before a line is the only one that can hold it.
    left = pd.DataFrame({"ts": lines["ts"].to_numpy(),
                         "instance_id": pd.Series(lines["instance_id"].to_numpy(object),
                                                  dtype=object),
                         "_row": np.arange(len(lines))}).sort_values("ts", kind="stable")
    matched = pd.merge_asof(left, frame.sort_values("after", kind="stable"),
                            left_on="ts", right_on="after", by="instance_id")
    inside = matched["before"].notna() & (matched["ts"] < matched["before"])
    rows = np.sort(matched.loc[inside.to_numpy(), "_row"].to_numpy())
    return lines.iloc[rows].reset_index(drop=True)
