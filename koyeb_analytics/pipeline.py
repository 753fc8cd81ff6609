"""A window as a value: load it once, analyse it once.

:func:`load_window` returns the instances and events of a window together with the
resolved ``since`` and ``until``, so nobody has to read ``attrs["query"]``;
:func:`analyse` computes everything a report shows from them.
"""

from __future__ import annotations

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
from .timewindow import TimeLike, WindowLike

__all__ = ["Analysis", "Window", "analyse", "load_window"]


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


def load_window(client: KoyebClient, *, window: WindowLike | None = None,
                since: TimeLike | None = None, until: TimeLike | None = None,
                service_id: str | Iterable[str] | None = None, details: bool = False,
                progress: bool = True) -> Window:
    """Load every instance of a window and the events from its start to now.

    Events after ``until`` are loaded too: the event that ends a quiet stretch tells
    what the instance was doing during it.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
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
    services = [service_id] if isinstance(service_id, str) else \
        list(service_id) if service_id is not None else [None]
    parts = [load_instances(client, window=window, since=since, until=until, service_id=s,
                            details=details, progress=progress) for s in services]
    inst = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    inst.attrs = dict(parts[0].attrs)
    query = inst.attrs["query"]
    start = query.get("since")
    if service_id is not None:
        ids = inst["id"].tolist()
        events = load_events(client, since=start, instance_ids=ids, progress=progress) \
            if ids else build_frame({}, EVENT_COLUMNS)  # no instance: no event to ask for
    else:
        events = load_events(client, since=start, progress=progress)
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
