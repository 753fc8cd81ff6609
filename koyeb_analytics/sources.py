"""One window from any source: the API or a history store, as a :class:`Window`.

:func:`load_window` returns the instances and events of a window together with the
resolved ``since`` and ``until`` and each instance's status at ``since``, so nobody has
to read ``attrs["query"]``; :func:`~koyeb_analytics.analyse` takes it from there.
:func:`load_changes` returns what changed in a window (deployments and activities, as
:func:`~koyeb_analytics.changes` frames them), from either source too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import pandas as pd

from .analysis._changes import changes
from .analysis._lifecycle import lifecycles
from .analysis._startstatus import alive_at, start_status
from .api._client import KoyebClient
from .load._changes import load_activities, load_deployments
from .load._frames import build_frame
from .load._loaders import load_instances, read_events
from .load._platform import empty_platform, read_platform
from .schema import EVENT_COLUMNS
from .store._history import HistoryStore
from .store._platform import in_gaps
from .timewindow import (
    DurationLike,
    TimeLike,
    TimeWindow,
    Window,
    empty_start_status,
    parse_duration,
)

DEFAULT_LOOKBEHIND = "6h"
"""How far before a window's start :func:`load_window` reads events by default (see the
README's "Where a window starts"; chosen on ``benchmarks/bench_window.py``)."""
MAX_PER_INSTANCE = 500
"""Instances whose status at ``since`` the look-behind did not reach are read again in
one listing filtered by instance (the events endpoint filters by ``instance_ids``);
beyond this many, the rest are left to the message transitions."""

PLATFORM_CHOICES = ("lost", "all", "none")
"""``load_window(platform=)``: platform lines where events betray a lost one (``lost``),
also where they may hide one (``all``: on ``benchmarks/bench_window.py``'s fleets 5 to 12
times the window's event requests, against under 1x for ``lost``), or none."""

__all__ = ["DEFAULT_LOOKBEHIND", "MAX_PER_INSTANCE", "PLATFORM_CHOICES", "Window",
           "load_changes", "load_window", "read_with_lookbehind"]


def load_window(client: KoyebClient | HistoryStore | str | os.PathLike[str], *,
                window: DurationLike | None = None, since: TimeLike | None = None,
                until: TimeLike | None = None,
                service_id: str | Iterable[str] | None = None, details: bool = False,
                progress: bool = True, lookbehind: DurationLike | int = DEFAULT_LOOKBEHIND,
                platform: str = "lost") -> Window:
    """Load every instance of a window, the events from its start to now, and each
    instance's status at its start.

    Events after ``until`` are loaded too: the event that ends a quiet stretch tells
    what the instance was doing during it. The status at ``since`` comes from evidence
    (``Window.start_status``): the instance record when the instance has not changed
    since before ``since``; else its last event before ``since``, read by a
    look-behind: the newest-first listing goes on past ``since`` until every instance
    alive then has shown one, or ``lookbehind`` is reached, and the instances still
    missing are read in a listing of their own (at most :data:`MAX_PER_INSTANCE`). A history store
    answers the look-behind from what it holds, with no request.

    Where two consecutive events of an instance betray a lost one between them, the
    platform's own lines of that stretch (the ``koyeb`` log stream, one query per gap,
    :func:`~koyeb_analytics.load.read_platform`) are read into ``Window.platform``:
    :func:`~koyeb_analytics.lifecycles` places the lost change at the time they say
    instead of guessing its length from a median. ``platform="all"`` reads them too
    where two events may hide a lost one (HEALTHY then ERROR may hide an UNHEALTHY:
    every crash and stop of the window, a query each).
    A history store answers with the lines its syncs kept for those stretches
    (:meth:`~koyeb_analytics.HistoryStore.platform`), with no request; ``"all"`` there
    finds only what the store holds (its syncs read where events betray a lost one).

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`, or a
        :class:`~koyeb_analytics.HistoryStore` (or its path) to read what it kept
        (``window`` then ends at its last sync).
    window, since, until
        As for :func:`~koyeb_analytics.load_instances` (``window="7d"``: the last week).
    service_id
        One service id or several; None for every service.
    details, progress
        As for :func:`~koyeb_analytics.load_instances`.
    lookbehind
        How far before ``since`` to read events for the status at ``since`` (a
        duration, default :data:`DEFAULT_LOOKBEHIND`); ``0`` reads none (the record
        and the message transitions still apply).
    platform
        Whose platform lines to read: ``"lost"`` (default) where two events betray a
        lost one; ``"all"`` also where two events may hide one (several times the
        window's own requests: :data:`PLATFORM_CHOICES`); ``"none"`` reads none and
        leaves the gaps to the median's guess.

    Returns
    -------
    Window

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     w = ka.load_window(sim.client(), window="12h", progress=False)
    >>> (w.until - w.since) == pd.Timedelta("12h")
    True
    """
    lb = pd.Timedelta(0) if lookbehind == 0 or lookbehind == "0" else \
        parse_duration(lookbehind, "lookbehind")
    if not isinstance(platform, str) or platform not in PLATFORM_CHOICES:
        raise ValueError(f"platform must be one of {', '.join(map(repr, PLATFORM_CHOICES))}, "
                         f"got {platform!r}")
    source = HistoryStore(client) if isinstance(client, (str, os.PathLike)) else client
    services = [service_id] if isinstance(service_id, str) else \
        list(service_id) if service_id is not None else [None]
    if isinstance(source, HistoryStore):
        if details:
            raise ValueError("details=True needs the API: a history store keeps listings, "
                             "which lack the detail fields")
        parts = [source.instances(window=window, since=since, until=until, service_id=s)
                 for s in services]
    else:
        parts = [load_instances(source, window=window, since=since, until=until,
                                service_id=s, details=details, progress=progress)
                 for s in services]
    inst = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    inst.attrs = dict(parts[0].attrs)
    query = inst.attrs["query"]
    start = query.get("since")
    ids = inst["id"].tolist() if service_id is not None else None
    begin = None if start is None else pd.Timestamp(start)
    reach = begin - lb if begin is not None and lb > pd.Timedelta(0) else None
    cost = {"duration": lb, "pages": 0, "per_instance": 0, "requests": 0}
    if ids == []:
        events = build_frame({}, EVENT_COLUMNS)  # no instance: no event to ask for
    elif isinstance(source, HistoryStore):
        events = source.events(since=reach or begin, instance_ids=ids)
        if begin is not None and reach is not None:
            # What the bound did not reach, the store still holds: no request either.
            told = start_status(inst, events, begin)
            alive = inst[alive_at(inst, begin).to_numpy()]
            missing = sorted(set(alive.loc[~(alive["updated_at"] < begin).to_numpy(), "id"])
                             - set(told["instance_id"]))[:MAX_PER_INSTANCE]
            if missing:
                older = source.events(until=reach, instance_ids=missing)
                cost["per_instance"] = len(missing)
                if len(older):
                    attrs = events.attrs
                    events = pd.concat([older, events], ignore_index=True)
                    events.attrs = attrs
    else:
        events, lb_cost = read_with_lookbehind(source, inst, begin, reach, ids=ids,
                                               progress=progress)
        cost.update(lb_cost)
    # Every event read classifies the look-behind's (types are learned from them all).
    start_frame = start_status(inst, events, begin) if begin is not None else \
        empty_start_status()
    if begin is not None and len(events):
        early = (events["when"] < begin).to_numpy()
        if early.any():
            attrs = events.attrs
            events = events[~early].sort_values(["when", "id"], kind="stable").drop_duplicates(
                "id").reset_index(drop=True)
            events.attrs = attrs
    end = pd.Timestamp(query.get("until") or inst.attrs["fetched_at"])
    said = empty_platform()
    if platform != "none" and len(events):
        lost = [g for g in lifecycles(inst, events, since=begin, until=end,
                                      start_status=start_frame).attrs["lost_events"]
                if g["betrayed"] or platform == "all"]
        if isinstance(source, HistoryStore):
            said = _stored_platform(source, lost)
        elif lost:
            said = read_platform(source, lost)
    return Window(inst, events, begin, end, start_frame,
                  {**cost, "pages_total": int(events.attrs.get("pages", 0))}, said)


def _stored_platform(store: HistoryStore, lost: list[dict[str, Any]]) -> pd.DataFrame:
    """The platform lines a store kept for these gaps, framed as ``read_platform``'s."""
    if lost:
        whose = sorted({str(g["instance_id"]) for g in lost})
        lines = store.platform(instance_ids=whose, since=min(g["after"] for g in lost),
                               until=max(g["before"] for g in lost))
        notes = list(lines.attrs.get("notes", []))
        said = in_gaps(lines, lost)
    else:
        said, notes = empty_platform(), []
    said.attrs = {"gaps": len(lost), "skipped": 0, "requests": 0, "lines": len(said),
                  "failed": 0, "notes": notes, "store": store.path}
    return said


def load_changes(source: KoyebClient | HistoryStore | str | os.PathLike[str], *,
                 window: DurationLike | None = None, since: TimeLike | None = None,
                 until: TimeLike | None = None, service_id: str | None = None,
                 progress: bool = False) -> pd.DataFrame:
    """What changed in a window: deployments and activities, as one frame of changes.

    Parameters
    ----------
    source
        A :class:`~koyeb_analytics.KoyebClient`, or a
        :class:`~koyeb_analytics.HistoryStore` (or its path).
    window, since, until
        As for :func:`~koyeb_analytics.load_deployments` (a store's ``window`` ends at
        its last sync).
    service_id
        Only this service's changes.
    progress
        As for the loaders.

    Returns
    -------
    DataFrame
        :func:`~koyeb_analytics.changes` of the window's deployments (with those in
        force at ``since``, whose diffs the window's need) and activities;
        ``attrs["deployments"]`` and ``attrs["activities"]`` count the rows read.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=2, services=3) as sim:
    ...     ch = ka.load_changes(sim.client(), window="1d")
    >>> "changed_at" in ch
    True
    """
    if isinstance(source, (str, os.PathLike)):
        source = HistoryStore(source)
    if isinstance(source, HistoryStore):
        dep = source.deployments(window=window, since=since, until=until,
                                 service_id=service_id)
        act = source.activities(window=window, since=since, until=until,
                                service_id=service_id)
    else:
        dep = load_deployments(source, window=window, since=since, until=until,
                               service_id=service_id, progress=progress)
        act = load_activities(source, window=window, since=since, until=until,
                              service_id=service_id, progress=progress)
    out = changes(dep, act)
    out.attrs.update({"deployments": len(dep), "activities": len(act),
                      "notes": list(out.attrs.get("notes", [])) + list(dep.attrs.get(
                          "notes", [])) + list(act.attrs.get("notes", []))})
    return out


def read_with_lookbehind(client: KoyebClient, instances: pd.DataFrame,
                         since: pd.Timestamp | None, reach: pd.Timestamp | None, *,
                         ids: list[str] | None = None, progress: bool = False,
                         ) -> tuple[pd.DataFrame, dict[str, int]]:
    """The events from ``since`` to now and, with ``reach``, a look-behind: events
    before ``since`` until every instance of ``instances`` alive then and changed since
    has shown one that tells its status, or ``reach`` is met; those still missing are
    read in a listing of their own (at most :data:`MAX_PER_INSTANCE`). Returns the
    events (both sides of ``since``) and what the look-behind cost.

    Examples
    --------
    >>> inst = ka.load_instances(client)
    >>> since = sim.now - pd.Timedelta(hours=6)
    >>> reach = since - pd.Timedelta(hours=6)          # how far before since to look
    >>> ev, cost = ka.sources.read_with_lookbehind(client, inst, since, reach)
    >>> bool((ev["when"] < since).any()), sorted(cost)
    (True, ['pages', 'per_instance', 'requests'])
    """
    cost = {"pages": 0, "per_instance": 0, "requests": 0}
    wanted = None
    if since is not None and reach is not None:
        alive = instances[alive_at(instances, since).to_numpy()]
        wanted = set(alive.loc[~(alive["updated_at"] < since).to_numpy(), "id"])
    events = read_events(client, TimeWindow(since, None), ids=ids, progress=progress,
                         reach=reach, wanted=wanted)
    cost["pages"] = int(events.attrs.get("lookbehind_pages", 0))
    if since is not None and wanted:
        extra, cost["per_instance"], cost["requests"] = _per_instance(
            client, since, sorted(wanted)[:MAX_PER_INSTANCE])
        if len(extra):
            attrs = events.attrs
            events = pd.concat([events, extra], ignore_index=True)
            events.attrs = attrs
    return events, cost


def _per_instance(client: KoyebClient, since: pd.Timestamp, ids: list[str],
                  ) -> tuple[pd.DataFrame, int, int]:
    """The events of ``ids`` (instances the look-behind did not reach) back to the last
    one of each before ``since`` that tells its status: one listing filtered by those
    instances, newest first, which stops as soon as each has shown one."""
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    found = read_events(client, TimeWindow(since, None), ids=ids, reach=epoch,
                        wanted=set(ids))
    early = found[(found["when"] < since).to_numpy()]
    return early, len(ids), int(found.attrs.get("pages", 0))
