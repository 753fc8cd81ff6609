"""Change markers on the lifecycle, capacity (timeline) and availability charts,
matplotlib and interactive: what was drawn, by kind, where."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import koyeb_analytics as ka  # noqa: E402
from koyeb_analytics.plots import capacity_figure, lifecycles_figure  # noqa: E402

T = pd.Timestamp("2026-01-01", tz="UTC")


@pytest.fixture
def frames():
    iv = pd.DataFrame({
        "instance_id": ["a", "a", "b", "c"], "service_id": ["s1", "s1", "s1", "s2"],
        "status": ["HEALTHY", "ERROR", "HEALTHY", "HEALTHY"],
        "start": [T, T + pd.Timedelta("5h"), T, T],
        "end": [T + pd.Timedelta("5h"), T + pd.Timedelta("5h"), T + pd.Timedelta("1D"),
                T + pd.Timedelta("1D")]})
    ch = pd.DataFrame({
        "changed_at": [T + pd.Timedelta(h) for h in ("4h", "4h05min", "6h", "8h", "30h")],
        "service_id": ["s1", "s1", "s2", "s2", "s1"],
        "kind": ["deploy", "deploy", "scale", "deploy", "deploy"],
        "event": ["created", "healthy", "manually-scaled", "created", "created"],
        "source": ["deployment", "deployment", "activity", "deployment", "deployment"],
        "change_id": ["d1", "d1", "a1", "d2", "d3"], "summary": ["image x → y", "", "to 1",
                                                               "env +A", "later"]})
    return iv, ch


def _markers(ax, label):
    return [c for c in ax.collections if c.get_label() == label]


def test_lifecycles_mark_each_change_on_its_groups_first_lane(frames):
    iv, ch = frames
    ax = ka.plot_lifecycles(iv, changes=ch, ax=Figure(figsize=(8, 4)).subplots())
    deploys = _markers(ax, "change: deploy")
    scale = _markers(ax, "change: scale")
    assert len(deploys) == 1 and len(scale) == 1
    # d1 created (its healthy row not doubled) and d2; d3 is after the chart's end
    xy = deploys[0].get_offsets()
    assert len(xy) == 2
    assert sorted(xy[:, 1].tolist()) == [-0.4, 1.6]  # top of s1's lane 0, s2's lane 2
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"change: deploy",
                                                                   "change: scale"}
    plain = ka.plot_lifecycles(iv, ax=Figure().subplots())
    assert not _markers(plain, "change: deploy")


def test_capacity_timeline_draws_a_line_per_change(frames):
    iv, ch = frames
    cap = ka.capacity(iv, freq="1h")
    ax = ka.plot_capacity(cap, changes=ch, ax=Figure().subplots())
    lines = _markers(ax, "change: deploy")
    assert len(lines) == 1 and len(lines[0].get_segments()) == 2
    assert len(_markers(ax, "change: scale")[0].get_segments()) == 1


def test_availability_charts_mark_changes(frames):
    iv, ch = frames
    bars = ka.plot_uptime(ka.uptime(iv), changes=ch, ax=Figure().subplots())
    counts = [t.get_text().strip() for t in bars.texts if t.get_gid() == "change-count"]
    assert sorted(counts) == ["2 changes", "2 changes"]  # s1: d1, d3; s2: a1, d2
    heat = ka.plot_uptime(ka.uptime(iv, freq="1D"), changes=ch, ax=Figure().subplots())
    cells = _markers(heat, "changed")
    assert len(cells) == 1
    # two groups changed on day one; s1's day-two change is outside the window's periods
    assert len(cells[0].get_offsets()) == 2


def test_interactive_charts_hover_what_changed(frames):
    pytest.importorskip("plotly")
    iv, ch = frames
    fig = lifecycles_figure(iv, changes=ch)
    names = [t.name for t in fig.data]
    assert "change: deploy" in names and "change: scale" in names
    deploy = next(t for t in fig.data if t.name == "change: deploy")
    assert len(deploy.x) == 3 and "image x → y" in deploy.text[0]
    cap = capacity_figure(ka.capacity(iv, freq="1h"), changes=ch)
    marks = [t for t in cap.data if str(t.name).startswith("change:")]
    assert sum(len(t.x) for t in marks) == 3 and np.all([y == 0 for t in marks for y in t.y])


def test_fleet_scale_lanes_mark_each_change_on_its_groups_lane(frames):
    iv, ch = frames
    # 400 instances of s1 and s2 in a small figure: a lane per service, not per instance
    many = pd.concat([iv.assign(instance_id=iv["instance_id"] + str(k)) for k in range(100)],
                     ignore_index=True)
    ax = ka.plot_lifecycles(many, changes=ch, ax=Figure(figsize=(6, 2), dpi=60).subplots())
    assert ax.get_ylim() == (1.5, -0.5)  # two lanes: the fleet-scale chart
    deploys = _markers(ax, "change: deploy")
    assert len(deploys) == 1
    assert sorted(deploys[0].get_offsets()[:, 1].tolist()) == [-0.4, 0.6]  # s1's, s2's lane
    fig = lifecycles_figure(many, changes=ch)
    marks = [t for t in fig.data if t.name and t.name.startswith("change: ")]
    assert {t.name for t in marks} == {"change: deploy", "change: scale"}
    assert sum(len(t.x) for t in marks) == 4  # d1, d2, d3 created and a1; not d1 healthy
