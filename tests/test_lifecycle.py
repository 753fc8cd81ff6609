"""Lifecycle intervals against the simulator's ground truth, and their properties."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import koyeb_analytics as ka
from koyeb_analytics.analysis._lifecycle import INTERVAL_COLUMNS

from .conftest import NOW, fast_client

TERMINAL = {"STOPPED", "ERROR"}


def clip_truth(truth: pd.DataFrame, since, until) -> pd.DataFrame:
    """The ground truth clipped to [since, until), written as plainly as possible."""
    rows = []
    for r in truth.itertuples(index=False):
        start, end, status = r.start, r.end, str(r.status)
        if start >= until:
            continue
        zero = pd.notna(end) and end == start
        if zero:
            if since is not None and start < since:
                continue
        elif pd.notna(end) and since is not None and end <= since:
            continue
        open_ended = pd.isna(end) or end > until
        rows.append((r.instance_id, status, max(start, since) if since is not None else start,
                     until if open_ended else end, open_ended))
    return pd.DataFrame(rows, columns=["instance_id", "status", "start", "end", "open_ended"])


def as_rows(iv: pd.DataFrame) -> list[tuple]:
    df = iv.assign(status=iv["status"].astype(str))
    return sorted(df[["instance_id", "status", "start", "end", "open_ended"]]
                  .itertuples(index=False, name=None))


@pytest.fixture(scope="module")
def loaded(sim):
    client = fast_client(sim)
    return (ka.load_instances(client, details=True, progress=False),
            ka.load_events(client, progress=False), sim.truth_intervals())


@given(start_h=st.integers(0, 160), hours=st.integers(1, 72))
@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_lifecycles_equal_ground_truth(loaded, start_h, hours):
    inst, ev, truth = loaded
    since = pd.Timestamp(NOW) - pd.Timedelta(days=7) + pd.Timedelta(hours=start_h)
    until = min(since + pd.Timedelta(hours=hours), pd.Timestamp(NOW))
    iv = ka.lifecycles(inst, ev, since=since, until=until)
    assert as_rows(iv) == as_rows(clip_truth(truth, since, until))
    assert list(iv.columns) == list(INTERVAL_COLUMNS)
    assert (iv["source"] == "events").all()


@given(seed=st.integers(0, 40), start_h=st.integers(0, 40), hours=st.integers(1, 30))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_window_loaded_events_give_the_same_spans(seed, start_h, hours):
    # Events from `since` to now are enough: the status before an instance's first
    # event comes from that event's previous status (or from an unchanged record).
    with ka.simulate(seed=seed, days=2, services=4, now=NOW) as sim:
        client = fast_client(sim)
        since = pd.Timestamp(NOW) - pd.Timedelta(hours=48) + pd.Timedelta(hours=start_h)
        until = since + pd.Timedelta(hours=hours)
        inst = ka.load_instances(client, since=since, until=until, progress=False)
        ev = ka.load_events(client, since=since, progress=False)
        iv = ka.lifecycles(inst, ev, since=since, until=until)
        assert as_rows(iv) == as_rows(clip_truth(sim.truth_intervals(), since, until))
        # events of the window alone leave the silent instances unknown, and say so
        ev_window = ev[ev["when"] < until]
        iv2 = ka.lifecycles(inst, ev_window, since=since, until=until)
        unknown = set(iv2.loc[iv2["status"].isna(), "instance_id"])
        assert unknown <= set(ka.findings(iv2).query("kind == 'unknown_status'")["instance_id"])
        known = iv2[~iv2["instance_id"].isin(unknown)]
        assert set(as_rows(known)) <= set(as_rows(iv))


def test_spans_tile_each_life_without_overlap(loaded):
    inst, ev, truth = loaded
    since, until = pd.Timestamp(NOW) - pd.Timedelta(days=3), pd.Timestamp(NOW)
    iv = ka.lifecycles(inst, ev, since=since, until=until)
    for iid, spans in iv.groupby("instance_id"):
        assert (spans["start"].iloc[1:].to_numpy() >= spans["end"].iloc[:-1].to_numpy()).all()
        life_start = max(spans["start"].min(), since)
        life_end = spans["end"].max()
        assert spans["duration"].sum() == life_end - life_start, iid
    assert (iv["duration"] >= pd.Timedelta(0)).all()
    assert iv.loc[iv["open_ended"], "end"].eq(until).all()


def test_timestamps_path_agrees_with_truth_where_it_can(loaded):
    inst, _, truth = loaded
    until = pd.Timestamp(NOW)
    iv = ka.lifecycles(inst, None, until=until)
    assert (iv["source"] == "timestamps").all()
    by_truth = truth.groupby("instance_id")
    for iid, spans in iv.groupby("instance_id"):
        t = by_truth.get_group(iid)
        # ALLOCATING is exact, and so are the instance's start and end
        alloc_t = t[t["status"] == "ALLOCATING"].iloc[0]
        alloc = spans[spans["status"] == "ALLOCATING"].iloc[0]
        assert (alloc["start"], alloc["end"]) == (alloc_t["start"], alloc_t["end"])
        assert spans["start"].min() == t["start"].min()
        last_t = t.iloc[-1]
        last = spans.iloc[-1]
        assert str(last["status"]) == str(last_t["status"])
        if str(last_t["status"]) in TERMINAL:
            assert last["start"] == last["end"] == last_t["start"]
        else:
            assert bool(last["open_ended"])


def test_timestamps_path_without_details_marks_unknown(loaded, sim, client):
    inst = ka.load_instances(client, progress=False)
    iv = ka.lifecycles(inst, None, until=NOW)
    assert iv["status"].isna().any()
    kinds = set(ka.findings(iv)["kind"])
    assert "unknown_status" in kinds


def test_findings_name_what_is_wrong(loaded):
    inst, ev, _ = loaded
    dead = inst[inst["status"] == "ERROR"]["id"].iloc[0]
    silent = inst["id"].iloc[-1]
    broken = ev[~((ev["instance_id"] == dead) & (ev["type"] == "instance.error"))]
    broken = broken[broken["instance_id"] != silent]
    dup = broken[broken["type"] == "instance.healthy"].iloc[[0]]
    broken = pd.concat([broken, dup.assign(id="dup-1", type="instance.unhealthy")])
    iv = ka.lifecycles(inst, broken, until=NOW)
    found = ka.findings(iv)
    assert list(found.columns) == ["instance_id", "kind", "detail"]
    pairs = set(zip(found["instance_id"], found["kind"], strict=True))
    # The events stop short of the end; the record supplies it, and says so.
    assert (dead, "terminal_from_record") in pairs
    ended = iv[iv["instance_id"] == dead].iloc[-1]
    assert ended["status"] == "ERROR" and ended["source"] == "timestamps"
    assert iv[iv["instance_id"] == dead].iloc[-2]["source"] == "both"
    assert (silent, "no_events") in pairs
    assert (dup["instance_id"].iloc[0], "simultaneous_events") in pairs
    assert (iv.loc[iv["instance_id"] == silent, "source"] == "timestamps").all()


def test_custom_mapping_and_bad_input(loaded):
    inst, ev, _ = loaded
    renamed = ev.assign(type=ev["type"].str.replace("instance.", "vm/", regex=False))
    mapping = {f"vm/{s.lower()}": s for s in ka.STATUSES}
    a = ka.lifecycles(inst, renamed, until=NOW, mapping=mapping)
    b = ka.lifecycles(inst, ev, until=NOW)
    assert as_rows(a) == as_rows(b)
    # The mapping is tried first: it wins over the metadata.
    flipped = {"instance.healthy": "UNHEALTHY"}
    c = ka.lifecycles(inst, ev, until=NOW, mapping=flipped)
    assert (c["status"] == "UNHEALTHY").sum() > (b["status"] == "UNHEALTHY").sum()
    with pytest.raises(ValueError, match="mapping"):
        ka.lifecycles(inst, ev, mapping={"x": "RUNNING"})
    with pytest.raises(TypeError, match="instances"):
        ka.lifecycles([1, 2], ev)
    with pytest.raises(ValueError, match="since"):
        ka.lifecycles(inst, ev, since="2026-11-21", until="2026-11-20")


def test_empty_inputs_give_the_full_schema(loaded):
    inst, ev, _ = loaded
    iv = ka.lifecycles(inst.iloc[:0], ev.iloc[:0], until=NOW)
    assert len(iv) == 0 and list(iv.columns) == list(INTERVAL_COLUMNS)
