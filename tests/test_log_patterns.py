"""Log patterns: variable parts masked so that one line family is one pattern, what is new
against the hour before, and each incident's top new pattern naming the application
error that caused it (against the simulator's ground truth, several seeds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.analysis._logs import mask
from koyeb_analytics.simulator._story import _KOYEB_BASE, APP_CAUSES, FAMILIES, HEALTH_CHECK
from koyeb_analytics.simulator._vocabulary import STATUSES

NOW = "2026-11-20T12:00:00Z"


@pytest.mark.parametrize(("a", "b"), [
    ("took 12ms at 2026-11-20T10:00:00.123Z", "took 7ms at 2026-01-02T03:04:05Z"),
    ("id 9f0c2a4e-1b2c-4d5e-8f90-123456789abc ok", "id 00000000-aaaa-4bbb-8ccc-dddddddddddd ok"),
    ("peer 10.0.0.1:5432 refused", "peer 192.168.10.200:6379 refused"),
    ("job deadbeefcafe done", "job 0123abcd99 done"),
    ('[20/Nov/2026:10:00:00 +0000] "GET /a/1"', '[01/Jan/2025:23:59:59 +0000] "GET /a/22"'),
    ("ratio 0.337 over 10228", "ratio 1.5 over 3"),
])
def test_variable_parts_are_masked(a, b):
    left, right = mask([a, b]).to_pylist()
    assert left == right and "<*>" in left


def test_words_are_kept():
    assert mask(["KeyError: 'customer_id' in handler"]).to_pylist() == \
        ["KeyError: 'customer_id' in handler"]


def test_one_pattern_per_line_family_of_the_simulator():
    rng = np.random.default_rng(0)
    lines, family = [], []
    platform = range(_KOYEB_BASE, _KOYEB_BASE + len(STATUSES))
    for k, f in enumerate(FAMILIES):
        for a, b, c in rng.integers(0, 2 ** 40, size=(300, 3)).tolist():
            # a status change's line as the invented vocabulary writes it (flags 0: its
            # constant text; the real texts are several families by design)
            lines.append(f.render(a, b, 0 if k in platform else c))
            # the repeated health-check failure is the UNHEALTHY change's text
            family.append(_KOYEB_BASE + STATUSES.index("UNHEALTHY") if k == HEALTH_CHECK
                          else k)
    fam = pd.Series(family)
    patterns = pd.Series(mask(lines).to_pylist())
    per_family = patterns.groupby(fam).nunique()
    assert per_family.max() == 1, [lines[family.index(k)] for k in per_family[per_family > 1].index]
    # and distinct families stay apart (the platform's status texts are constants)
    assert fam.groupby(patterns).nunique().max() == 1


def _logs(rows):
    ts, msg, stream = zip(*rows, strict=True)
    return pd.DataFrame({"ts": pd.to_datetime(list(ts), utc=True), "msg": list(msg),
                         "stream": list(stream), "service_id": "s"})


def test_new_is_against_the_hour_before():
    logs = _logs([("2026-01-01 09:10:00", "GET /x 200 3ms", "stdout"),
                  ("2026-01-01 10:05:00", "GET /x 200 9ms", "stdout"),
                  ("2026-01-01 10:06:00", "ERROR db down after 3 tries", "stderr"),
                  ("2026-01-01 10:07:00", "ERROR db down after 4 tries", "stderr"),
                  ("2026-01-01 08:00:00", "WARN cache cold", "stderr"),
                  ("2026-01-01 10:08:00", "WARN cache cold", "stderr")])
    p = log_patterns = ka.log_patterns(logs, since="2026-01-01 10:00", until="2026-01-01 11:00")
    table = p.set_index("pattern")
    assert table.loc["ERROR db down after <*> tries", "count"] == 2
    assert table.loc["ERROR db down after <*> tries", "new"]
    assert not table.loc["GET /x <*> <*>", "new"]          # seen at 09:10
    assert table.loc["WARN cache cold", "new"]              # 08:00 is more than 1 h before
    assert table.loc["ERROR db down after <*> tries", "level"] == "error"
    assert log_patterns.attrs["baseline"]["lines"] == 1
    assert table["first_seen"].dtype == logs["ts"].dtype
    by = ka.log_patterns(logs, by="service_id")
    assert set(by["service_id"]) == {"s"} and by["count"].sum() == 6


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"by": "nope"}, "not a column"),
    ({"since": "2026-01-02", "until": "2026-01-01"}, "earlier than"),
])
def test_bad_pattern_input(kwargs, match):
    logs = _logs([("2026-01-01 09:10:00", "x", "stdout")])
    with pytest.raises(ValueError, match=match):
        ka.log_patterns(logs, **kwargs)
    with pytest.raises(ValueError, match="lacks"):
        ka.log_patterns(logs.drop(columns="msg"))


def attribution(seed: int, *, days: float = 1, services: int = 6,
                lead: str = "10min") -> list[tuple[bool, str]]:
    """Per application-error incident of a simulated fleet: whether its top new pattern
    is the error line of an application episode behind it (and what it was).

    Single-replica services, so that every flap or crash is an incident."""
    out = []
    with ka.simulate(seed=seed, days=days, services=services, now=NOW,
                     max_replicas=1) as sim:
        c = sim.client()
        since = sim.now - pd.Timedelta(days=days)
        w = ka.load_window(c, since=since, until=sim.now, progress=False)
        inc = ka.analyse(w).incidents
        truth = sim.streams.truth()
        lead_d = pd.Timedelta(lead)
        for _, r in inc.iterrows():
            t = truth[(truth["service_id"] == r["service_id"]) & (truth["start"] <= r["end"])
                      & (truth["end"] >= r["start"] - lead_d)].sort_values("start")
            if t.empty or t.iloc[0]["cause"] not in APP_CAUSES:
                continue
            lo = max(r["start"] - lead_d - pd.Timedelta("1h"), since)
            logs = ka.load_logs(c, service_id=r["service_id"], since=lo, until=r["end"],
                                slices=2, progress=False)
            top = ka.incident_patterns(logs, inc.loc[[r.name]], lead=lead).iloc[0]
            lines = set(t.loc[t["cause"].isin(APP_CAUSES), "error_line"])
            example = top["top_example"] if isinstance(top["top_example"], str) else ""
            out.append((any(line in example for line in lines), example))
    return out


def test_the_top_new_pattern_names_the_application_error():
    results = [hit for seed in range(1, 7) for hit, _ in attribution(seed, days=1.5)]
    assert len(results) >= 20
    assert sum(results) / len(results) >= 0.95, results


def test_resource_usage_from_the_simulators_metrics():
    with ka.simulate(seed=3, days=1, services=3, now=NOW) as sim:
        c = sim.client()
        since, until = "2026-11-20T06:00Z", "2026-11-20T10:00Z"
        inst = ka.load_instances(c, since=since, until=until, progress=False)
        types = ka.load_instance_types(c)
        frames = [ka.load_metrics(c, service_id=s.service_id, since=since, until=until)
                  for s in sim.fleet.services]
    m = pd.concat(frames, ignore_index=True)
    usage = ka.resource_usage(m, instances=inst, instance_types=types)
    assert set(usage["service_id"]) == {s.service_id for s in sim.fleet.services}
    assert (usage["type"] != "unknown").all()
    assert (usage["cpu_p50"] <= usage["cpu_p95"]).all()
    assert (usage["cpu_p95"] <= usage["cpu_max"]).all()
    assert usage["mem_share_max"].between(0, 1).all()
    cpu = m[(m["metric"] == "CPU_TOTAL_PERCENT") & (m["service_id"] == usage["service_id"][0])]
    assert usage["cpu_max"][0] == cpu["value"].max()
    assert usage["http_5xx_share"].between(0, 1).all()
    # latency as served: the highest p99 is a served value, never a new average
    p99 = m[m["metric"] == "HTTP_RESPONSE_TIME_99P"]["value"]
    assert set(usage["latency_p99_max_ms"]) <= set(p99)
    with pytest.raises(ValueError, match="lacks"):
        ka.resource_usage(m.drop(columns="code"))
