"""Headroom against the scaling of each service's active deployment: targets against the
service's average, instances against the scaling's max, NaN and the reason where there
is no target; the capacity report shows it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.report import render_report

from .conftest import NOW

T = pd.date_range("2026-11-20 10:00", periods=4, freq="5min", tz="UTC")
GIB = 2.0 ** 30


def _metrics() -> pd.DataFrame:
    rows = []

    def add(metric, iid, sid, values, times=T):
        for t, v in zip(times, values, strict=True):
            rows.append({"ts": t, "metric": metric, "value": float(v), "instance_id": iid,
                         "code": None, "service_id": sid})

    # s1: i0 is the old deployment's, still reporting at the first sample (excluded)
    add("CPU_TOTAL_PERCENT", "i0", "s1", [100], T[:1])
    add("MEM_RSS", "i0", "s1", [GIB], T[:1])
    add("CPU_TOTAL_PERCENT", "i1", "s1", [40, 50, 60, 80])
    add("CPU_TOTAL_PERCENT", "i2", "s1", [60, 70, 80, 100])
    add("CPU_TOTAL_PERCENT", "i3", "s1", [90], T[3:])
    add("MEM_RSS", "i1", "s1", [0.5 * GIB, 0.5 * GIB, 0.6 * GIB, 0.7 * GIB])
    add("MEM_RSS", "i2", "s1", [0.5 * GIB, 0.7 * GIB, 0.6 * GIB, 0.7 * GIB])
    for sid, iids in (("s2", ("j1", "j2")), ("s3", ("k1",)), ("s4", ("l1",))):
        for iid in iids:
            add("CPU_TOTAL_PERCENT", iid, sid, [30, 30, 30, 30])
    return pd.DataFrame(rows)


def _instances() -> pd.DataFrame:
    ids = ["i0", "i1", "i2", "i3", "j1", "j2", "k1", "l1"]
    return pd.DataFrame({
        "id": ids, "service_id": ["s1"] * 4 + ["s2", "s2", "s3", "s4"],
        "type": ["small"] * 8,
        "xyz_deployment_id": ["d0", "d1", "d1", "d1", "d2", "d2", "x", "d4"]})


def _deployments() -> pd.DataFrame:
    def scaling(scopes, lo, hi, targets=None):
        out = {"scopes": [f"region:{r}" for r in scopes], "min": lo, "max": hi}
        if targets is not None:
            out["targets"] = targets
        return out

    old = {"regions": ["fra"], "scalings": [scaling(["fra"], 1, 9, [
        {"average_cpu": {"value": 50}}])]}
    active = {"regions": ["fra", "was"], "scalings": [scaling(["fra", "was"], 1, 2, [
        {"average_cpu": {"value": 80}}, {"average_mem": {"value": 75}}])]}
    fixed = {"regions": ["fra"], "scalings": [scaling(["fra"], 2, 2)]}
    sleepy = {"regions": ["fra"], "scalings": [scaling(["fra"], 0, 1, [
        {"sleep_idle_delay": {"deep_sleep_value": 3900, "light_sleep_value": 300}}])]}
    h = pd.Timedelta("1h")
    return pd.DataFrame({
        "id": ["d0", "d1", "d2", "d4", "d5"],
        "service_id": ["s1", "s1", "s2", "s4", "s1"],
        "status": ["STOPPED", "HEALTHY", "HEALTHY", "HEALTHY", "STASHED"],
        "created_at": [T[0] - 30 * h, T[0] - 2 * h, T[0] - 5 * h, T[0] - 5 * h, T[3]],
        "succeeded_at": [T[0] - 29 * h, T[0] - h, T[0] - 4 * h, T[0] - 4 * h, pd.NaT],
        "terminated_at": [T[0] + pd.Timedelta("2min"), pd.NaT, pd.NaT, pd.NaT, pd.NaT],
        # a stashed definition is never deployed: its targets must not count
        "definition": [old, active, fixed, sleepy, {"scalings": [scaling(["fra"], 1, 1, [
            {"average_cpu": {"value": 10}}])]}]})


@pytest.fixture
def usage() -> pd.DataFrame:
    types = pd.DataFrame({"type": ["small"], "memory_bytes": [GIB]})
    out = ka.resource_usage(_metrics(), instances=_instances(), instance_types=types,
                            deployments=_deployments())
    return out.set_index("service_id")


def test_headroom_against_the_active_deployments_targets(usage):
    s1 = usage.loc["s1"]
    # averages over the active deployment's instances: 50, 60, 70, 90; p95 = 87
    assert s1["cpu_target"] == 80
    assert s1["cpu_headroom"] == pytest.approx(80 - 87)
    assert s1["cpu_above_target"] == pytest.approx(0.25)
    # memory in percent of 1 GiB: averages 50, 60, 60, 70; p95 = 68.5
    assert s1["mem_target"] == 75
    assert s1["mem_headroom"] == pytest.approx(75 - 68.5)
    assert s1["mem_above_target"] == 0
    # max 2 in each of two regions; three instances at once at the last sample
    assert (s1["max_instances"], s1["instances_peak"], s1["instances_headroom"]) == (4, 3, 1)
    assert s1["headroom_note"] == ""


def test_services_without_targets_get_nan_and_the_reason(usage):
    s2, s3, s4 = usage.loc["s2"], usage.loc["s3"], usage.loc["s4"]
    for row in (s2, s3, s4):
        assert np.isnan([row[c] for c in ("cpu_target", "cpu_headroom", "cpu_above_target",
                                          "mem_target", "mem_headroom")]).all()
    assert "no average_cpu or average_mem target (fixed at 2 instance(s))" in \
        s2["headroom_note"]
    assert (s2["max_instances"], s2["instances_peak"]) == (2, 2)
    assert "no deployment of the service" in s3["headroom_note"]
    assert np.isnan(s3["max_instances"]) and np.isnan(s3["instances_headroom"])
    assert "scales on sleep_idle_delay" in s4["headroom_note"]


def test_without_the_inputs_headroom_is_nan_and_says_what_is_missing():
    m = _metrics()
    plain = ka.resource_usage(m).set_index("service_id")
    assert plain["cpu_headroom"].isna().all() and plain["max_instances"].isna().all()
    assert set(plain["headroom_note"]) == {"no deployments given (deployments=)"}
    # no instance types: the memory target cannot be compared, the CPU one still is
    no_types = ka.resource_usage(m, instances=_instances(),
                                 deployments=_deployments()).set_index("service_id")
    assert np.isnan(no_types.loc["s1", "mem_headroom"])
    assert "memory share unknown" in no_types.loc["s1", "headroom_note"]
    assert no_types.loc["s1", "cpu_headroom"] == pytest.approx(-7)
    with pytest.raises(ValueError, match=r"deployments lacks the column\(s\) \['definition'\]"):
        ka.resource_usage(m, deployments=_deployments().drop(columns="definition"))


def test_the_capacity_report_shows_headroom_against_the_simulators_scaling():
    with ka.simulate(seed=2, days=1, services=4, now=NOW, autoscale_share=1.0,
                     scale_to_zero_share=0.0) as sim:
        c = sim.client()
        w = ka.load_window(c, since=sim.now - pd.Timedelta("6h"), until=sim.now,
                           progress=False)
        a = ka.analyse(w)
        dep = ka.load_deployments(c, since=w.since, until=w.until, progress=False)
        sid = sim.fleet.services[0].service_id
        metrics = ka.load_metrics(c, service_id=sid, since=w.since, until=w.until,
                                  names=["CPU_TOTAL_PERCENT", "MEM_RSS"])
        usage = ka.resource_usage(metrics, instances=w.instances,
                                  instance_types=ka.load_instance_types(c), deployments=dep)
    row = usage.set_index("service_id").loc[[sid]].iloc[0]
    # the simulator's autoscaling services scale on average_cpu 80, never on memory
    assert row["cpu_target"] == 80 and not np.isnan(row["cpu_headroom"])
    assert row["headroom_note"] == "no average_mem target"
    assert row["max_instances"] >= row["instances_peak"] >= 1
    a.extra["resource_usage"] = usage
    html = render_report(a)
    assert "<th>CPU headroom</th>" in html and "<th>instances of max</th>" in html
    room = row["cpu_headroom"]
    expected = f"{room:.0f} pp under 80%" if room >= 0 else f"{-room:.0f} pp over 80%"
    assert expected in html
    assert f"{row['instances_peak']:.0f} of {row['max_instances']:.0f}" in html
    assert 'title="no average_mem target"' in html
