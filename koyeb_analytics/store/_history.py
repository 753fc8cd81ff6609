"""A local history store: what was read from the API, kept as Parquet by day.

``store.sync(client)`` reads only what is new (events newest first down to the store's
high-water mark, less an overlap for events that arrive late), deduplicates by id and
appends; each sync also records the instance listing. Queries run in process on DuckDB
over the Parquet files and return the frames the API loaders return, so every stage
downstream (lifecycles, analysis, plots, the report) works on a store as on the API.

Layout (readable as-is by DuckDB, Polars, Spark or Trino)::

    manifest.json                         schema version, high-water mark, files, syncs
    events/date=YYYY-MM-DD/part-*.parquet one row per event, partitioned by its day
    instances/date=YYYY-MM-DD/part-*.parquet  instance records, by the day observed
    deployments/date=YYYY-MM-DD/part-*.parquet  deployment records, by the day observed
    activities/date=YYYY-MM-DD/part-*.parquet   one row per activity, by its day
    metrics/date=YYYY-MM-DD/part-*.parquet      one row per metric sample (``metrics=``)
    logs/date=YYYY-MM-DD/part-*.parquet         one row per log line (``logs=``, bounded)
    platform/date=YYYY-MM-DD/part-*.parquet     the platform's lines of lost events

Logs and metrics are kept by :mod:`._streams`, the platform's lines of lost events by
:mod:`._platform`. A store of schema version 1 (no deployments, no activities), 2 (no
logs, no metrics) or 3 (no platform lines) is upgraded when opened: its manifest gains
the tables, written back at the next sync.

Long because a store's one job (keep what was read, answer from it) spans the sync,
the queries (``sql`` closed to the store's own tables among them) and the compaction,
which share the manifest's bookkeeping.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from .._version import __version__
from ..api._checks import check_bool, check_client, check_ids, check_statuses, check_str
from ..api._client import KoyebClient
from ..errors import IncompleteListingError, StoreError
from ..load._changes import load_activities, load_deployments, select_window, typed
from ..load._frames import build_frame, frame_from_arrow
from ..load._loaders import load_events, load_instances, overlapping
from ..load._streams import check_line_filters, check_metric_names
from ..schema import (
    ACTIVITY_COLUMNS,
    DEPLOYMENT_COLUMNS,
    EVENT_COLUMNS,
    INSTANCE_COLUMNS,
    LOG_COLUMNS,
    METRIC_COLUMNS,
    METRIC_NAMES,
    STRING_DTYPE,
)
from ..timewindow import (
    DurationLike,
    TimeLike,
    TimeWindow,
    parse_duration,
    resolve_window,
    utcnow,
)
from ._files import TMP_PREFIX, Files
from ._platform import (
    PlatformCounts,
    platform_frame,
    platform_table,
    sync_platform,
)
from ._platform import (
    held_note as platform_note,
)
from ._snapshots import json_columns, json_safe
from ._streams import (
    DEFAULT_BACKFILL,
    DEFAULT_MAX_LOG_BYTES,
    STREAM_TABLES,
    check_plan,
    file_bytes,
    held_note,
    logs_frame,
    metrics_frame,
    plan_streams,
    read_end,
    stream_tables,
    sync_streams,
)

__all__ = ["HistoryStore", "SyncResult"]

SCHEMA_VERSION = 4
"""The layout this code writes and reads. Versions 1 (before deployments and
activities), 2 (before logs and metrics) and 3 (before platform lines) are upgraded when
opened; any other version is refused."""
CHANGE_TABLES = ("deployments", "activities")
DEPLOYMENT_KEYS = ("status", "updated_at", "succeeded_at", "terminated_at", "child_id",
                   "messages")
"""A deployment record is written when one of these changed since the last one kept."""
DEPLOYMENT_JSON = ["definition", "messages", "metadata", "provisioning_info",
                   "database_info"]
FORMAT = "koyeb-analytics history store"
TABLES = ("events", "instances", *CHANGE_TABLES, *STREAM_TABLES, "platform")
NAME_COLUMNS = ("app_name", "service_name")
RECORD_KEYS = ("status", "updated_at", "messages", *NAME_COLUMNS)
"""An instance record is written when one of these changed since the last one kept."""
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


@dataclass(frozen=True)
class SyncResult:
    """What one :meth:`HistoryStore.sync` did.

    Parameters
    ----------
    events_read, events_added
        Events the API returned (the overlap included), and those new to the store.
    instances_listed, instance_records_added
        Instances in the listing, and records written (new instances or changes).
    high_water
        The newest event time the store now holds completely up to.
    since
        Where this sync started reading events (None: the whole history).
    synced_at
        When the sync started.
    notes
        What the loaders noticed (see the frames' ``attrs["notes"]``).
    deployment_records_added, activities_added
        Deployment records written (new deployments, or changed status) and activities
        new to the store.
    metric_requests, metric_samples_read, metric_samples_added
        With ``metrics=``: requests sent (one per metric and read), samples received
        (whole steps only) and those new to the store.
    log_pages, log_lines_read, log_lines_added
        With ``logs=``: pages read, lines received and lines new to the store.
    log_bytes, log_days_dropped
        The bytes the logs' files take after the sync, and the days dropped to keep
        them within ``max_log_bytes`` (oldest first; said in ``notes`` too).
    platform_gaps_read, platform_requests, platform_lines_added
        With ``platform=True``: lost-event gaps whose platform lines were read in full,
        the requests that took, and the lines new to the store.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=2, days=1, services=1) as sim:
    ...     r = ka.HistoryStore("memory://doc-sync-result").sync(sim.client())
    >>> r.events_added == r.events_read, r.since is None
    (True, True)
    """

    events_read: int
    events_added: int
    instances_listed: int
    instance_records_added: int
    high_water: pd.Timestamp | None
    since: pd.Timestamp | None
    synced_at: pd.Timestamp
    notes: list[str] = field(default_factory=list)
    deployment_records_added: int = 0
    activities_added: int = 0
    metric_requests: int = 0
    metric_samples_read: int = 0
    metric_samples_added: int = 0
    log_pages: int = 0
    log_lines_read: int = 0
    log_lines_added: int = 0
    log_bytes: int = 0
    log_days_dropped: list[str] = field(default_factory=list)
    platform_gaps_read: int = 0
    platform_requests: int = 0
    platform_lines_added: int = 0


class HistoryStore:
    """Keep what was read from the API in Parquet files, and answer from them.

    Parameters
    ----------
    path
        A local directory (made on first sync) or an fsspec URL: ``memory://name`` for
        tests, ``s3://bucket/prefix`` with ``pip install 'koyeb-analytics[s3]'``.
    overlap
        How far before the newest stored event each sync reads again, so that events
        that reached the API late are not missed (default ten minutes).
    lock_timeout
        Seconds a sync or compaction waits for another one to finish before it raises
        :class:`~koyeb_analytics.StoreLockedError`.
    storage_options
        Passed to fsspec for URLs (credentials, endpoint).

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> store = ka.HistoryStore("memory://doc-history")
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     first = store.sync(sim.client())
    ...     again = store.sync(sim.client())
    >>> first.events_added > 0, again.events_added
    (True, 0)
    >>> len(store.events()) == first.events_added
    True
    """

    def __init__(self, path: str | os.PathLike[str], *, overlap: DurationLike = "10min",
                 lock_timeout: float = 60.0,
                 storage_options: dict[str, Any] | None = None) -> None:
        self.files = Files(path, storage_options)
        self.overlap = parse_duration(overlap, "overlap")
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) \
                or not 0 <= lock_timeout < float("inf"):
            raise ValueError(f"lock_timeout must be a finite number of seconds >= 0, "
                             f"got {lock_timeout!r}")
        self.lock_timeout = float(lock_timeout)

    def __repr__(self) -> str:
        manifest = self._manifest(required=False)
        if manifest is None:
            return f"HistoryStore({self.files.url!r}, empty)"
        return (f"HistoryStore({self.files.url!r}, {manifest['events']['rows']} events, "
                f"{manifest['instances']['rows']} instance records, "
                f"last sync {manifest.get('last_sync')})")

    @property
    def path(self) -> str:
        """The store's location, as given."""
        return self.files.url

    def manifest(self) -> dict[str, Any]:
        """The manifest: schema version, high-water mark, files, row counts, syncs."""
        return self._manifest(required=True) or {}

    # -- writing -----------------------------------------------------------------

    def sync(self, client: KoyebClient, *, progress: bool = False,
             metrics: bool | Iterable[str] | str = False, step: str = "5m",
             logs: bool | Iterable[str] | str = False,
             max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
             backfill: DurationLike = DEFAULT_BACKFILL,
             until: TimeLike | None = None, platform: bool = True) -> SyncResult:
        """Read what is new from the API and append it.

        Events are read newest first down to the high-water mark less ``overlap``
        (the whole history on the first sync), deduplicated by id against the store
        and written by day. The instance listing is read too; an instance's record is
        written when it is new or its status, ``updated_at``, messages or names
        changed, stamped with ``observed_at``. Deployments (a record when new or its
        status changed) and activities (each once) are read from their own marks, less
        ``overlap``, on. The manifest is replaced last: a sync
        killed at any point leaves the store as it was, and the next one completes it.

        With ``metrics`` and ``logs``, the same sync keeps what the system said, for
        every service of the instance listing (or the services named): each read
        starts where that service's last complete read ended, less ``overlap``
        (``backfill`` before ``until`` the first time), and what is already kept is not
        written again. Logs are off by default and bounded: when their files take more
        than ``max_log_bytes``, the oldest days are dropped (never the newest), as
        ``notes`` and ``log_days_dropped`` say.

        With ``platform`` (the default), the sync then looks for lost events among the
        events it holds (two consecutive events that cannot follow each other,
        :func:`~koyeb_analytics.lifecycles`' ``lost_events``) and keeps the platform's
        lines of each gap it has not read yet (:mod:`koyeb_analytics.store._platform`
        says over which range; one query per gap), so that
        :func:`~koyeb_analytics.load_window` on the store places them as from the API,
        with no request. A read that fails is a note, not an error, and the next sync
        reads that gap again.

        Parameters
        ----------
        client
            A :class:`~koyeb_analytics.KoyebClient`.
        progress
            Show the loaders' progress bars.
        metrics
            True for all nine metrics, or some names
            (:data:`~koyeb_analytics.schema.METRIC_NAMES`); samples of whole steps only,
            as ``load_metrics`` returns them (``store.metrics()``).
        step
            The metrics' step (``"5m"``, ``"1h"``); a store keeps one step.
        logs
            True for every listed service's log lines, or some service ids
            (``store.logs()``); runtime lines of the three streams.
        max_log_bytes
            The logs' budget, in bytes of Parquet files (default 256 MiB).
        backfill
            How far before ``until`` a service's first read of logs or metrics starts
            (default one day).
        until
            Where the reads of logs and metrics end (default now, and never later): the
            simulator's clock (``sim.now``) for a simulator with a fixed one.
        platform
            Keep the platform's lines of lost events (``store.platform()``).

        Returns
        -------
        SyncResult

        Raises
        ------
        IncompleteListingError
            A listing failed part way. What was received is kept; the high-water mark
            does not move, so the next sync reads the gap again.
        StoreLockedError
            Another sync or compaction held the store for ``lock_timeout`` seconds.
        """
        client = check_client(client)
        check_bool("progress", progress)
        check_bool("platform", platform)
        plan = plan_streams(metrics=metrics, step=step, logs=logs,
                            max_log_bytes=max_log_bytes, backfill=backfill, until=until)
        synced_at = utcnow()
        with self.files.lock(self.lock_timeout):
            manifest = self._manifest(required=False) or self._new_manifest()
            check_plan(manifest, plan)
            self._remove_unlisted(manifest)
            mark = manifest["high_water"]["events"]
            since = None if mark is None else pd.Timestamp(mark) - self.overlap
            failure: IncompleteListingError | None = None
            try:
                events = load_events(client, since=since, progress=progress)
            except IncompleteListingError as exc:
                events, failure = exc.partial, exc
            added = self._append_events(manifest, events, since)
            self._advance_mark(manifest, events, since, complete=failure is None)
            events_failed = failure is not None
            try:
                instances = load_instances(client, progress=progress)
            except IncompleteListingError as exc:
                instances, failure = exc.partial, failure or exc
            records = self._append_instances(manifest, instances)
            notes = list(events.attrs.get("notes", [])) + \
                list(instances.attrs.get("notes", []))
            changed, failure = self._sync_changes(client, manifest, notes, failure)
            streams, lost = sync_streams(
                self, client, manifest, plan,
                instances["service_id"].dropna().tolist() if plan.active else [],
                synced_at, notes, progress)
            failure = failure or lost
            said = sync_platform(self, client, manifest, notes) \
                if platform and not events_failed else PlatformCounts()
            manifest.update({
                "last_sync": synced_at.isoformat(),
                "source": instances.attrs.get("source") or events.attrs.get("source"),
                "simulated": bool(client.simulated),
            })
            if failure is None:
                manifest["instances_listed_at"] = synced_at.isoformat()
            manifest["syncs"] = (manifest["syncs"] + [{
                "at": synced_at.isoformat(), "since": None if since is None else
                since.isoformat(), "events_read": len(events), "events_added": added,
                "instance_records_added": records, "complete": failure is None,
                "deployment_records_added": changed[0], "activities_added": changed[1],
                "metric_samples_added": streams.metric_samples_added,
                "log_lines_added": streams.log_lines_added,
                "log_days_dropped": streams.log_days_dropped,
                "platform_gaps_read": said.platform_gaps_read,
                "platform_lines_added": said.platform_lines_added,
            }])[-100:]
            self.files.write_manifest(manifest)
            for name in streams.obsolete:  # unlisted now: a crash here leaves only garbage
                self.files.remove(name)
        if failure is not None:
            failure.add_note(f"The history store kept the {added} new event(s), "
                             f"{records} instance record(s), "
                             f"{streams.metric_samples_added} metric sample(s) and "
                             f"{streams.log_lines_added} log line(s) received; "
                             + ("its high-water mark did not move" if events_failed else
                                "the marks of what failed did not move")
                             + ", so the next sync reads the rest.")
            raise failure
        mark = manifest["high_water"]["events"]
        return SyncResult(events_read=len(events), events_added=added,
                          instances_listed=len(instances), instance_records_added=records,
                          high_water=None if mark is None else pd.Timestamp(mark),
                          since=since, synced_at=synced_at, notes=notes,
                          deployment_records_added=changed[0], activities_added=changed[1],
                          **streams.result_fields(), **asdict(said))

    def append(self, *, events: pd.DataFrame | None = None,
               instances: pd.DataFrame | None = None,
               read_since: pd.Timestamp | None = None, complete: bool = True,
               simulated: bool = False) -> tuple[int, int]:
        """Keep frames read elsewhere (the live view's polls): new events, changed records.

        The high-water mark moves only when ``events`` holds every event from
        ``read_since`` on (``complete``) and the store already reaches back to
        ``read_since``, so that no gap is ever marked as read.

        Parameters
        ----------
        events, instances
            Frames as the loaders return them.
        read_since
            Where the events' read started (None: the whole history).
        complete
            False when the read stopped part way.
        simulated
            The frames came from the simulator.

        Returns
        -------
        tuple of int
            Events added, instance records added.
        """
        with self.files.lock(self.lock_timeout):
            manifest = self._manifest(required=False) or self._new_manifest()
            self._remove_unlisted(manifest)
            added = records = 0
            if events is not None and len(events):
                added = self._append_events(manifest, events, read_since)
                self._advance_mark(manifest, events, read_since, complete=complete)
                manifest["source"] = manifest.get("source") or events.attrs.get("source")
            if instances is not None and len(instances):
                records = self._append_instances(manifest, instances)
                manifest["source"] = manifest.get("source") or instances.attrs.get("source")
                manifest["instances_listed_at"] = pd.Timestamp(
                    instances.attrs.get("fetched_at") or utcnow()).isoformat()
            manifest["simulated"] = bool(manifest.get("simulated")) or simulated
            manifest["last_sync"] = utcnow().isoformat()
            self.files.write_manifest(manifest)
        return added, records

    def compact(self) -> dict[str, int]:
        """Merge each day's files into one (many syncs leave many small files).

        Returns
        -------
        dict
            ``{"files_before": n, "files_after": m}``.
        """
        with self.files.lock(self.lock_timeout):
            manifest = self._manifest(required=True) or {}
            self._remove_unlisted(manifest)
            before = after = 0
            obsolete: list[str] = []
            for table in TABLES:
                files: dict[str, dict[str, Any]] = manifest[table]["files"]
                before += len(files)
                by_day: dict[str, list[str]] = {}
                for name, entry in files.items():
                    by_day.setdefault(entry["date"], []).append(name)
                for day, names in sorted(by_day.items()):
                    if len(names) > 1:
                        merged = self._read_table(names)
                        order = {"events": ["when", "id"], "activities": ["created_at", "id"],
                                 "metrics": ["metric", "ts"], "logs": ["ts"],
                                 "platform": ["instance_id", "ts", "msg"],
                                 }.get(table, ["observed_at", "id"])
                        merged = merged.sort_by([(c, "ascending") for c in order])
                        entry = self._write_part(table, day, merged)
                        if table == "logs":
                            entry["bytes"] = file_bytes(self.files, entry["file"])
                        for name in names:
                            del files[name]
                        files[entry.pop("file")] = entry
                        obsolete += names
                after += len(files)
            logs = manifest["logs"]
            logs["bytes"] = sum(int(e.get("bytes", 0)) for e in logs["files"].values())
            self.files.write_manifest(manifest)
            for name in obsolete:  # unlisted now: a crash here leaves only garbage
                self.files.remove(name)
        return {"files_before": before, "files_after": after}

    def _sync_changes(self, client: KoyebClient, manifest: dict[str, Any], notes: list[str],
                      failure: IncompleteListingError | None,
                      ) -> tuple[tuple[int, int], IncompleteListingError | None]:
        """Read the deployments and activities created since each table's mark (less the
        overlap; everything the first time) and keep what is new or changed."""
        marks = manifest["high_water"]
        added = [0, 0]
        for k, table in enumerate(CHANGE_TABLES):
            mark = marks.get(table)
            since = None if mark is None else pd.Timestamp(mark) - self.overlap
            ok = True
            try:
                frame = load_deployments(client, since=since, progress=False) \
                    if table == "deployments" else \
                    load_activities(client, since=since, progress=False)
            except IncompleteListingError as exc:
                frame, failure, ok = exc.partial, failure or exc, False
            notes += list(frame.attrs.get("notes", []))
            if table == "deployments":
                added[k] = self._append_deployments(manifest, frame)
            else:
                added[k] = self._append_activities(manifest, frame, since)
            ok = ok and bool(frame.attrs.get("complete", True))
            if ok and len(frame) and frame["created_at"].notna().any():
                newest = min(frame["created_at"].max(),
                             pd.Timestamp(frame.attrs.get("fetched_at") or utcnow()))
                if mark is None or newest > pd.Timestamp(mark):
                    marks[table] = newest.isoformat()
        return (added[0], added[1]), failure

    def _append_deployments(self, manifest: dict[str, Any], frame: pd.DataFrame) -> int:
        if frame.empty:
            return 0
        current = frame[frame["id"].notna()].drop(columns=["in_window"]).copy()
        return self._append_records(manifest, "deployments", current, frame.attrs,
                                    self._latest_deployments, DEPLOYMENT_KEYS)

    def _append_activities(self, manifest: dict[str, Any], frame: pd.DataFrame,
                           since: pd.Timestamp | None) -> int:
        if frame.empty:
            return 0
        entry = manifest["activities"]
        names = self._files_for(manifest, "activities", since, None, columns_only=True)
        stored = set(self._query(names, [], [], columns="id").column("id").to_pylist()) \
            if names else set()
        new = frame[frame["id"].notna() & ~frame["id"].isin(stored)]
        if new.empty:
            return 0
        json_cols = sorted(set(entry["json_columns"]) | set(json_columns(new)))
        entry["json_columns"] = json_cols
        day = new["created_at"].dt.strftime("%Y-%m-%d").fillna("unknown")
        for value, part in new.groupby(day, sort=True):
            written = self._write_part("activities", str(value),
                                       self._arrow(part.reset_index(drop=True), json_cols))
            entry["files"][written.pop("file")] = written
        entry["rows"] += len(new)
        return len(new)

    def _latest_deployments(self, manifest: dict[str, Any]) -> pd.DataFrame:
        names = sorted(manifest["deployments"]["files"])
        schema = {k: v for k, v in DEPLOYMENT_COLUMNS.items() if k != "in_window"}
        if not names:
            return typed(build_frame({}, schema), schema)
        table = self._latest_records(names)
        return typed(frame_from_arrow(table, schema, _json_in(table, manifest, "deployments")),
                     schema)

    def deployments(self, *, since: TimeLike | None = None, until: TimeLike | None = None,
                    window: DurationLike | None = None, app_id: str | None = None,
                    service_id: str | None = None, context: bool = True) -> pd.DataFrame:
        """The latest record of each stored deployment, as ``load_deployments`` returns
        them (the window's, and with ``context`` those in force at ``since`` and the
        parents, ``in_window`` False).

        Parameters
        ----------
        since, until, window
            Keep deployments created in the window (``window`` ends at the last sync).
        app_id, service_id
            Only this app's or service's.
        context
            As for ``load_deployments``.

        Returns
        -------
        DataFrame
            Same columns and dtypes as ``load_deployments``.
        """
        manifest = self._manifest(required=True) or {}
        tw = resolve_window(since, until, window, now=self._now(manifest))
        filters = {name: check_str(name, value) for name, value in (
            ("app_id", app_id), ("service_id", service_id))}
        check_bool("context", context)
        df = self._latest_deployments(manifest)
        for name, value in filters.items():
            if value is not None:
                df = df[df[name] == value]
        df = typed(select_window(df, tw, context=context), DEPLOYMENT_COLUMNS)
        cols = list(DEPLOYMENT_COLUMNS) + [c for c in df.columns if c not in DEPLOYMENT_COLUMNS]
        query = {**{k: v for k, v in filters.items() if v is not None},
                 **{k: v for k, v in tw.as_dict().items() if v is not None}}
        return self._attrs(df[cols], manifest, query, [])

    def activities(self, *, since: TimeLike | None = None, until: TimeLike | None = None,
                   window: DurationLike | None = None, app_id: str | None = None,
                   service_id: str | None = None) -> pd.DataFrame:
        """The stored activities of a window, as ``load_activities`` returns them.

        Parameters
        ----------
        since, until, window
            Keep activities created in the window (``window`` ends at the last sync).
        app_id, service_id
            Only activities on this app or service.

        Returns
        -------
        DataFrame
            Same columns and dtypes as ``load_activities``.
        """
        manifest = self._manifest(required=True) or {}
        tw = resolve_window(since, until, window, now=self._now(manifest))
        filters = {name: check_str(name, value) for name, value in (
            ("app_id", app_id), ("service_id", service_id))}
        names = self._files_for(manifest, "activities", tw.since, tw.until)
        where, params = [], []
        if tw.since is not None:
            where.append("created_at >= ?")
            params.append(tw.since.to_pydatetime())
        if tw.until is not None:
            where.append("created_at < ?")
            params.append(tw.until.to_pydatetime())
        for name, value in filters.items():
            if value is not None:
                where.append(f"{name} = ?")
                params.append(value)
        if names:
            table = self._query(names, where, params).sort_by(
                [("created_at", "ascending"), ("id", "ascending")])
            df = frame_from_arrow(table, ACTIVITY_COLUMNS,
                                  _json_in(table, manifest, "activities"))
        else:
            df = build_frame({}, ACTIVITY_COLUMNS)
        df = typed(df, ACTIVITY_COLUMNS)
        query = {**{k: v for k, v in filters.items() if v is not None},
                 **{k: v for k, v in tw.as_dict().items() if v is not None}}
        return self._attrs(df, manifest, query, [])

    # -- reading ----------------------------------------------------------------

    def events(self, *, since: TimeLike | None = None, until: TimeLike | None = None,
               window: DurationLike | None = None,
               instance_ids: Iterable[str] | str | None = None,
               types: Iterable[str] | str | None = None) -> pd.DataFrame:
        """The stored events of a window, as ``load_events`` returns them.

        ``window="7d"`` means the seven days before the last sync (what the store
        knows), not before now.

        Parameters
        ----------
        since, until, window
            Keep events with ``since <= when < until``.
        instance_ids, types
            Only these instances' events, only these types.

        Returns
        -------
        DataFrame
            Same columns, dtypes and ``attrs`` keys as ``load_events``; ``attrs["store"]``
            names the store and ``fetched_at`` is the last sync.
        """
        manifest = self._manifest(required=True) or {}
        tw = resolve_window(since, until, window, now=self._now(manifest))
        ids = check_ids("instance_ids", instance_ids)
        type_list = check_ids("types", types)
        if ids is not None and not ids:
            raise ValueError("instance_ids is empty; pass None for every instance")
        names = self._files_for(manifest, "events", tw.since, tw.until)
        where, params = [], []
        if tw.since is not None:
            where.append('"when" >= ?')
            params.append(tw.since.to_pydatetime())
        if tw.until is not None:
            where.append('"when" < ?')
            params.append(tw.until.to_pydatetime())
        if ids is not None:
            where.append("instance_id IN (SELECT unnest(?))")
            params.append(ids)
        if type_list is not None:
            where.append("type IN (SELECT unnest(?))")
            params.append(type_list)
        df = self._events_frame(self._query(names, where, params), manifest) if names \
            else build_frame({}, EVENT_COLUMNS)
        query: dict[str, Any] = {k: v for k, v in tw.as_dict().items() if v is not None}
        if ids is not None:
            query["instance_ids"] = ids
        if type_list is not None:
            query["types"] = type_list
        notes = []
        oldest = manifest["events"].get("oldest")
        if tw.since is not None and oldest is not None and tw.since < pd.Timestamp(oldest):
            notes.append(f"the store holds events from {oldest} on; the window starts "
                         f"at {tw.since.isoformat()}")
        return self._attrs(df, manifest, query, notes)

    def instances(self, *, since: TimeLike | None = None, until: TimeLike | None = None,
                  window: DurationLike | None = None,
                  statuses: Iterable[str] | str | None = None,
                  app_id: str | None = None, service_id: str | None = None,
                  regional_deployment_id: str | None = None,
                  allocation_id: str | None = None) -> pd.DataFrame:
        """The latest record of each stored instance, as ``load_instances`` returns them.

        Parameters
        ----------
        since, until, window
            Keep instances whose life overlaps the window (``window`` ends at the last
            sync).
        statuses, app_id, service_id, regional_deployment_id, allocation_id
            As for ``load_instances``.

        Returns
        -------
        DataFrame
            Same columns, dtypes and ``attrs`` keys as ``load_instances`` (names
            included); every record, with ``observed_at``, is in ``store.sql``'s
            ``instance_records`` table.
        """
        manifest = self._manifest(required=True) or {}
        tw = resolve_window(since, until, window, now=self._now(manifest))
        status_list = check_statuses(statuses)
        filters = {name: check_str(name, value) for name, value in (
            ("app_id", app_id), ("service_id", service_id),
            ("regional_deployment_id", regional_deployment_id),
            ("allocation_id", allocation_id))}
        df = self._latest_instances(manifest)
        keep = df["status"].astype(object).isin(status_list)
        for name, value in filters.items():
            if value is not None:
                keep &= df[name] == value
        window_keep = overlapping(df, tw)
        if window_keep is not None:
            keep &= window_keep
        df = df[keep.fillna(False).astype(bool)]
        df = df.sort_values(["created_at", "id"], kind="stable").reset_index(drop=True)
        query = {**{k: v for k, v in filters.items() if v is not None},
                 "statuses": status_list,
                 **{k: v for k, v in tw.as_dict().items() if v is not None}}
        listed = manifest.get("instances_listed_at") or manifest.get("last_sync")
        return self._attrs(df, manifest, query, [], fetched_at=listed)

    def metrics(self, *, names: Iterable[str] | str | None = None,
                since: TimeLike | None = None, until: TimeLike | None = None,
                window: DurationLike | None = None, service_id: str | None = None,
                instance_id: str | None = None) -> pd.DataFrame:
        """The stored metric samples of a window, as ``load_metrics`` returns them.

        Parameters
        ----------
        names
            Metric names (:data:`~koyeb_analytics.schema.METRIC_NAMES`); all by default.
        since, until, window
            Keep samples with ``since <= ts < until`` (``window`` ends where the newest
            complete read of metrics ended).
        service_id, instance_id
            Only this service's samples; only this instance's series (CPU and memory:
            the service-level series carry no instance).

        Returns
        -------
        DataFrame
            ``ts, metric, value, unit, instance_id, code, service_id`` with the dtypes,
            units and order of ``load_metrics``; ``attrs["step"]`` is the store's step,
            and ``attrs["notes"]`` says when the window reaches outside what is held.

        Examples
        --------
        >>> import koyeb_analytics as ka
        >>> store = ka.HistoryStore("memory://doc-metrics")
        >>> with ka.simulate(seed=1, days=1, services=1, now="2026-11-20T12:00Z") as sim:
        ...     r = store.sync(sim.client(), metrics=["CPU_TOTAL_PERCENT"], backfill="2h",
        ...                    until=sim.now)
        >>> m = store.metrics(since="2026-11-20T11:00Z")
        >>> r.metric_samples_added > 0, sorted(m["unit"].unique())
        (True, ['percent'])
        """
        manifest = self._manifest(required=True) or {}
        tw = resolve_window(since, until, window,
                            now=read_end(manifest, "metrics") or self._now(manifest))
        listed = check_metric_names("names", names)
        filters = {name: check_str(name, value) for name, value in (
            ("service_id", service_id), ("instance_id", instance_id))}
        where, params = self._window_where(tw, "ts")
        if listed is not None:
            where.append("metric IN (SELECT unnest(?))")
            params.append(listed)
        for name, value in filters.items():
            if value is not None:
                where.append(f"{name} = ?")
                params.append(value)
        files = self._files_for(manifest, "metrics", tw.since, tw.until)
        df = metrics_frame(self._query(files, where, params) if files else None)
        query = {"names": listed or list(METRIC_NAMES),
                 **{k: v for k, v in filters.items() if v is not None},
                 **{k: v for k, v in tw.as_dict().items() if v is not None}}
        notes = held_note(manifest, "metrics", tw.since, tw.until, filters["service_id"],
                          listed or METRIC_NAMES)
        df = self._attrs(df, manifest, query, notes)
        df.attrs["step"] = manifest["metrics"].get("step")
        return df

    def logs(self, *, since: TimeLike | None = None, until: TimeLike | None = None,
             window: DurationLike | None = None, service_id: str | None = None,
             instance_ids: Iterable[str] | str | None = None,
             streams: Iterable[str] | str | None = None, text: str | None = None,
             regex: str | None = None) -> pd.DataFrame:
        """The stored log lines of a window, as ``load_logs`` returns them.

        Parameters
        ----------
        since, until, window
            Keep lines with ``since <= ts < until`` (``window`` ends where the newest
            complete read of logs ended).
        service_id, instance_ids
            Only this service's lines; only these instances' (``koyeb`` lines carry no
            instance).
        streams
            Some of ``"stdout"``, ``"stderr"`` and ``"koyeb"``; all by default.
        text, regex
            Keep lines containing ``text``, or matching ``regex`` (RE2, as the API).

        Returns
        -------
        DataFrame
            ``ts`` (to the nanosecond), ``msg``, then the labels as categoricals, as
            ``load_logs`` returns them, sorted by (ts, instance, stream, msg).
            ``attrs["notes"]`` says when the window reaches outside what the store
            holds: before its first read of the service or the days dropped for the
            byte budget, or after its last complete read.

        Examples
        --------
        >>> import koyeb_analytics as ka
        >>> store = ka.HistoryStore("memory://doc-logs")
        >>> with ka.simulate(seed=1, days=1, services=1, now="2026-11-20T12:00Z") as sim:
        ...     r = store.sync(sim.client(), logs=True, backfill="10min", until=sim.now)
        >>> lines = store.logs(streams="koyeb")
        >>> r.log_lines_added > 0, set(lines["stream"]) <= {"koyeb"}
        (True, True)
        >>> store.logs(since="2026-11-20T11:00Z").attrs["notes"][0].split(" (")[0]
        'the store holds logs from 2026-11-20T11:50:00+00:00 on'
        """
        manifest = self._manifest(required=True) or {}
        tw = resolve_window(since, until, window,
                            now=read_end(manifest, "logs") or self._now(manifest))
        check_str("service_id", service_id)
        ids = check_ids("instance_ids", instance_ids)
        if ids is not None and not ids:
            raise ValueError("instance_ids is empty; pass None for every instance")
        stream_list = check_line_filters(streams, text, regex)
        where, params = _lines_where(tw, instance_id=ids, stream=stream_list)
        if service_id is not None:
            where.append("service_id = ?")
            params.append(service_id)
        if text is not None:
            where.append("contains(msg, ?)")
            params.append(text)
        if regex is not None:
            where.append("regexp_matches(msg, ?)")
            params.append(regex)
        files = self._files_for(manifest, "logs", tw.since, tw.until)
        table = None
        if files:
            table = self._query(files, where, params).sort_by(
                [(c, "ascending") for c in ("ts", "instance_id", "stream", "msg")])
        df = logs_frame(table)
        query: dict[str, Any] = {k: v for k, v in tw.as_dict().items() if v is not None}
        for key, value in (("service_id", service_id), ("instance_ids", ids),
                           ("streams", stream_list), ("text", text), ("regex", regex)):
            if value is not None:
                query[key] = value
        notes = held_note(manifest, "logs", tw.since, tw.until, service_id)
        return self._attrs(df, manifest, query, notes)

    def platform(self, *, instance_ids: Iterable[str] | str | None = None,
                 since: TimeLike | None = None,
                 until: TimeLike | None = None) -> pd.DataFrame:
        """The platform's lines of lost events the store kept, as ``read_platform``
        returns them.

        Each sync (``platform=True``, the default) reads the ``koyeb`` stream between
        two events that betray a lost one and keeps the lines;
        :func:`~koyeb_analytics.load_window` on the store takes them from here.

        Parameters
        ----------
        instance_ids
            Only these instances' lines.
        since, until
            Keep lines with ``since <= ts < until``.

        Returns
        -------
        DataFrame
            ``ts`` (ns, UTC), ``instance_id``, ``msg``, sorted by instance, time and
            text. ``attrs["notes"]`` says when the store has read no platform lines yet,
            or when ``since`` is before its first read of them looked.

        Examples
        --------
        >>> import koyeb_analytics as ka
        >>> store = ka.HistoryStore("memory://doc-platform")
        >>> with ka.simulate(seed=1, days=1, services=2) as sim:
        ...     r = store.sync(sim.client())
        >>> lines = store.platform()
        >>> list(lines.columns), len(lines) == r.platform_lines_added
        (['ts', 'instance_id', 'msg'], True)
        """
        manifest = self._manifest(required=True) or {}
        tw = resolve_window(since, until, None, now=self._now(manifest))
        ids = check_ids("instance_ids", instance_ids)
        if ids is not None and not ids:
            raise ValueError("instance_ids is empty; pass None for every instance")
        where, params = _lines_where(tw, instance_id=ids)
        files = self._files_for(manifest, "platform", tw.since, tw.until)
        df = platform_frame(self._query(files, where, params) if files else None)
        query: dict[str, Any] = {k: v for k, v in tw.as_dict().items() if v is not None}
        if ids is not None:
            query["instance_ids"] = ids
        return self._attrs(df, manifest, query, platform_note(manifest, tw.since))

    def _window_where(self, tw: TimeWindow, column: str) -> tuple[list[str], list[Any]]:
        where, params = [], []
        if tw.since is not None:
            where.append(f'"{column}" >= ?')
            params.append(tw.since.to_pydatetime())
        if tw.until is not None:
            where.append(f'"{column}" < ?')
            params.append(tw.until.to_pydatetime())
        return where, params

    def sql(self, query: str) -> pd.DataFrame:
        """Answer one read-only DuckDB query over the store's tables.

        Tables: ``events`` (every event; ``metadata`` as JSON text),
        ``instance_records`` (every instance record, with ``observed_at``),
        ``instances`` (the latest record of each instance), ``metrics`` (every kept
        sample: ``ts, metric, value, unit, instance_id, code, service_id``), ``logs``
        (every kept line, ``ts`` to the nanosecond) and ``platform`` (the platform's
        lines of lost events: ``ts, instance_id, msg``).

        The query is classified by DuckDB's own parser before anything runs. Allowed:
        exactly one ``SELECT`` (with ``WITH``, ``FROM``-first, ``VALUES``, and ``PIVOT``
        whose values are named with ``IN (...)``), ``DESCRIBE``, ``SUMMARIZE``, ``SHOW``,
        and ``EXPLAIN`` or ``EXPLAIN ANALYZE`` of such a ``SELECT``. Refused, with a
        :class:`~koyeb_analytics.StoreError` naming the statement's kind: more than one
        statement, and every other kind (``COPY``, ``EXPORT``, ``ATTACH``/``DETACH``,
        ``INSERT``/``UPDATE``/``DELETE``, ``CREATE``/``DROP``/``ALTER``,
        ``SET``/``RESET``, ``PRAGMA``, ``INSTALL``/``LOAD``, ``CALL``, transactions,
        ``PREPARE``/``EXECUTE``; a ``PIVOT`` without ``IN``, which DuckDB runs as two
        statements). The query runs with DuckDB's external access off and its
        configuration locked, so a table function reading any other file (``read_csv``,
        ``read_text``, ``read_parquet``, ``glob``, ...), local, fsspec or remote, the
        store's manifest included, fails with a StoreError, and no extension is
        installed or loaded.

        Parameters
        ----------
        query
            One SQL statement, e.g.
            ``"select type, count(*) as n from events group by type order by n desc"``.

        Returns
        -------
        DataFrame

        Raises
        ------
        StoreError
            The query is not one read-only statement, reaches outside the store's
            tables, or fails in DuckDB; or the store is missing or damaged.

        Examples
        --------
        >>> import koyeb_analytics as ka
        >>> store = ka.HistoryStore("memory://doc-sql")
        >>> with ka.simulate(seed=1, days=1, services=1) as sim:
        ...     _ = store.sync(sim.client())
        >>> int(store.sql("select count(*) as n from events")["n"][0]) == len(store.events())
        True
        >>> try:
        ...     store.sql("copy events to 'events.csv'")
        ... except ka.StoreError as exc:
        ...     print(str(exc).rsplit("; ", 1)[-1])
        this is a COPY statement
        """
        if not isinstance(query, str) or not query.strip():
            raise TypeError(f"query must be a non-empty SQL string, got {query!r}")
        import duckdb

        statement = _read_only_statement(query)
        manifest = self._manifest(required=True) or {}
        files = {table: self._table_files(manifest, table)
                 for table in ("events", "instances", *STREAM_TABLES, "platform")}
        # Only the listed data files are opened, not the folder: what a killed writer
        # left, the manifest and the lock stay out of reach.
        con = self._connect(allowed_paths=[self.files.url_of(name)
                                           for names in files.values() for name in names])
        try:
            empty: dict[str, Iterable[str]] = {
                "events": EVENT_COLUMNS, "instances": INSTANCE_COLUMNS,
                "metrics": METRIC_COLUMNS, "logs": LOG_COLUMNS,
                "platform": ("ts", "instance_id", "msg")}
            for table, view in (("events", "events"), ("instances", "instance_records"),
                                ("metrics", "metrics"), ("logs", "logs"),
                                ("platform", "platform")):
                names = files[table]
                if names:
                    con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet("
                                f"{self._paths_sql(names)}, union_by_name=true, "
                                "hive_partitioning=false)")
                else:
                    cols = ", ".join(f'NULL::VARCHAR AS "{c}"' for c in empty[table])
                    con.execute(f"CREATE VIEW {view} AS SELECT {cols} WHERE false")
            if files["instances"]:
                con.execute("CREATE VIEW instances AS SELECT * EXCLUDE (rn) FROM ("
                            "SELECT *, row_number() OVER (PARTITION BY id ORDER BY "
                            "observed_at DESC) AS rn FROM instance_records) WHERE rn = 1")
            else:
                con.execute("CREATE VIEW instances AS SELECT * FROM instance_records")
            # Views bind when queried, so their files stay readable through
            # allowed_paths; the lock keeps a query from turning any of this back.
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            # The statement object that was classified is the one that runs.
            return con.sql(statement).df()
        except duckdb.PermissionException as exc:
            raise StoreError(f"store.sql: the query reaches outside the store ({exc}); it "
                             "may read only the tables events, instance_records, "
                             "instances, metrics, logs and platform") from None
        except duckdb.Error as exc:
            raise StoreError(f"store.sql: {exc}") from None
        finally:
            con.close()

    def _table_files(self, manifest: dict[str, Any], table: str) -> list[str]:
        """The manifest's files of ``table``, each checked to lie inside the store."""
        names = sorted(manifest[table]["files"])
        for name in names:
            if not isinstance(name, str) or not re.fullmatch(
                    rf"{table}/date=[^/\\]+/[^/\\]+\.parquet", name):
                raise StoreError(f"the history store {self.files.url!r} lists {name!r} "
                                 f"among its {table} files, which is not a file of the "
                                 "store: its manifest was damaged or not written by "
                                 "koyeb-analytics")
        return names

    # -- internals ---------------------------------------------------------------

    def _new_manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "version": __version__,
                "created_at": utcnow().isoformat(), "last_sync": None, "source": None,
                "simulated": False,
                "high_water": {"events": None, "deployments": None, "activities": None},
                "events": {"files": {}, "rows": 0, "json_columns": ["metadata"],
                           "oldest": None},
                "instances": {"files": {}, "rows": 0, "json_columns": ["messages"]},
                **_change_tables(), **stream_tables(), "platform": platform_table(),
                "syncs": []}

    def _manifest(self, required: bool) -> dict[str, Any] | None:
        manifest = self.files.read_manifest()
        if manifest is None:
            if required:
                blocker = self.files.blocking_file()
                if blocker is not None:
                    raise StoreError(f"{self.files.url!r} cannot hold a history store: "
                                     f"{blocker!r} is a file, not a folder")
                raise StoreError(f"{self.files.url!r} holds no history store yet: "
                                 "run store.sync(client) (or koyeb-analytics sync) first")
            return None
        if manifest.get("format") != FORMAT:
            raise StoreError(f"{self.files.url!r} is not a koyeb-analytics history store "
                             f"(its manifest's format is {manifest.get('format')!r})")
        version = manifest.get("schema_version")
        # Each upgrade adds tables (written back with the next sync; nothing else
        # changed); ``upgraded_from`` keeps the version the store was written at.
        if version in (1, 2, 3):
            manifest.setdefault("upgraded_from", version)
        if version == 1:
            # Version 1 had no deployments and no activities.
            manifest.update(_change_tables())
            manifest["high_water"].update({t: None for t in CHANGE_TABLES})
            version = 2
        if version == 2:
            # Version 2 had no metrics and no logs.
            manifest.update(stream_tables())
            version = 3
        if version == 3:
            # Version 3 kept no platform lines: the next sync reads them (back to the
            # log retention, as on a new store).
            manifest["platform"] = platform_table()
            version = SCHEMA_VERSION
        manifest["schema_version"] = version
        if version != SCHEMA_VERSION:
            raise StoreError(f"the history store {self.files.url!r} has schema version "
                             f"{version!r}; this koyeb-analytics reads and writes version "
                             f"{SCHEMA_VERSION}")
        return manifest

    def _now(self, manifest: dict[str, Any]) -> pd.Timestamp:
        last = manifest.get("last_sync")
        return pd.Timestamp(last) if last else utcnow()

    def _remove_unlisted(self, manifest: dict[str, Any]) -> None:
        """Remove what a killed writer left: files the manifest does not list."""
        for name in self.files.fs.ls(self.files.root, detail=False):
            if str(name).rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                self.files.fs.rm(name)
        for table in TABLES:
            listed = manifest[table]["files"]
            for name in self.files.data_files(table):
                if name not in listed:
                    self.files.remove(name)

    def _advance_mark(self, manifest: dict[str, Any], events: pd.DataFrame,
                      read_since: pd.Timestamp | None, *, complete: bool) -> None:
        """Move the high-water mark to the newest event, if nothing before it can be
        missing: the read was complete and reached back to the mark (or was the whole
        history)."""
        mark = manifest["high_water"]["events"]
        gapless = read_since is None or (mark is not None and
                                         pd.Timestamp(mark) >= read_since)
        complete = complete and bool(events.attrs.get("complete", True))
        if not (complete and gapless) or not events["when"].notna().any():
            return
        # A server clock ahead of ours must not put the mark in the future: later
        # syncs would read nothing before it.
        newest = min(events["when"].max(),
                     pd.Timestamp(events.attrs.get("fetched_at") or utcnow()))
        if mark is None or newest > pd.Timestamp(mark):
            manifest["high_water"]["events"] = newest.isoformat()

    def _write_part(self, table: str, day: str, data: pa.Table) -> dict[str, Any]:
        name = f"{table}/date={day}/part-{utcnow().strftime('%Y%m%dT%H%M%S')}-" \
               f"{uuid.uuid4().hex[:8]}.parquet"
        self.files.write_table(name, data)
        return {"file": name, "date": day, "rows": data.num_rows}

    def _arrow(self, df: pd.DataFrame, json_cols: list[str]) -> pa.Table:
        out = {}
        for col in df.columns:
            values = df[col]
            if col in json_cols:
                values = pd.Series([None if v is None or v is pd.NA or
                                    (isinstance(v, float) and v != v) else
                                    json.dumps(json_safe(v), sort_keys=True) for v in values],
                                   dtype=object)
            elif isinstance(values.dtype, pd.CategoricalDtype):
                values = values.astype(object).where(values.notna(), None)
            out[col] = values
        return pa.Table.from_pandas(pd.DataFrame(out), preserve_index=False)

    def _append_events(self, manifest: dict[str, Any], events: pd.DataFrame,
                       since: pd.Timestamp | None) -> int:
        if events.empty:
            return 0
        entry = manifest["events"]
        existing = self._stored_ids(manifest, since)
        new = events[~events["id"].isin(existing)] if existing else events
        new = new[new["id"].notna()]
        if new.empty:
            return 0
        json_cols = sorted(set(entry["json_columns"]) | set(json_columns(new)))
        entry["json_columns"] = json_cols
        day = new["when"].dt.strftime("%Y-%m-%d").fillna("unknown")
        for value, part in new.groupby(day, sort=True):
            data = self._arrow(part.reset_index(drop=True), json_cols)
            written = self._write_part("events", str(value), data)
            name = written.pop("file")
            entry["files"][name] = written
        entry["rows"] += len(new)
        oldest = new["when"].min()
        if pd.notna(oldest) and (entry["oldest"] is None or
                                 oldest < pd.Timestamp(entry["oldest"])):
            entry["oldest"] = oldest.isoformat()
        return len(new)

    def _stored_ids(self, manifest: dict[str, Any], since: pd.Timestamp | None) -> set[str]:
        names = self._files_for(manifest, "events", since, None, columns_only=True)
        if not names:
            return set()
        where, params = [], []
        if since is not None:
            where.append('("when" >= ? OR "when" IS NULL)')
            params.append(since.to_pydatetime())
        table = self._query(names, where, params, columns="id")
        return set(table.column("id").to_pylist())

    def _stored_events(self, manifest: dict[str, Any], since: pd.Timestamp) -> pd.DataFrame:
        """The events the manifest lists, from ``since`` on (this sync's included)."""
        names = self._files_for(manifest, "events", since, None)
        if not names:
            return build_frame({}, EVENT_COLUMNS)
        return self._events_frame(self._query(names, ['"when" >= ?'],
                                              [since.to_pydatetime()]), manifest)

    def _append_instances(self, manifest: dict[str, Any], instances: pd.DataFrame) -> int:
        if instances.empty:
            return 0
        current = instances[instances["id"].notna()].copy()
        return self._append_records(manifest, "instances", current, instances.attrs,
                                    self._latest_instances, RECORD_KEYS)

    def _latest_records(self, names: list[str]) -> pa.Table:
        """The newest record of each ``id`` in the part files ``names``."""
        import duckdb

        con = self._connect()
        try:
            return con.sql(
                f"SELECT * EXCLUDE (rn, observed_at) FROM (SELECT *, row_number() OVER "
                f"(PARTITION BY id ORDER BY observed_at DESC) AS rn FROM read_parquet("
                f"{self._paths_sql(names)}, union_by_name=true, hive_partitioning=false))"
                " WHERE rn = 1").to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"the history store {self.files.url!r} cannot be read: "
                             f"{exc}") from None
        finally:
            con.close()

    def _append_records(self, manifest: dict[str, Any], table: str, current: pd.DataFrame,
                        attrs: dict[str, Any],
                        latest_of: Callable[[dict[str, Any]], pd.DataFrame],
                        record_keys: Sequence[str]) -> int:
        """Append the records (by ``id``) that are new or differ from the latest kept."""
        entry = manifest[table]
        observed = pd.Timestamp(attrs.get("fetched_at") or utcnow())
        if entry["files"]:
            latest = latest_of(manifest)
            keys = [c for c in record_keys if c in current and c in latest]
            before = latest.set_index("id")[keys]
            now = current.set_index("id")[keys]
            known = now.index.isin(before.index)
            changed = ~known
            if known.any():
                old = before.reindex(now.index[known]).astype(object).map(repr)
                new = now[known].astype(object).map(repr)
                changed[known] = (old.to_numpy() != new.to_numpy()).any(axis=1)
            current = current[changed].reset_index(drop=True)
        if current.empty:
            return 0
        current["observed_at"] = pd.Series(observed, index=current.index).astype(
            "datetime64[us, UTC]")
        json_cols = sorted(set(entry["json_columns"]) | set(json_columns(current)))
        entry["json_columns"] = json_cols
        written = self._write_part(table, observed.strftime("%Y-%m-%d"),
                                   self._arrow(current, json_cols))
        entry["files"][written.pop("file")] = written
        entry["rows"] += len(current)
        return len(current)

    def _latest_instances(self, manifest: dict[str, Any]) -> pd.DataFrame:
        names = sorted(manifest["instances"]["files"])
        schema = {**INSTANCE_COLUMNS, **{c: "str" for c in NAME_COLUMNS}}
        if not names:
            df = build_frame({}, schema)
        else:
            table = self._latest_records(names)
            df = frame_from_arrow(table, schema, manifest["instances"]["json_columns"])
        # Names last, as load_instances adds them.
        order = [c for c in df.columns if c not in NAME_COLUMNS] + list(NAME_COLUMNS)
        df = df[order]
        for col in NAME_COLUMNS:
            df[col] = df[col].astype(STRING_DTYPE)
        return df

    def _files_for(self, manifest: dict[str, Any], table: str, since: pd.Timestamp | None,
                   until: pd.Timestamp | None, columns_only: bool = False) -> list[str]:
        """The files of days that can hold rows of ``[since, until)``, oldest day first."""
        first = None if since is None else since.strftime("%Y-%m-%d")
        last = None if until is None else until.strftime("%Y-%m-%d")
        chosen = []
        for name, entry in manifest[table]["files"].items():
            day = entry["date"]
            if day == "unknown":
                # Rows whose time was unreadable: only a query without a window, or the
                # dedupe of a sync (which must see every id), can match them.
                if (since is None and until is None) or columns_only:
                    chosen.append((day, name))
                continue
            if (first is None or day >= first) and (last is None or day <= last):
                chosen.append((day, name))
        return [name for _, name in sorted(chosen)]

    def _connect(self, allowed_paths: list[str] | None = None) -> Any:
        """A DuckDB connection that can open the store's files.

        ``allowed_paths``: the only files the connection will still open once the
        caller turns external access off (DuckDB >= 1.2).
        """
        import duckdb

        con = duckdb.connect()
        if not self.files.local:
            con.register_filesystem(self.files.fs)
        if allowed_paths is not None:
            try:
                con.execute("SET allowed_paths = ?", [allowed_paths])
            except duckdb.Error:
                con.close()
                raise StoreError(f"store.sql needs DuckDB 1.2 or later (allowed_paths); "
                                 f"this is DuckDB {duckdb.__version__}: "
                                 "pip install -U duckdb") from None
        return con

    def _paths_sql(self, names: list[str]) -> str:
        paths = [self.files.url_of(n).replace("'", "''") for n in names]
        return "[" + ", ".join(f"'{p}'" for p in paths) + "]"

    def _read_table(self, names: list[str]) -> pa.Table:
        return self._query(sorted(names), [], [])

    def _query(self, names: list[str], where: list[str], params: list[Any],
               columns: str = "*") -> pa.Table:
        import duckdb

        con = self._connect()
        try:
            sql = (f"SELECT {columns} FROM read_parquet({self._paths_sql(names)}, "
                   "union_by_name=true, hive_partitioning=false)")
            if where:
                sql += " WHERE " + " AND ".join(where)
            return con.sql(sql, params=params or None).to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"the history store {self.files.url!r} cannot be read: "
                             f"{exc}") from None
        finally:
            con.close()

    def _events_frame(self, table: pa.Table, manifest: dict[str, Any]) -> pd.DataFrame:
        if table.num_rows == 0 and not table.column_names:
            return build_frame({}, EVENT_COLUMNS)
        if table.num_rows > 1:
            # Days are read in order and each file is sorted; sort only when syncs
            # interleaved (late events within the overlap).
            import pyarrow.compute as pc

            when = table.column("when")
            ordered = pc.all(pc.greater_equal(when.slice(1), when.slice(0, table.num_rows - 1))
                             ).as_py() if when.null_count == 0 else False
            if not ordered or not _unique_ties(table):
                table = table.sort_by([("when", "ascending"), ("id", "ascending")])
        return frame_from_arrow(table, EVENT_COLUMNS, manifest["events"]["json_columns"])

    def _attrs(self, df: pd.DataFrame, manifest: dict[str, Any], query: dict[str, Any],
               notes: list[str], fetched_at: str | None = None) -> pd.DataFrame:
        stamp = fetched_at or manifest.get("last_sync")
        df.attrs = {
            "source": manifest.get("source"),
            "simulated": bool(manifest.get("simulated")),
            "query": query,
            "fetched_at": pd.Timestamp(stamp) if stamp else None,
            "pages": 0,
            "pages_discarded": 0,
            "rows_received": len(df),
            "duplicates_dropped": 0,
            "complete": True,
            "notes": notes,
            "store": self.files.url,
        }
        return df


def _lines_where(tw: TimeWindow, **lists: list[str] | None) -> tuple[list[str], list[Any]]:
    """The WHERE terms of a read of stored lines (logs, platform): ``ts`` in the window, to
    the nanosecond (the store keeps the API's precision), and each column in its list."""
    where: list[str] = []
    params: list[Any] = []
    for bound, op in ((tw.since, ">="), (tw.until, "<")):
        if bound is not None:
            where.append(f"epoch_ns(ts) {op} ?")
            params.append(int((bound - _EPOCH) // pd.Timedelta(1, "ns")))
    for column, values in lists.items():
        if values is not None:
            where.append(f"{column} IN (SELECT unnest(?))")
            params.append(values)
    return where, params


def _json_in(table: pa.Table, manifest: dict[str, Any], name: str) -> list[str]:
    """The table's JSON columns, less those that hold nothing at all (Arrow types them
    as null: there is no text to decode)."""
    return [c for c in manifest[name]["json_columns"] if c in table.column_names
            and not pa.types.is_null(table.schema.field(c).type)]


def _change_tables() -> dict[str, Any]:
    """The manifest entries of the tables schema version 2 added."""
    return {"deployments": {"files": {}, "rows": 0, "json_columns": list(DEPLOYMENT_JSON)},
            "activities": {"files": {}, "rows": 0,
                           "json_columns": ["messages", "metadata", "actor", "object"]}}


def _unique_ties(table: pa.Table) -> bool:
    """True when rows with equal times are already ordered by id."""
    import pyarrow.compute as pc

    n = table.num_rows
    when, ids = table.column("when"), table.column("id")
    same = pc.equal(when.slice(1), when.slice(0, n - 1))
    if not pc.any(same).as_py():
        return True
    later = pc.greater(ids.slice(1), ids.slice(0, n - 1))
    return bool(pc.all(pc.or_(pc.invert(same), later)).as_py())


READ_ONLY = ("SELECT (WITH, FROM-first, VALUES, PIVOT ... IN (...)), DESCRIBE, SUMMARIZE, "
             "SHOW, or EXPLAIN [ANALYZE] of a SELECT")
"""What :meth:`HistoryStore.sql` runs, as its refusals say it."""


def _read_only_statement(query: str) -> Any:
    """The one read-only statement ``query`` holds, as DuckDB's parser classifies it.

    Raises
    ------
    StoreError
        No statement, more than one, or one of another kind; an EXPLAIN of anything
        but a SELECT (``EXPLAIN ANALYZE`` runs what it explains).
    """
    import duckdb

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise StoreError(f"store.sql: {exc}") from None
    if not statements:
        raise StoreError("store.sql: the query holds no statement (only comments or "
                         f"semicolons); it runs one of: {READ_ONLY}")
    kinds = [s.type.name for s in statements]
    if len(statements) > 1 or kinds[0] == "MULTI":
        hint = ""
        if any(word in ("PIVOT", "UNPIVOT") for _, word in _words(query)):
            hint = (" A PIVOT without its values listed is run by DuckDB as two "
                    "statements: name them, e.g. PIVOT events ON type IN ('a', 'b') "
                    "USING count(*).")
        held = f"holds {len(statements)}" if len(statements) > 1 else \
            "is run by DuckDB as several"
        raise StoreError(f"store.sql runs one statement; this query {held} "
                         f"({', '.join(kinds)}).{hint} It runs one of: {READ_ONLY}")
    statement = statements[0]
    if kinds[0] == "SELECT":
        return statement
    if kinds[0] == "EXPLAIN":
        inner = _explained(statement.query)
        if inner == "SELECT":
            return statement
        raise StoreError(f"store.sql runs one read-only query: {READ_ONLY}; this is an "
                         f"EXPLAIN of {_article(inner)} {inner} statement")
    raise StoreError(f"store.sql runs one read-only query: {READ_ONLY}; this is "
                     f"{_article(kinds[0])} {kinds[0]} statement")


def _words(query: str) -> list[tuple[int, str]]:
    """DuckDB's tokens of ``query`` as (offset, leading word in capitals)."""
    import duckdb

    found = []
    for pos, _ in duckdb.tokenize(query):
        word = _WORD.match(query, pos)
        found.append((pos, word.group(0).upper() if word else ""))
    return found


_WORD = re.compile(r"\w+|\S")


def _explained(query: str) -> str:
    """The kind of the statement an EXPLAIN statement explains ("?" if not found).

    The explained statement is the first suffix, at a token after ``EXPLAIN``, that
    DuckDB parses as one statement: what comes before it (``ANALYZE``, an option
    list) is no statement of its own.
    """
    import duckdb

    for pos, _ in _words(query)[1:_EXPLAIN_PREFIX_TOKENS]:
        try:
            inner = duckdb.extract_statements(query[pos:])
        except duckdb.Error:
            continue
        return inner[0].type.name if len(inner) == 1 else "MULTI"
    return "?"


_EXPLAIN_PREFIX_TOKENS = 64
"""Tokens searched for the explained statement (EXPLAIN's own options are short)."""


def _article(word: str) -> str:
    return "an" if word[:1] in "AEIOU" else "a"
