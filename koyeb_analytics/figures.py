"""The headline numbers as values: availability, error budget, MTTR/MTBF, peak capacity.

Each is a function of the intervals returning a small frozen result, so a number a
report needs never lives only in ``df.attrs`` (which pandas documents as experimental,
and which ``pd.concat`` drops).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .analysis import UptimePolicy, capacity, incidents, uptime
from .timewindow import TimeLike, WindowLike

__all__ = ["Availability", "ErrorBudget", "Peak", "Recovery", "error_budget",
           "overall_availability", "peak_capacity", "recovery"]


@dataclass(frozen=True)
class Availability:
    """Time-weighted availability of the whole fleet, under ``method``."""

    value: float
    up_time: pd.Timedelta
    down_time: pd.Timedelta
    observed_time: pd.Timedelta
    method: str


@dataclass(frozen=True)
class ErrorBudget:
    """Downtime allowed by ``target`` over the observed time, used and left."""

    target: float
    allowed: pd.Timedelta
    used: pd.Timedelta
    left: pd.Timedelta
    used_share: float


@dataclass(frozen=True)
class Recovery:
    """MTTR (incident durations) and MTBF (between incidents), median/p90/mean."""

    incidents: int
    mttr_median: pd.Timedelta | None
    mttr_p90: pd.Timedelta | None
    mtbf_median: pd.Timedelta | None


@dataclass(frozen=True)
class Peak:
    """The most instances at once, and when that began."""

    instances: int
    at: pd.Timestamp | None


def overall_availability(intervals: pd.DataFrame, *, policy: UptimePolicy | None = None,
                         since: TimeLike | None = None, until: TimeLike | None = None,
                         window: WindowLike | None = None) -> Availability:
    """Availability of everything in ``intervals`` taken together (``by=None``).

    Parameters
    ----------
    intervals
        Status intervals from :func:`~koyeb_analytics.lifecycles`.
    policy
        The :class:`~koyeb_analytics.UptimePolicy`.
    since, until, window
        The stretch to measure; by default the intervals' own.

    Returns
    -------
    Availability

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     w = ka.load_window(sim.client(), window="12h", progress=False)
    >>> a = ka.overall_availability(ka.lifecycles(w.instances, w.events))
    >>> 0 <= a.value <= 1 and a.up_time + a.down_time == a.observed_time
    True
    """
    policy = policy or UptimePolicy()
    up = uptime(intervals, by=None, policy=policy, since=since, until=until, window=window)
    zero = pd.Timedelta(0)
    if up.empty:
        return Availability(float("nan"), zero, zero, zero, policy.describe())
    row = up.iloc[0]
    return Availability(float(row["availability"]), row["up_time"], row["down_time"],
                        row["observed_time"], policy.describe())


def error_budget(intervals: pd.DataFrame, *, target: float = 0.999,
                 policy: UptimePolicy | None = None, since: TimeLike | None = None,
                 until: TimeLike | None = None,
                 window: WindowLike | None = None) -> ErrorBudget:
    """How much of the downtime ``target`` allows was used (fleet-wide).

    Parameters
    ----------
    intervals
        Status intervals from :func:`~koyeb_analytics.lifecycles`.
    target
        The availability objective, a fraction (0.999: "three nines").
    policy, since, until, window
        As for :func:`overall_availability`.

    Returns
    -------
    ErrorBudget

    Examples
    --------
    >>> iv = pd.DataFrame({"instance_id": ["i"], "status": ["HEALTHY"],
    ...                    "start": pd.to_datetime(["2026-01-01"], utc=True),
    ...                    "end": pd.to_datetime(["2026-01-02"], utc=True)})
    >>> error_budget(iv, target=0.99).allowed
    Timedelta('0 days 00:14:24')
    """
    if isinstance(target, bool) or not isinstance(target, (int, float)) \
            or not 0 < target < 1:
        raise ValueError(f"target must be a fraction between 0 and 1, got {target!r}")
    a = overall_availability(intervals, policy=policy, since=since, until=until,
                             window=window)
    allowed = a.observed_time * (1 - target)
    used_share = a.down_time / allowed if allowed > pd.Timedelta(0) else float("nan")
    return ErrorBudget(float(target), allowed, a.down_time,
                       allowed - a.down_time, float(used_share))


def recovery(intervals: pd.DataFrame, *, by: str | None = "service_id",
             policy: UptimePolicy | None = None, since: TimeLike | None = None,
             until: TimeLike | None = None, window: WindowLike | None = None,
             merge_gap: str | pd.Timedelta = "5min",
             min_duration: str | pd.Timedelta = "1min") -> Recovery:
    """MTTR and MTBF of the incidents :func:`~koyeb_analytics.incidents` finds.

    Parameters
    ----------
    intervals
        Status intervals from :func:`~koyeb_analytics.lifecycles`.
    by, policy, since, until, window, merge_gap, min_duration
        As for :func:`~koyeb_analytics.incidents`.

    Returns
    -------
    Recovery

    Examples
    --------
    >>> iv = pd.DataFrame({"instance_id": ["a"], "service_id": ["s"], "status": ["HEALTHY"],
    ...                    "start": pd.to_datetime(["2026-01-01"], utc=True),
    ...                    "end": pd.to_datetime(["2026-01-02"], utc=True)})
    >>> recovery(iv).incidents
    0
    """
    inc = incidents(intervals, by=by, policy=policy, since=since, until=until, window=window,
                    merge_gap=merge_gap, min_duration=min_duration)
    summary = inc.attrs["summary"]

    def get(kind: str, stat: str) -> pd.Timedelta | None:
        value = summary.get(kind, {}).get(stat)
        return None if value is None or pd.isna(value) else pd.Timedelta(value)

    return Recovery(len(inc), get("mttr", "median"), get("mttr", "p90"),
                    get("mtbf", "median"))


def peak_capacity(intervals: pd.DataFrame, *, since: TimeLike | None = None,
                  until: TimeLike | None = None, window: WindowLike | None = None) -> Peak:
    """The exact maximum of concurrent instances, and when it began.

    Parameters
    ----------
    intervals
        Status intervals from :func:`~koyeb_analytics.lifecycles`.
    since, until, window
        The stretch to look in; by default the intervals' own.

    Returns
    -------
    Peak

    Examples
    --------
    >>> iv = pd.DataFrame({"instance_id": ["a", "b"], "status": ["HEALTHY"] * 2,
    ...     "start": pd.to_datetime(["2026-01-01 00:00", "2026-01-01 00:30"], utc=True),
    ...     "end": pd.to_datetime(["2026-01-01 01:00", "2026-01-01 02:00"], utc=True)})
    >>> peak_capacity(iv).instances
    2
    """
    cap = capacity(intervals, by=None, since=since, until=until, window=window)
    peak = cap.attrs["peak"]
    at = peak.get("at")
    return Peak(int(peak.get("instances") or 0), None if at is None or pd.isna(at)
                else pd.Timestamp(at))
