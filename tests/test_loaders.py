"""Loaders against the simulator's ground truth, over real sockets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import koyeb_analytics as ka
from koyeb_analytics.load._frames import Collector
from koyeb_analytics.schema import EVENT_COLUMNS, INSTANCE_COLUMNS, STATUSES

from .conftest import NOW, fast_client


def truth_lives(sim) -> pd.DataFrame:
    t = sim.truth_intervals()
    return t.groupby("instance_id").agg(created=("start", "min"), last_end=("end", "max"),
                                        alive=("end", lambda s: s.isna().any()))


def expected_instances(sim, since=None, until=None) -> set[str]:
    life = truth_lives(sim)
    keep = pd.Series(True, index=life.index)
    if until is not None:
        keep &= life.created < until
    if since is not None:
        keep &= life.alive | (life.last_end >= since)
    return set(life.index[keep])


def expected_events(sim, since=None, until=None) -> set[str]:
    when = pd.to_datetime(sim.fleet.ev["when"], unit="us", utc=True)
    keep = np.ones(len(when), bool)
    if since is not None:
        keep &= when >= since
    if until is not None:
        keep &= when < until
    ids = sim.fleet.event_ids()
    return {ids[i] for i in np.flatnonzero(keep)}


def test_load_instances_is_complete_and_typed(sim, client):
    df = ka.load_instances(client, progress=False)
    assert set(df["id"]) == set(sim.fleet.inst["id"]) and df["id"].is_unique
    assert list(df.columns) == [*INSTANCE_COLUMNS, "app_name", "service_name"]
    # Names, from one listing of apps and one of services.
    assert (df["service_name"] == df["service_id"].map(sim.fleet.service_names)).all()
    assert (df["app_name"] == df["app_id"].map(sim.fleet.app_names)).all()
    assert str(df["created_at"].dtype) == "datetime64[us, UTC]"
    assert list(df["status"].cat.categories) == list(STATUSES) and df["status"].cat.ordered
    assert str(df["replica_index"].dtype) == "Int64"
    assert isinstance(df.index, pd.RangeIndex)
    assert df[["created_at", "id"]].equals(
        df[["created_at", "id"]].sort_values(["created_at", "id"]).reset_index(drop=True))
    # every status, not the CLI's running set
    assert {"STOPPED", "ERROR"} <= set(df["status"].astype(str))
    codes = sim.fleet.inst["status"]
    status = dict(zip(sim.fleet.inst["id"], (STATUSES[c] for c in codes), strict=True))
    assert (df["status"].astype(str) == df["id"].map(status)).all()
    assert df.attrs["pages"] == -(-len(df) // 100)
    assert df.attrs["duplicates_dropped"] == 0
    assert df.attrs["query"]["statuses"] == list(STATUSES)


@given(seed=st.integers(0, 50), start_h=st.integers(0, 60), hours=st.integers(1, 40),
       concurrency=st.integers(1, 6))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_windows_match_ground_truth(seed, start_h, hours, concurrency):
    with ka.simulate(seed=seed, days=3, services=4, now=NOW) as sim:
        client = fast_client(sim, concurrency=concurrency)
        since = pd.Timestamp(NOW) - pd.Timedelta(hours=72) + pd.Timedelta(hours=start_h)
        until = since + pd.Timedelta(hours=hours)
        inst = ka.load_instances(client, since=since, until=until, progress=False)
        assert inst["id"].is_unique
        assert set(inst["id"]) == expected_instances(sim, since, until)
        ev = ka.load_events(client, since=since, until=until, progress=False)
        assert ev["id"].is_unique
        assert set(ev["id"]) == expected_events(sim, since, until)
        assert ev["when"].is_monotonic_increasing


def test_event_window_reads_only_its_pages(sim, client):
    until = pd.Timestamp(NOW)
    since = until - pd.Timedelta("6h")
    n = len(sim.requests)
    ev = ka.load_events(client, window="6h", until=until, progress=False)
    assert set(ev["id"]) == expected_events(sim, since, until)
    pages = len(sim.requests) - n
    assert pages == ev.attrs["pages"] + ev.attrs["pages_discarded"] <= -(-len(ev) // 100) + 1
    assert pages < -(-len(sim.fleet.ev["when"]) // 100)  # far from the whole history


def test_events_by_instance_and_type_split_long_id_lists(sim, client):
    ids = list(sim.fleet.inst["id"])  # 324 ids: more than one URL can carry
    n = len(sim.requests)
    ev = ka.load_events(client, instance_ids=ids, types=["instance.error"], progress=False)
    requests_seen = sim.requests[n:]
    assert max(len("&".join(f"{k}={v}" for k, v in r.query)) for r in requests_seen) < 8000
    assert len({tuple(v for k, v in r.query if k == "instance_ids") for r in requests_seen}) > 1
    want = int((sim.fleet.ev["type"] == STATUSES.index("ERROR")).sum())
    assert len(ev) == want and set(ev["type"]) == {"instance.error"}


def test_expand_metadata(sim, client):
    ev = ka.load_events(client, window="2h", until=NOW, expand_metadata=True, progress=False)
    status_rows = ev[ev["type"] != "instance.image_pulled"]
    assert (status_rows["metadata_status"] == status_rows["type"].str.removeprefix(
        "instance.").str.upper()).all()
    assert "metadata" in ev


def test_details_add_lifecycle_timestamps(sim, client):
    df = ka.load_instances(client, window="12h", until=NOW, details=True, progress=False)
    assert {"hypervisor", "started_at", "succeeded_at", "terminated_at"} <= set(df.columns)
    truth = truth_lives(sim)
    dead = df[df["status"].isin(["STOPPED", "ERROR"])]
    assert len(dead) and (dead["terminated_at"] == dead["id"].map(truth["last_end"])).all()
    alive = df[~df["status"].isin(["STOPPED", "ERROR"])]
    assert alive["terminated_at"].isna().all()
    assert str(df["terminated_at"].dtype) == "datetime64[us, UTC]"


def test_get_instance_matches_listing(sim, client):
    inst = ka.load_instances(client, statuses=["healthy"], progress=False)
    assert set(inst["status"].astype(str)) == {"HEALTHY"}
    row = ka.get_instance(client, inst["id"].iloc[0])
    assert row.name == inst["id"].iloc[0]
    for col in INSTANCE_COLUMNS:
        if col != "messages":
            assert row[col] == inst.iloc[0][col], col
    assert pd.isna(row["terminated_at"]) and row["started_at"] <= row["succeeded_at"]


def test_empty_result_has_the_full_schema(sim, client):
    full = ka.load_instances(client, progress=False)
    empty = ka.load_instances(client, service_id="00000000-0000-4000-8000-000000000000",
                              progress=False)
    assert len(empty) == 0 and empty.dtypes.equals(full.dtypes)
    ev_full = ka.load_events(client, window="1h", until=NOW, progress=False)
    ev_empty = ka.load_events(client, instance_ids=["00000000-0000-4000-8000-000000000000"],
                              progress=False)
    assert len(ev_empty) == 0 and ev_empty.dtypes.equals(ev_full.dtypes)


def test_unknown_fields_kept_missing_fields_null():
    c = Collector(EVENT_COLUMNS)
    c.add([{"id": "a", "when": "2026-11-20T00:00:00Z", "future_field": 1},
           {"id": "b", "when": "2026-11-20T00:00:00.123456789Z"},
           {"id": "a", "when": "2026-11-20T00:00:00Z"}])
    df = c.frame()
    assert list(df.columns) == list(EVENT_COLUMNS) + ["future_field"]
    assert df["future_field"].tolist()[0] == 1 and pd.isna(df["future_field"].iloc[1])
    assert df["type"].isna().all() and c.duplicates == 1
    assert df["when"].iloc[1] == pd.Timestamp("2026-11-20T00:00:00.123456Z")


def test_omitted_fields_become_nat():
    with ka.simulate(seed=2, days=1, services=2, now=NOW, emit_nulls=False) as sim:
        df = ka.load_instances(fast_client(sim), details=True, progress=False)
        assert df["terminated_at"].isna().any() and df["terminated_at"].notna().any()


def test_rows_arriving_during_paging_are_read_once(fresh_sim):
    sim = fresh_sim
    before_inst = set(sim.fleet.inst["id"])
    before_ev = set(sim.fleet.event_ids())
    sim.faults.churn_per_request = 3
    sim.faults.latency = 0.05  # slow enough that the pages are fetched concurrently
    client = fast_client(sim, concurrency=3)
    inst = ka.load_instances(client, progress=False)
    assert inst["id"].is_unique and before_inst <= set(inst["id"])
    ev = ka.load_events(client, progress=False)
    assert ev["id"].is_unique and before_ev <= set(ev["id"])
    # Overlapping pages repeat one row each; only rows added on top while paging
    # (which shift later offsets) can make more repeats than that.
    assert ev.attrs["duplicates_dropped"] > ev.attrs["pages"] - 1


def test_retries_make_faults_invisible(fresh_sim):
    sim = fresh_sim
    sim.faults.retry_after = 0
    sim.inject("503", times=2, after=1)
    sim.inject("429", times=1, after=4)
    client = fast_client(sim)
    inst = ka.load_instances(client, progress=False)
    assert set(inst["id"]) == set(sim.fleet.inst["id"])
    ev = ka.load_events(client, progress=False)
    assert set(ev["id"]) == set(sim.fleet.event_ids())



@pytest.mark.parametrize("fast", [True, False])
def test_pipelined_and_plain_paging_read_the_same_rows(fresh_sim, fast):
    # read_ahead picks the pipelined path, or concurrent overlapped pages for events
    # and threads for instances; all read every row once, and every request is a page
    # used or one discarded.
    sim = fresh_sim
    client = fast_client(sim, read_ahead="pipelined" if fast else "threads")
    sim.add_instances(3)
    n = len(sim.requests)
    ev = ka.load_events(client, progress=False)
    assert sorted(ev["id"]) == sorted(sim.fleet.event_ids()) and ev["id"].is_unique
    assert len(sim.requests) - n == ev.attrs["pages"] + ev.attrs["pages_discarded"]
    # The whole history: one page past the end when fast, else up to concurrency - 1.
    assert ev.attrs["pages"] > 2
    assert ev.attrs["pages_discarded"] == 1 if fast else \
        0 <= ev.attrs["pages_discarded"] < client.concurrency
    # A window: pipelined, each reply is checked before the next request, none is
    # wasted; on threads, pages are read ahead as far as the times seen say the window
    # goes, at most concurrency - 1 past its end.
    since = pd.to_datetime(sim.fleet.ev["when"][len(sim.fleet.ev["when"]) // 3], unit="us",
                           utc=True)
    n = len(sim.requests)
    part = ka.load_events(client, since=since, progress=False)
    assert set(part["id"]) == expected_events(sim, since) and part.attrs["pages"] > 2
    assert len(sim.requests) - n == part.attrs["pages"] + part.attrs["pages_discarded"]
    if fast:
        assert part.attrs["pages_discarded"] == 0
    else:
        assert part.attrs["pages_discarded"] <= client.concurrency - 1
    n = len(sim.requests)
    inst = ka.load_instances(client, progress=False)
    assert sorted(inst["id"]) == sorted(sim.fleet.inst["id"])
    # The instance pages, and one page each of apps and services for the names (listed
    # while the instances are).
    paths = [r.path for r in sim.requests[n:]]
    assert len(paths) == inst.attrs["pages"] + 2
    assert paths.count("/v1/apps") == 1 and paths.count("/v1/services") == 1
    if fast:  # pipelined: one connection, handled in order
        assert max(r.in_flight for r in sim.requests[n:]) == 1
    else:  # threads: several pages in flight once the server takes a moment
        sim.add_instances(250 - len(sim.fleet.inst["id"]))  # three pages: two ahead
        sim.faults.latency = 0.2  # long enough that a loaded machine still overlaps them
        n = len(sim.requests)
        again = ka.load_instances(client, names=False, progress=False)
        sim.faults.latency = 0
        assert sorted(again["id"]) == sorted(sim.fleet.inst["id"])
        assert 1 < max(r.in_flight for r in sim.requests[n:]) <= client.concurrency


def test_slow_server_events_concurrently_with_events_arriving(fresh_sim):
    # A slow server (10 ms a request): pages are read 4 at a time, overlapping by a row;
    # new instances and events arrive before every request. Nothing that existed
    # before the call is missed, nothing is kept twice.
    sim = fresh_sim
    before = set(sim.fleet.event_ids())
    sim.faults.latency = 0.05
    sim.faults.churn_per_request = 2
    client = fast_client(sim, concurrency=4, read_ahead="threads")
    n = len(sim.requests)
    ev = ka.load_events(client, progress=False)
    seen = sim.requests[n:]
    sim.faults.churn_per_request = 0
    sim.faults.latency = 0
    assert before <= set(ev["id"]) and ev["id"].is_unique
    assert set(ev["id"]) <= set(sim.fleet.event_ids())
    assert max(r.in_flight for r in seen) > 1
    assert len(seen) == ev.attrs["pages"] + ev.attrs["pages_discarded"]

@pytest.mark.parametrize("concurrency", [2, 4, 6])
def test_window_read_ahead_on_threads_with_events_arriving(fresh_sim, concurrency):
    # A window read ahead on threads while instances and events arrive before every
    # request: every event of the window that existed before the call is kept once,
    # never more than `concurrency` requests are in flight, and at most
    # concurrency - 1 pages are requested past the window's start.
    sim = fresh_sim
    when = sim.fleet.ev["when"]
    since = pd.to_datetime(when[len(when) // 2], unit="us", utc=True)
    before = expected_events(sim, since)
    sim.faults.latency = 0.05  # long enough that a loaded machine still overlaps them
    sim.faults.churn_per_request = 2
    client = fast_client(sim, concurrency=concurrency, read_ahead="threads")
    n = len(sim.requests)
    try:
        ev = ka.load_events(client, since=since, progress=False)
    finally:
        sim.faults.churn_per_request = 0
        sim.faults.latency = 0
    seen = sim.requests[n:]
    assert before <= set(ev["id"]) and ev["id"].is_unique
    assert (ev["when"] >= since).all()
    assert len(seen) == ev.attrs["pages"] + ev.attrs["pages_discarded"]
    assert ev.attrs["pages_discarded"] <= concurrency - 1
    assert 1 < max(r.in_flight for r in seen) <= concurrency
    # Without the estimate the window would have been read one page at a time.
    assert len(seen) <= -(-len(ev) // 99) + concurrency


def test_failure_after_retries_keeps_what_was_received(fresh_sim):
    sim = fresh_sim
    client = fast_client(sim, max_retries=1)
    sim.inject("500", times=None, after=5, path="/v1/instance_events")
    with pytest.raises(ka.IncompleteListingError) as err:
        ka.load_events(client, progress=False)
    partial = err.value.partial
    assert len(partial) == 500 and partial["id"].is_unique
    newest = set(sim.fleet.event_ids()[-500:])
    assert set(partial["id"]) == newest
    assert isinstance(err.value.cause, ka.ServerError) and err.value.pages == 5
    assert "500 row(s) received" in str(err.value)
    sim.clear_faults()
    sim.inject("503", times=None, after=1, path="/v1/instances")
    with pytest.raises(ka.IncompleteListingError) as err:
        ka.load_instances(client, progress=False)
    assert len(err.value.partial) == 100 and list(err.value.partial.columns) == list(
        INSTANCE_COLUMNS)



def test_cycle_collector_state_is_restored(fresh_sim):
    # Loaders pause the cycle collector while collecting pages; it must come back on
    # after a success and after a failure, and stay off if the caller had turned it off.
    import gc

    sim = fresh_sim
    client = fast_client(sim, max_retries=0, concurrency=1)  # every page through get()
    paused = []
    sim_fetch = client.get

    def spy(*args, **kwargs):
        paused.append(not gc.isenabled())
        return sim_fetch(*args, **kwargs)

    client.get = spy  # type: ignore[method-assign]
    ka.load_instances(client, names=False, progress=False)
    assert gc.isenabled() and len(paused) > 1 and all(paused)
    sim.inject("500", times=None, after=1, path="/v1/instances")
    with pytest.raises(ka.IncompleteListingError):
        ka.load_instances(client, names=False, progress=False)
    assert gc.isenabled()
    sim.clear_faults()
    gc.disable()
    try:
        ka.load_events(client, window="1h", progress=False)
        assert not gc.isenabled()
    finally:
        gc.enable()

BAD_CALLS = [
    (ka.load_instances, {"statuses": ["RUNNING"]}, ValueError, "statuses"),
    (ka.load_instances, {"statuses": []}, ValueError, "statuses"),
    (ka.load_instances, {"window": "3 fortnights"}, ValueError, "window"),
    (ka.load_instances, {"since": "2026-11-21", "until": "2026-11-20"}, ValueError, "since"),
    (ka.load_instances, {"replica_index": -1}, ValueError, "replica_index"),
    (ka.load_instances, {"service_id": 12}, TypeError, "service_id"),
    (ka.load_instances, {"details": "yes"}, TypeError, "details"),
    (ka.load_events, {"since": "yesterday-ish"}, ValueError, "since"),
    (ka.load_events, {"window": "-1h"}, ValueError, "window"),
    (ka.load_events, {"instance_ids": []}, ValueError, "instance_ids"),
    (ka.load_events, {"instance_ids": [None]}, TypeError, "instance_ids"),
    (ka.load_events, {"types": [3]}, TypeError, "types"),
    (ka.get_instance, {"instance_id": "abc123"}, ValueError, "instance_id"),
]


@pytest.mark.parametrize("func, kwargs, exc, name", BAD_CALLS)
def test_bad_input_raises_before_any_request(sim, client, func, kwargs, exc, name):
    n = len(sim.requests)
    with pytest.raises(exc, match=name):
        func(client, **kwargs)
    assert len(sim.requests) == n


@pytest.mark.parametrize("status, path", [("403", "/v1/apps"), ("404", "/v1/services")])
def test_names_fall_back_to_short_ids_with_a_note(fresh_sim, status, path):
    sim = fresh_sim
    sim.inject(status, times=None, path=path)
    df = ka.load_instances(fast_client(sim), progress=False)
    column, ids = ("app_name", "app_id") if path == "/v1/apps" else \
        ("service_name", "service_id")
    assert (df[column] == df[ids].str[:8]).all()
    assert any(f"{path} answered {status}" in n for n in df.attrs["notes"])
    other = "service_name" if column == "app_name" else "app_name"
    assert not (df[other] == df[other.replace("name", "id")].str[:8]).any()
    sim.clear_faults()
