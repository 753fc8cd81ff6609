"""The incidents' members found by one interval join equal the per-incident loop's.

The loop below is the former implementation, kept here as the reference: for each
incident, every not-up interval of its group that touches it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import koyeb_analytics as ka

from .conftest import NOW, fast_client


def reference(iv: pd.DataFrame, inc: pd.DataFrame, by: str | None,
              policy: ka.UptimePolicy) -> tuple[list, list]:
    keyed = iv.assign(_g=iv[by].astype(object) if by is not None else "all")
    not_up = keyed[~keyed["status"].isin(policy.up_statuses)]
    # The same loop over plain arrays: a frame's filter per incident costs a copy of its
    # attrs each time, and this reference runs on thousands of incidents.
    group = not_up["_g"].to_numpy(object)
    start, end = (_utc(not_up[c]) for c in ("start", "end"))
    iid = not_up["instance_id"].to_numpy(object)
    status = not_up["status"].astype(str).to_numpy(object)
    members, statuses = [], []
    key = by or "group"
    for g, a, b in zip(inc[key], _utc(inc["start"]), _utc(inc["end"]), strict=True):
        hit = (group == g) & (start <= b) & (end >= a)
        members.append(sorted(set(iid[hit])))
        seen = set(status[hit])
        statuses.append([s for s in ka.STATUSES if s in seen])
    return members, statuses


def _utc(times: pd.Series) -> np.ndarray:
    """Tz-aware times as naive UTC nanoseconds, for comparisons on plain arrays."""
    return times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")


def check(iv, **options):
    for by in ("service_id", None):
        for policy in (ka.UptimePolicy(), ka.UptimePolicy(combine="all"),
                       ka.UptimePolicy(combine="fraction", sleeping="down")):
            inc = ka.incidents(iv, by=by, policy=policy, **options)
            members, statuses = reference(iv, inc, by, policy)
            assert inc["instances"].tolist() == members, (by, policy)
            assert inc["statuses"].tolist() == statuses, (by, policy)


@pytest.mark.parametrize("seed, vocabulary", [(1, "invented"), (5, "opaque")])
def test_simulated_fleets(seed, vocabulary):
    with ka.simulate(seed=seed, days=3, services=8, now=NOW, outages=6,
                     vocabulary=vocabulary) as sim:
        w = ka.load_window(fast_client(sim), since=pd.Timestamp(NOW) - pd.Timedelta("2D"),
                           until=NOW, progress=False)
    iv = ka.analyse(w).intervals
    assert len(ka.incidents(iv, merge_gap=0, min_duration=0)) > 3
    check(iv)
    check(iv, merge_gap=0, min_duration=0)


def test_overlapping_incidents_and_the_window_edges():
    t = pd.Timestamp("2026-01-01T00:00Z")

    def at(minutes):
        return t + pd.Timedelta(minutes=minutes)

    rows = [  # one long ERROR interval spanning two incidents of its group (a replica
              # was up between them), intervals touching the window's edges, an unknown
              # stretch, a second group
        ("a", "s", "ERROR", 0, 100), ("b", "s", "HEALTHY", 0, 20),
        ("b", "s", "UNHEALTHY", 20, 40), ("b", "s", "HEALTHY", 40, 60),
        ("b", "s", "STARTING", 60, 100), ("c", "s", None, 90, 100),
        ("f", "s", "STOPPING", 50, 60), ("f", "s", "STOPPED", 60, 60),  # ends as one starts
        ("d", "t", "UNHEALTHY", 0, 5), ("d", "t", "HEALTHY", 5, 95),
        ("d", "t", "ERROR", 95, 100), ("e", "t", "SLEEPING", 0, 100)]
    iv = pd.DataFrame([(i, s, st, at(a), at(b)) for i, s, st, a, b in rows],
                      columns=["instance_id", "service_id", "status", "start", "end"])
    iv["status"] = pd.Categorical(iv["status"], categories=list(ka.STATUSES), ordered=True)
    iv["region"] = "fra"
    check(iv, since=at(0), until=at(100), merge_gap=0, min_duration=0)
    inc = ka.incidents(iv, since=at(0), until=at(100), merge_gap=0, min_duration=0,
                       policy=ka.UptimePolicy(sleeping="down"))
    assert inc["instances"].tolist()[:2] == [["a", "b"], ["a", "b", "c", "f"]]
    assert inc["statuses"].tolist()[1] == ["STARTING", "STOPPING", "STOPPED", "ERROR"]
