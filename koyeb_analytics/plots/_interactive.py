"""Charts to zoom and hover in a notebook (plotly), beside the static matplotlib ones.

plotly is imported when a chart is drawn, never by ``import koyeb_analytics``. The
static charts (``_static``) stay the engine of the HTML report.
Chosen for being the most used interactive library in Jupyter, rendering in
JupyterLab without a server, and hovering thousands of spans without a kernel
round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..analysis._metrics import UptimePolicy
from ..schema import STATUSES
from ._static import (
    CHANGE_COLORS,
    MAX_LANES,
    STATE_COLORS,
    STATUS_COLORS,
    UNKNOWN_COLOR,
    change_markers,
    state_lanes,
)

__all__ = ["capacity_figure", "lifecycles_figure"]


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise ImportError("interactive charts need plotly: pip install "
                          "'koyeb-analytics[interactive]'") from None
    return go


def _change_hover(rows: pd.DataFrame) -> list[str]:
    return [f"{k} {e} at {t:%Y-%m-%d %H:%M:%S} UTC<br>{s}" for k, e, t, s in zip(
        rows["kind"].astype(object), rows["event"].astype(object), rows["changed_at"],
        rows["summary"].astype(object) if "summary" in rows else [""] * len(rows),
        strict=True)]


def _change_traces(go: Any, rows: pd.DataFrame, y: Any) -> list[Any]:
    """One marker trace per change kind, hovering what changed."""
    traces = []
    kinds = rows["kind"].astype(object).fillna("other")
    for kind in dict.fromkeys(kinds):
        part = rows[(kinds == kind).to_numpy()]
        yy = y[(kinds == kind).to_numpy()] if hasattr(y, "__len__") else [y] * len(part)
        traces.append(go.Scatter(
            x=part["changed_at"], y=list(yy), mode="markers", name=f"change: {kind}",
            marker={"symbol": "triangle-down", "size": 10,
                    "color": CHANGE_COLORS.get(str(kind), CHANGE_COLORS["other"])},
            text=_change_hover(part), hovertemplate="%{text}<extra></extra>"))
    return traces


MAX_INSTANCE_LANES = 330
"""Past this many instances (about 3 px a lane in the tallest figure), a lane per group."""


def lifecycles_figure(intervals: pd.DataFrame, *, by: str = "service_id",
                      labels: Mapping[Any, str] | None = None,
                      changes: pd.DataFrame | None = None,
                      policy: UptimePolicy | None = None,
                      max_lanes: int = MAX_LANES) -> Any:
    """Lifecycles to zoom and hover: a lane per instance, grouped by ``by``.

    Hovering a span shows the instance, its service, the status, start and end.
    ``changes`` (from :func:`~koyeb_analytics.changes`) adds a triangle per change on
    the first lane of its group; hovering it says what changed. Past
    :data:`MAX_INSTANCE_LANES` instances, as the static chart
    (:func:`~koyeb_analytics.plot_lifecycles`) does: a lane per group coloured by its
    state under ``policy``, the ``max_lanes`` groups with the most time not up when
    there are more, worst first, the rule in the title.

    Parameters
    ----------
    intervals
        From :func:`~koyeb_analytics.lifecycles`.
    by
        Lanes are grouped by this column.
    labels
        Names for the values of ``by`` (``names.service_labels(inst)``).
    changes
        Optional change markers.
    policy, max_lanes
        A fleet-scale figure's state rule and its most lanes.

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> iv = pd.DataFrame({"instance_id": ["a", "a"], "service_id": ["s", "s"],
    ...     "status": ["STARTING", "HEALTHY"],
    ...     "start": pd.to_datetime(["2026-01-01 00:00", "2026-01-01 00:05"], utc=True),
    ...     "end": pd.to_datetime(["2026-01-01 00:05", "2026-01-01 01:00"], utc=True)})
    >>> [t.name for t in lifecycles_figure(iv).data]
    ['STARTING', 'HEALTHY']
    """
    go = _plotly()
    fig = go.Figure()
    if intervals is None or len(intervals) == 0:
        return fig
    if by in intervals and intervals["instance_id"].nunique() > MAX_INSTANCE_LANES:
        return _states_figure(go, intervals, by=by, labels=labels, policy=policy,
                              max_lanes=max_lanes, changes=changes)
    iv = intervals.copy()
    names = labels or {}
    group = iv[by].map(lambda v: names.get(v, str(v)[:8])) if by in iv else \
        pd.Series("", index=iv.index)
    order = iv.assign(_g=group).groupby("instance_id", sort=False).agg(
        g=("_g", "first"), first=("start", "min")).sort_values(["g", "first"])
    lane = {iid: f"{g} · {iid[:8]}" for iid, g in zip(order.index, order["g"], strict=True)}
    iv["lane"] = iv["instance_id"].map(lane)
    iv["group"] = group
    # Instants (an ERROR) get a visible sliver; their hover keeps the true end.
    shown_end = iv["end"].where(iv["end"] > iv["start"],
                                iv["start"] + pd.Timedelta(seconds=30))
    for status in [*STATUSES, None]:
        part = iv[iv["status"].isna()] if status is None else \
            iv[iv["status"].astype(object) == status]
        if part.empty:
            continue
        width = (shown_end[part.index] - part["start"]).dt.total_seconds() * 1000
        fig.add_trace(go.Bar(
            y=part["lane"], x=width, base=part["start"], orientation="h",
            name=status or "unknown",
            marker_color=STATUS_COLORS.get(status or "", UNKNOWN_COLOR),
            customdata=list(zip(part["instance_id"], part["group"],
                                part["start"].dt.strftime("%Y-%m-%d %H:%M:%S"),
                                part["end"].dt.strftime("%Y-%m-%d %H:%M:%S"),
                                strict=True)),
            hovertemplate=("instance %{customdata[0]}<br>service %{customdata[1]}<br>"
                           f"status {status or 'unknown'}<br>"
                           "%{customdata[2]} → %{customdata[3]} UTC<extra></extra>")))
    rows = change_markers(changes) if changes is not None and by in iv else None
    if rows is not None and len(rows) and by in rows:
        rank = {iid: k for k, iid in enumerate(order.index)}
        top = (iv.assign(_r=iv["instance_id"].map(rank)).sort_values("_r")
               .drop_duplicates(by).set_index(by)["lane"])  # each group's first lane
        where = rows[by].map(top)
        rows = rows[where.notna().to_numpy()]
        for trace in _change_traces(go, rows, where[where.notna()].to_numpy()):
            fig.add_trace(trace)
    fig.update_layout(barmode="overlay", title=f"Instance lifecycles ({len(lane)} instances)",
                      xaxis={"type": "date", "title": "time (UTC)"},
                      yaxis={"categoryorder": "array", "categoryarray": list(lane.values()),
                             "autorange": "reversed", "showticklabels": len(lane) <= 60},
                      height=min(1200, 200 + 14 * len(lane)), legend={"title": "status"})
    return fig


def _states_figure(go: Any, intervals: pd.DataFrame, *, by: str,
                   labels: Mapping[Any, str] | None, policy: UptimePolicy | None,
                   max_lanes: int, changes: pd.DataFrame | None = None) -> Any:
    """A lane per group, its state over time (the fleet-scale lifecycles)."""
    runs, shown, title = state_lanes(intervals, by=by, labels=labels, policy=policy,
                                      max_lanes=max_lanes)
    names = labels or {}
    what = by.removesuffix("_id")
    lane = {g: f"{names.get(g, str(g)[:8])} · {str(g)[:8]}" for g in shown}
    fig = go.Figure()
    for state, color in STATE_COLORS.items():
        part = runs[(runs["state"] == state).to_numpy()]
        if part.empty:
            continue
        width = (part["end"] - part["start"]).dt.total_seconds() * 1000
        fig.add_trace(go.Bar(
            y=part["group"].map(lane), x=width, base=part["start"], orientation="h",
            name=state, marker_color=color,
            customdata=list(zip(part["group"].map(lambda g: names.get(g, str(g))),
                                part["start"].dt.strftime("%Y-%m-%d %H:%M:%S"),
                                part["end"].dt.strftime("%Y-%m-%d %H:%M:%S"),
                                strict=True)),
            hovertemplate=(f"{what} %{{customdata[0]}}<br>{state}<br>"
                           "%{customdata[1]} → %{customdata[2]} UTC<extra></extra>")))
    rows = change_markers(changes) if changes is not None else None
    if rows is not None and len(rows) and by in rows:
        where = rows[by].map(lane)  # on the lane of the group it changed
        for trace in _change_traces(go, rows[where.notna().to_numpy()],
                                    where[where.notna()].to_numpy()):
            fig.add_trace(trace)
    fig.update_layout(barmode="overlay", title=title,
                      xaxis={"type": "date", "title": "time (UTC)"},
                      yaxis={"categoryorder": "array", "categoryarray": list(lane.values()),
                             "autorange": "reversed"},
                      height=min(1200, 200 + 14 * len(lane)),
                      legend={"title": f"{what} state"})
    return fig


def capacity_figure(capacity: pd.DataFrame, *,
                    changes: pd.DataFrame | None = None) -> Any:
    """Concurrent instances over time to zoom and hover, stacked by column.

    Parameters
    ----------
    capacity
        From :func:`~koyeb_analytics.capacity`.
    changes
        From :func:`~koyeb_analytics.changes`: a triangle at each on the time axis,
        hovering what changed.

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> cap = pd.DataFrame({"HEALTHY": [1.0, 2.0]}, index=pd.date_range(
    ...     "2026-01-01", periods=2, freq="1h", tz="UTC"))
    >>> len(capacity_figure(cap).data)
    1
    """
    go = _plotly()
    fig = go.Figure()
    if capacity is None or capacity.empty:
        return fig
    for col in capacity.columns:
        fig.add_trace(go.Scatter(
            x=capacity.index, y=capacity[col], name=str(col), stackgroup="one",
            line={"shape": "hv", "color": STATUS_COLORS.get(str(col))},
            hovertemplate=f"{col}: %{{y:.1f}} at %{{x}}<extra></extra>"))
    rows = change_markers(changes) if changes is not None else None
    if rows is not None and len(rows):
        inside = rows[(rows["changed_at"] >= capacity.index.min())
                      & (rows["changed_at"] <= capacity.index.max())]
        for trace in _change_traces(go, inside, 0):
            fig.add_trace(trace)
    peak = capacity.attrs.get("peak") or {}
    title = "Capacity"
    if peak.get("instances"):
        title += f" (peak {peak['instances']} at {pd.Timestamp(peak['at']):%Y-%m-%d %H:%M} UTC)"
    fig.update_layout(title=title, xaxis={"title": "time (UTC)"},
                      yaxis={"title": "concurrent instances"})
    return fig
