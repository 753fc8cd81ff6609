"""Charts at fleet scale summarise: a lane per service drawn from its state runs, the
worst services only past a bound (the rule in the title), the same in the notebook's
interactive figure; the availability bars and heatmap keep the worst services."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

import koyeb_analytics as ka  # noqa: E402
from koyeb_analytics.plots._interactive import lifecycles_figure  # noqa: E402
from koyeb_analytics.plots._static import state_runs  # noqa: E402

from .test_analysis import T0, make_iv  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def fleet(services: int = 60, per_service: int = 10) -> pd.DataFrame:
    """``services`` services of ``per_service`` instances, all restarting together for 10
    minutes every hour; service k (k < 5) also has all its instances in ERROR for
    10 * (k + 1) minutes from 2h."""
    rows = []
    for k in range(services):
        for r in range(per_service):
            iid = f"i{k:03d}-{r}"
            for h in range(10):
                if h == 2 and k < 5:
                    rows.append((iid, f"s{k:03d}", r, "ERROR", 120, 130 + 10 * k))
                    rows.append((iid, f"s{k:03d}", r, "HEALTHY", 130 + 10 * k, 170))
                else:
                    rows.append((iid, f"s{k:03d}", r, "HEALTHY", 60 * h, 60 * h + 50))
                rows.append((iid, f"s{k:03d}", r, "STARTING", 60 * h + 50, 60 * h + 60))
    return make_iv(rows)


def test_state_runs_merge_each_services_segments():
    iv = fleet(services=3, per_service=4)
    runs = state_runs(iv)
    # s000's instances restart together: down 10 minutes of every hour, and the ERROR
    # from 2h joins the restart before it; the segments in between merge into one run
    s0 = runs[runs["group"] == "s000"]
    assert s0["state"].iloc[0] == "up" and s0["start"].iloc[0] == T0
    assert s0["state"].tolist() == ["up", "down"] * 10
    assert s0["end"].iloc[3] - s0["start"].iloc[3] == pd.Timedelta(minutes=20)
    assert s0["not_up"].iloc[0] == pd.Timedelta(minutes=110)
    assert runs.loc[runs["group"] == "s002", "not_up"].iloc[0] == pd.Timedelta(minutes=130)
    assert len(runs) < len(iv) / 3  # aggregated: far fewer runs than spans
    assert runs.groupby("group")["start"].is_monotonic_increasing.all()


def test_the_fleet_lifecycle_chart_draws_the_worst_services_from_their_runs():
    iv = fleet()
    fig, ax = plt.subplots(figsize=(8, 4))
    ka.plot_lifecycles(iv, ax=ax, max_lanes=12)
    title = ax.get_title()
    assert "the 12 of 60 services with the most time not up, worst first" in title
    assert "600 instances" in title
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    # s004 lost 10 more minutes than s003, ... : the ERROR stretches rank them
    assert ticks[:5] == ["s004", "s003", "s002", "s001", "s000"]
    assert len(ticks) == 12 and ax.get_ylim() == (11.5, -0.5)
    polys = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert {c.get_label() for c in polys} == {"up", "down"}
    drawn = sum(len(c.get_paths()) for c in polys)
    runs = state_runs(iv)
    assert drawn == int(runs["group"].isin(ticks).sum()) < len(iv) / 10
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["up", "down"]


def test_every_service_gets_a_lane_when_they_fit():
    fig, ax = plt.subplots(figsize=(8, 4))
    ka.plot_lifecycles(fleet(services=12), ax=ax)
    assert "120 instances in 12 lanes, one per service" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"s{k:03d}" for k in range(12)]


def test_the_availability_bars_and_heatmap_keep_the_worst_services():
    iv = fleet(services=50, per_service=2)
    policy = ka.UptimePolicy(target=0.99)
    up = ka.uptime(iv, policy=policy)
    ax = ka.plot_uptime(up, max_groups=8)
    assert len(ax.patches) == 8
    assert "the 8 of 50 services with the lowest availability, worst first" in ax.get_title()
    widths = [p.get_width() for p in ax.patches]
    assert widths == sorted(widths)  # worst first
    lowest = up.nsmallest(8, "availability", keep="first")
    assert widths[0] == pytest.approx(lowest["availability"].iloc[0] * 100)
    daily = ka.uptime(iv, policy=policy, freq="2h")
    fig, ax = plt.subplots()
    ka.plot_uptime(daily, ax=ax, max_groups=8)
    assert ax.images[0].get_array().shape == (8, 5)
    assert "the 8 of 50 services with the lowest availability" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "s004"


def test_the_interactive_lifecycles_summarise_as_the_static_chart():
    iv = fleet(services=40)
    fig = lifecycles_figure(iv, max_lanes=12)
    assert "the 12 of 40 services with the most time not up, worst first" in \
        fig.layout.title.text
    assert {t.name for t in fig.data} == {"up", "down"}
    lanes = list(fig.layout.yaxis.categoryarray)
    assert len(lanes) == 12 and lanes[0].startswith("s004")
    drawn = sum(len(t.x) for t in fig.data)
    assert drawn == int(state_runs(iv)["group"].isin([x.split(" ")[0] for x in lanes]).sum())
    fig, ax = plt.subplots(figsize=(8, 4))
    ka.plot_lifecycles(iv, ax=ax, max_lanes=12)
    assert [t.get_text() for t in ax.get_yticklabels()] == [x.split(" ")[0] for x in lanes]
