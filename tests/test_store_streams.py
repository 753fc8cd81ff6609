"""The history store keeps metrics and, when asked and within a byte budget, logs.

Against the real simulator: what the store answers equals what the loaders read (dtypes,
units, nanoseconds), a sync again adds nothing, a later sync reads only what is new, a
fault keeps what arrived, the budget drops the oldest days and says so, a read before
what is held says so, ``store.sql`` sees the new tables and nothing outside the store,
and a store of schema version 2 opens and gains them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import koyeb_analytics as ka

from .conftest import NOW, fast_client

T0 = pd.Timestamp(NOW)
HOUR = pd.Timedelta("1h")
LOG_PATH = "/v1/streams/logs/query"
METRIC_PATH = "/v1/streams/metrics"
KEY = ["ts", "instance_id", "stream", "msg"]


@pytest.fixture(scope="module")
def sim():
    with ka.simulate(seed=3, days=2, services=2, now=NOW) as s:
        yield s


@pytest.fixture(scope="module")
def services(sim):
    return [s.service_id for s in sim.fleet.services]


@pytest.fixture(scope="module")
def synced(sim, tmp_path_factory):
    """A store synced once with metrics and logs of the last hour, and that sync."""
    path = tmp_path_factory.mktemp("streams") / "h"
    result = ka.HistoryStore(path).sync(fast_client(sim), metrics=True, logs=True,
                                        backfill="1h", until=T0)
    return path, result


@pytest.fixture
def store(synced, tmp_path):
    """A private copy of the synced store: a test may change it."""
    path = tmp_path / "store"
    shutil.copytree(synced[0], path)
    return ka.HistoryStore(path)


def requests_to(sim, path: str, start: int) -> int:
    return sum(1 for r in sim.requests[start:] if r.path == path)


def by_identity(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEY, kind="stable").reset_index(drop=True)


# -- round trips -----------------------------------------------------------------

def test_metrics_come_back_as_load_metrics_reads_them(sim, services, store, synced):
    client = fast_client(sim)
    assert synced[1].metric_samples_added > 0
    assert synced[1].metric_requests == 9 * len(services)
    # The API's range includes its end; the store's window does not: end off the grid.
    since, until = T0 - HOUR, T0 - pd.Timedelta("1min")
    for svc in services:
        live = ka.load_metrics(client, service_id=svc, since=since, until=until)
        kept = store.metrics(service_id=svc, since=since, until=until)
        assert len(kept) > 0
        assert list(kept.dtypes.astype(str)) == list(live.dtypes.astype(str))
        assert list(kept["unit"].cat.categories) == list(live["unit"].cat.categories)
        pd.testing.assert_frame_equal(kept, live)
        assert kept.attrs["step"] == "5m" and kept.attrs["notes"] == []
    one = store.metrics(names=["CPU_TOTAL_PERCENT", "MEM_RSS"], service_id=services[0],
                        since=since)
    iid = one["instance_id"].dropna().iloc[0]
    mine = store.metrics(instance_id=iid, since=since)
    assert len(mine) and set(mine["instance_id"]) == {iid}
    assert set(mine["metric"]) == {"CPU_TOTAL_PERCENT", "MEM_RSS"}
    assert (mine["unit"].astype(str) == mine["metric"].map(
        {"CPU_TOTAL_PERCENT": "percent", "MEM_RSS": "bytes"}).astype(str)).all()
    # Only whole steps: nothing at or after the step until fell in.
    assert store.metrics()["ts"].max() < T0


def test_logs_come_back_as_load_logs_reads_them_to_the_nanosecond(sim, services, store,
                                                                   synced):
    client = fast_client(sim)
    assert synced[1].log_lines_added == synced[1].log_lines_read > 0
    total = 0
    for svc in services:
        live = ka.load_logs(client, service_id=svc, since=T0 - HOUR, until=T0,
                            progress=False)
        kept = store.logs(service_id=svc, since=T0 - HOUR, until=T0)
        assert str(kept["ts"].dtype) == "datetime64[ns, UTC]"
        assert list(kept.dtypes.astype(str)) == list(live.dtypes.astype(str))
        pd.testing.assert_frame_equal(by_identity(kept), by_identity(live))
        assert (kept["ts"].array.asi8 % 1000 != 0).any()  # finer than microseconds
        total += len(kept)
    assert total == synced[1].log_lines_added
    every = store.logs()
    platform = store.logs(streams="koyeb")
    assert len(platform) and set(platform["stream"]) == {"koyeb"}
    assert platform["instance_id"].isna().all()
    pd.testing.assert_frame_equal(
        platform.reset_index(drop=True),
        logs_like(every[every["stream"] == "koyeb"]))
    word = every["msg"].str.split().str[0].value_counts().index[0]
    found = store.logs(text=word)
    assert len(found) == every["msg"].str.contains(word, regex=False).sum() > 0
    rx = store.logs(regex=r"\d{3} ")
    assert len(rx) == every["msg"].str.contains(r"\d{3} ").sum() > 0


def logs_like(df: pd.DataFrame) -> pd.DataFrame:
    """A slice of a logs frame with its categories narrowed as a read would."""
    out = df.reset_index(drop=True).copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].cat.remove_unused_categories()
    return out


# -- resuming ---------------------------------------------------------------------

def test_a_sync_again_adds_nothing(sim, store):
    before_logs, before_metrics = len(store.logs()), len(store.metrics())
    again = store.sync(fast_client(sim), metrics=True, logs=True, backfill="1h", until=T0)
    assert again.metric_samples_read > 0 and again.metric_samples_added == 0
    assert again.log_lines_read > 0 and again.log_lines_added == 0
    assert len(store.logs()) == before_logs and len(store.metrics()) == before_metrics
    assert not store.logs().duplicated(KEY).any()
    samples = store.metrics()
    assert not samples.duplicated(["metric", "ts", "service_id", "instance_id", "code"]
                                  ).any()
    # Compaction changes no answer, and the budget still counts what is on disk.
    lines = store.logs()
    merged = store.compact()
    assert merged["files_after"] < merged["files_before"]
    pd.testing.assert_frame_equal(store.logs(), lines)
    pd.testing.assert_frame_equal(store.metrics(), samples)
    on_disk = sum(p.stat().st_size for p in (Path(store.files.root) / "logs").rglob("*.parquet"))
    assert store.manifest()["logs"]["bytes"] == on_disk


def test_a_later_sync_reads_only_what_is_new(sim, services, tmp_path):
    client = fast_client(sim)
    svc = services[0]
    resumed = ka.HistoryStore(tmp_path / "resumed")
    resumed.sync(client, metrics=True, logs=[svc], backfill="1h", until=T0 - HOUR)
    start = len(sim.requests)
    later = resumed.sync(client, metrics=True, logs=[svc], backfill="1h", until=T0)
    resumed_pages = requests_to(sim, LOG_PATH, start)
    assert later.log_pages == resumed_pages

    whole = ka.HistoryStore(tmp_path / "whole")
    start = len(sim.requests)
    full = whole.sync(client, metrics=True, logs=[svc], backfill="2h", until=T0)
    full_pages = requests_to(sim, LOG_PATH, start)
    # The later sync read the last hour and the overlap, not both hours again.
    assert resumed_pages < full_pages
    assert later.log_lines_read < full.log_lines_read
    assert later.metric_samples_read < full.metric_samples_read
    assert later.metric_requests == full.metric_requests == 9 * len(services)
    pd.testing.assert_frame_equal(by_identity(resumed.logs()), by_identity(whole.logs()))
    pd.testing.assert_frame_equal(resumed.metrics(), whole.metrics())
    live = ka.load_logs(client, service_id=svc, since=T0 - 2 * HOUR, until=T0,
                        progress=False)
    pd.testing.assert_frame_equal(by_identity(resumed.logs()), by_identity(live))


def test_a_fault_mid_sync_keeps_what_arrived_and_the_next_sync_completes(sim, services,
                                                                          tmp_path):
    svc = services[1]
    store = ka.HistoryStore(tmp_path / "h")
    sim.inject("500", times=None, after=2, path=LOG_PATH)
    try:
        with pytest.raises(ka.IncompleteListingError) as err:
            store.sync(fast_client(sim, max_retries=1), logs=[svc], backfill="1h", until=T0)
    finally:
        sim.clear_faults()
    assert "marks of what failed did not move" in " ".join(err.value.__notes__)
    kept = store.logs(service_id=svc)
    assert 0 < len(kept) < len(ka.load_logs(fast_client(sim), service_id=svc,
                                            since=T0 - HOUR, until=T0, progress=False))
    assert "to" not in store.manifest()["logs"]["marks"][svc]
    done = store.sync(fast_client(sim), logs=[svc], backfill="1h", until=T0)
    assert done.log_lines_added > 0
    live = ka.load_logs(fast_client(sim), service_id=svc, since=T0 - HOUR, until=T0,
                        progress=False)
    pd.testing.assert_frame_equal(by_identity(store.logs(service_id=svc)), by_identity(live))
    assert store.manifest()["logs"]["marks"][svc]["to"] == T0.isoformat()


# -- the byte budget and what is held ----------------------------------------------

def test_the_byte_budget_drops_the_oldest_days_with_a_note(sim, services, tmp_path):
    client = fast_client(sim)
    a, b = services
    store = ka.HistoryStore(tmp_path / "h")
    first, second = T0.normalize() - pd.Timedelta("1D") + pd.Timedelta("30min"), \
        T0.normalize() + pd.Timedelta("30min")
    # Three days held: a's lines around the first midnight, b's around the second.
    store.sync(client, logs=[a], backfill="1h", until=first)
    store.sync(client, logs=[b], backfill="1h", until=second)
    files = store.manifest()["logs"]["files"]
    size: dict[str, int] = {}
    for entry in files.values():
        size[entry["date"]] = size.get(entry["date"], 0) + entry["bytes"]
    days = sorted(size)
    assert len(days) == 3
    budget = size[days[1]] + size[days[2]]
    lines_before = store.logs()

    kept = store.sync(client, logs=[b], backfill="1h", until=second, max_log_bytes=budget)
    assert kept.log_days_dropped == [days[0]]
    note = next(n for n in kept.notes if "dropped" in n)
    assert days[0] in note and f"max_log_bytes={budget}" in note
    assert kept.log_bytes <= budget
    assert sorted({e["date"] for e in store.manifest()["logs"]["files"].values()}) == days[1:]
    assert not list((tmp_path / "h" / "logs").glob(f"date={days[0]}/*.parquet"))
    left = store.logs()
    assert left["ts"].min() >= pd.Timestamp(days[1], tz="UTC")
    assert len(left) == (lines_before["ts"] >= pd.Timestamp(days[1], tz="UTC")).sum()
    said = store.logs(since=first - HOUR).attrs["notes"]
    assert any(f"from {days[1]}T00:00:00+00:00 on" in n and "max_log_bytes" in n
               for n in said)

    # A budget smaller than one day: the oldest go, the newest day stays, and that is said.
    tight = store.sync(client, logs=[b], backfill="1h", until=second, max_log_bytes=1)
    assert tight.log_days_dropped == [days[1]]
    assert any(days[2] in n and "newest day is never dropped" in n for n in tight.notes)
    assert {e["date"] for e in store.manifest()["logs"]["files"].values()} == {days[2]}
    assert len(store.logs()) == (lines_before["ts"] >= pd.Timestamp(days[2], tz="UTC")).sum()


def test_a_read_before_what_the_store_holds_says_so(sim, store, tmp_path):
    logs_note = store.logs(since=T0 - 2 * HOUR).attrs["notes"]
    assert len(logs_note) == 1
    assert f"holds logs from {(T0 - HOUR).isoformat()} on" in logs_note[0]
    assert (T0 - 2 * HOUR).isoformat() in logs_note[0]
    metrics_note = store.metrics(since=T0 - 2 * HOUR).attrs["notes"]
    assert len(metrics_note) == 1 and "holds metrics" in metrics_note[0]
    assert store.logs(since=T0 - HOUR).attrs["notes"] == []
    assert store.metrics(since=T0 - HOUR).attrs["notes"] == []
    after = store.logs(since=T0 - HOUR, until=T0 + HOUR).attrs["notes"]
    assert after == [f"the store holds logs up to {T0.isoformat()} (its last complete "
                     f"read); the window ends at {(T0 + HOUR).isoformat()}"]
    # A window ends where the reads ended (the simulator's clock), not at the sync's time.
    recent = store.logs(window="30min")
    assert len(recent) and recent["ts"].min() >= T0 - pd.Timedelta("30min")
    assert recent.attrs["notes"] == [] and len(store.metrics(window="30min"))
    bare = ka.HistoryStore(tmp_path / "bare")
    bare.sync(fast_client(sim), metrics=["MEM_RSS"], backfill="1h", until=T0)
    assert "holds no logs" in bare.logs().attrs["notes"][0]
    assert bare.logs().empty and list(bare.logs().columns[:2]) == ["ts", "msg"]
    assert bare.metrics(names="MEM_RSS").attrs["notes"] == []
    assert "holds no metrics" in bare.metrics(names="CPU_TOTAL_PERCENT").attrs["notes"][0]


# -- sql ----------------------------------------------------------------------------

def test_sql_answers_over_the_metrics_and_logs_views(store):
    logs, samples = store.logs(), store.metrics()
    n = store.sql("select count(*) as n from logs")["n"][0]
    assert n == len(logs)
    per_stream = store.sql("select stream, count(*) as n from logs group by stream")
    assert dict(zip(per_stream["stream"], per_stream["n"], strict=True)) == \
        logs["stream"].value_counts().to_dict()
    per_metric = store.sql("select metric, unit, count(*) as n from metrics group by all")
    expected = samples.groupby(["metric", "unit"], observed=True).size()
    assert {(m, u): c for m, u, c in per_metric.itertuples(index=False)} == \
        expected.to_dict()
    ns = store.sql("select epoch_ns(ts) as ns from logs order by ns")["ns"]
    assert list(ns) == sorted(logs["ts"].array.asi8.tolist())
    assert set(store.sql("show tables")["name"]) >= {"metrics", "logs"}


def test_the_read_only_guard_still_keeps_the_new_views_inside_the_store(store, tmp_path):
    manifest = store.manifest()
    part = sorted(manifest["logs"]["files"])[0]
    outside = tmp_path / "outside.parquet"
    pq.write_table(pq.read_table(store.files.path(part)), outside)
    for query in (f"select * from logs union all select * from read_parquet('{outside}')",
                  f"select count(*) from read_parquet('{outside}')",
                  f"select * from read_json('{store.files.path('manifest.json')}')"):
        with pytest.raises(ka.StoreError, match="reaches outside the store"):
            store.sql(query)
    with pytest.raises(ka.StoreError, match="COPY"):
        store.sql(f"copy logs to '{tmp_path / 'out.csv'}'")
    assert not (tmp_path / "out.csv").exists()
    # A manifest listing a file outside the store among the logs is refused by name.
    path = tmp_path / "store" / "manifest.json"
    damaged = json.loads(path.read_text())
    damaged["logs"]["files"]["../outside.parquet"] = damaged["logs"]["files"][part]
    path.write_text(json.dumps(damaged))
    with pytest.raises(ka.StoreError, match="outside.parquet.*not a file of the store"):
        store.sql("select count(*) from logs")


# -- migration and bad input ---------------------------------------------------------

def test_a_version_2_store_opens_and_gains_the_tables(sim, tmp_path):
    client = fast_client(sim)
    path = tmp_path / "v2"
    ka.HistoryStore(path).sync(client)
    file = path / "manifest.json"
    manifest = json.loads(file.read_text())
    for table in ("metrics", "logs"):
        manifest.pop(table)
    manifest["schema_version"] = 2  # what version 2 wrote: no metrics, no logs
    file.write_text(json.dumps(manifest))
    old = ka.HistoryStore(path)
    events = len(old.events())
    opened = old.manifest()
    assert opened["schema_version"] == 4 and opened["upgraded_from"] == 2
    empty = old.metrics()
    assert empty.empty and list(empty.columns) == list(ka.schema.METRIC_COLUMNS)
    assert str(empty["ts"].dtype) == "datetime64[us, UTC]"
    assert "holds no metrics" in empty.attrs["notes"][0]
    assert int(old.sql("select count(*) as n from logs")["n"][0]) == 0
    result = old.sync(client, metrics=["CPU_TOTAL_PERCENT"], logs=True, backfill="30min",
                      until=T0)
    assert result.events_added == 0 and len(old.events()) == events
    assert result.metric_samples_added > 0 and result.log_lines_added > 0
    written = json.loads(file.read_text())
    assert written["schema_version"] == 4 and written["upgraded_from"] == 2
    assert len(ka.HistoryStore(path).logs()) == result.log_lines_added


@pytest.mark.parametrize("options, message", [
    ({"metrics": ["CPU"]}, "unknown metric 'CPU'"),
    ({"metrics": []}, "metrics is empty"),
    ({"metrics": True, "step": "5s"}, "step must be"),
    ({"logs": []}, "logs is empty"),
    ({"logs": True, "max_log_bytes": 0}, "max_log_bytes must be a positive"),
    ({"logs": True, "max_log_bytes": True}, "max_log_bytes must be a positive"),
    ({"logs": True, "backfill": "soon"}, "backfill"),
    ({"metrics": True, "step": "1h"}, "keeps metrics at step '5m'"),
])
def test_bad_options_fail_before_any_request(sim, store, options, message):
    start, manifest = len(sim.requests), store.manifest()
    with pytest.raises((ValueError, TypeError), match=message):
        store.sync(fast_client(sim), until=T0, **options)
    assert len(sim.requests) == start
    assert store.manifest() == manifest


def test_bad_read_arguments_are_named(store):
    with pytest.raises(ValueError, match="does not compile"):
        store.logs(regex="(")
    with pytest.raises(ValueError, match="text or regex"):
        store.logs(text="a", regex="b")
    with pytest.raises(ValueError, match="unknown stream 'stdin'"):
        store.logs(streams="stdin")
    with pytest.raises(ValueError, match="unknown metric 'CPU'"):
        store.metrics(names="CPU")
