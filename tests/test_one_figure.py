"""One definition per headline number: the report, the CLI's summary and the notebook
API print the same figures for the same window, and say which figure they are."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import koyeb_analytics as ka
from koyeb_analytics.report import render_report, text_summary

from .conftest import NOW, fast_client

T0 = pd.Timestamp("2026-01-01T00:00Z")


def at(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def two_services() -> pd.DataFrame:
    # s is down from 10 to 20, t from 30 to 50: never both at once
    rows = [("a", "s", "HEALTHY", 0, 10), ("a", "s", "ERROR", 10, 20),
            ("a", "s", "HEALTHY", 20, 100), ("b", "t", "HEALTHY", 0, 30),
            ("b", "t", "UNHEALTHY", 30, 50), ("b", "t", "HEALTHY", 50, 100)]
    iv = pd.DataFrame([(i, s, st, at(a), at(b)) for i, s, st, a, b in rows],
                      columns=["instance_id", "service_id", "status", "start", "end"])
    iv["status"] = pd.Categorical(iv["status"], categories=list(ka.STATUSES), ordered=True)
    iv.attrs = {"since": at(0), "until": at(100)}
    return iv


def test_the_error_budget_takes_the_policys_target():
    iv = two_services()
    policy = ka.UptimePolicy(target=0.99)
    budget = ka.error_budget(iv, policy=policy)
    assert budget.target == 0.99
    assert budget.allowed == pd.Timedelta(minutes=100) * 0.01
    # an explicit target still wins over the policy's
    assert ka.error_budget(iv, policy=policy, target=0.9).target == 0.9


def test_the_two_fleet_availabilities_have_two_names():
    iv = two_services()
    as_one = ka.overall_availability(iv)
    across = ka.overall_availability(iv, by="service_id")
    assert (as_one.by, across.by) == (None, "service_id")
    assert as_one.value == 1.0                       # one service was always up
    assert across.value == 170 / 200                 # 30 of 200 service-minutes down
    assert across.down_time == pd.Timedelta(minutes=30)
    assert ka.error_budget(iv, by="service_id").used == pd.Timedelta(minutes=30)
    assert ka.error_budget(iv).used == pd.Timedelta(0)


def test_report_cli_and_notebook_print_the_same_figures(tmp_path):
    with ka.simulate(seed=3, days=3, services=6, now=NOW, outages=2) as sim:
        w = ka.load_window(fast_client(sim), since=pd.Timestamp(NOW) - pd.Timedelta("2D"),
                           until=NOW, progress=False)
    policy = ka.UptimePolicy(target=0.995)
    a = ka.analyse(w, policy=policy)
    h = ka.headline(a)
    fleet = ka.overall_availability(a.intervals, by="service_id", policy=policy,
                                    since=a.since, until=a.until)
    budget = ka.error_budget(a.intervals, by="service_id", policy=policy, since=a.since,
                             until=a.until)
    assert h.availability == fleet.value < 1
    assert (h.budget_allowed, h.budget_used) == (budget.allowed, budget.used)
    assert h.target == budget.target == 0.995
    # the per-service table sums to the same figure
    up = a.uptime
    assert 1 - up["down_time"].sum() / up["observed_time"].sum() == fleet.value
    summary = text_summary(a, Path(tmp_path / "r.html"))
    assert f"overall {fleet.value:.3%}" in summary
    html = render_report(a)
    assert "across services," in html and f"{fleet.value:.3%}".replace("%", "") in html
