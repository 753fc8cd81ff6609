"""``analyse`` computes uptime, the daily table and the incidents from one pass over the
span edges, finds the incidents once and reads the headline from its own tables: the
same frames, to the nanosecond, as each public function computes alone (and, for the
per-period incident counts, as the former row-by-row lookup below)."""

from __future__ import annotations

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.analysis import _metrics

from .conftest import NOW, fast_client

EXCLUDE = ((pd.Timestamp(NOW) - pd.Timedelta("30h"), pd.Timestamp(NOW) - pd.Timedelta("29h")),)
POLICIES = [ka.UptimePolicy(), ka.UptimePolicy(combine="all"),
            ka.UptimePolicy(combine="fraction", sleeping="down", exclude=EXCLUDE),
            ka.UptimePolicy(no_data="excluded", sleeping="excluded")]


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert repr(a.attrs) == repr(b.attrs)


def per_period_counts(up: pd.DataFrame, inc: pd.DataFrame, by: str) -> list[int]:
    """The former per-row lookup of each (group, period)'s incident count."""
    inc = inc.rename(columns={by: "group"})
    per = inc.assign(period=inc["start"].dt.floor("1D")).groupby(
        ["group", "period"]).size() if len(inc) else pd.Series(dtype=int)
    return [int(per.get((g, p), 0)) for g, p in zip(up[by], up["period"], strict=True)]


def check(w: ka.Window | None, iv: pd.DataFrame | None = None,
          policies: list[ka.UptimePolicy] = POLICIES) -> None:
    for policy in policies:
        a = ka.analyse(w, policy=policy) if w is not None else None
        iv_ = a.intervals if a is not None else iv
        up = ka.uptime(iv_, policy=policy)
        daily = ka.uptime(iv_, policy=policy, freq="1D")
        inc = ka.incidents(iv_, policy=policy)
        if a is not None:
            same(a.uptime, up)
            same(a.daily, daily)
            same(a.incidents, inc)
            h = ka.headline(a)
            fleet = ka.overall_availability(iv_, by="service_id", policy=policy,
                                            since=a.since, until=a.until)
            budget = ka.error_budget(iv_, by="service_id", policy=policy, since=a.since,
                                     until=a.until)
            assert a.availability == fleet
            assert (h.availability, h.coverage, h.unknown_time) == (
                fleet.value, fleet.coverage, fleet.unknown_time)
            assert (h.budget_allowed, h.budget_used, h.budget_left) == (
                budget.allowed, budget.used, budget.left)
            peak = ka.peak_capacity(iv_, since=a.since, until=a.until)
            assert (h.peak_instances, h.peak_at) == (peak.instances, peak.at)
        assert daily["incidents"].tolist() == per_period_counts(daily, inc, "service_id")
        # the plain and the per-period segments from one pass, each as timeline() alone
        for by, freq in (("service_id", "1D"), (None, "6h"), ("region", "12h")):
            plain, periodic = _metrics.timelines(iv_, by, policy, None, None, None, freq)
            same(plain, ka.timeline(iv_, by=by, policy=policy))
            same(periodic, ka.timeline(iv_, by=by, policy=policy, freq=freq))
            assert plain["duration"].sum() == periodic["duration"].sum()


@pytest.mark.parametrize("seed, vocabulary, policies", [
    (1, "invented", POLICIES[:2]), (5, "opaque", POLICIES[2:])])
def test_the_shared_pass_gives_each_functions_frames_on_simulated_fleets(seed, vocabulary,
                                                                         policies):
    with ka.simulate(seed=seed, days=3, services=8, now=NOW, outages=6,
                     vocabulary=vocabulary) as sim:
        w = ka.load_window(fast_client(sim), since=pd.Timestamp(NOW) - pd.Timedelta("2D"),
                           until=NOW, progress=False)
    check(w, policies=policies)


def test_the_shared_pass_on_overlapping_incidents_and_the_window_edges():
    t = pd.Timestamp("2026-01-01T00:00Z")

    def at(hours: float) -> pd.Timestamp:
        return t + pd.Timedelta(hours=hours)

    rows = [("a", "s", "ERROR", 0, 30), ("b", "s", "HEALTHY", 0, 20),
            ("b", "s", "UNHEALTHY", 20, 40), ("b", "s", "HEALTHY", 40, 47),
            ("b", "s", "STARTING", 47, 48), ("c", "s", None, 23, 25),
            ("f", "s", "STOPPING", 24, 24.5), ("f", "s", "STOPPED", 24.5, 24.5),
            ("d", "t", "UNHEALTHY", 0, 5), ("d", "t", "HEALTHY", 5, 47.5),
            ("d", "t", "ERROR", 47.5, 48), ("e", "t", "SLEEPING", 0, 48)]
    iv = pd.DataFrame([(i, s, st, at(a), at(b)) for i, s, st, a, b in rows],
                      columns=["instance_id", "service_id", "status", "start", "end"])
    iv["status"] = pd.Categorical(iv["status"], categories=list(ka.STATUSES), ordered=True)
    iv["region"] = "fra"
    iv.attrs = {"since": at(0), "until": at(48)}
    check(None, iv)


def test_analyse_finds_the_incidents_once_and_sorts_the_edges_once(monkeypatch):
    with ka.simulate(seed=1, days=3, services=8, now=NOW, outages=6) as sim:
        w = ka.load_window(fast_client(sim), since=pd.Timestamp(NOW) - pd.Timedelta("2D"),
                           until=NOW, progress=False)
    calls = {"members": 0, "bounds": 0}
    members, bounds = _metrics._members, _metrics._bounds

    def counting_members(*args, **kwargs):
        calls["members"] += 1
        return members(*args, **kwargs)

    def counting_bounds(*args, **kwargs):
        calls["bounds"] += 1
        return bounds(*args, **kwargs)

    monkeypatch.setattr(_metrics, "_members", counting_members)
    monkeypatch.setattr(_metrics, "_bounds", counting_bounds)
    a = ka.analyse(w)
    assert len(a.incidents)
    # one pass for uptime, the daily table and the incidents; one for capacity
    assert calls == {"members": 1, "bounds": 2}
    ka.headline(a)  # read from the analysis' own tables
    assert calls == {"members": 1, "bounds": 2}


class Findings(list):
    """A findings list that counts its deep copies."""

    copies = 0

    def __deepcopy__(self, memo):
        Findings.copies += 1
        return Findings(self)


def test_the_figures_never_copy_the_intervals_attrs():
    # The intervals' attrs can hold a finding per instance: pandas deep-copies attrs into
    # every frame and column an operation makes, so the figures work without them.
    with ka.simulate(seed=1, days=2, services=3, now=NOW, outages=2) as sim:
        w = ka.load_window(fast_client(sim), window="1d", progress=False)
    iv = ka.lifecycles(w.instances, w.events, since=w.since, until=w.until)
    iv.attrs["findings"] = Findings(iv.attrs["findings"] + [
        {"instance_id": f"i{k}", "kind": "no_events", "detail": "x"} for k in range(1000)])
    Findings.copies = 0
    ka.uptime(iv)
    ka.uptime(iv, freq="1D")
    ka.incidents(iv, merge_gap=0, min_duration=0)
    ka.capacity(iv)
    ka.timeline(iv, by=None)
    ka.overall_availability(iv)
    assert Findings.copies == 0
    iv["start"].min()  # any pandas operation on the frame itself still copies them
    assert Findings.copies == 1
