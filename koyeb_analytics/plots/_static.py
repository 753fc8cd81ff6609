"""Matplotlib charts of lifecycles, capacity, uptime and events.

Every function takes ``ax=None`` (a new figure when None), returns the Axes, never
calls ``show`` or ``savefig`` and never changes rcParams. Empty data returns the Axes
untouched. One status palette serves every chart, one change palette every change marker.

Long because each chart (lifecycles, capacity, availability bars and heatmap, events)
handles its own empty, crowded and marked cases, which read best beside each other.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..analysis._metrics import UptimePolicy, runs_of, timeline
from ..labels import service_labels
from ..schema import STATUSES

STATUS_COLORS: dict[str, str] = {
    "ALLOCATING": "#c6dbef",
    "STARTING": "#6baed6",
    "HEALTHY": "#31a354",
    "UNHEALTHY": "#fd8d3c",
    "STOPPING": "#bdbdbd",
    "STOPPED": "#636363",
    "ERROR": "#de2d26",
    "SLEEPING": "#9e9ac8",
}
"""The one status palette every chart uses."""
UNKNOWN_COLOR = "#f0f0f0"
INCIDENT_COLOR = "#de2d26"
CHANGE_COLORS: dict[str, str] = {"deploy": "#3f007d", "scale": "#08519c", "pause": "#7f2704",
                                 "resume": "#7f2704", "other": "#525252"}
"""Change markers, by kind (dark: they sit on top of the status colours)."""


def change_markers(changes: pd.DataFrame | None) -> pd.DataFrame:
    """The change rows a chart marks: deployments created or failed, and activities
    (a deployment's healthy and superseded rows would double its marker)."""
    if changes is None or len(changes) == 0:
        return pd.DataFrame(columns=["changed_at", "kind", "event", "service_id"])
    _expect(changes, {"changed_at", "kind", "event"}, "change markers", "ka.changes()")
    event = changes["event"].astype(object)
    source = changes["source"].astype(object) if "source" in changes else \
        pd.Series("deployment", index=changes.index)
    keep = event.isin(["created", "failed"]) | source.eq("activity")
    return changes[keep.to_numpy(bool) & changes["changed_at"].notna().to_numpy(bool)]


def _mark_changes(ax: Any, changes: pd.DataFrame | None, y: Any = None) -> list[Any]:
    """Draw change markers (one collection per kind): triangles at ``y`` (a Series
    aligned on the rows, NaN: not drawn), or dashed lines across the axes when None.
    Returns the legend handles."""
    rows = change_markers(changes)
    handles: list[Any] = []
    if not len(rows):
        return handles
    from matplotlib.lines import Line2D

    x = _num(rows["changed_at"])
    kinds = rows["kind"].astype(object).fillna("other").to_numpy()
    ys = None if y is None else np.asarray(y, dtype=float)
    for kind in dict.fromkeys(kinds):
        m = kinds == kind
        if ys is not None:
            m &= np.isfinite(ys)
        if not m.any():
            continue
        color = CHANGE_COLORS.get(str(kind), CHANGE_COLORS["other"])
        label = f"change: {kind}"
        if ys is None:
            ax.vlines(x[m], 0, 1, transform=ax.get_xaxis_transform(), colors=color,
                      linestyles="dashed", linewidths=0.8, label=label, zorder=5)
            handles.append(Line2D([], [], color=color, linestyle="dashed", label=label))
        else:
            ax.scatter(x[m], ys[m], marker="v", s=28, color=color, edgecolors="white",
                       linewidths=0.4, label=label, zorder=6)
            handles.append(Line2D([], [], color=color, marker="v", linestyle="none",
                                  label=label))
    return handles


STATE_COLORS: dict[str, str] = {
    "up": STATUS_COLORS["HEALTHY"],
    "degraded": STATUS_COLORS["UNHEALTHY"],
    "down": STATUS_COLORS["ERROR"],
    "unknown": "#bdbdbd",
}
"""A group's state on a fleet-scale lifecycle chart, in the status palette's colours."""
MAX_LANES = 40
"""Fleet-scale charts draw at most this many groups (the worst; the rule is in the title)."""


def state_runs(intervals: pd.DataFrame, *, by: str = "service_id",
               policy: UptimePolicy | None = None) -> pd.DataFrame:
    """Each group's time as runs of one state, and how long each group was not up.

    The aggregated frame fleet-scale lifecycle charts are drawn from: the segments of
    :func:`~koyeb_analytics.timeline` with neighbours of the same state merged, so a
    month of a service is a few runs, not one span per instance status.
    :func:`~koyeb_analytics.analyse` keeps them as ``Analysis.states``.

    Parameters
    ----------
    intervals
        From :func:`~koyeb_analytics.lifecycles`.
    by
        The group column.
    policy
        The :class:`~koyeb_analytics.UptimePolicy` deciding up and down.

    Returns
    -------
    DataFrame
        ``group, start, end, state, not_up`` (``state``: up, degraded, down or unknown;
        excluded time is left out), ordered by group and start. ``not_up`` is the
        group's time not up over the window (down and the missing share of degraded).
    """
    return runs_of(timeline(intervals, by=by, policy=policy))


def state_lanes(iv: pd.DataFrame, *, by: str, labels: Mapping[Any, str] | None,
                 policy: UptimePolicy | None, max_lanes: int,
                 runs: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[Any], str]:
    """The runs a fleet-scale lifecycle chart draws, its groups (top lane first) and
    its title: every group by name when they fit, else the ``max_lanes`` with the most
    time not up, worst first. The static and the interactive chart share it."""
    if runs is None:
        runs = state_runs(iv, by=by, policy=policy)
    names = labels or {}
    groups = pd.Index(pd.unique(iv[by].dropna().astype(object)))
    lost = runs.groupby("group")["not_up"].first().reindex(groups).fillna(pd.Timedelta(0))
    if len(groups) <= max_lanes:
        shown, cut = sorted(groups, key=lambda g: (names.get(g, str(g)), str(g))), False
    else:
        shown, cut = worst_groups(lost, max_lanes, ascending=False)
    what = by.removesuffix("_id")
    n = iv["instance_id"].nunique()
    if cut:
        title = (f"{what.capitalize()} states: the {len(shown)} of {len(groups)} {what}s "
                 f"with the most time not up, worst first ({n} instances: too many for a "
                 "lane each)")
    else:
        title = (f"{what.capitalize()} states: {n} instances in {len(shown)} lanes, one "
                 f"per {what} (too many for a lane each)")
    return runs[runs["group"].isin(shown).to_numpy()], shown, title


def worst_groups(values: pd.Series, n: int, *, ascending: bool) -> tuple[list[Any], bool]:
    """The ``n`` groups with the worst ``values`` (indexed by group), worst first, and
    whether any group was left out; all groups in their own order when they fit."""
    if len(values) <= n:
        return list(values.index), False
    order = values.sort_values(ascending=ascending, kind="stable", na_position="last")
    return list(order.index[:n]), True


def _axes(ax: Any) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(11, 5))
    return ax


def _num(times: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Matplotlib date numbers (days) of UTC timestamps."""
    from matplotlib import dates as mdates

    values = pd.DatetimeIndex(times).tz_convert("UTC").tz_localize(None)
    out: np.ndarray = mdates.date2num(values.to_numpy())
    return out


def _time_axis(ax: Any) -> None:
    from matplotlib import dates as mdates

    locator = mdates.AutoDateLocator(tz="UTC")
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz="UTC"))
    ax.set_xlabel("time (UTC)")


def _status_legend(ax: Any, statuses: list[str], extra: list[Any] | None = None,
                   **kw: Any) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=STATUS_COLORS.get(s, UNKNOWN_COLOR), label=s) for s in statuses]
    ax.legend(handles=handles + list(extra or []), **kw)


def _expect(data: Any, needs: set[str], fn: str, source: str) -> None:
    """Name what a plot function expected when it is given something else."""
    if data is None or (isinstance(data, pd.DataFrame) and data.empty):
        return  # nothing to draw: the axes come back untouched
    if not isinstance(data, pd.DataFrame) or not needs <= set(data.columns):
        got = list(data.columns) if isinstance(data, pd.DataFrame) else type(data).__name__
        raise TypeError(f"{fn}() expects the frame from {source} (columns "
                        f"{sorted(needs)}); got {got}")


def plot_lifecycles(intervals: pd.DataFrame, *, by: str = "service_id", ax: Any = None,
                    events: pd.DataFrame | None = None, incidents: pd.DataFrame | None = None,
                    lane_height: float = 0.8, labels: Mapping[Any, str] | None = None,
                    changes: pd.DataFrame | None = None,
                    policy: UptimePolicy | None = None, max_lanes: int = MAX_LANES,
                    runs: pd.DataFrame | None = None) -> Any:
    """Draw one swimlane per instance, grouped by ``by``, spans coloured by status; at
    fleet scale, one lane per group coloured by the group's state.

    Spans are drawn as one ``PolyCollection`` per status (never one artist per span), so
    tens of thousands of spans stay fast. ``events`` adds markers on the lanes;
    ``incidents`` (from :func:`~koyeb_analytics.incidents`) shades their stretches;
    ``changes`` (from :func:`~koyeb_analytics.changes`) puts a triangle, coloured by
    kind, on the first lane of the group it changed.

    When the instances are too many for a lane each (under about 3 px a lane), the chart
    summarises: one lane per group, drawn from :func:`state_runs` (up, degraded, down or
    unknown under ``policy``, as the incidents are found), with instantaneous ERRORs as
    markers; beyond ``max_lanes`` groups, only the ``max_lanes`` with the most time not
    up, worst first. The title states which. ``events`` and ``incidents`` are not
    drawn there: the down and degraded runs are where the incidents are.

    Parameters
    ----------
    intervals
        From :func:`~koyeb_analytics.lifecycles`.
    by
        Lanes are grouped (and labelled) by this column.
    ax
        Axes to draw on; a new figure's by default.
    events, incidents, changes
        Optional overlays.
    lane_height
        Height of a lane, in lane units.
    labels
        Names for the values of ``by``; by default the intervals' own ``app/service``
        names when they carry them, short ids otherwise.
    policy
        The :class:`~koyeb_analytics.UptimePolicy` of a fleet-scale chart's states.
    max_lanes
        The most groups a fleet-scale chart draws.
    runs
        The :func:`state_runs` of ``intervals`` under ``policy`` when already at hand
        (``Analysis.states``): the same chart, without computing them again.

    Returns
    -------
    Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import koyeb_analytics as ka
    >>> ax = ka.plot_lifecycles(pd.DataFrame())   # empty: the axes come back untouched
    >>> len(ax.collections)
    0
    """
    iv = intervals
    _expect(iv, {"instance_id", "status", "start", "end"}, "plot_lifecycles",
            "ka.lifecycles()")
    if labels is None and by == "service_id" and iv is not None:
        labels = service_labels(iv.dropna(subset=[c for c in ("service_name",) if c in iv]))

    ax = _axes(ax)
    if iv is None or len(iv) == 0:
        return ax
    from matplotlib.collections import PolyCollection

    keys = [c for c in (by, "replica_index") if c in iv]
    lanes = (iv.groupby("instance_id", sort=False)
             .agg(**{k: (k, "first") for k in keys}, first=("start", "min")))
    lanes = lanes.sort_values([*keys, "first"], kind="stable", na_position="last")
    n_instances = len(lanes)
    # Past about 3 px a lane, one lane per instance is unreadable, and drawing every
    # span costs more than the chart tells: one lane per group, its state over time.
    height_px = ax.figure.get_size_inches()[1] * ax.get_position().height * ax.figure.dpi
    if by in lanes and n_instances * 3 > height_px:
        return _plot_states(iv, ax, by=by, labels=labels, policy=policy,
                            max_lanes=max_lanes, lane_height=lane_height, runs=runs,
                            changes=changes)
    lane_of = pd.Series(np.arange(len(lanes)), index=lanes.index)
    y = iv["instance_id"].map(lane_of).to_numpy(float)
    x0, x1 = _num(iv["start"]), _num(iv["end"])
    # A terminal status is an instant: give it a sliver of width so it shows.
    span = max(x1.max() - x0.min(), 1e-6)
    x1 = np.where(x1 - x0 <= 0, x0 + span / 2000, x1)
    half = lane_height / 2
    status = iv["status"].astype(object).fillna("unknown").to_numpy()
    present = []
    for s in [*STATUSES, "unknown"]:
        m = status == s
        if not m.any():
            continue
        present.append(s)
        verts = np.stack([np.c_[x0[m], y[m] - half], np.c_[x0[m], y[m] + half],
                          np.c_[x1[m], y[m] + half], np.c_[x1[m], y[m] - half]], axis=1)
        color = STATUS_COLORS.get(s, UNKNOWN_COLOR)
        ax.add_collection(PolyCollection(list(verts), facecolors=color, edgecolors="none",
                                         label=s))
    # Instantaneous statuses (an ERROR, a STOPPED) as markers: a sliver would vanish.
    instant = (iv["end"] <= iv["start"]).to_numpy() & np.isin(status, ["ERROR", "STOPPED"])
    for s in ("ERROR", "STOPPED"):
        m = instant & (status == s)
        if m.any():
            ax.scatter(x0[m], y[m], marker="x" if s == "ERROR" else "|", s=14,
                       color=STATUS_COLORS[s], linewidths=0.8, zorder=4)
    extra = []
    if incidents is not None and len(incidents):
        from matplotlib.patches import Patch

        for a, b in zip(_num(incidents["start"]), _num(incidents["end"]), strict=True):
            ax.axvspan(a, b, color=INCIDENT_COLOR, alpha=0.12, lw=0)
        extra.append(Patch(facecolor=INCIDENT_COLOR, alpha=0.25, label="incident"))
    if events is not None and len(events):
        ev = events[events["instance_id"].isin(lane_of.index)]
        ax.scatter(_num(ev["when"]), ev["instance_id"].map(lane_of).to_numpy(float),
                   marker="|", s=30, color="black", linewidths=0.6, label="events", zorder=3)
    if changes is not None and by in lanes and by in changes:
        first_lane = pd.Series(np.arange(len(lanes)), index=lanes[by].to_numpy())
        first_lane = first_lane[~first_lane.index.duplicated()]
        marked = change_markers(changes)
        lane_y = marked[by].map(first_lane) - half
        inside = (_num(marked["changed_at"]) >= x0.min()) & (_num(marked["changed_at"])
                                                              <= x1.max())
        extra += _mark_changes(ax, marked, lane_y.where(inside))
    ax.set_xlim(x0.min(), x1.max())
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    if by in lanes:
        starts = lanes[by].ne(lanes[by].shift()).to_numpy()
        ticks = np.flatnonzero(starts)
        for t in ticks[1:]:  # a line between groups
            ax.axhline(t - 0.5, color="#999999", linewidth=0.5, zorder=1)
        # Labels never overlap: one per group only where there is room for it.
        fig_height = ax.figure.get_size_inches()[1] * ax.get_position().height * 72
        room = max(1, int(np.ceil(len(lanes) * 9 / max(fig_height, 1))))
        kept: list[int] = []
        last = -room
        for t in ticks.tolist():
            if t - last >= room:
                kept.append(t)
                last = t
        ticks = np.asarray(kept, dtype=int)
        ax.set_yticks(ticks)
        ax.set_yticklabels([(labels or {}).get(v, str(v)[:8]) for v in lanes[by].iloc[ticks]],
                           fontsize=7)
        ax.set_ylabel(f"instances by {by}" + ("" if labels else " (short id)"))
    _time_axis(ax)
    _status_legend(ax, [s for s in present if s != "unknown"], extra=extra,
                   loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_title(f"Instance lifecycles ({n_instances} instances, {len(iv)} spans)")
    return ax


def _plot_states(iv: pd.DataFrame, ax: Any, *, by: str, labels: Mapping[Any, str] | None,
                 policy: UptimePolicy | None, max_lanes: int, lane_height: float,
                 runs: pd.DataFrame | None, changes: pd.DataFrame | None = None) -> Any:
    """The fleet-scale lifecycle chart: a lane per group (the worst ``max_lanes``)."""
    from matplotlib.collections import PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    runs, shown, title = state_lanes(iv, by=by, labels=labels, policy=policy,
                                      max_lanes=max_lanes, runs=runs)
    names = labels or {}
    lane = pd.Series(np.arange(len(shown)), index=pd.Index(shown, dtype=object))
    y = runs["group"].map(lane).to_numpy(float)
    x0, x1 = _num(runs["start"]), _num(runs["end"])
    half = lane_height / 2
    drawn: list[Any] = []
    for state, color in STATE_COLORS.items():
        m = (runs["state"] == state).to_numpy()
        if not m.any():
            continue
        drawn.append(Patch(facecolor=color, label=state))
        verts = np.stack([np.c_[x0[m], y[m] - half], np.c_[x0[m], y[m] + half],
                          np.c_[x1[m], y[m] + half], np.c_[x1[m], y[m] - half]], axis=1)
        ax.add_collection(PolyCollection(list(verts), facecolors=color, edgecolors="none",
                                         label=state))
    # Crashes (an instant in ERROR) on their group's lane: a down run may hide them.
    crash = (iv["end"] <= iv["start"]).to_numpy() & \
        iv["status"].astype(object).eq("ERROR").to_numpy() & \
        iv[by].isin(lane.index).to_numpy()
    if crash.any():
        ax.scatter(_num(iv["start"][crash]), iv[by][crash].map(lane).to_numpy(float),
                   marker="x", s=14, color="black", linewidths=0.8, zorder=4)
        drawn.append(Line2D([], [], marker="x", color="black", linestyle="none",
                            label="crash (ERROR)"))
    lo, hi = _num(iv["start"]).min(), _num(iv["end"]).max()
    if changes is not None and by in changes:
        # On their group's lane, as on the per-instance chart's first lane of a group.
        marked = change_markers(changes)
        at = _num(marked["changed_at"])
        drawn += _mark_changes(ax, marked, (marked[by].map(lane) - half).where(
            (at >= lo) & (at <= hi)))
    ax.set_xlim(lo, hi if hi > lo else lo + 1 / 24)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_yticks(np.arange(len(shown)))
    ax.set_yticklabels([names.get(g, str(g)[:8]) for g in shown], fontsize=7)
    what = by.removesuffix("_id")
    ax.set_ylabel(what + ("" if labels else " (short id)"))
    _time_axis(ax)
    ax.legend(handles=drawn, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
              frameon=False, title=f"{what} state")
    ax.set_title(title)
    return ax


def plot_capacity(capacity: pd.DataFrame, *, ax: Any = None,
                  changes: pd.DataFrame | None = None) -> Any:
    """Stacked step areas of concurrent instances over time (from :func:`capacity`).

    Parameters
    ----------
    capacity
        From :func:`~koyeb_analytics.capacity`.
    ax
        Axes to draw on; a new figure's by default.
    changes
        From :func:`~koyeb_analytics.changes`: a dashed line at each, coloured by kind.

    Returns
    -------
    Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     w = ka.load_window(sim.client(), window="12h", progress=False)
    >>> iv = ka.lifecycles(w.instances, w.events)
    >>> ax = ka.plot_capacity(ka.capacity(iv, freq="1h"))
    >>> len(ax.collections) > 0
    True
    """
    cap = capacity
    if cap is not None and (not isinstance(cap, pd.DataFrame) or (
            not cap.empty and not isinstance(cap.index, pd.DatetimeIndex))):
        raise TypeError("plot_capacity() expects the frame from ka.capacity() (periods as "
                        f"a DatetimeIndex); got {type(cap).__name__}")
    ax = _axes(ax)
    if cap is None or cap.empty or cap.shape[1] == 0:
        return ax
    x = _num(cap.index)
    colors = [STATUS_COLORS.get(str(c), None) for c in cap.columns]
    ax.stackplot(x, cap.to_numpy().T, labels=[str(c) for c in cap.columns], step="post",
                 colors=colors if all(colors) else None, alpha=0.9)
    ax.set_xlim(x.min(), x.max())
    ax.set_ylim(0, None)
    ax.set_ylabel(f"concurrent instances (mean per {cap.attrs.get('freq', 'period')})")
    peak = cap.attrs.get("peak")
    title = "Capacity"
    if peak and peak.get("instances"):
        title += f" (peak {peak['instances']} at {pd.Timestamp(peak['at']):%Y-%m-%d %H:%M} UTC)"
        # The instantaneous peak, which bucket means smooth away, marked where it was.
        at = _num(pd.DatetimeIndex([pd.Timestamp(peak["at"])]))[0]
        ax.plot([at], [peak["instances"]], marker="v", color="black", markersize=6,
                label=f"peak: {peak['instances']} at once")
        ax.set_ylim(0, peak["instances"] * 1.1)
    if changes is not None:
        rows = change_markers(changes)
        t = _num(rows["changed_at"]) if len(rows) else np.empty(0)
        _mark_changes(ax, rows[(t >= x.min()) & (t <= x.max())] if len(rows) else rows)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    _time_axis(ax)
    return ax


def plot_uptime(uptime: pd.DataFrame, *, ax: Any = None,
                labels: Mapping[Any, str] | None = None,
                changes: pd.DataFrame | None = None, max_groups: int = MAX_LANES) -> Any:
    """Availability per group as bars, or per group and period as a heatmap.

    The policy's method is printed under the chart. With ``changes`` (from
    :func:`~koyeb_analytics.changes`), each heatmap cell whose group changed in that
    period gets a triangle in its corner, and each bar says how many changes its group
    had. Beyond ``max_groups`` groups, only the ``max_groups`` with the lowest
    availability over the whole table (up time over observed time, summed over its
    periods) are drawn, worst first, and the title says so.

    Parameters
    ----------
    uptime
        From :func:`~koyeb_analytics.uptime` (with ``freq``: a heatmap).
    ax
        Axes to draw on; a new figure's by default.
    labels
        Names for the groups (``names.service_labels(inst)``); short ids otherwise.
    changes
        Optional change markers.
    max_groups
        The most groups drawn.

    Returns
    -------
    Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     w = ka.load_window(sim.client(), window="12h", progress=False)
    >>> iv = ka.lifecycles(w.instances, w.events)
    >>> ax = ka.plot_uptime(ka.uptime(iv))
    >>> len(ax.patches) == ka.uptime(iv)["service_id"].nunique()
    True
    """
    up = uptime
    _expect(up, {"availability"}, "plot_uptime", "ka.uptime()")
    ax = _axes(ax)
    if up is None or len(up) == 0:
        return ax
    by = up.attrs.get("by") or up.columns[0]
    names = labels or {}
    what = "service" if by == "service_id" else str(by)
    sums = up.groupby(by, sort=False)[["up_time", "observed_time"]].sum() \
        if {"up_time", "observed_time"} <= set(up.columns) else None
    if sums is not None:
        seen = sums["observed_time"].where(sums["observed_time"] > pd.Timedelta(0))
        overall = sums["up_time"] / seen
    else:
        overall = up.groupby(by, sort=False)["availability"].mean()
    shown, cut = worst_groups(overall, max_groups, ascending=True)
    rule = (f": the {len(shown)} of {len(overall)} {what}s with the lowest availability, "
            "worst first" if cut else "")
    if cut:
        rank = pd.Series(np.arange(len(shown)), index=pd.Index(shown, dtype=object))
        up = up[up[by].isin(rank.index).to_numpy()]
        up = up.iloc[np.argsort(up[by].map(rank).to_numpy(), kind="stable")]
    group_labels = up[by].map(lambda v: names.get(v, str(v)[:8]))
    if "period" in up:
        import matplotlib as mpl

        policy = up.attrs.get("policy") or {}
        target = float(policy.get("target", 0.999))
        grid = up.assign(label=group_labels).pivot_table(
            index="label", columns="period", values="availability", aggfunc="mean",
            dropna=False)
        if cut:  # worst first, as the title says
            grid = grid.reindex(pd.unique(group_labels))
        observed = up.groupby("period")["observed_time"].max()
        values = grid.to_numpy(float)
        # One scale for every report: anchored on the target, a point below it red.
        cmap = mpl.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap,
                          vmin=target - 0.01, vmax=1.0, interpolation="nearest")
        ax.set_yticks(range(len(grid.index)))
        ax.set_yticklabels(grid.index, fontsize=7)
        ax.set_xticks(range(len(grid.columns)))
        # A period observed for less time than the fullest one (the window's first and
        # last days, usually) is partial: marked with a star.
        full = observed.max()
        ax.set_xticklabels([f"{pd.Timestamp(p):%m-%d}" + ("*" if observed.get(p) < full
                                                          else "") for p in grid.columns],
                           fontsize=7, rotation=90)
        if values.size <= 400:  # values readable in the cells
            for (i, j), v in np.ndenumerate(values):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2%}", ha="center", va="center", fontsize=5)
        rows = change_markers(changes) if changes is not None and by in changes else None
        if rows is not None and len(rows):
            step = pd.Series(grid.columns).diff().median() if len(grid.columns) > 1 else \
                pd.Timedelta("1D")
            period = pd.DatetimeIndex(grid.columns)
            col = period.searchsorted(rows["changed_at"], side="right") - 1
            end_ok = (rows["changed_at"] < period[-1] + step).to_numpy(bool) \
                if len(period) else np.zeros(len(rows), bool)
            label_of = dict(zip(up[by], group_labels, strict=False))
            row_of = {g: i for i, g in enumerate(grid.index)}
            cells = {(row_of[label_of[g]], int(c)) for g, c, ok in zip(
                rows[by], col, end_ok, strict=True) if ok and c >= 0 and g in label_of}
            if cells:
                ys, xs = zip(*sorted(cells), strict=True)
                ax.scatter(np.asarray(xs) + 0.35, np.asarray(ys) - 0.3, marker="v", s=10,
                           color=CHANGE_COLORS["deploy"], label="changed", zorder=5)
        bar = ax.figure.colorbar(image, ax=ax, label="availability")
        bar.ax.axhline(target, color="black", linewidth=1)
        bar.ax.set_title(f"target\n{target:.2%}", fontsize=6)
        ax.set_xlabel("* partial period; grey: no data; colours from the target "
                      f"({target:.2%}) minus a point (red) to 100% (green)", fontsize=7)
        ax.set_title("Availability per period" + rule)
    else:
        from matplotlib.patches import Patch
        from matplotlib.ticker import PercentFormatter

        policy = up.attrs.get("policy") or {}
        target = float(policy.get("target", 0.999))
        values = up["availability"].to_numpy(float) * 100
        met = np.nan_to_num(values) >= target * 100
        ax.barh(np.arange(len(up)), values, color=[
            STATUS_COLORS["HEALTHY"] if ok else STATUS_COLORS["ERROR"] for ok in met])
        ax.set_yticks(np.arange(len(up)))
        ax.set_yticklabels(group_labels, fontsize=7)
        ax.invert_yaxis()
        low = np.nanmin(values) if np.isfinite(values).any() else 0.0
        start = max(0.0, min(low, target * 100) - 0.5)
        ax.set_xlim(start, 100.0)
        ax.xaxis.set_major_formatter(PercentFormatter(100, decimals=2))
        rows = change_markers(changes) if changes is not None and by in changes else None
        if rows is not None and len(rows):
            counts = rows.groupby(rows[by].astype(object))["change_id"].nunique() \
                if "change_id" in rows else rows.groupby(rows[by].astype(object)).size()
            for i, g in enumerate(up[by]):
                n = int(counts.get(g, 0))
                if n:
                    ax.text(100.0, i, f" {n} change{'s' if n > 1 else ''}", va="center",
                            ha="left", fontsize=6, color=CHANGE_COLORS["deploy"],
                            clip_on=False, gid="change-count")
        line = ax.axvline(target * 100, color="black", linestyle="--", linewidth=1)
        ax.legend([line, Patch(color=STATUS_COLORS["HEALTHY"]),
                   Patch(color=STATUS_COLORS["ERROR"])],
                  [f"target {target:.2%}", "at or above target", "below target"],
                  loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
        ax.set_xlabel("availability" + (f" (the axis starts at {start:.1f}%, not 0)"
                                        if start > 0 else ""))
        ax.set_title("Availability per " + what + rule)
    method = up.attrs.get("method")
    if method:
        # Wrapped by characters, for the axes' width: matplotlib's own wrapping measures
        # the sentence again at every draw, the slowest part of the chart.
        width = ax.figure.get_size_inches()[0] * ax.get_position().width
        ax.annotate(textwrap.fill(method, max(40, int(width * 17))), xy=(0, -0.12),
                    xycoords="axes fraction", fontsize=7, va="top")
    return ax


def plot_events(events: pd.DataFrame, *, ax: Any = None) -> Any:
    """A strip timeline of events: one row per event type, a tick per event.

    Parameters
    ----------
    events
        From :func:`~koyeb_analytics.load_events`.
    ax
        Axes to draw on; a new figure's by default.

    Returns
    -------
    Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     w = ka.load_window(sim.client(), window="12h", progress=False)
    >>> iv = ka.lifecycles(w.instances, w.events)
    >>> ax = ka.plot_events(w.events)
    >>> ax.get_title().startswith("Events")
    True
    """
    _expect(events, {"when", "type"}, "plot_events", "ka.load_events()")
    ax = _axes(ax)
    if events is None or len(events) == 0:
        return ax
    types = sorted(events["type"].astype(str).unique())
    row = {t: i for i, t in enumerate(types)}
    x = _num(events["when"])
    ax.scatter(x, events["type"].astype(str).map(row).to_numpy(float), marker="|", s=60,
               color="black", linewidths=0.7)
    ax.set_yticks(range(len(types)))
    ax.set_yticklabels(types, fontsize=8)
    ax.set_ylim(len(types) - 0.5, -0.5)
    ax.set_xlim(x.min(), x.max() if x.max() > x.min() else x.min() + 1 / 24)
    ax.set_title(f"Events ({len(events)})")
    _time_axis(ax)
    return ax
