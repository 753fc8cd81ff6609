"""Uptime, incidents, capacity and crash loops, computed from status intervals; and the
headline numbers as values (availability, error budget, MTTR/MTBF, peak capacity).

Long because each figure carries its method and a worked example in its docstring;
the code itself is sums over one timeline, and the headline values are read from them.

Every figure is time-weighted (seconds, not samples) and follows an explicit
:class:`UptimePolicy` that is returned with the result, so a report can print the
method beside the number.

The core is a *timeline*: for each group (a service, by default), the time between
any two span edges is one segment in which the number of instances present and up is
constant. Availability, incidents and per-period breakdowns are sums over segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..schema import STATUSES, STRING_DTYPE, TIME_DTYPE
from ..timewindow import DurationLike, TimeLike, parse_duration, parse_time


@dataclass(frozen=True)
class UptimePolicy:
    """How status time turns into availability.

    Parameters
    ----------
    up_statuses
        Statuses that count as up (default HEALTHY only).
    sleeping
        How SLEEPING (scale-to-zero) counts: ``"up"`` (it wakes on demand; the default,
        as the console counts it active), ``"down"``, or ``"excluded"`` (left out of the
        denominator).
    combine
        How replicas make a group's state: ``"any"`` (up while any instance is up),
        ``"all"`` (up only while every instance is up) or ``"fraction"`` (the share of
        instances up, time-weighted).
    exclude
        Periods left out entirely (maintenance), as ``(start, end)`` pairs.
    no_data
        How time with no instance at all counts, between a group's first and last
        instance: ``"down"`` (default: a crash loop's restart gaps are downtime),
        ``"up"`` or ``"excluded"``. Time before the first and after the last instance
        is always excluded.
    target
        The availability objective reports measure against (default 0.999).

    Examples
    --------
    >>> print(UptimePolicy(sleeping="down").describe())  # doctest: +NORMALIZE_WHITESPACE
    Time-weighted: HEALTHY counts as up; SLEEPING counts as down; a group is up while
    any instance is up; time with no instance counts as down; time whose status is
    unknown is left out and stated as coverage; target 99.900%.
    """

    up_statuses: tuple[str, ...] = ("HEALTHY",)
    sleeping: Literal["up", "down", "excluded"] = "up"
    combine: Literal["any", "all", "fraction"] = "any"
    exclude: tuple[tuple[pd.Timestamp, pd.Timestamp], ...] = field(default_factory=tuple)
    no_data: Literal["down", "up", "excluded"] = "down"
    target: float = 0.999

    def __post_init__(self) -> None:
        if isinstance(self.target, bool) or not isinstance(self.target, (int, float)) \
                or not 0 < self.target < 1:
            raise ValueError(f"target must be a fraction between 0 and 1 (0.999 for three "
                             f"nines), got {self.target!r}")
        bad = [s for s in self.up_statuses if s not in STATUSES]
        if bad or not self.up_statuses:
            raise ValueError(f"up_statuses: unknown or empty {bad or self.up_statuses}")
        for name, allowed in (("sleeping", ("up", "down", "excluded")),
                              ("combine", ("any", "all", "fraction")),
                              ("no_data", ("down", "up", "excluded"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        periods = []
        for pair in self.exclude:
            a, b = (parse_time(x, "exclude") for x in pair)
            if a >= b:
                raise ValueError(f"exclude: the period {pair!r} must start before it ends")
            periods.append((a, b))
        object.__setattr__(self, "exclude", tuple(periods))
        object.__setattr__(self, "up_statuses", tuple(self.up_statuses))

    def describe(self) -> str:
        """One sentence stating the method, for reports."""
        up = "/".join(self.up_statuses)
        combine = {"any": "a group is up while any instance is up",
                   "all": "a group is up only while all its instances are up",
                   "fraction": "a group's availability is the time-weighted share of its "
                               "instances that are up"}[self.combine]
        text = (f"Time-weighted: {up} counts as up; SLEEPING counts as {self.sleeping}; "
                f"{combine}; time with no instance counts as {self.no_data}; time whose "
                "status is unknown is left out and stated as coverage")
        if self.exclude:
            text += f"; {len(self.exclude)} maintenance period(s) excluded"
        return text + f"; target {self.target:.3%}."

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exclude"] = [(a.isoformat(), b.isoformat()) for a, b in self.exclude]
        return d


def _naive(s: pd.Series) -> np.ndarray:
    """UTC times as naive datetime64 (numpy has no time zones)."""
    out: np.ndarray = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    return out


def _bare(df: pd.DataFrame) -> pd.DataFrame:
    """The same frame (its data shared, not copied) without its ``attrs``.

    pandas deep-copies ``attrs`` into every frame and column an operation makes; the
    intervals' can hold a finding per instance, copied again at each step. Read what
    they say first, then work on the bare frame.
    """
    return pd.DataFrame(df, copy=False)


def duration_or_zero(value: Any, name: str) -> pd.Timedelta:
    if value is None or (not isinstance(value, str) and value == 0) or value == "0":
        return pd.Timedelta(0)
    return parse_duration(value, name)


def _fixed_step(freq: Any) -> pd.Timedelta:
    try:
        return pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    except (ValueError, TypeError):
        raise ValueError(f"freq={freq!r} is not a fixed frequency like '5min', '1h' or "
                         "'1D'") from None


def _check_intervals(iv: pd.DataFrame, by: str | None,
                     needs: frozenset[str] = frozenset({"status", "start", "end"})) -> None:
    if not isinstance(iv, pd.DataFrame) or not needs <= set(iv.columns):
        raise TypeError("expected the intervals DataFrame from ka.lifecycles()")
    if by is not None and by not in iv:
        raise ValueError(f"by={by!r} is not a column of the intervals")


DURATION_DTYPE = "timedelta64[us]"


def _empty(spec: dict[str, Any]) -> pd.DataFrame:
    """An empty result with the columns and dtypes of a full one."""
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in spec.items()})


def _group_dtype(iv: pd.DataFrame, by: str | None) -> Any:
    return iv[by].dtype if by is not None and by in iv else STRING_DTYPE


def _bounds(iv: pd.DataFrame, since: TimeLike | None, until: TimeLike | None,
            window: DurationLike | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    if window is not None and since is not None:
        raise ValueError("pass either window or since, not both")
    hi = parse_time(until, "until") if until is not None else iv.attrs.get("until")
    if hi is None and len(iv):
        hi = iv["end"].max()
    if window is not None:
        return pd.Timestamp(hi) - parse_duration(window), pd.Timestamp(hi)
    lo = parse_time(since, "since") if since is not None else iv.attrs.get("since")
    if lo is None:
        lo = iv["start"].min()
    if hi is None:
        hi = iv["end"].max()
    return pd.Timestamp(lo), pd.Timestamp(hi)


def timeline(intervals: pd.DataFrame, *, by: str | None = "service_id",
             policy: UptimePolicy | None = None, since: TimeLike | None = None,
             until: TimeLike | None = None, window: DurationLike | None = None,
             freq: str | None = None) -> pd.DataFrame:
    """Split each group's time into segments of constant state.

    A group is a service by default (``by="service_id"``); ``by=None`` takes the fleet
    as one group.

    The core the other figures are sums over: between any two span edges, the number
    of instances present and up in a group is constant.

    Parameters
    ----------
    intervals
        Status intervals from :func:`~koyeb_analytics.lifecycles`.
    by
        Column to group by (``"service_id"``, ``"region"``...); None for the fleet.
    policy
        The :class:`UptimePolicy` (default: HEALTHY and SLEEPING up, any replica).
    since, until, window
        The window to measure (``window``: its duration, back from ``until``); by
        default the intervals' own (``attrs``).
    freq
        Also cut segments at period edges (``"1D"``) and add a ``period`` column.

    Returns
    -------
    DataFrame
        ``group, start, end, duration, present, up, upness, state`` where ``upness``
        is in [0, 1] and ``state`` is ``"up"``, ``"down"``, ``"degraded"`` (fraction
        policy, some replicas down), ``"excluded"`` or ``"unknown"`` (the outcome
        depends on instances whose status nothing tells: left out of availability, like
        excluded time, and counted against coverage). ``present`` counts instances of
        known status. With ``freq``, segments are also
        cut at period edges and a ``period`` column is added.

    Examples
    --------
    >>> iv = pd.DataFrame({"instance_id": ["a", "a"], "service_id": ["s", "s"],
    ...     "status": ["HEALTHY", "UNHEALTHY"],
    ...     "start": pd.to_datetime(["2026-01-01 00:00", "2026-01-01 01:00"], utc=True),
    ...     "end": pd.to_datetime(["2026-01-01 01:00", "2026-01-01 01:30"], utc=True)})
    >>> timeline(iv)[["duration", "state"]].astype(str).values.tolist()
    [['0 days 01:00:00', 'up'], ['0 days 00:30:00', 'down']]
    """
    plain, periodic = timelines(intervals, by, policy or UptimePolicy(), since, until,
                                 window, freq)
    return plain if periodic is None else periodic


_SEGMENT_COLUMNS = ["group", "start", "end", "duration", "present", "up", "upness", "state"]


def timelines(iv: pd.DataFrame, by: str | None, policy: UptimePolicy,
               since: TimeLike | None, until: TimeLike | None, window: DurationLike | None,
               freq: str | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The segments of :func:`timeline`, and with ``freq`` the same cut at period edges,
    from one pass over the sorted span edges.

    Period edges add rows whose deltas are zero: the running counts at every other edge
    are the same with or without them, so the plain segments are the periodic pass's
    rows less the period-only edges, each ending at the next edge kept.
    """
    _check_intervals(iv, by)
    lo, hi = _bounds(iv, since, until, window) if len(iv) else (None, None)
    iv = _bare(iv)
    cols = _SEGMENT_COLUMNS
    spans = iv[(iv["end"] > iv["start"]).to_numpy()]
    if lo is None or spans.empty:
        empty = _empty(dict(zip(cols, [_group_dtype(iv, by), TIME_DTYPE, TIME_DTYPE,
                                       DURATION_DTYPE, "int64", "int64", "float64",
                                       STRING_DTYPE], strict=True)))
        return empty, (empty.copy() if freq is not None else None)
    status = spans["status"].astype(object)
    sleeping = status.eq("SLEEPING")
    asleep = sleeping & (policy.sleeping == "excluded")
    present = status.notna() & ~asleep
    unknown = status.isna()
    up = status.isin(policy.up_statuses) | (sleeping & (policy.sleeping == "up"))
    group = spans[by].astype(object) if by is not None else pd.Series("all", index=spans.index)
    keys = group.to_numpy()
    deltas = pd.DataFrame({
        "group": np.concatenate([keys, keys]),
        "t": np.concatenate([_naive(spans["start"]), _naive(spans["end"])]),
        "dp": np.concatenate([present.to_numpy(int), -present.to_numpy(int)]),
        "du": np.concatenate([(present & up).to_numpy(int), -(present & up).to_numpy(int)]),
        "ds": np.concatenate([asleep.to_numpy(int), -asleep.to_numpy(int)]),
        "dk": np.concatenate([unknown.to_numpy(int), -unknown.to_numpy(int)]),
        "edge": 1,
    })
    life = pd.DataFrame({"group": keys, "start": spans["start"].array,
                         "end": spans["end"].array}).groupby("group").agg(
                             first=("start", "min"), last=("end", "max"))
    edges = [lo, hi]
    for a, b in policy.exclude:
        edges += [a, b]

    def cuts(times: list[Any], edge: int) -> pd.DataFrame:
        return pd.DataFrame({
            "group": np.repeat(life.index.to_numpy(), len(times)),
            "t": np.tile(_naive(pd.Series(pd.DatetimeIndex(times).as_unit("us"))),
                         len(life)),
            "dp": 0, "du": 0, "ds": 0, "dk": 0, "edge": edge})

    parts = [deltas, cuts(edges, 1)]
    if freq is not None:
        step = _fixed_step(freq)
        parts.append(cuts(list(pd.date_range(lo.floor(step), hi, freq=step)), 0))
    d = pd.concat(parts, ignore_index=True)
    d["t"] = d["t"].astype("datetime64[us]").dt.tz_localize("UTC")
    d = d.groupby(["group", "t"], sort=True)[["dp", "du", "ds", "dk", "edge"]].sum(
    ).reset_index()
    d["present"] = d.groupby("group")["dp"].cumsum()
    d["up"] = d.groupby("group")["du"].cumsum()
    d["asleep"] = d.groupby("group")["ds"].cumsum()
    d["unknown"] = d.groupby("group")["dk"].cumsum()
    if freq is None:
        return _segments(d, lo, hi, life, policy), None
    periodic = _segments(d, lo, hi, life, policy)
    periodic["period"] = periodic["start"].dt.floor(_fixed_step(freq))
    plain = _segments(d[(d["edge"] > 0).to_numpy()].reset_index(drop=True), lo, hi, life,
                      policy)
    return plain, periodic


def _segments(d: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp, life: pd.DataFrame,
              policy: UptimePolicy) -> pd.DataFrame:
    """Segments between consecutive edges of a group, from the running counts ``d``."""
    cols = _SEGMENT_COLUMNS
    d = d.assign(end=d.groupby("group")["t"].shift(-1))
    seg = d.dropna(subset=["end"]).rename(columns={"t": "start"})
    seg = seg[(seg["start"] >= lo) & (seg["end"] <= hi)].copy()
    seg["end"] = seg["end"].astype(TIME_DTYPE)
    seg["duration"] = seg["end"] - seg["start"]
    first = seg["group"].map(life["first"])
    last = seg["group"].map(life["last"])
    outside = (seg["end"] <= first) | (seg["start"] >= last)
    maint = pd.Series(False, index=seg.index)
    for a, b in policy.exclude:
        maint |= (seg["start"] >= a) & (seg["end"] <= b)
    n, u = seg["present"].to_numpy(), seg["up"].to_numpy()
    k = seg["unknown"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        if policy.combine == "any":
            upness = (u > 0).astype(float)
            # Nobody known is up: the outcome hangs on the unknown ones.
            undecided = (u == 0) & (k > 0)
        elif policy.combine == "all":
            upness = ((u == n) & (n > 0)).astype(float)
            undecided = (u == n) & (k > 0)
        else:
            upness = np.where(n > 0, u / np.maximum(n, 1), 0.0)
            undecided = (n == 0) & (k > 0)
    only_asleep = (n == 0) & (seg["asleep"].to_numpy() > 0) & (k == 0)
    no_data = (n == 0) & ~only_asleep & (k == 0)
    upness = np.where(no_data, 1.0 if policy.no_data == "up" else 0.0, upness)
    excluded = (outside.to_numpy() | maint.to_numpy() | only_asleep
                | (no_data & (policy.no_data == "excluded")))
    undecided &= ~excluded
    state = np.where(excluded, "excluded", np.where(undecided, "unknown",
                     np.where(upness >= 1, "up", np.where(upness <= 0, "down", "degraded"))))
    seg["upness"] = np.where(excluded | undecided, np.nan, upness)
    seg["state"] = state
    out = seg[cols].reset_index(drop=True)
    out.attrs["policy"] = policy.as_dict()
    return out


def uptime(intervals: pd.DataFrame, *, by: str | None = "service_id",
           policy: UptimePolicy | None = None, since: TimeLike | None = None,
           until: TimeLike | None = None, window: DurationLike | None = None,
           freq: str | None = None) -> pd.DataFrame:
    """Time-weighted availability per group (and per period with ``freq``).

    One row per group: per service by default, the fleet as one group with ``by=None``.

    Parameters
    ----------
    iv
        Intervals from :func:`~koyeb_analytics.lifecycles`.
    by
        Column to group by (``"service_id"``, ``"region"``…); None for the whole fleet.
    policy
        The :class:`UptimePolicy`; the default counts HEALTHY (and SLEEPING) as up and a
        group up while any instance is up.
    since, until
        The period; defaults to the one the intervals were clipped to.
    freq
        A pandas frequency (``"1D"``) for a per-period breakdown (one row per group and
        period, for heatmaps).

    Returns
    -------
    DataFrame
        ``availability, up_time, down_time, observed_time, excluded_time, unknown_time,
        coverage, incidents`` per group (and ``period``). Time whose status is unknown
        is left out of ``observed_time`` (so of availability) and said by ``coverage``
        (observed over observed plus unknown). ``attrs`` carries ``policy``, ``method``
        (a sentence), ``overall`` (the groups' up time over their observed time, summed:
        with ``by="service_id"`` the figure across services, as
        ``overall_availability(iv, by="service_id")``) and ``coverage``.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=3, days=2, services=3) as sim:
    ...     c = sim.client()
    ...     iv = ka.lifecycles(ka.load_instances(c, progress=False),
    ...                        ka.load_events(c, progress=False))
    >>> up = ka.uptime(iv)
    >>> bool(up["availability"].between(0, 1).all())
    True
    """
    policy = policy or UptimePolicy()
    plain, periodic = timelines(intervals, by, policy, since, until, window, freq)
    inc = incidents_from(intervals, plain, by, policy, duration_or_zero("5min", "merge_gap"),
                          duration_or_zero("1min", "min_duration"))
    return uptime_from(intervals, plain if periodic is None else periodic, inc, by, policy,
                        freq)


def uptime_from(intervals: pd.DataFrame, seg: pd.DataFrame, inc: pd.DataFrame,
                 by: str | None, policy: UptimePolicy, freq: str | None) -> pd.DataFrame:
    """The table of :func:`uptime`, from its segments and the incidents they make."""
    keys = ["group", "period"] if freq is not None else ["group"]
    zero = pd.Timedelta(0)
    if seg.empty:
        out = _empty({"group": _group_dtype(intervals, by),
                      **({"period": TIME_DTYPE} if freq is not None else {}),
                      "availability": "float64", "up_time": DURATION_DTYPE,
                      "down_time": DURATION_DTYPE, "observed_time": DURATION_DTYPE,
                      "excluded_time": DURATION_DTYPE, "unknown_time": DURATION_DTYPE,
                      "coverage": "float64", "incidents": "int64"})
    else:
        seg = seg.assign(
            observed=seg["duration"].where(~seg["state"].isin(["excluded", "unknown"]),
                                           zero),
            excluded=seg["duration"].where(seg["state"] == "excluded", zero),
            unknown=seg["duration"].where(seg["state"] == "unknown", zero),
            up_part=seg["duration"] * seg["upness"].fillna(0))
        out = seg.groupby(keys, sort=True).agg(
            up_time=("up_part", "sum"), observed_time=("observed", "sum"),
            excluded_time=("excluded", "sum"), unknown_time=("unknown", "sum")
        ).reset_index()
        out["down_time"] = out["observed_time"] - out["up_time"]
        out["availability"] = out["up_time"] / out["observed_time"].where(
            out["observed_time"] > zero)
        inc = inc.rename(columns={by or "group": "group"})
        counts = inc.groupby("group").size() if len(inc) else pd.Series(dtype=int)
        if freq is None:
            out["incidents"] = out["group"].map(counts).fillna(0).astype(int)
        elif len(inc):
            # An incident counts in the period it starts in.
            per = inc.assign(period=inc["start"].dt.floor(freq)).groupby(
                ["group", "period"]).size()
            where = pd.MultiIndex.from_arrays([out["group"], out["period"]])
            out["incidents"] = per.reindex(where, fill_value=0).to_numpy(dtype="int64")
        else:
            out["incidents"] = np.zeros(len(out), dtype="int64")
        known = out["observed_time"] + out["unknown_time"]
        out["coverage"] = out["observed_time"] / known.where(known > zero)
        out = out[[*keys, "availability", "up_time", "down_time", "observed_time",
                   "excluded_time", "unknown_time", "coverage", "incidents"]]
    out = out.rename(columns={"group": by or "group"})
    observed = out["observed_time"].sum() if len(out) else zero
    unknown = out["unknown_time"].sum() if len(out) else zero
    out.attrs = {"policy": policy.as_dict(), "method": policy.describe(), "by": by,
                 "overall": (out["up_time"].sum() / observed) if observed > zero else np.nan,
                 "coverage": float(observed / (observed + unknown))
                 if observed + unknown > zero else np.nan}
    return out


def incidents(intervals: pd.DataFrame, *, by: str | None = "service_id",
              policy: UptimePolicy | None = None, since: TimeLike | None = None,
              until: TimeLike | None = None, window: DurationLike | None = None,
              merge_gap: str | pd.Timedelta = "5min",
              min_duration: str | pd.Timedelta = "1min") -> pd.DataFrame:
    """Find the stretches in which a group was not fully up, under the policy.

    Down stretches closer than ``merge_gap`` are merged into one incident; incidents
    shorter than ``min_duration`` are dropped as blips.

    Parameters
    ----------
    intervals
        Status intervals from :func:`~koyeb_analytics.lifecycles`.
    by
        Column to group by (``"service_id"``, ``"region"``...); None for the fleet.
    policy
        The :class:`UptimePolicy` (default: HEALTHY and SLEEPING up, any replica).
    since, until, window
        The window to measure (``window``: its duration, back from ``until``); by
        default the intervals' own (``attrs``).
    merge_gap, min_duration
        Durations (``"5min"``, a Timedelta, or 0).

    Returns
    -------
    DataFrame
        ``group, start, end, duration, instances, statuses`` (the instances that were
        not up during the incident and the statuses they were in). ``attrs["summary"]``
        holds MTTR and MTBF (median, p90, mean); see :func:`incident_summary`.

    Examples
    --------
    >>> iv = pd.DataFrame({"instance_id": ["a", "a", "a"], "service_id": ["s"] * 3,
    ...     "status": ["HEALTHY", "ERROR", "HEALTHY"],
    ...     "start": pd.to_datetime(["2026-01-01 00:00", "2026-01-01 01:00",
    ...                              "2026-01-01 01:20"], utc=True),
    ...     "end": pd.to_datetime(["2026-01-01 01:00", "2026-01-01 01:20",
    ...                            "2026-01-01 02:00"], utc=True)})
    >>> incidents(iv)["duration"].tolist()
    [Timedelta('0 days 00:20:00')]
    """
    policy = policy or UptimePolicy()
    gap = duration_or_zero(merge_gap, "merge_gap")
    shortest = duration_or_zero(min_duration, "min_duration")
    seg, _ = timelines(intervals, by, policy, since, until, window, None)
    return incidents_from(intervals, seg, by, policy, gap, shortest)


def incidents_from(intervals: pd.DataFrame, seg: pd.DataFrame, by: str | None,
                    policy: UptimePolicy, gap: pd.Timedelta,
                    shortest: pd.Timedelta) -> pd.DataFrame:
    """The table of :func:`incidents`, from the segments of :func:`timeline`."""
    cols = ["group", "start", "end", "duration", "instances", "statuses"]
    down = seg[seg["state"].isin(["down", "degraded"])] if len(seg) else seg
    if down.empty:
        out = _empty({by or "group": _group_dtype(intervals, by), "start": TIME_DTYPE,
                      "end": TIME_DTYPE, "duration": DURATION_DTYPE, "instances": object,
                      "statuses": object})
        out.attrs = {"summary": incident_summary(out), "policy": policy.as_dict(),
                     "merge_gap": gap, "min_duration": shortest}
        return out
    down = down.sort_values(["group", "start"])
    prev_end = down.groupby("group")["end"].shift()
    new = prev_end.isna() | ((down["start"] - prev_end) > gap)
    block = new.cumsum()
    inc = down.groupby(block).agg(group=("group", "first"), start=("start", "min"),
                                  end=("end", "max")).reset_index(drop=True)
    inc["duration"] = inc["end"] - inc["start"]
    inc = inc[inc["duration"] >= shortest].reset_index(drop=True)
    inc["instances"], inc["statuses"] = _members(intervals, inc, by, policy)
    out = inc[cols].rename(columns={"group": by or "group"})
    out.attrs = {"summary": incident_summary(out), "policy": policy.as_dict(),
                 "merge_gap": gap, "min_duration": shortest}
    return out


def _ns(values: pd.Series) -> np.ndarray:
    out: np.ndarray = pd.Series(values).astype("datetime64[ns, UTC]").array.asi8
    return out


def _members(iv: pd.DataFrame, inc: pd.DataFrame, by: str | None,
             policy: UptimePolicy) -> tuple[list[list[str]], list[list[str]]]:
    """Per incident: the instances not up during it (sorted) and their statuses (in
    lifecycle order), found by one interval join, group by group.

    An incident's members are the not-up intervals of its group that touch it
    (``start <= incident end`` and ``end >= incident start``). A group's incidents are
    disjoint and in time order, so both ends are binary searches: linear in the
    intervals plus the pairs found, never incidents times intervals.
    """
    n = len(inc)
    if not n:
        return [], []
    iv = _bare(iv)
    groups = iv[by].astype(object) if by is not None else pd.Series("all", index=iv.index)
    not_up = ~iv["status"].isin(policy.up_statuses).to_numpy()
    g_iv = groups.to_numpy()[not_up]
    ids = iv["instance_id"].astype(object).to_numpy()[not_up]
    st = iv["status"].astype(object).to_numpy()[not_up]
    s_iv, e_iv = _ns(iv["start"][not_up]), _ns(iv["end"][not_up])
    inc_g = inc["group"].astype(object).to_numpy()
    a_inc, b_inc = _ns(inc["start"]), _ns(inc["end"])
    pairs_inc, pairs_iv = [], []
    keys = pd.Index(pd.unique(inc_g))
    code_iv = keys.get_indexer(g_iv)
    code_inc = keys.get_indexer(inc_g)
    for k in range(len(keys)):
        rows = np.flatnonzero(code_inc == k)
        rows = rows[np.argsort(a_inc[rows], kind="stable")]
        mine = np.flatnonzero(code_iv == k)
        if not len(mine):
            continue
        lo = np.searchsorted(b_inc[rows], s_iv[mine], side="left")
        hi = np.searchsorted(a_inc[rows], e_iv[mine], side="right")
        count = np.maximum(hi - lo, 0)
        if not count.sum():
            continue
        which = np.repeat(mine, count)
        first = np.repeat(lo, count)
        step = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        pairs_iv.append(which)
        pairs_inc.append(rows[first + step])
    if not pairs_inc:
        return [[] for _ in range(n)], [[] for _ in range(n)]
    which_inc = np.concatenate(pairs_inc)
    which_iv = np.concatenate(pairs_iv)
    # Each incident's distinct instances in sorted order, and its distinct statuses in
    # lifecycle order: sort the pairs once, drop repeats, cut the result per incident.
    found = pd.DataFrame({"inc": which_inc, "iid": ids[which_iv]}).drop_duplicates()
    found = found.sort_values(["inc", "iid"], kind="stable")
    members = _split(found["iid"].to_numpy(), found["inc"].to_numpy(), n)
    code = pd.Categorical(st[which_iv], categories=list(STATUSES)).codes
    told = pd.DataFrame({"inc": which_inc[code >= 0], "code": code[code >= 0]})
    told = told.drop_duplicates().sort_values(["inc", "code"], kind="stable")
    names = np.asarray(STATUSES, dtype=object)[told["code"].to_numpy()]
    return members, _split(names, told["inc"].to_numpy(), n)


def runs_of(seg: pd.DataFrame) -> pd.DataFrame:
    """Segments of :func:`timeline` as runs of one state per group (excluded time left
    out), with each group's time not up (see ``plots.state_runs``)."""
    seg = seg[(seg["state"] != "excluded").to_numpy()]
    cols = ["group", "start", "end", "state", "not_up"]
    if seg.empty:
        return pd.DataFrame({c: pd.Series(dtype=seg[c].dtype if c in seg else
                                          "timedelta64[us]") for c in cols})
    group, state = seg["group"].to_numpy(), seg["state"].to_numpy(dtype=object)
    start, end = seg["start"].array.asi8, seg["end"].array.asi8
    new = np.ones(len(seg), bool)
    new[1:] = (group[1:] != group[:-1]) | (state[1:] != state[:-1]) | (start[1:] != end[:-1])
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(seg) - 1]
    runs = pd.DataFrame({"group": seg["group"].iloc[first].to_numpy(dtype=object),
                         "start": seg["start"].iloc[first].array,
                         "end": seg["end"].iloc[last].array,
                         "state": seg["state"].iloc[first].array})
    lost = seg["duration"] * (1 - seg["upness"].fillna(1))
    not_up = lost.groupby(seg["group"].to_numpy()).sum()
    runs["not_up"] = runs["group"].map(not_up)
    return runs[cols]


def _split(values: np.ndarray, owner: np.ndarray, n: int) -> list[list[str]]:
    """``values`` (sorted by ``owner``) as one list per owner ``0..n-1``."""
    cuts = np.searchsorted(owner, np.arange(1, n))
    return [part.tolist() for part in np.split(values, cuts)]


def incident_summary(inc: pd.DataFrame) -> dict[str, dict[str, pd.Timedelta | float]]:
    """MTTR (incident durations) and MTBF (time between one incident's end and the
    next one's start, within a group) as median, p90 and mean, plus the count.

    Parameters
    ----------
    inc
        From :func:`incidents`.

    Returns
    -------
    dict
        ``{"mttr": {...}, "mtbf": {...}}``, each with ``count``, ``median``, ``p90``
        and ``mean``. :func:`~koyeb_analytics.recovery` gives the same as a value.

    Examples
    --------
    >>> incident_summary(pd.DataFrame({"start": [], "end": [], "duration": []}))["mttr"]
    {'count': 0, 'median': NaT, 'p90': NaT, 'mean': NaT}
    """
    def stats(values: pd.Series) -> dict[str, Any]:
        if values.empty:
            return {"count": 0, "median": pd.NaT, "p90": pd.NaT, "mean": pd.NaT}
        return {"count": int(len(values)), "median": values.median(),
                "p90": values.quantile(0.9), "mean": values.mean()}

    if inc.empty:
        return {"mttr": stats(pd.Series(dtype="timedelta64[us]")),
                "mtbf": stats(pd.Series(dtype="timedelta64[us]"))}
    key = inc.columns[0]
    ordered = inc.sort_values([key, "start"])
    between = (ordered["start"] - ordered.groupby(key)["end"].shift()).dropna()
    return {"mttr": stats(inc["duration"]), "mtbf": stats(between)}


def capacity(intervals: pd.DataFrame, *, by: str | None = "status",
             since: TimeLike | None = None, until: TimeLike | None = None,
             window: DurationLike | None = None, freq: str = "5min") -> pd.DataFrame:
    """Concurrent instances over time: the time-weighted mean count in each period.

    Parameters
    ----------
    intervals
        Status intervals from :func:`~koyeb_analytics.lifecycles`.
    by
        One column per value of this column (``"status"``), or None for one total.
    since, until, window
        The window to measure (``window``: its duration, back from ``until``); by
        default the intervals' own.
    freq
        The period (``"5min"``, ``"1h"``).

    Returns
    -------
    DataFrame
        Indexed by period start (UTC), one column per value of ``by`` (statuses in
        lifecycle order), or a single ``instances`` column when ``by`` is None. Empty
        (no span with a length), it has no rows and the columns a full one can have:
        the eight statuses, or ``instances``.
        ``attrs``: ``peak`` (the exact maximum of concurrent instances and when it
        began), ``instance_hours`` (per instance type) and ``freq``.

    Examples
    --------
    >>> iv = pd.DataFrame({"instance_id": ["a", "b"], "status": ["HEALTHY", "HEALTHY"],
    ...     "start": pd.to_datetime(["2026-01-01 00:00", "2026-01-01 00:30"], utc=True),
    ...     "end": pd.to_datetime(["2026-01-01 01:00", "2026-01-01 01:00"], utc=True)})
    >>> capacity(iv, freq="30min", by=None)["instances"].tolist()
    [1.0, 2.0]
    """
    iv = intervals
    _check_intervals(iv, by, needs=frozenset({"start", "end"}))
    step = _fixed_step(freq)
    bare = _bare(iv)
    spans = bare[(bare["end"] > bare["start"]).to_numpy()]
    if spans.empty:
        # The columns a full result can have: the statuses for "status", the one total
        # for None (other columns' values are unknown without rows).
        columns = list(STATUSES) if by == "status" else ["instances"] if by is None else []
        out = pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="period").as_unit("us"),
                           columns=pd.Index(columns, dtype=object, name=by), dtype="float64")
        out.attrs = {"peak": {"instances": 0, "at": pd.NaT}, "instance_hours": {}, "freq": freq}
        return out
    lo, hi = _bounds(iv, since, until, window)
    labels = spans[by].astype(object).fillna("unknown") if by is not None else \
        pd.Series("instances", index=spans.index)
    grid = pd.date_range(lo.floor(step), hi, freq=step)
    t = np.concatenate([_naive(spans["start"]), _naive(spans["end"])])
    lab = np.concatenate([labels.to_numpy(), labels.to_numpy()])
    delta = np.r_[np.ones(len(spans)), -np.ones(len(spans))]
    d = pd.DataFrame({"t": t, "label": lab, "d": delta})
    wide = d.pivot_table(index="t", columns="label", values="d", aggfunc="sum", fill_value=0)
    wide.index = pd.DatetimeIndex(wide.index).as_unit("us").tz_localize("UTC")
    wide = wide.reindex(wide.index.union(pd.DatetimeIndex(grid).as_unit("us")), fill_value=0)
    counts = wide.cumsum()
    dur = np.diff(wide.index.asi8, append=wide.index.asi8[-1]) / 1e6  # seconds
    weighted = counts.mul(dur, axis=0)
    period = wide.index.floor(step)
    out = weighted.groupby(period).sum() / step.total_seconds()
    out = out[(out.index >= lo.floor(step)) & (out.index < hi)]
    out.index.name = "period"
    if by == "status":
        out = out[[s for s in STATUSES if s in out.columns] +
                  [c for c in out.columns if c not in STATUSES]]
    out.columns.name = by
    total = counts.sum(axis=1)
    inside = (total.index >= lo) & (total.index < hi)
    at = total[inside].idxmax() if inside.any() else pd.NaT
    hours = (spans["duration"] if "duration" in spans else spans["end"] - spans["start"])
    by_type = hours.groupby(spans["type"].astype(object)).sum() if "type" in spans else hours
    out.attrs = {"peak": {"instances": int(total[inside].max()) if inside.any() else 0,
                          "at": at},
                 "instance_hours": {k: v.total_seconds() / 3600 for k, v in
                                    (by_type.items() if "type" in spans else [])},
                 "freq": freq}
    return out


def crash_loops(intervals: pd.DataFrame, *,
                by: Sequence[str] = ("service_id", "region", "replica_index"),
                since: TimeLike | None = None, until: TimeLike | None = None,
                window: DurationLike | None = None, n: int = 3,
                within: str | pd.Timedelta = "30min") -> pd.DataFrame:
    """Replica slots whose instance ended in ERROR at least ``n`` times within ``within``.

    Parameters
    ----------
    intervals
        Status intervals from :func:`~koyeb_analytics.lifecycles`.
    by
        The columns that name a replica slot.
    since, until, window
        Count only ERRORs that began in this window (``window``: its duration).
    n, within
        How many ERRORs, within how long a stretch, make a crash loop.

    Returns
    -------
    DataFrame
        One row per slot: the slot columns, ``crashes`` (the most ERRORs in any such
        stretch), ``first_at``, ``last_at`` (of all its ERRORs) and ``instances``.

    Examples
    --------
    >>> t = pd.to_datetime(["2026-01-01 00:00", "2026-01-01 00:05", "2026-01-01 00:10"],
    ...                    utc=True)
    >>> iv = pd.DataFrame({"instance_id": ["a", "b", "c"], "service_id": ["s"] * 3,
    ...                    "region": ["fra"] * 3, "replica_index": [0, 0, 0],
    ...                    "status": ["ERROR"] * 3, "start": t, "end": t})
    >>> crash_loops(iv, n=3, within="30min")["crashes"].tolist()
    [3]
    """
    iv = intervals
    _check_intervals(iv, None)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    span = parse_duration(within, "within")
    slot = list(by)
    missing = [c for c in slot if c not in iv]
    if missing:
        raise ValueError(f"by: the slot columns {missing} are not in the intervals")
    errors = iv[iv["status"].astype(object).eq("ERROR")]
    if len(errors) and (since is not None or until is not None or window is not None):
        lo, hi = _bounds(iv, since, until, window)
        errors = errors[(errors["start"] >= lo) & (errors["start"] < hi)]
    errors = errors.sort_values([*slot, "start"]).drop_duplicates("instance_id")
    rows = []
    for key, grp in errors.groupby(slot, sort=True, dropna=False):
        t = _naive(grp["start"])
        lo = np.searchsorted(t, t - span.to_timedelta64(), side="left")
        worst = int((np.arange(len(t)) - lo + 1).max()) if len(t) else 0
        if worst >= n:
            rows.append({**dict(zip(slot, key, strict=True)), "crashes": worst,
                         "first_at": grp["start"].min(), "last_at": grp["start"].max(),
                         "instances": list(grp["instance_id"])})
    if not rows:
        return _empty({**{c: iv[c].dtype for c in slot}, "crashes": "int64",
                       "first_at": TIME_DTYPE, "last_at": TIME_DTYPE, "instances": object})
    out = pd.DataFrame(rows, columns=[*slot, "crashes", "first_at", "last_at", "instances"])
    return out.astype({c: iv[c].dtype for c in slot})


# -- The headline numbers as values ------------------------------------------------
# Each is a function of the intervals returning a small frozen result, so a number a
# report needs never lives only in ``df.attrs`` (which pandas documents as experimental,
# and which ``pd.concat`` drops).


@dataclass(frozen=True)
class Availability:
    """Time-weighted availability under ``method``: of the fleet taken as one group
    (``by=None``) or across groups (``by="service_id"``: each service's own up and
    observed time, summed; the figure reports print)."""

    value: float
    up_time: pd.Timedelta
    down_time: pd.Timedelta
    observed_time: pd.Timedelta
    method: str
    by: str | None = None
    unknown_time: pd.Timedelta = pd.Timedelta(0)

    @property
    def coverage(self) -> float:
        """The share of the time measured whose state is known."""
        known = self.observed_time + self.unknown_time
        return float(self.observed_time / known) if known > pd.Timedelta(0) else 1.0

    def text(self) -> str:
        """``"99.930 % over 98.7 % of service-time; 1.3 % unknown"``."""
        return availability_text(self.value, self.coverage)


def availability_text(value: float, coverage: float) -> str:
    """An availability with the coverage beside it, as reports, the CLI's ``watch`` lines and
    the live view print it: ``"99.930 % over 98.7 % of service-time; 1.3 % unknown"``.

    Examples
    --------
    >>> availability_text(0.9993, 0.987)
    '99.930 % over 98.7 % of service-time; 1.3 % unknown'
    >>> availability_text(float("nan"), 1.0)
    'no observed time'
    """
    if value != value:  # NaN: nothing observed
        return "no observed time"
    text = f"{value:.3%}"
    if coverage < 1:
        text += f" over {coverage:.1%} of service-time; {1 - coverage:.1%} unknown"
    return text.replace("%", " %")


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


def overall_availability(intervals: pd.DataFrame, *, by: str | None = None,
                         policy: UptimePolicy | None = None, since: TimeLike | None = None,
                         until: TimeLike | None = None,
                         window: DurationLike | None = None) -> Availability:
    """Availability of everything in ``intervals``: one of two figures, named by ``by``.

    ``by=None`` takes the fleet as one group: it is up while any instance is up (under
    the policy's ``combine``), so two services down at different times cost nothing
    while the other is up. ``by="service_id"`` sums each service's own up and observed
    time: the figure the report's headline prints ("across services, time-weighted"),
    lower whenever services fail at different times. Time whose state is unknown is
    left out of both (``unknown_time``, ``coverage``).

    Parameters
    ----------
    intervals
        Status intervals from :func:`~koyeb_analytics.lifecycles`.
    by
        None for the fleet as one group, or the column whose groups are summed.
    policy
        The :class:`~koyeb_analytics.UptimePolicy`.
    since, until, window
        The window to measure (``window``: its duration, back from ``until``); by
        default the intervals' own.

    Returns
    -------
    Availability

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     w = ka.load_window(sim.client(), window="12h", progress=False)
    >>> iv = ka.lifecycles(w.instances, w.events)
    >>> a = ka.overall_availability(iv)
    >>> 0 <= a.value <= 1 and a.up_time + a.down_time == a.observed_time
    True
    >>> ka.overall_availability(iv, by="service_id").value <= a.value
    True
    """
    policy = policy or UptimePolicy()
    seg, _ = timelines(intervals, by, policy, since, until, window, None)
    zero = pd.Timedelta(0)
    if seg.empty:
        return Availability(float("nan"), zero, zero, zero, policy.describe(), by)
    counted = ~seg["state"].isin(["excluded", "unknown"])
    observed = seg["duration"][counted].sum()
    up = (seg["duration"] * seg["upness"].fillna(0))[counted].sum()
    unknown = seg["duration"][seg["state"] == "unknown"].sum()
    down = observed - up
    value = float((observed - down) / observed) if observed > zero else float("nan")
    return Availability(value, observed - down, down, observed, policy.describe(), by,
                        unknown)


def error_budget(intervals: pd.DataFrame, *, target: float | None = None,
                 by: str | None = None, policy: UptimePolicy | None = None,
                 since: TimeLike | None = None, until: TimeLike | None = None,
                 window: DurationLike | None = None) -> ErrorBudget:
    """How much of the downtime ``target`` allows was used.

    The budget of one of :func:`overall_availability`'s two figures: ``by=None`` (the
    default) the fleet as one group, ``by="service_id"`` across services, time-weighted
    (the budget the report's headline states).

    Parameters
    ----------
    intervals
        Status intervals from :func:`~koyeb_analytics.lifecycles`.
    target
        The availability objective, a fraction (0.999: "three nines"); by default the
        policy's (``UptimePolicy.target``, itself 0.999 by default).
    by, policy, since, until, window
        As for :func:`overall_availability` (``by="service_id"``: the budget the
        report's headline states).

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
    >>> error_budget(iv, policy=UptimePolicy(target=0.99)).allowed
    Timedelta('0 days 00:14:24')
    """
    policy = policy or UptimePolicy()
    target = policy.target if target is None else target
    if isinstance(target, bool) or not isinstance(target, (int, float)) \
            or not 0 < target < 1:
        raise ValueError(f"target must be a fraction between 0 and 1, got {target!r}")
    a = overall_availability(intervals, by=by, policy=policy, since=since, until=until,
                             window=window)
    return budget_of(a, target)


def availability_from(up: pd.DataFrame, policy: UptimePolicy, by: str | None,
                       ) -> Availability:
    """:func:`overall_availability` from the table :func:`uptime` made (its sums are
    the segments' sums, in whole microseconds: the same figure)."""
    zero = pd.Timedelta(0)
    if up.empty:
        return Availability(float("nan"), zero, zero, zero, policy.describe(), by)
    observed = up["observed_time"].sum()
    down = observed - up["up_time"].sum()
    value = float((observed - down) / observed) if observed > zero else float("nan")
    return Availability(value, observed - down, down, observed, policy.describe(), by,
                        up["unknown_time"].sum())


def budget_of(a: Availability, target: float) -> ErrorBudget:
    allowed = a.observed_time * (1 - target)
    used_share = a.down_time / allowed if allowed > pd.Timedelta(0) else float("nan")
    return ErrorBudget(float(target), allowed, a.down_time,
                       allowed - a.down_time, float(used_share))


def recovery(intervals: pd.DataFrame, *, by: str | None = "service_id",
             policy: UptimePolicy | None = None, since: TimeLike | None = None,
             until: TimeLike | None = None, window: DurationLike | None = None,
             merge_gap: str | pd.Timedelta = "5min",
             min_duration: str | pd.Timedelta = "1min") -> Recovery:
    """MTTR and MTBF of the incidents :func:`~koyeb_analytics.incidents` finds.

    Incidents are per group: per service by default, the fleet as one group with
    ``by=None`` (an incident then means nothing in the fleet was up).

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
                  until: TimeLike | None = None, window: DurationLike | None = None) -> Peak:
    """The exact maximum of concurrent instances, and when it began.

    Parameters
    ----------
    intervals
        Status intervals from :func:`~koyeb_analytics.lifecycles`.
    since, until, window
        The window to look in (``window``: its duration, back from ``until``); by
        default the intervals' own.

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
    return peak_of(cap.attrs["peak"])


def peak_of(peak: dict[str, Any]) -> Peak:
    """A :class:`Peak` from ``capacity(...).attrs["peak"]``."""
    at = peak.get("at")
    return Peak(int(peak.get("instances") or 0), None if at is None or pd.isna(at)
                else pd.Timestamp(at))
