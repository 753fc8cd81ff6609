"""The history store: sync only what is new, answer with the loaders' frames, survive
being killed, locked out or handed a store it did not write.

The simulator gives the ground truth; a small scripted server (not the simulator) adds
events out of order, which the simulator never does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import koyeb_analytics as ka
from koyeb_analytics.store._history import SCHEMA_VERSION

from .conftest import NOW, fast_client
from .hostile import TOKEN, HostileServer, rest

EVENT_KEYS = ["id", "when", "organization_id", "instance_id", "type", "message", "metadata"]


def synced(sim, path, **options) -> ka.HistoryStore:
    store = ka.HistoryStore(path, **options)
    store.sync(fast_client(sim))
    return store


@pytest.fixture(scope="module")
def store_sim():
    with ka.simulate(seed=5, days=4, services=6, now=NOW) as s:
        yield s


@pytest.fixture(scope="module")
def full_store(store_sim, tmp_path_factory):
    return synced(store_sim, tmp_path_factory.mktemp("history"))


def assert_same_frame(stored: pd.DataFrame, live: pd.DataFrame) -> None:
    assert list(stored.columns) == list(live.columns)
    assert list(stored.dtypes.astype(str)) == list(live.dtypes.astype(str))
    pd.testing.assert_frame_equal(stored, live)
    assert set(stored.attrs) == set(live.attrs) | {"store"}
    assert stored.attrs["query"] == live.attrs["query"]
    assert stored.attrs["source"] == live.attrs["source"]


def test_a_store_answers_with_the_loaders_frames(store_sim, full_store):
    client = fast_client(store_sim)
    assert_same_frame(full_store.events(), ka.load_events(client, progress=False))
    assert_same_frame(full_store.instances(), ka.load_instances(client, progress=False))
    ev = full_store.events()
    assert set(ev["id"]) == set(store_sim.fleet.event_ids())
    # Every metadata object is the row's own (a change to one leaves the others).
    first = ev["metadata"].iloc[0]
    same = [m for m in ev["metadata"] if m == first]
    first["touched"] = True
    assert sum(m.get("touched", False) for m in same) == 1


@given(start_h=st.integers(0, 100), hours=st.integers(1, 60), by=st.sampled_from(
    ["none", "instances", "types"]))
@settings(max_examples=15, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_random_windows_equal_the_live_loaders(store_sim, full_store, start_h, hours, by):
    client = fast_client(store_sim)
    since = pd.Timestamp(NOW) - pd.Timedelta(days=4) + pd.Timedelta(hours=start_h)
    until = since + pd.Timedelta(hours=hours)
    extra: dict = {}
    if by == "instances":
        extra["instance_ids"] = list(store_sim.fleet.inst["id"][: 1 + start_h % 20])
    elif by == "types":
        extra["types"] = ["instance.error", "instance.healthy"]
    live = ka.load_events(client, since=since, until=until, progress=False, **extra)
    assert_same_frame(full_store.events(since=since, until=until, **extra), live)
    live_inst = ka.load_instances(client, since=since, until=until, progress=False)
    assert_same_frame(full_store.instances(since=since, until=until), live_inst)


def test_a_report_from_the_store_equals_the_live_one(store_sim, full_store):
    since, until = pd.Timestamp(NOW) - pd.Timedelta("3D"), pd.Timestamp(NOW)
    live = ka.analyse(ka.load_window(fast_client(store_sim), since=since, until=until,
                                     progress=False))
    window = ka.load_window(full_store, since=since, until=until)
    kept = ka.analyse(window)
    pd.testing.assert_frame_equal(kept.uptime, live.uptime)
    pd.testing.assert_frame_equal(kept.incidents, live.incidents)
    pd.testing.assert_frame_equal(kept.intervals, live.intervals)
    assert ka.headline(kept) == ka.headline(live)
    # A path works as well as a store object.
    by_path = ka.load_window(full_store.path, since=since, until=until)
    pd.testing.assert_frame_equal(by_path.events, window.events)


def test_syncing_again_adds_nothing_and_reads_only_the_overlap(store_sim, tmp_path):
    store = synced(store_sim, tmp_path / "h")
    before = store.manifest()
    n = len(store_sim.requests)
    again = store.sync(fast_client(store_sim))
    event_requests = [r for r in store_sim.requests[n:] if r.path == "/v1/instance_events"]
    assert again.events_added == 0 and again.instance_records_added == 0
    assert len(event_requests) == 1  # the overlap fits in one page
    after = store.manifest()
    assert after["events"]["files"] == before["events"]["files"]
    assert after["instances"]["files"] == before["instances"]["files"]
    assert after["high_water"] == before["high_water"]
    assert len(after["syncs"]) == 2


def test_new_events_and_instances_are_appended(tmp_path):
    with ka.simulate(seed=11, days=2, services=4, now=NOW) as sim:
        store = synced(sim, tmp_path / "h")
        added = sim.add_instances(250)  # 250 new instances, an event each
        n = len(sim.requests)
        result = store.sync(fast_client(sim))
        pages = [r for r in sim.requests[n:] if r.path == "/v1/instance_events"]
        assert result.events_added == 250 and result.instance_records_added == 250
        assert len(pages) <= -(-250 // 100) + 2
        ev = store.events()
        assert set(ev["id"]) == set(sim.fleet.event_ids()) and ev["id"].is_unique
        assert set(added) <= set(store.instances()["id"])
        assert ev["when"].is_monotonic_increasing


def test_events_arriving_during_a_sync_are_kept_by_the_next(tmp_path):
    with ka.simulate(seed=11, days=2, services=4, now=NOW) as sim:
        before = set(sim.fleet.event_ids())
        sim.faults.churn_per_request = 3
        store = ka.HistoryStore(tmp_path / "h")
        store.sync(fast_client(sim, read_ahead="threads"))
        assert before <= set(store.events()["id"])
        store.sync(fast_client(sim, read_ahead="threads"))
        sim.faults.churn_per_request = 0
        store.sync(fast_client(sim))
        ev = store.events()
        assert set(ev["id"]) == set(sim.fleet.event_ids()) and ev["id"].is_unique
        inst = store.instances()
        assert set(inst["id"]) == set(sim.fleet.inst["id"]) and inst["id"].is_unique


class Scripted:
    """A plain events API over a list the test edits: newest first, has_next pages."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.org = "00000000-0000-4000-8000-00000000000a"

    def add(self, n: int, when: pd.Timestamp) -> None:
        for _ in range(n):
            i = len(self.events)
            self.events.append({
                "id": f"00000000-0000-4000-8000-{i:012d}",
                "when": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "organization_id": self.org,
                "instance_id": "00000000-0000-4000-8000-1000000000aa",
                "type": "a-type-nobody-documented", "message": f"event {i}",
                "metadata": {"n": i}})

    def route(self, req, srv):
        if req.headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {"error": "no"}, {}
        limit, offset = int(req.query.get("limit", 10)), int(req.query.get("offset", 0))
        if req.path == "/v1/instance_events":
            rows = sorted(self.events, key=lambda e: (e["when"], e["id"]), reverse=True)
            page = rows[offset: offset + limit]
            return 200, {"events": page, "limit": limit, "offset": offset,
                         "order": "desc", "has_next": offset + limit < len(rows)}, {}
        if req.path == "/v1/instances":
            return 200, {"instances": [], "limit": limit, "offset": offset, "count": 0}, {}
        return 200, {req.path.rsplit("/", 1)[-1]: [], "limit": limit, "offset": offset,
                     "count": 0, "has_next": False}, {}


def test_late_events_inside_the_overlap_are_kept(tmp_path):
    api = Scripted()
    t0 = pd.Timestamp("2026-11-01T00:00:00Z")
    api.add(150, t0)
    api.add(1, t0 + pd.Timedelta("1h"))
    with HostileServer(rest(api.route)) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, read_ahead="none")
        store = ka.HistoryStore(tmp_path / "h", overlap="10min")
        assert store.sync(client).events_added == 151
        # Reported late: one 5 minutes before the newest stored event (inside the
        # overlap), one 30 minutes before (outside it: the stated limit of an overlap).
        api.add(1, t0 + pd.Timedelta("55min"))
        api.add(1, t0 + pd.Timedelta("30min"))
        api.add(2, t0 + pd.Timedelta("2h"))
        result = store.sync(client)
    ev = store.events()
    assert result.events_added == 3
    assert set(ev["message"]) == {f"event {i}" for i in range(155)} - {"event 152"}
    assert ev["id"].is_unique and ev["when"].is_monotonic_increasing
    assert ev["metadata"].iloc[-1] == {"n": 154}


KILL_SCRIPT = r"""
import os, signal, sys
import koyeb_analytics as ka
from koyeb_analytics.store import _files as _storage

point, url, token = sys.argv[1], sys.argv[2], sys.argv[3]
kind, _, nth = point.partition(":")
calls = {"n": 0}

def dying(original):
    def wrapped(self, *args, **kwargs):
        calls["n"] += 1
        if kind == "before" and calls["n"] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
        out = original(self, *args, **kwargs)
        if kind == "after" and calls["n"] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return wrapped

if kind in ("before", "after"):
    _storage.Files.write_table = dying(_storage.Files.write_table)
elif kind == "manifest":
    original_mv = _storage.Files.write_bytes
    def half(self, relative, data):
        tmp = self._tmp_name(relative)
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    _storage.Files.write_bytes = half
client = ka.KoyebClient(token, base_url=url, backoff_factor=0.01)
client.simulated = True
ka.HistoryStore(sys.argv[4]).sync(client)
"""


@pytest.mark.parametrize("point", ["after:1", "before:2", "after:2", "manifest", "timer"])
def test_a_sync_killed_anywhere_leaves_the_store_readable(tmp_path, point):
    with ka.simulate(seed=11, days=2, services=4, now=NOW) as sim:
        path = tmp_path / "h"
        store = synced(sim, path)
        old = store.events()
        sim.add_instances(120)
        args = [sys.executable, "-c", KILL_SCRIPT, point, sim.url, sim.token, str(path)]
        if point == "timer":
            sim.faults.latency = 0.05
            proc = subprocess.Popen(args)
            time.sleep(1.0)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            sim.faults.latency = 0
        else:
            proc = subprocess.run(args, timeout=120)
            assert proc.returncode == -signal.SIGKILL
        # Readable, and still what it held before, or the whole new sync.
        now = ka.HistoryStore(path).events()
        assert now["id"].is_unique
        assert len(now) in (len(old), len(old) + 120)
        assert set(old["id"]) <= set(now["id"])
        # The next sync completes it, and leaves no stray file.
        store.sync(fast_client(sim))
        ev = store.events()
        assert set(ev["id"]) == set(sim.fleet.event_ids()) and ev["id"].is_unique
        manifest = store.manifest()
        listed = set().union(*(manifest[t]["files"] for t in (
            "events", "instances", "deployments", "activities")))
        on_disk = {str(p.relative_to(path)) for p in path.rglob("*.parquet")}
        assert on_disk == listed
        assert not [p for p in path.rglob(".tmp-*")]


def test_two_syncs_at_once_wait_or_fail_clearly(tmp_path):
    with ka.simulate(seed=11, days=2, services=4, now=NOW) as sim:
        path = tmp_path / "h"
        synced(sim, path)
        sim.add_instances(300)
        sim.faults.latency = 0.05  # the first sync now takes a few seconds
        first = ka.HistoryStore(path)
        done: dict = {}
        holder = threading.Thread(target=lambda: done.update(r=first.sync(
            fast_client(sim, read_ahead="none"))))
        holder.start()
        deadline = time.monotonic() + 10
        while not (path / ".lock").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        impatient = ka.HistoryStore(path, lock_timeout=0.2)
        started = time.monotonic()
        with pytest.raises(ka.StoreLockedError, match="locked by another sync"):
            impatient.sync(fast_client(sim))
        assert time.monotonic() - started < 5
        patient = ka.HistoryStore(path, lock_timeout=60)
        second = patient.sync(fast_client(sim))  # waits for the first, then adds nothing
        holder.join(60)
        sim.faults.latency = 0
        assert done["r"].events_added == 300 and second.events_added == 0
        ev = patient.events()
        assert set(ev["id"]) == set(sim.fleet.event_ids()) and ev["id"].is_unique


def test_a_store_of_another_version_or_foreign_or_damaged_is_refused(full_store, tmp_path):
    manifest = full_store.manifest()
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(ka.StoreError, match=f"schema version 99.*version {SCHEMA_VERSION}"):
        ka.HistoryStore(other).events()
    (other / "manifest.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ka.StoreError, match="not a koyeb-analytics history store"):
        ka.HistoryStore(other).events()
    (other / "manifest.json").write_text("{ not json")
    with pytest.raises(ka.StoreError, match="not valid JSON"):
        ka.HistoryStore(other).events()
    with pytest.raises(ka.StoreError, match="holds no history store yet"):
        ka.HistoryStore(tmp_path / "empty").events()
    # A listed file damaged: the error names the store, no traceback from the engine.
    damaged = tmp_path / "damaged"
    import shutil

    shutil.copytree(full_store.path, damaged)
    victim = next(iter(manifest["events"]["files"]))
    (damaged / victim).write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ka.StoreError, match="cannot be read"):
        ka.HistoryStore(damaged).events()


def test_a_failed_listing_keeps_what_arrived_and_the_next_sync_fills_the_gap(tmp_path):
    with ka.simulate(seed=11, days=2, services=4, now=NOW) as sim:
        store = ka.HistoryStore(tmp_path / "h")
        sim.inject("500", times=None, after=2, path="/v1/instance_events")
        with pytest.raises(ka.IncompleteListingError) as err:
            store.sync(fast_client(sim, max_retries=1, read_ahead="none"))
        assert "high-water mark did not move" in " ".join(err.value.__notes__)
        kept = store.events()
        assert len(kept) == 200  # two pages of the 299 events, newest first
        assert set(kept["id"]) == set(sim.fleet.event_ids()[-200:])
        assert store.manifest()["high_water"]["events"] is None
        sim.clear_faults()
        store.sync(fast_client(sim))
        ev = store.events()
        assert set(ev["id"]) == set(sim.fleet.event_ids()) and ev["id"].is_unique


def test_compact_merges_each_day_and_changes_no_answer(tmp_path):
    with ka.simulate(seed=11, days=2, services=4, now=NOW) as sim:
        store = synced(sim, tmp_path / "h")
        for _ in range(3):
            sim.add_instances(20)
            store.sync(fast_client(sim))
        before_ev, before_inst = store.events(), store.instances()
        before_dep, before_act = store.deployments(), store.activities()
        files = store.manifest()["events"]["files"]
        days = {e["date"] for e in files.values()}
        result = store.compact()
        assert result["files_before"] > result["files_after"]
        after = store.manifest()
        assert len(after["events"]["files"]) == len(days)
        pd.testing.assert_frame_equal(store.events(), before_ev)
        pd.testing.assert_frame_equal(store.instances(), before_inst)
        pd.testing.assert_frame_equal(store.deployments(), before_dep)
        pd.testing.assert_frame_equal(store.activities(), before_act)
        on_disk = {str(p.relative_to(tmp_path / "h")) for p in (tmp_path / "h").rglob(
            "*.parquet")}
        assert on_disk == set().union(*(after[t]["files"] for t in (
            "events", "instances", "deployments", "activities")))


def test_an_in_memory_filesystem_works_like_a_disk(store_sim, full_store):
    store = synced(store_sim, "memory://koyeb-history-test")
    pd.testing.assert_frame_equal(store.events(), full_store.events())
    pd.testing.assert_frame_equal(store.instances(), full_store.instances())
    assert store.sql("select count(*) as n from events")["n"][0] == len(full_store.events())


def test_sql_tables_match_the_frames(full_store):
    ev = full_store.events()
    by_type = full_store.sql("select type, count(*) as n from events group by type")
    assert dict(zip(by_type["type"], by_type["n"], strict=True)) == \
        ev["type"].value_counts().to_dict()
    latest = full_store.sql("select id, status from instances order by id")
    inst = full_store.instances().sort_values("id")
    assert latest["id"].tolist() == inst["id"].tolist()
    assert latest["status"].tolist() == inst["status"].astype(str).tolist()
    records = full_store.sql("select count(*) as n from instance_records")["n"][0]
    assert records == full_store.manifest()["instances"]["rows"]
    with pytest.raises(ka.StoreError, match="store.sql"):
        full_store.sql("select nope from events")


def test_windows_end_at_the_last_sync_and_say_when_they_reach_past_the_store(full_store):
    last = pd.Timestamp(full_store.manifest()["last_sync"])
    ev = full_store.events(window="1d")
    assert ev.attrs["query"]["until"] == last.isoformat()
    assert ev.attrs["fetched_at"] == last
    old = full_store.events(since="2020-01-01", until=NOW)
    assert any("the store holds events from" in n for n in old.attrs["notes"])


def test_bad_arguments_fail_before_anything_is_written(tmp_path, store_sim):
    with pytest.raises(ValueError, match="path or URL"):
        ka.HistoryStore("")
    with pytest.raises(ValueError, match="overlap"):
        ka.HistoryStore(tmp_path / "a", overlap="soon")
    with pytest.raises(ValueError, match="lock_timeout"):
        ka.HistoryStore(tmp_path / "a", lock_timeout=float("nan"))
    with pytest.raises(TypeError, match="client must be a KoyebClient"):
        ka.HistoryStore(tmp_path / "a").sync("http://example.com")
    assert not (tmp_path / "a").exists()
    store = synced(store_sim, tmp_path / "b")
    with pytest.raises(TypeError, match="instance_ids"):
        store.events(instance_ids=[1, 2])
    with pytest.raises(ValueError, match="statuses"):
        store.instances(statuses="RUNNING")
    with pytest.raises(TypeError, match="query"):
        store.sql("")
    assert "token" not in repr(store).lower() and store_sim.token not in \
        (tmp_path / "b" / "manifest.json").read_text()


def test_unreadable_event_times_are_kept_without_a_window(tmp_path):
    api = Scripted()
    api.add(3, pd.Timestamp("2026-11-01T00:00:00Z"))
    api.events[1]["when"] = "yesterday-ish"
    with HostileServer(rest(api.route)) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, read_ahead="none")
        store = ka.HistoryStore(tmp_path / "h")
        store.sync(client)
        assert store.sync(client).events_added == 0  # the odd one is not added twice
    assert len(store.events()) == 3 and store.events()["when"].isna().sum() == 1
    assert len(store.events(since="2026-10-01")) == 2
    assert any(e["date"] == "unknown" for e in store.manifest()["events"]["files"].values())


def test_the_cli_syncs_and_reports_from_a_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KOYEB_TOKEN"}
    path = tmp_path / "h"
    run = [sys.executable, "-m", "koyeb_analytics"]
    first = subprocess.run(run + ["sync", "--store", str(path), "--simulate", "--quiet",
                                  "--metrics", "--step", "1h"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "Read the whole history" in first.stdout
    kept = ka.HistoryStore(path).metrics()
    assert len(kept) > 0 and set(kept["metric"]) >= {"CPU_TOTAL_PERCENT", "MEM_RSS"}
    assert f"Metrics: {len(kept)} samples read, {len(kept)} new." in first.stdout
    assert (kept["ts"].diff().dropna() % pd.Timedelta("1h") == pd.Timedelta(0)).all()
    rows = ka.HistoryStore(path).manifest()["events"]["rows"]
    assert f"The store holds {rows} events" in first.stdout
    out = tmp_path / "r.html"
    report = subprocess.run(run + ["report", "--store", str(path), "--window", "3d",
                                   "--out", str(out), "--quiet"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert report.returncode == 0, report.stderr
    assert out.exists() and "From the history store" in report.stderr
    missing = subprocess.run(run + ["report", "--store", str(tmp_path / "none"), "--out",
                                    str(tmp_path / "x.html")],
                             capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 1 and "holds no history store yet" in missing.stderr
    both = subprocess.run(run + ["report", "--store", str(path), "--simulate"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert both.returncode == 2 and "two sources" in both.stderr


def test_a_listing_that_may_miss_rows_does_not_move_the_mark(tmp_path):
    # A server that ignores offset: the listing stops with a warning, rows may be
    # missing, so the store keeps what came but does not mark the history as read.
    api = Scripted()
    t0 = pd.Timestamp("2026-11-01T00:00:00Z")
    for k in range(250):
        api.add(1, t0 + pd.Timedelta(minutes=k))
    fixed = api.route

    def ignoring_offset(req, srv):
        if req.path == "/v1/instance_events":
            req.query["offset"] = "0"
        return fixed(req, srv)

    store = ka.HistoryStore(tmp_path / "h")
    with HostileServer(rest(ignoring_offset)) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, read_ahead="none")
        with pytest.warns(ka.PaginationWarning, match="repeated rows"):
            first = store.sync(client)
    assert first.events_added == 100 and first.high_water is None
    with HostileServer(rest(fixed)) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, read_ahead="none")
        second = store.sync(client)
    assert second.since is None  # the whole history again, not from a false mark
    assert second.events_added == 150 and len(store.events()) == 250


def test_a_server_clock_ahead_of_ours_cannot_hide_later_events(tmp_path):
    api = Scripted()
    now = pd.Timestamp.now(tz="UTC")
    api.add(3, now - pd.Timedelta("1h"))
    api.add(1, now + pd.Timedelta("1D"))  # a clock a day ahead
    with HostileServer(rest(api.route)) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, read_ahead="none")
        store = ka.HistoryStore(tmp_path / "h", overlap="10min")
        first = store.sync(client)
        assert first.high_water <= first.synced_at + pd.Timedelta("1min")
        api.add(1, pd.Timestamp.now(tz="UTC"))  # arrives after the first sync
        assert store.sync(client).events_added == 1
    assert len(store.events()) == 5
