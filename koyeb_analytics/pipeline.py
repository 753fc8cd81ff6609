"""A window as a value: load it once, analyse it once.

:func:`load_window` returns the instances and events of a window together with the
resolved ``since`` and ``until``, so nobody has to read ``attrs["query"]``;
:func:`analyse` computes everything a report shows from them.

Long because loading a window also finds the status at its start (the look-behind
over the API or a store, and what it cost), and the headline states its figures with
their coverage; both document every parameter.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ._frames import build_frame
from .analysis import UptimePolicy, capacity, incidents, uptime
from .client import KoyebClient
from .lifecycle import START_STATUS_COLUMNS, findings, lifecycles
from .loaders import load_instances, read_events
from .schema import EVENT_COLUMNS, STATUSES, TIME_DTYPE
from .startstatus import alive_at, start_status
from .store import HistoryStore
from .timewindow import TimeLike, TimeWindow, WindowLike, parse_duration

UNKNOWN_THRESHOLD = 0.01
"""An unknown share of service-time above this is said in a report's headline."""
DEFAULT_LOOKBEHIND = "6h"
"""How far before a window's start :func:`load_window` reads events by default (see the
README's "Where a window starts"; chosen on ``benchmarks/bench_window.py``)."""
MAX_PER_INSTANCE = 500
"""Instances whose status at ``since`` the look-behind did not reach are read again in
one listing filtered by instance (the events endpoint filters by ``instance_ids``);
beyond this many, the rest are left to the message transitions."""

__all__ = ["Analysis", "Headline", "Window", "analyse", "headline", "load_window"]


@dataclass(frozen=True)
class Window:
    """The instances and events of a time window, with the window itself.

    Parameters
    ----------
    instances, events
        From :func:`~koyeb_analytics.load_instances` and
        :func:`~koyeb_analytics.load_events`.
    since, until
        The window, resolved (``until`` is when the data was fetched when not given).
    start_status
        Each instance's status at ``since`` and the evidence for it (``instance_id,
        status, source, evidence_at``; see :func:`~koyeb_analytics.start_status`).
    lookbehind
        How far before ``since`` events were read for it, and what that cost
        (``{"duration", "pages", "per_instance", "requests"}``).

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=1) as sim:
    ...     w = ka.load_window(sim.client(), window="6h", progress=False)
    >>> sorted(vars(w))
    ['events', 'instances', 'lookbehind', 'since', 'start_status', 'until']
    """

    instances: pd.DataFrame
    events: pd.DataFrame
    since: pd.Timestamp | None
    until: pd.Timestamp
    start_status: pd.DataFrame = field(default_factory=lambda: _empty_start())
    lookbehind: dict[str, Any] = field(default_factory=dict)


def _empty_start() -> pd.DataFrame:
    return pd.DataFrame({"instance_id": pd.Series(dtype=object),
                         "status": pd.Categorical([], categories=list(STATUSES), ordered=True),
                         "source": pd.Series(dtype=object),
                         "evidence_at": pd.Series(dtype=TIME_DTYPE)})[
                             list(START_STATUS_COLUMNS)]


def load_window(client: KoyebClient | HistoryStore | str | os.PathLike[str], *,
                window: WindowLike | None = None, since: TimeLike | None = None,
                until: TimeLike | None = None,
                service_id: str | Iterable[str] | None = None, details: bool = False,
                progress: bool = True, lookbehind: WindowLike | int = DEFAULT_LOOKBEHIND,
                ) -> Window:
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
    start_frame = start_status(inst, events, begin) if begin is not None else _empty_start()
    if begin is not None and len(events):
        early = (events["when"] < begin).to_numpy()
        if early.any():
            attrs = events.attrs
            events = events[~early].sort_values(["when", "id"], kind="stable").drop_duplicates(
                "id").reset_index(drop=True)
            events.attrs = attrs
    end = query.get("until") or inst.attrs["fetched_at"]
    return Window(inst, events, begin, pd.Timestamp(end), start_frame,
                  {**cost, "pages_total": int(events.attrs.get("pages", 0))})


def read_with_lookbehind(client: KoyebClient, instances: pd.DataFrame,
                         since: pd.Timestamp | None, reach: pd.Timestamp | None, *,
                         ids: list[str] | None = None, progress: bool = False,
                         ) -> tuple[pd.DataFrame, dict[str, int]]:
    """The events from ``since`` to now and, with ``reach``, a look-behind: events
    before ``since`` until every instance of ``instances`` alive then and changed since
    has shown one that tells its status, or ``reach`` is met; those still missing are
    read in a listing of their own (at most :data:`MAX_PER_INSTANCE`). Returns the
    events (both sides of ``since``) and what the look-behind cost."""
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


@dataclass
class Analysis:
    """Everything a report shows, computed once (see :func:`analyse`).

    Parameters
    ----------
    instances, events, intervals
        The data and the status intervals rebuilt from it.
    uptime, daily, incidents, capacity, findings
        The figures, as :func:`~koyeb_analytics.uptime` (overall and per day),
        :func:`~koyeb_analytics.incidents`, :func:`~koyeb_analytics.capacity` and
        :func:`~koyeb_analytics.findings` return them.
    policy, since, until
        How and over what they were computed.
    extra
        Anything a caller adds for its own report.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=1) as sim:
    ...     a = ka.analyse(ka.load_window(sim.client(), window="6h", progress=False))
    >>> a.until - a.since
    Timedelta('0 days 06:00:00')
    """

    instances: pd.DataFrame
    events: pd.DataFrame
    intervals: pd.DataFrame
    uptime: pd.DataFrame
    daily: pd.DataFrame
    incidents: pd.DataFrame
    capacity: pd.DataFrame
    findings: pd.DataFrame
    policy: UptimePolicy
    since: pd.Timestamp
    until: pd.Timestamp
    extra: dict[str, Any] = field(default_factory=dict)


def analyse(data: Window | pd.DataFrame, events: pd.DataFrame | None = None, *,
            since: TimeLike | None = None, until: TimeLike | None = None,
            policy: UptimePolicy | None = None, freq: str = "15min") -> Analysis:
    """Intervals, uptime (overall and per day), incidents, capacity and findings.

    Parameters
    ----------
    data
        A :class:`Window` (its ``since``/``until`` are used), or the instances frame
        with ``events`` beside it.
    since, until
        Override the window.
    policy
        The :class:`~koyeb_analytics.UptimePolicy` (default: HEALTHY and SLEEPING up).
    freq
        The capacity chart's period.

    Returns
    -------
    Analysis

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     a = ka.analyse(ka.load_window(sim.client(), window="12h", progress=False))
    >>> bool(a.uptime["availability"].between(0, 1).all())
    True
    """
    if isinstance(data, Window):
        instances, events = data.instances, data.events
        since = since if since is not None else data.since
        until = until if until is not None else data.until
    else:
        instances = data
        if events is None:
            raise TypeError("analyse() needs events: pass a Window, or instances and events")
    policy = policy or UptimePolicy()
    start = data.start_status if isinstance(data, Window) else None
    iv = lifecycles(instances, events, since=since, until=until, start_status=start)
    lo, hi = iv.attrs["since"] or (iv["start"].min() if len(iv) else None), iv.attrs["until"]
    return Analysis(
        instances=instances, events=events, intervals=iv,
        uptime=uptime(iv, policy=policy), daily=uptime(iv, policy=policy, freq="1D"),
        incidents=incidents(iv, policy=policy), capacity=capacity(iv, freq=freq),
        findings=findings(iv), policy=policy, since=lo, until=hi)


@dataclass(frozen=True)
class Headline:
    """What a report answers first: how available were we, what broke, for how long.

    Parameters
    ----------
    since, until
        The window.
    services, instances
        Fleet size.
    availability, target
        Availability across services (time-weighted, as the per-service table sums)
        and the policy's objective.
    budget_allowed, budget_used, budget_left, budget_used_share
        The error budget over the window.
    worst_service, worst_availability
        The service with the lowest availability (its label).
    incidents, mttr_median
        How many incidents, and their median duration.
    longest_start, longest_duration, longest_services
        The longest incident.
    peak_instances, peak_at
        Peak capacity.
    findings
        How many data-quality findings.
    simulated, source
        Whether the data is the simulator's, and the API host it came from.
    coverage, unknown_time
        The share of service-time whose state is known, and the time whose state is
        not (left out of ``availability`` and the budget).
    coverage_note
        A sentence for the headline when the unknown share passes
        :data:`UNKNOWN_THRESHOLD`, else None.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     h = ka.headline(ka.analyse(ka.load_window(sim.client(), window="12h",
    ...                                               progress=False)))
    >>> h.simulated, 0 <= h.availability <= 1
    (True, True)
    """

    since: pd.Timestamp
    until: pd.Timestamp
    services: int
    instances: int
    availability: float
    target: float
    budget_allowed: pd.Timedelta
    budget_used: pd.Timedelta
    budget_left: pd.Timedelta
    budget_used_share: float
    worst_service: str | None
    worst_availability: float
    incidents: int
    mttr_median: pd.Timedelta | None
    longest_start: pd.Timestamp | None
    longest_duration: pd.Timedelta | None
    longest_services: tuple[str, ...]
    peak_instances: int
    peak_at: pd.Timestamp | None
    findings: int
    simulated: bool
    source: str
    coverage: float = 1.0
    unknown_time: pd.Timedelta = pd.Timedelta(0)
    coverage_note: str | None = None

    def availability_text(self) -> str:
        """``"99.930 % over 98.7 % of service-time; 1.3 % unknown"``."""
        if self.availability != self.availability:  # NaN: nothing observed
            return "no observed time"
        text = f"{self.availability:.3%}".replace("%", " %")
        if self.coverage < 1:
            text += (f" over {self.coverage:.1%} of service-time; "
                     f"{1 - self.coverage:.1%} unknown").replace("%", " %")
        return text


def headline(a: Analysis) -> Headline:
    """The first screen of a report, as values (see :class:`Headline`).

    Parameters
    ----------
    a
        From :func:`analyse`.

    Returns
    -------
    Headline

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     a = ka.analyse(ka.load_window(sim.client(), window="12h", progress=False))
    >>> ka.headline(a).target
    0.999
    """
    from urllib.parse import urlsplit

    from .figures import peak_capacity
    from .names import service_labels

    labels = service_labels(a.instances)
    # Across services, time-weighted: the same sums as the per-service table.
    zero = pd.Timedelta(0)
    observed = a.uptime["observed_time"].sum() if len(a.uptime) else zero
    down = a.uptime["down_time"].sum() if len(a.uptime) else zero
    unknown = a.uptime["unknown_time"].sum() if len(a.uptime) else zero
    coverage = float(observed / (observed + unknown)) if observed + unknown > zero else 1.0
    note = None
    if 1 - coverage > UNKNOWN_THRESHOLD:
        note = (f"The state of {1 - coverage:.1%} of service-time is unknown (nothing "
                "told it): availability and the budget are over the rest. See the "
                "findings.").replace("%", " %")
    value = float((observed - down) / observed) if observed > zero else float("nan")
    allowed = observed * (1 - a.policy.target)
    by = a.uptime.attrs.get("by") or "service_id"
    worst = a.uptime.sort_values("availability", na_position="last").head(1)
    worst_id = worst[by].iloc[0] if len(worst) else None
    inc = a.incidents
    key = inc.columns[0] if len(inc.columns) else "group"
    longest = inc.sort_values("duration", ascending=False).head(1)
    peak = peak_capacity(a.intervals, since=a.since, until=a.until)
    source = str(a.instances.attrs.get("source", ""))
    return Headline(
        since=a.since, until=a.until,
        services=int(a.instances["service_id"].nunique()) if len(a.instances) else 0,
        instances=len(a.instances), availability=value, target=a.policy.target,
        budget_allowed=allowed, budget_used=down, budget_left=allowed - down,
        budget_used_share=float(down / allowed) if allowed > zero else float("nan"),
        worst_service=None if worst_id is None else labels.get(worst_id, str(worst_id)),
        worst_availability=float(worst["availability"].iloc[0]) if len(worst) else
        float("nan"),
        incidents=len(inc),
        mttr_median=inc["duration"].median() if len(inc) else None,
        longest_start=longest["start"].iloc[0] if len(longest) else None,
        longest_duration=longest["duration"].iloc[0] if len(longest) else None,
        longest_services=tuple(labels.get(v, str(v)) for v in longest[key]) if len(longest)
        else (),
        peak_instances=peak.instances, peak_at=peak.at, findings=len(a.findings),
        simulated=bool(a.instances.attrs.get("simulated", False)),
        source=urlsplit(source).netloc or source, coverage=coverage, unknown_time=unknown,
        coverage_note=note)
