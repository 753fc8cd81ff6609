"""Uptime, incidents, capacity and crash loops on scenarios worked out by hand."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import koyeb_analytics as ka
from koyeb_analytics.schema import status_dtype

T0 = pd.Timestamp("2026-11-01T00:00:00Z")
H = pd.Timedelta(hours=1)
M = pd.Timedelta(minutes=1)


def make_iv(rows, until=T0 + 10 * H):
    """rows: (instance, service, slot, status, start, end); times in minutes from T0."""
    df = pd.DataFrame(rows, columns=["instance_id", "service_id", "replica_index", "status",
                                     "start", "end"])
    df["start"] = (T0 + df["start"].map(lambda m: m * M)).astype("datetime64[us, UTC]")
    end = df["end"].map(lambda m: until if pd.isna(m) else T0 + m * M)
    df["end"] = pd.to_datetime(end, utc=True).astype("datetime64[us, UTC]")
    df["status"] = pd.Categorical(df["status"], dtype=status_dtype())
    df["region"] = "fra"
    df["type"] = "nano"
    df["duration"] = df["end"] - df["start"]
    df["open_ended"] = df["end"] == until
    df.attrs = {"since": T0, "until": until}
    return df


# Service A (10 hours): a1 flaps 4h-5h; a2 crashes at 4h30; a3 replaces it, up at 4h45.
A = [
    ("a1", "A", 0, "HEALTHY", 0, 240), ("a1", "A", 0, "UNHEALTHY", 240, 300),
    ("a1", "A", 0, "HEALTHY", 300, None),
    ("a2", "A", 1, "HEALTHY", 0, 270), ("a2", "A", 1, "ERROR", 270, 270),
    ("a3", "A", 1, "ALLOCATING", 280, 285), ("a3", "A", 1, "HEALTHY", 285, None),
]


def test_uptime_under_each_combine_rule():
    iv = make_iv(A)
    any_ = ka.uptime(iv, policy=ka.UptimePolicy(combine="any")).iloc[0]
    assert any_["down_time"] == 15 * M                       # 4h30-4h45: nobody healthy
    assert any_["availability"] == pytest.approx(1 - 15 / 600)
    all_ = ka.uptime(iv, policy=ka.UptimePolicy(combine="all")).iloc[0]
    assert all_["down_time"] == 60 * M                       # a1's flap, 4h-5h
    frac = ka.uptime(iv, policy=ka.UptimePolicy(combine="fraction")).iloc[0]
    # 4h + 30m x 1/2 + 10m x 0 + 5m x 0 + 15m x 1/2 + 5h = 562.5 of 600 minutes
    assert frac["up_time"] == pytest.approx(562.5 * M, abs=pd.Timedelta("1ms"))
    assert frac["availability"] == pytest.approx(562.5 / 600)
    assert any_["observed_time"] == 600 * M and any_["excluded_time"] == pd.Timedelta(0)


def test_sleeping_policies():
    rows = [("b1", "B", 0, "HEALTHY", 0, 120), ("b1", "B", 0, "SLEEPING", 120, 360),
            ("b1", "B", 0, "HEALTHY", 360, None)]
    iv = make_iv(rows)
    up = ka.uptime(iv, policy=ka.UptimePolicy(sleeping="up")).iloc[0]
    down = ka.uptime(iv, policy=ka.UptimePolicy(sleeping="down")).iloc[0]
    excl = ka.uptime(iv, policy=ka.UptimePolicy(sleeping="excluded")).iloc[0]
    assert up["availability"] == 1.0
    assert down["availability"] == pytest.approx(0.6)
    assert excl["availability"] == 1.0 and excl["excluded_time"] == 240 * M
    assert excl["observed_time"] == 360 * M


def test_maintenance_windows_shrink_the_denominator():
    iv = make_iv(A)
    policy = ka.UptimePolicy(combine="all", exclude=(("2026-11-01T04:00Z", "2026-11-01T05:00Z"),))
    row = ka.uptime(iv, policy=policy).iloc[0]
    assert row["availability"] == 1.0
    assert row["observed_time"] == 540 * M and row["excluded_time"] == 60 * M
    assert "maintenance" in ka.uptime(iv, policy=policy).attrs["method"]


def test_time_without_instances_follows_the_policy():
    rows = [("c1", "C", 0, "HEALTHY", 0, 180), ("c1", "C", 0, "ERROR", 180, 180),
            ("c2", "C", 0, "ALLOCATING", 200, 205), ("c2", "C", 0, "HEALTHY", 205, None)]
    iv = make_iv(rows)
    down = ka.uptime(iv, policy=ka.UptimePolicy(no_data="down")).iloc[0]
    assert down["down_time"] == 25 * M
    excl = ka.uptime(iv, policy=ka.UptimePolicy(no_data="excluded")).iloc[0]
    assert excl["excluded_time"] == 20 * M and excl["down_time"] == 5 * M


def test_incidents_merge_gaps_and_drop_blips():
    rows = [("d1", "D", 0, "HEALTHY", 0, 60), ("d1", "D", 0, "UNHEALTHY", 60, 62),
            ("d1", "D", 0, "HEALTHY", 62, 64), ("d1", "D", 0, "UNHEALTHY", 64, 70),
            ("d1", "D", 0, "HEALTHY", 70, 180), ("d1", "D", 0, "UNHEALTHY", 180, 185),
            ("d1", "D", 0, "HEALTHY", 185, 300), ("d1", "D", 0, "UNHEALTHY", 300, 300.5),
            ("d1", "D", 0, "HEALTHY", 300.5, None)]
    iv = make_iv(rows)
    inc = ka.incidents(iv, merge_gap="5min", min_duration="1min")
    assert list(inc["start"]) == [T0 + 60 * M, T0 + 180 * M]
    assert list(inc["duration"]) == [10 * M, 5 * M]
    assert inc["statuses"].iloc[0] == ["UNHEALTHY"] and inc["instances"].iloc[0] == ["d1"]
    s = inc.attrs["summary"]
    assert s["mttr"]["median"] == 7.5 * M and s["mttr"]["count"] == 2
    assert s["mtbf"]["median"] == 110 * M  # from 1h10 to 3h
    raw = ka.incidents(iv, merge_gap=0, min_duration=0)
    assert len(raw) == 4
    assert ka.uptime(iv).iloc[0]["incidents"] == 2


def test_incidents_under_any_and_all():
    iv = make_iv(A)
    any_ = ka.incidents(iv, policy=ka.UptimePolicy(combine="any"), merge_gap=0, min_duration=0)
    assert list(zip(any_["start"], any_["end"], strict=True)) == [(T0 + 270 * M, T0 + 285 * M)]
    assert set(any_["instances"].iloc[0]) == {"a1", "a2", "a3"}
    all_ = ka.incidents(iv, policy=ka.UptimePolicy(combine="all"), merge_gap=0, min_duration=0)
    assert list(zip(all_["start"], all_["end"], strict=True)) == [(T0 + 240 * M, T0 + 300 * M)]


def test_capacity_is_time_weighted_and_finds_the_peak():
    iv = make_iv(A)
    cap = ka.capacity(iv, freq="1h", by=None)
    assert cap.loc[T0 + 4 * H, "instances"] == pytest.approx(1 + 0.5 + 20 / 60 - 0)
    assert cap.loc[T0, "instances"] == 2
    assert cap.attrs["peak"] == {"instances": 2, "at": T0}
    by_status = ka.capacity(iv, freq="1h")
    assert list(by_status.columns) == ["ALLOCATING", "HEALTHY", "UNHEALTHY"]
    assert by_status.sum(axis=1).round(9).equals(cap["instances"].round(9))
    assert cap.attrs["instance_hours"]["nano"] == pytest.approx((600 + 270 + 320) / 60)


def test_crash_loops():
    rows = [(f"e{i}", "E", 0, "ERROR", m, m) for i, m in enumerate([0, 10, 20])]
    rows += [(f"f{i}", "E", 1, "ERROR", m, m) for i, m in enumerate([0, 40, 80])]
    loops = ka.crash_loops(make_iv(rows), n=3, within="30min")
    assert len(loops) == 1 and loops.iloc[0]["replica_index"] == 0
    assert loops.iloc[0]["crashes"] == 3 and loops.iloc[0]["instances"] == ["e0", "e1", "e2"]
    assert ka.crash_loops(make_iv(rows), n=3, within="90min")["crashes"].tolist() == [3, 3]


def test_per_day_breakdown():
    iv = make_iv(A, until=T0 + 48 * H)
    daily = ka.uptime(iv, freq="1D")
    assert list(daily["period"]) == [T0, T0 + 24 * H]
    assert daily["down_time"].tolist() == [15 * M, pd.Timedelta(0)]


def test_policy_is_validated():
    with pytest.raises(ValueError, match="combine"):
        ka.UptimePolicy(combine="most")
    with pytest.raises(ValueError, match="up_statuses"):
        ka.UptimePolicy(up_statuses=("RUNNING",))
    with pytest.raises(ValueError, match="exclude"):
        ka.UptimePolicy(exclude=(("2026-11-02", "2026-11-01"),))


spans_strategy = st.lists(st.tuples(st.sampled_from(["x", "y", "z"]),
                                    st.sampled_from(["HEALTHY", "UNHEALTHY", "SLEEPING",
                                                     "STARTING"]),
                                    st.integers(0, 500), st.integers(1, 200)),
                          min_size=1, max_size=30)


@given(spans=spans_strategy, combine=st.sampled_from(["any", "all", "fraction"]),
       sleeping=st.sampled_from(["up", "down", "excluded"]), cut=st.integers(0, 700))
@settings(max_examples=60, deadline=None)
def test_availability_properties(spans, combine, sleeping, cut):
    # one instance per (name, index) so spans of one instance never overlap
    rows = [(f"{n}{i}", "S", 0, s, a, a + d) for i, (n, s, a, d) in enumerate(spans)]
    iv = make_iv(rows, until=T0 + 720 * M)
    policy = ka.UptimePolicy(combine=combine, sleeping=sleeping)
    row = ka.uptime(iv, policy=policy).iloc[0]
    assert 0 <= row["availability"] <= 1 or pd.isna(row["availability"])
    assert row["up_time"] + row["down_time"] == row["observed_time"]
    excl = ka.UptimePolicy(combine=combine, sleeping=sleeping,
                           exclude=((T0 + cut * M, T0 + (cut + 30) * M),))
    shrunk = ka.uptime(iv, policy=excl).iloc[0]
    assert shrunk["observed_time"] <= row["observed_time"]
    assert shrunk["observed_time"] + shrunk["excluded_time"] == \
        row["observed_time"] + row["excluded_time"]


def test_on_simulated_fleet(sim, client):
    inst = ka.load_instances(client, details=True, progress=False)
    ev = ka.load_events(client, progress=False)
    iv = ka.lifecycles(inst, ev, since=pd.Timestamp("2026-11-13T12:00Z"), until=sim.now)
    up = ka.uptime(iv)
    assert up["availability"].between(0, 1).all() and len(up) == 12
    assert 0 < up.attrs["overall"] <= 1
    inc = ka.incidents(iv)
    assert len(inc) >= 1  # the seeded fleet has an outage
    cap = ka.capacity(iv, freq="1h")
    assert cap.attrs["peak"]["instances"] >= cap.sum(axis=1).max() - 1e-9


@pytest.mark.parametrize("name", ["timeline", "uptime", "incidents", "capacity",
                                  "crash_loops"])
def test_empty_results_keep_the_columns_and_dtypes_of_full_ones(sim, name):
    from .conftest import fast_client

    client = fast_client(sim)
    iv = ka.lifecycles(ka.load_instances(client, progress=False),
                       ka.load_events(client, progress=False))
    fn = getattr(ka, name)
    options = {"n": 1} if name == "crash_loops" else {}
    full, empty = fn(iv, **options), fn(iv.iloc[:0], **options)
    assert len(full) and not len(empty)
    assert empty.index.dtype == full.index.dtype
    if name != "capacity":  # capacity's columns are the statuses seen: none when empty
        assert list(empty.columns) == list(full.columns)
        assert dict(empty.dtypes.astype(str)) == dict(full.dtypes.astype(str))


def test_one_signature_template_and_old_calls_fail(sim):
    iv = make_iv([("a", "s1", 0, "HEALTHY", 0, 60), ("b", "s1", 0, "ERROR", 60, 60)])
    with pytest.raises(TypeError, match="1 positional argument"):
        ka.uptime(iv, "service_id")
    with pytest.raises(TypeError, match="1 positional argument"):
        ka.capacity(iv, "1h")
    with pytest.raises(TypeError, match="1 positional argument"):
        ka.incidents(iv, "service_id", None, "extra")
    for fn in (ka.uptime, ka.incidents, ka.capacity, ka.crash_loops, ka.timeline):
        params = inspect.signature(fn).parameters
        first, *rest = params.values()
        assert first.name == "intervals"
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest)
        assert {"since", "until", "window", "by"} <= set(params)


def test_a_window_is_a_value(sim):
    from .conftest import NOW, fast_client

    client = fast_client(sim)
    until = pd.Timestamp(NOW) - pd.Timedelta("1h")
    w = ka.load_window(client, window="12h", until=until, progress=False)
    assert w.until == until and w.since == until - pd.Timedelta("12h")
    # Events run on past the window's end: they tell what quiet stretches were.
    assert w.events["when"].min() >= w.since and w.events["when"].max() > until
    a = ka.analyse(w)
    assert a.since == w.since and a.until == w.until
    one = w.instances["service_id"].iloc[0]
    narrow = ka.load_window(client, window="12h", until=until, service_id=one,
                            progress=False)
    assert set(narrow.instances["service_id"]) == {one}
    assert set(narrow.events["instance_id"]) <= set(narrow.instances["id"])


def test_headline_numbers_are_values_and_agree_with_the_frames(sim):
    from .conftest import fast_client

    client = fast_client(sim)
    iv = ka.lifecycles(ka.load_instances(client, progress=False),
                       ka.load_events(client, progress=False))
    a = ka.overall_availability(iv)
    fleet = ka.uptime(iv, by=None).iloc[0]
    assert a.value == fleet["availability"] and a.observed_time == fleet["observed_time"]
    assert a.up_time + a.down_time == a.observed_time and "Time-weighted" in a.method
    b = ka.error_budget(iv, target=0.999)
    assert b.used == a.down_time
    assert abs(b.allowed - a.observed_time * 0.001) < pd.Timedelta("1s")
    assert abs(b.used_share - a.down_time / b.allowed) < 1e-9
    r = ka.recovery(iv)
    inc = ka.incidents(iv)
    assert r.incidents == len(inc) and r.mttr_median == inc["duration"].median()
    p = ka.peak_capacity(iv)
    assert p.instances == ka.capacity(iv).attrs["peak"]["instances"] and p.at is not None
    with pytest.raises(ValueError, match="target"):
        ka.error_budget(iv, target=99.9)


def test_attrs_hold_json_safe_provenance_only(sim):
    import json

    from koyeb_analytics.store._snapshots import json_safe

    iv = make_iv([("a", "s1", 0, "HEALTHY", 0, 60), ("b", "s1", 0, "ERROR", 60, 60)])
    for frame in (ka.uptime(iv), ka.incidents(iv), ka.timeline(iv)):
        json.dumps(json_safe(frame.attrs))
        assert not any(hasattr(v, "__dataclass_fields__") for v in frame.attrs.values())


# -- the window arguments, the policy's checks and words, MTTR/MTBF exactly -----------

def one_hour_up():
    # One instance HEALTHY from T0 to T0+1h; the frame says it covers T0 to T0+2h.
    iv = make_iv([("i1", "s1", 0, "HEALTHY", 0, 60)], until=T0 + 2 * H)
    return iv


def test_uptime_windows_come_from_the_arguments_then_the_frame():
    # The group exists from T0 to T0+1h; after that it has no instance, which is not
    # its downtime: the rest of each window is excluded time.
    iv = one_hour_up()

    def spans(**kw):
        row = ka.uptime(iv, **kw).iloc[0]
        return row["observed_time"], row["excluded_time"], row["up_time"]

    assert spans() == (H, H, H)  # the frame's own since/until: T0 to T0+2h
    assert spans(until=T0 + H) == (H, 0 * H, H)
    assert spans(since=T0 + 30 * M, until=T0 + 90 * M) == (30 * M, 30 * M, 30 * M)
    assert spans(window="30min", until=T0 + 75 * M) == (15 * M, 15 * M, 15 * M)
    assert spans(window="1h") == (0 * H, H, 0 * H)  # the frame's last hour
    assert pd.isna(ka.uptime(iv, window="1h")["availability"].item())
    bare = iv.copy()
    bare.attrs = {}
    assert ka.uptime(bare).iloc[0]["excluded_time"] == 0 * H  # from the spans themselves
    with pytest.raises(ValueError, match="either window or since"):
        ka.uptime(iv, window="1h", since=T0)
    with pytest.raises(ValueError, match="until"):
        ka.uptime(iv, until="not a time")
    with pytest.raises(ValueError, match="since"):
        ka.uptime(iv, since="not a time")


@pytest.mark.parametrize("kwargs, words", [
    ({"target": 1.0}, "target must be a fraction"),
    ({"target": True}, "target must be a fraction"),
    ({"target": 0}, "target must be a fraction"),
    ({"up_statuses": ()}, "up_statuses: unknown or empty"),
    ({"up_statuses": ("HEALTHY", "RUNNING")}, "up_statuses: unknown or empty ['RUNNING']"),
    ({"sleeping": "maybe"}, "sleeping must be one of"),
    ({"combine": "most"}, "combine must be one of"),
    ({"no_data": "skip"}, "no_data must be one of"),
    ({"exclude": [(T0 + H, T0)]}, "must start before it ends"),
])
def test_uptime_policy_names_what_is_wrong(kwargs, words):
    with pytest.raises(ValueError) as err:
        ka.UptimePolicy(**kwargs)
    assert words in str(err.value)


def test_uptime_policy_describes_its_method_in_words():
    policy = ka.UptimePolicy(up_statuses=["HEALTHY", "UNHEALTHY"], sleeping="excluded",
                             combine="all", no_data="excluded", target=0.99,
                             exclude=[("2026-11-01T00:00Z", "2026-11-01T01:00Z")])
    assert policy.up_statuses == ("HEALTHY", "UNHEALTHY")
    assert policy.exclude == ((T0, T0 + H),)
    text = policy.describe()
    assert text.startswith("Time-weighted: HEALTHY/UNHEALTHY counts as up; SLEEPING "
                           "counts as excluded; a group is up only while all its "
                           "instances are up; time with no instance counts as excluded")
    assert text.endswith("target 99.000%.")
    fraction = ka.UptimePolicy(combine="fraction").describe()
    assert "time-weighted share of its instances that are up" in fraction
    assert ka.UptimePolicy().as_dict()["target"] == 0.999


def test_incident_summary_mttr_and_mtbf_exactly():
    inc = pd.DataFrame({
        "service_id": ["a", "a", "a", "b"],
        "start": [T0, T0 + 2 * H, T0 + 5 * H, T0 + H],
        "end": [T0 + 10 * M, T0 + 2 * H + 20 * M, T0 + 5 * H + 30 * M, T0 + H + 40 * M],
    })
    inc["duration"] = inc["end"] - inc["start"]
    got = ka.incident_summary(inc)
    assert got["mttr"]["count"] == 4 and got["mttr"]["median"] == 25 * M
    assert got["mttr"]["mean"] == 25 * M
    assert got["mttr"]["p90"] == inc["duration"].quantile(0.9)
    # Within service a: 10 min -> 2 h (110 min), 2 h 20 -> 5 h (160 min); b has one.
    assert got["mtbf"]["count"] == 2 and got["mtbf"]["median"] == 135 * M
    assert got["mtbf"]["mean"] == 135 * M


def test_incident_summary_of_nothing():
    empty = ka.incident_summary(pd.DataFrame({"service_id": [], "start": [], "end": [],
                                              "duration": []}))
    nothing = {"count": 0, "median": pd.NaT, "p90": pd.NaT, "mean": pd.NaT}
    assert set(empty) == {"mttr", "mtbf"}
    for part in empty.values():
        assert part["count"] == 0 and set(part) == set(nothing)
        assert all(part[k] is pd.NaT for k in ("median", "p90", "mean"))


def test_the_policy_as_a_dict_keeps_its_exclusions():
    policy = ka.UptimePolicy(exclude=[(T0, T0 + H)])
    assert policy.as_dict()["exclude"] == [(T0.isoformat(), (T0 + H).isoformat())]


def test_intervals_and_arguments_are_checked_with_clear_words():
    iv = one_hour_up()
    with pytest.raises(TypeError, match=r"expected the intervals DataFrame from "
                                        r"ka\.lifecycles\(\)"):
        ka.uptime(iv.drop(columns="status"))
    with pytest.raises(TypeError, match="expected the intervals DataFrame"):
        ka.uptime(iv.to_dict())
    with pytest.raises(ValueError, match="by='team' is not a column of the intervals"):
        ka.uptime(iv, by="team")
    with pytest.raises(ValueError, match=r"freq='soon' is not a fixed frequency like "
                                         r"'5min', '1h' or '1D'"):
        ka.uptime(iv, freq="soon")
    with pytest.raises(ValueError, match="merge_gap"):
        ka.incidents(iv, merge_gap="a while")


@pytest.mark.parametrize("zero", [None, 0, "0", 0.0])
def test_zero_gaps_are_accepted_in_every_spelling(zero):
    iv = make_iv([("i1", "s1", 0, "HEALTHY", 0, 60), ("i1", "s1", 0, "ERROR", 60, 60),
                  ("i2", "s1", 0, "HEALTHY", 61, None)])
    got = ka.incidents(iv, merge_gap=zero, min_duration=zero)
    assert len(got) == 1 and got["duration"].item() == M


def test_empty_results_keep_the_group_column_and_its_dtype():
    iv = one_hour_up().iloc[0:0]
    assert str(ka.uptime(iv)["service_id"].dtype) == str(one_hour_up()["service_id"].dtype)
    assert ka.uptime(iv, by=None).empty
