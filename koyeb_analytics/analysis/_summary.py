"""A window analysed once: everything a report shows, and its first screen as values.

:func:`analyse` computes the intervals, uptime (overall and per day), incidents, capacity
and findings of a :class:`~koyeb_analytics.Window` (or of instances and events);
:func:`headline` reads the answers a report gives first from that :class:`Analysis`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from ..labels import service_labels
from ..timewindow import TimeLike, Window
from ._changes import suspects
from ._lifecycle import findings, lifecycles
from ._metrics import (
    Availability,
    UptimePolicy,
    availability_from,
    availability_text,
    budget_of,
    capacity,
    duration_or_zero,
    error_budget,
    incidents_from,
    overall_availability,
    peak_capacity,
    peak_of,
    runs_of,
    timelines,
    uptime_from,
)

UNKNOWN_THRESHOLD = 0.01
"""An unknown share of service-time above this is said in a report's headline."""

__all__ = ["Analysis", "Headline", "analyse", "headline"]


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
    changes, suspects
        What changed (:func:`~koyeb_analytics.changes`) and, per incident, the changes
        just before it (:func:`~koyeb_analytics.suspects`); None when no changes were
        given to :func:`analyse`.
    extra
        Anything a caller adds for its own report.
    availability
        Across services (the sums of ``uptime``), as
        :func:`~koyeb_analytics.overall_availability` with ``by="service_id"`` gives it:
        the headline's figure, kept so that it is not computed again.
    states
        Each service's time as runs of one state (``plots.state_runs``), which
        fleet-scale lifecycle charts are drawn from.

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
    changes: pd.DataFrame | None = None
    suspects: pd.DataFrame | None = None
    availability: Availability | None = None
    states: pd.DataFrame | None = None


def analyse(data: Window | pd.DataFrame, events: pd.DataFrame | None = None, *,
            since: TimeLike | None = None, until: TimeLike | None = None,
            policy: UptimePolicy | None = None, freq: str = "15min",
            changes: pd.DataFrame | None = None, lookback: str = "1h") -> Analysis:
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
    changes, lookback
        What changed (:func:`~koyeb_analytics.load_changes`), joined to the incidents
        by :func:`~koyeb_analytics.suspects` with this look-back.

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
    said = data.platform if isinstance(data, Window) else None
    iv = lifecycles(instances, events, since=since, until=until, start_status=start,
                    platform=said)
    lo, hi = iv.attrs["since"] or (iv["start"].min() if len(iv) else None), iv.attrs["until"]
    # One pass over the span edges gives the segments of both tables; the incidents are
    # found once, and counted in both (as uptime() and incidents() do one by one).
    by = "service_id"
    plain, daily = timelines(iv, by, policy, None, None, None, "1D")
    inc = incidents_from(iv, plain, by, policy, duration_or_zero("5min", "merge_gap"),
                          duration_or_zero("1min", "min_duration"))
    up = uptime_from(iv, plain, inc, by, policy, None)
    return Analysis(
        instances=instances, events=events, intervals=iv, uptime=up,
        daily=uptime_from(iv, daily if daily is not None else plain, inc, by, policy, "1D"),
        incidents=inc, capacity=capacity(iv, freq=freq), findings=findings(iv),
        policy=policy, since=lo, until=hi, states=runs_of(plain), changes=changes,
        suspects=None if changes is None else suspects(inc, changes, lookback=lookback),
        # The table leaves out intervals of no service; the headline's figure does not.
        availability=availability_from(up, policy, by) if len(iv) and bool(
            iv[by].notna().all()) else None)


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
        return availability_text(self.availability, self.coverage)


def headline(a: Analysis) -> Headline:
    """The first screen of a report, as values (see :class:`Headline`).

    Its ``availability`` and budget are the figures across services, time-weighted:
    ``overall_availability(iv, by="service_id")`` and ``error_budget(iv,
    by="service_id")``, as the report, the CLI and the live view print them.

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
    labels = service_labels(a.instances)
    by = a.uptime.attrs.get("by") or "service_id"
    # The headline's figures are the functions' own (across services, time-weighted:
    # the same sums as the per-service table), never summed again here.
    if a.availability is not None and a.availability.by == by:
        fleet = a.availability
        budget = budget_of(fleet, a.policy.target)
    else:
        fleet = overall_availability(a.intervals, by=by, policy=a.policy, since=a.since,
                                     until=a.until)
        budget = error_budget(a.intervals, by=by, policy=a.policy, since=a.since,
                              until=a.until)
    unknown, coverage = fleet.unknown_time, fleet.coverage
    note = None
    if 1 - coverage > UNKNOWN_THRESHOLD:
        note = (f"The state of {1 - coverage:.1%} of service-time is unknown (nothing "
                "told it): availability and the budget are over the rest. See the "
                "findings.").replace("%", " %")
    value = fleet.value
    allowed = budget.allowed
    worst = a.uptime.sort_values("availability", na_position="last").head(1)
    worst_id = worst[by].iloc[0] if len(worst) else None
    inc = a.incidents
    key = inc.columns[0] if len(inc.columns) else "group"
    longest = inc.sort_values("duration", ascending=False).head(1)
    # capacity()'s peak counts every instance whatever its columns: the same as
    # peak_capacity()'s, over the same window.
    known = a.capacity.attrs.get("peak")
    peak = peak_of(known) if known is not None else peak_capacity(
        a.intervals, since=a.since, until=a.until)
    source = str(a.instances.attrs.get("source", ""))
    return Headline(
        since=a.since, until=a.until,
        services=int(a.instances["service_id"].nunique()) if len(a.instances) else 0,
        instances=len(a.instances), availability=value, target=a.policy.target,
        budget_allowed=allowed, budget_used=budget.used, budget_left=budget.left,
        budget_used_share=budget.used_share,
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
