"""Charts: assert what was drawn, with the Agg backend."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

import koyeb_analytics as ka  # noqa: E402

from .test_analysis import T0, A, make_iv  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_lifecycles_one_collection_per_status_with_palette():
    iv = make_iv(A)
    ev = pd.DataFrame({"instance_id": ["a1", "a3"], "type": ["x", "y"],
                       "when": [T0 + pd.Timedelta("4h"), T0 + pd.Timedelta("5h")]})
    inc = ka.incidents(iv, merge_gap=0, min_duration=0)
    ax = ka.plot_lifecycles(iv, events=ev, incidents=inc)
    polys = [c for c in ax.collections if isinstance(c, PolyCollection)]
    drawn = {c.get_label(): c for c in polys if c.get_label() in ka.STATUSES}
    assert set(drawn) == {"HEALTHY", "UNHEALTHY", "ERROR", "ALLOCATING"}
    for status, coll in drawn.items():
        assert np.allclose(coll.get_facecolor()[0], to_rgba(ka.STATUS_COLORS[status]))
    assert len(drawn["HEALTHY"].get_paths()) == 4  # a1 twice, a2, a3
    lanes = {round(p.vertices[:, 1].mean()) for p in drawn["HEALTHY"].get_paths()}
    assert lanes == {0, 1, 2}  # three instances, three lanes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == \
        ["ALLOCATING", "HEALTHY", "UNHEALTHY", "ERROR", "incident"]  # the bands, named
    assert any(c.get_label() == "events" for c in ax.collections)
    lo, hi = ax.get_xlim()
    assert hi > lo and ax.get_ylim() == (2.5, -0.5)


def test_incidents_are_shaded():
    iv = make_iv(A)
    inc = ka.incidents(iv, merge_gap=0, min_duration=0)
    before = len(ka.plot_lifecycles(iv).patches)
    after = len(ka.plot_lifecycles(iv, incidents=inc).patches)
    assert after - before == len(inc) == 1


def test_capacity_uptime_and_events_charts():
    iv = make_iv(A)
    cap = ka.capacity(iv, freq="1h")
    ax = ka.plot_capacity(cap)
    fills = ax.collections
    assert len(fills) == len(cap.columns)
    assert np.allclose(fills[list(cap.columns).index("HEALTHY")].get_facecolor()[0][:3],
                       to_rgba(ka.STATUS_COLORS["HEALTHY"])[:3])
    assert "peak 2" in ax.get_title()
    marker = [line for line in ax.get_lines() if line.get_marker() == "v"]
    assert len(marker) == 1 and marker[0].get_ydata()[0] == 2  # the peak, marked
    up = ka.uptime(iv)
    ax = ka.plot_uptime(up)
    assert len(ax.patches) == 1 and ax.patches[0].get_width() == pytest.approx(
        up["availability"].iloc[0] * 100)  # in percent
    assert any("Time-weighted" in t.get_text() for t in ax.texts)
    # The target as a line, the colour rule in the legend, the axis start said.
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["target 99.90%", "at or above target", "below target"]
    assert any(line.get_xdata()[0] == pytest.approx(99.9) for line in ax.get_lines())
    assert "starts at" in ax.get_xlabel()
    below = ka.STATUS_COLORS["ERROR"]  # 97.5% misses 99.9%
    assert np.allclose(ax.patches[0].get_facecolor()[:3], to_rgba(below)[:3])
    daily = ka.uptime(make_iv(A, until=T0 + pd.Timedelta("48h")), freq="1D")
    ax = ka.plot_uptime(daily)
    assert ax.images and ax.images[0].get_array().shape == (1, 2)
    ev = pd.DataFrame({"instance_id": ["a", "b", "c"], "type": ["t1", "t2", "t1"],
                       "when": pd.to_datetime(["2026-11-01T01:00Z", "2026-11-01T02:00Z",
                                               "2026-11-01T03:00Z"])})
    ax = ka.plot_events(ev)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["t1", "t2"]
    assert len(ax.collections[0].get_offsets()) == 3


def test_empty_input_draws_nothing():
    empty = make_iv(A).iloc[:0]
    for fn, arg in [(ka.plot_lifecycles, empty), (ka.plot_capacity, ka.capacity(empty)),
                    (ka.plot_uptime, ka.uptime(empty)), (ka.plot_events, pd.DataFrame())]:
        fig, ax = plt.subplots()
        assert fn(arg, ax=ax) is ax
        assert not ax.collections and not ax.patches and not ax.lines and not ax.images


def test_plots_reuse_the_given_axes_and_never_show(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("show() called"))
    fig, ax = plt.subplots()
    assert ka.plot_lifecycles(make_iv(A), ax=ax) is ax
    assert plt.gcf() is fig and len(plt.get_fignums()) == 1


def test_the_report_leaves_the_backend_and_pyplot_alone(sim, tmp_path):
    # In a notebook the backend is the inline one; writing a report must not switch it
    # to Agg (inline plots would stop showing) nor leave figures open in pyplot.
    import matplotlib
    import matplotlib.pyplot as plt

    from koyeb_analytics.analysis._summary import analyse
    from koyeb_analytics.report._html import write_report

    from .conftest import fast_client

    client = fast_client(sim)
    inst = ka.load_instances(client, window="12h", progress=False)
    ev = ka.load_events(client, window="12h", progress=False)
    before = matplotlib.get_backend()
    matplotlib.use("svg", force=True)
    try:
        open_before = plt.get_fignums()
        write_report(analyse(inst, ev), tmp_path / "r.html")
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == open_before
    finally:
        matplotlib.use(before, force=True)


def test_plots_name_the_input_they_expected():
    iv = make_iv(A)
    with pytest.raises(TypeError, match=r"plot_uptime\(\) expects the frame from ka.uptime"):
        ka.plot_uptime(iv)
    with pytest.raises(TypeError, match="plot_capacity"):
        ka.plot_capacity(iv)
    with pytest.raises(TypeError, match="plot_lifecycles"):
        ka.plot_lifecycles(ka.uptime(iv))
    with pytest.raises(TypeError, match="plot_events"):
        ka.plot_events(iv)
    fig, ax = plt.subplots()
    with pytest.raises(TypeError, match="1 positional argument"):
        ka.plot_lifecycles(iv, ax)
    with pytest.raises(TypeError, match="unexpected keyword argument 'group'"):
        ka.plot_lifecycles(iv, group="region")
    assert ka.plot_lifecycles(iv, ax=ax, by="region") is ax
    plt.close("all")


def test_the_report_names_services_and_puts_the_worst_first(sim, tmp_path):
    import re

    from koyeb_analytics.labels import service_labels

    from .conftest import fast_client

    w = ka.load_window(fast_client(sim), window="3d", progress=False)
    a = ka.analyse(w)
    from koyeb_analytics.report._html import write_report

    html = write_report(a, tmp_path / "r.html").read_text()
    table = re.search(r'<table id="uptime-table">.*?</table>', html, re.S).group(0)
    names = re.findall(r"<code>([^<]+)</code>", table)
    labels = service_labels(w.instances)
    assert names and set(names) <= set(labels.values())
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", table)  # no UUIDs
    values = [float(v) for v in re.findall(r'<td class="num">([\d.]+)%</td>', table)]
    assert values == sorted(values)  # worst first
    ax = ka.plot_uptime(a.uptime, labels=labels)
    assert {t.get_text() for t in ax.get_yticklabels()} <= set(labels.values())
    plt.close("all")


def test_lifecycles_at_fleet_scale_become_one_lane_per_service():
    rows = [(f"i{k}", f"s{k % 3}", k, "HEALTHY", 0, 60) for k in range(600)]
    rows += [("bad", "s0", 0, "ERROR", 30, 30)]
    iv = make_iv(rows)
    fig, ax = plt.subplots(figsize=(6, 3))
    ka.plot_lifecycles(iv, ax=ax)
    assert "601 instances in 3 lanes, one per service" in ax.get_title()
    assert ax.get_ylim() == (2.5, -0.5)
    markers = [c for c in ax.collections if c.get_offsets().shape[0] == 1]
    assert markers  # the instantaneous ERROR, drawn as a marker
    fig, ax = plt.subplots(figsize=(6, 30))
    ka.plot_lifecycles(make_iv(rows[:20]), ax=ax)
    assert "20 instances" in ax.get_title() and "lanes" not in ax.get_title()
    plt.close("all")


def test_the_daily_heatmap_is_anchored_on_the_target_and_marks_partial_days():
    iv = make_iv(A, until=T0 + pd.Timedelta("40h"))
    daily = ka.uptime(iv, freq="1D", policy=ka.UptimePolicy(target=0.99))
    ax = ka.plot_uptime(daily)
    image = ax.images[0]
    assert image.get_clim() == (pytest.approx(0.98), 1.0)  # the target minus a point
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[-1].endswith("*") and not ticks[0].endswith("*")  # 16 h of 24
    assert "partial" in ax.get_xlabel() and "no data" in ax.get_xlabel()
    assert any("%" in t.get_text() for t in ax.texts)  # values in the cells
    plt.close("all")


def test_interactive_lifecycles_hover_what_a_user_asks():
    from koyeb_analytics.plots._interactive import capacity_figure, lifecycles_figure

    iv = make_iv(A)
    fig = lifecycles_figure(iv, labels={"A": "shop/api"})
    statuses = {t.name for t in fig.data}
    assert statuses == set(iv["status"].astype(str))
    for trace in fig.data:
        assert all(k in trace.hovertemplate for k in ("instance", "service", "status", "→"))
        assert all(row[1] == "shop/api" for row in trace.customdata)
    assert fig.layout.xaxis.type == "date"
    cap = capacity_figure(ka.capacity(iv, freq="1h"))
    assert "peak 2" in cap.layout.title.text and len(cap.data) >= 1


def test_lifecycle_lanes_are_named_from_the_intervals_themselves(sim):
    from .conftest import fast_client

    w = ka.load_window(fast_client(sim), window="12h", progress=False)
    iv = ka.lifecycles(w.instances, w.events)
    assert iv["service_name"].notna().all()  # names ride along with the intervals
    fig, ax = plt.subplots(figsize=(10, 40))
    ka.plot_lifecycles(iv, ax=ax)
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks and all("/" in t for t in ticks)
    plt.close("all")
