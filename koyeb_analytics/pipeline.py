"""A window as a value: load it once, analyse it once.

:func:`load_window` returns the instances and events of a window together with the
resolved ``since`` and ``until``, so nobody has to read ``attrs["query"]``;
:func:`analyse` computes everything a report shows from them.
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
from .lifecycle import findings, lifecycles
from .loaders import load_events, load_instances
from .schema import EVENT_COLUMNS
from .store import HistoryStore
from .timewindow import TimeLike, WindowLike

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

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=1) as sim:
    ...     w = ka.load_window(sim.client(), window="6h", progress=False)
    >>> sorted(vars(w))
    ['events', 'instances', 'since', 'until']
    """

    instances: pd.DataFrame
    events: pd.DataFrame
    since: pd.Timestamp | None
    until: pd.Timestamp


def load_window(client: KoyebClient | HistoryStore | str | os.PathLike[str], *,
                window: WindowLike | None = None, since: TimeLike | None = None,
                until: TimeLike | None = None,
                service_id: str | Iterable[str] | None = None, details: bool = False,
                progress: bool = True) -> Window:
    """Load every instance of a window and the events from its start to now.

    Events after ``until`` are loaded too: the event that ends a quiet stretch tells
    what the instance was doing during it.

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
    if ids == []:
        events = build_frame({}, EVENT_COLUMNS)  # no instance: no event to ask for
    elif isinstance(source, HistoryStore):
        events = source.events(since=start, instance_ids=ids)
    else:
        events = load_events(source, since=start, instance_ids=ids, progress=progress)
    end = query.get("until") or inst.attrs["fetched_at"]
    return Window(inst, events, None if start is None else pd.Timestamp(start),
                  pd.Timestamp(end))


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
    iv = lifecycles(instances, events, since=since, until=until)
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
        source=urlsplit(source).netloc or source)
