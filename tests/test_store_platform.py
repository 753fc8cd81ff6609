"""The history store keeps the platform's lines of lost events, and answers with them.

Against the simulator over real sockets, on a fleet that loses 5 % of its events: a
synced store gives windows whose lost events are placed where the platform's lines say,
with no request; a sync again reads no gap twice; a logs endpoint that fails keeps the
sync and its events, says so, and the next sync reads what it missed; a store of schema
version 3 opens, and its next sync reads the gaps it never had; ``koyeb-analytics sync``
reads them unless told ``--no-platform``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.load._platform import empty_platform
from koyeb_analytics.simulator._vocabulary import OPAQUE_VOCABULARY

from .conftest import fast_client
from .window_truth import per_status, truth_intervals

LOSSY = dataclasses.replace(OPAQUE_VOCABULARY, missing_share=0.05)
NOW = pd.Timestamp("2026-11-20T12:00:00Z")
SINCE = NOW - pd.Timedelta("2D")
LOG_PATH = "/v1/streams/logs/query"


@pytest.fixture(scope="module")
def lossy():
    with ka.simulate(seed=3, days=4, services=6, now=NOW, vocabulary=LOSSY) as sim:
        yield sim


@pytest.fixture(scope="module")
def synced(lossy, tmp_path_factory):
    store = ka.HistoryStore(tmp_path_factory.mktemp("pstore") / "h")
    before = len(lossy.requests)
    result = store.sync(fast_client(lossy))
    return store, result, _log_queries(lossy, before)


def _log_queries(sim: ka.Simulator, since: int) -> int:
    return sum(r.path == LOG_PATH for r in sim.requests[since:])


def _error(sim: ka.Simulator, win: ka.Window) -> float:
    """Seconds of total time per status away from the truth, summed over statuses."""
    want = per_status(truth_intervals(sim, win.instances, SINCE, NOW))
    got = per_status(ka.analyse(win).intervals)
    return sum(abs(got.get(s, pd.Timedelta(0)) - t).total_seconds() for s, t in want.items())


def test_a_synced_store_places_lost_events_where_the_lines_say_with_no_request(lossy, synced):
    store, result, queries = synced
    assert result.platform_gaps_read >= 10 and result.platform_lines_added > 0
    assert result.platform_requests == queries and queries >= result.platform_gaps_read
    record = store.manifest()["syncs"][-1]
    assert record["platform_gaps_read"] == result.platform_gaps_read
    assert record["platform_lines_added"] == result.platform_lines_added
    before = len(lossy.requests)
    win = ka.load_window(store, since=SINCE, until=NOW, progress=False)
    plain = ka.load_window(store, since=SINCE, until=NOW, platform="none", progress=False)
    assert len(lossy.requests) == before  # the store answers: not one request
    assert plain.platform is not None and plain.platform.empty
    said = win.platform
    assert said.attrs["gaps"] >= 5 and said.attrs["requests"] == 0 and len(said)
    assert said.attrs["notes"] == []
    # the same lines, with the same dtypes, as the API path reads for the same window
    api = ka.load_window(fast_client(lossy), since=SINCE, until=NOW, progress=False)
    assert said.attrs["gaps"] == api.platform.attrs["gaps"]
    pd.testing.assert_frame_equal(said, api.platform)
    iv = ka.analyse(win).intervals
    placed = iv[iv["source"] == "platform"]
    truth = truth_intervals(lossy, win.instances, SINCE, NOW)
    starts = set(zip(truth["instance_id"], truth["start"], strict=True))
    assert len(placed) >= 5
    assert all((r.instance_id, r.start) in starts for r in placed.itertuples())
    assert _error(lossy, win) < _error(lossy, plain) / 3


def test_the_store_answers_its_platform_lines_like_the_loader(synced):
    store, result, _ = synced
    lines = store.platform()
    assert len(lines) == store.manifest()["platform"]["rows"] == result.platform_lines_added
    assert dict(lines.dtypes) == dict(empty_platform().dtypes)
    assert not lines.duplicated().any()
    assert lines.equals(lines.sort_values(["instance_id", "ts"], kind="stable")
                        .reset_index(drop=True))
    one = lines["instance_id"].iloc[0]
    mine = store.platform(instance_ids=one, since=SINCE, until=NOW)
    assert set(mine["instance_id"]) == {one}
    assert mine["ts"].between(SINCE, NOW, inclusive="left").all()
    assert len(mine) == ((lines["instance_id"] == one) & (lines["ts"] >= SINCE)
                         & (lines["ts"] < NOW)).sum()
    n = store.sql("select count(*) as n from platform")["n"][0]
    assert int(n) == len(lines)
    with pytest.raises(ValueError, match="instance_ids is empty"):
        store.platform(instance_ids=[])
    with pytest.raises(ValueError, match="since .* must be earlier than until"):
        store.platform(since=NOW, until=SINCE)


def test_a_sync_again_reads_no_gap_twice(lossy, synced):
    store, first, _ = synced
    rows = store.manifest()["platform"]["rows"]
    before = len(lossy.requests)
    again = store.sync(fast_client(lossy))
    assert _log_queries(lossy, before) == 0
    assert again.platform_gaps_read == 0 and again.platform_lines_added == 0
    assert store.manifest()["platform"]["rows"] == rows


def test_platform_must_be_true_or_false_before_any_request(lossy, tmp_path):
    before = len(lossy.requests)
    with pytest.raises(TypeError, match="platform must be True or False"):
        ka.HistoryStore(tmp_path / "h").sync(fast_client(lossy), platform="lost")
    assert len(lossy.requests) == before


def test_a_failing_logs_endpoint_keeps_the_sync_and_the_next_one_reads_what_it_missed(
        lossy, tmp_path):
    store = ka.HistoryStore(tmp_path / "h")
    client = fast_client(lossy, max_retries=0)
    lossy.inject("503", times=None, path=LOG_PATH)
    try:
        broken = store.sync(client)
    finally:
        lossy.clear_faults()
    assert broken.events_added == len(store.events()) > 0
    assert broken.platform_gaps_read == 0 and broken.platform_lines_added == 0
    assert any("platform lines" in n and "next sync" in n for n in broken.notes)
    assert store.manifest()["syncs"][-1]["complete"] is True
    before = len(lossy.requests)
    mended = store.sync(client)
    assert mended.platform_gaps_read >= 10 and mended.platform_lines_added > 0
    assert _log_queries(lossy, before) == mended.platform_requests
    # Two reads of the next sync fail: only those two gaps are read by the one after.
    store2 = ka.HistoryStore(tmp_path / "h2")
    lossy.inject("503", times=2, path=LOG_PATH)
    try:
        partly = store2.sync(client)
    finally:
        lossy.clear_faults()
    assert partly.platform_gaps_read == mended.platform_gaps_read - 2
    assert any("2 gap(s)" in n for n in partly.notes)
    before = len(lossy.requests)
    last = store2.sync(client)
    assert last.platform_gaps_read == 2 and _log_queries(lossy, before) == 2
    assert store2.manifest()["platform"]["rows"] == store.manifest()["platform"]["rows"]
    # compaction merges the two syncs' files of a day and keeps every line
    lines, files = store2.platform(), len(store2.manifest()["platform"]["files"])
    store2.compact()
    assert len(store2.manifest()["platform"]["files"]) < files
    pd.testing.assert_frame_equal(store2.platform(), lines)


def test_a_version_3_store_opens_and_its_next_sync_reads_the_gaps(lossy, tmp_path):
    path = tmp_path / "v3"
    client = fast_client(lossy)
    ka.HistoryStore(path).sync(client, platform=False)
    file = path / "manifest.json"
    manifest = json.loads(file.read_text())
    manifest.pop("platform")  # what version 3 wrote: no platform lines
    for record in manifest["syncs"]:
        for key in ("platform_gaps_read", "platform_lines_added"):
            record.pop(key, None)
    manifest["schema_version"] = 3
    file.write_text(json.dumps(manifest))
    old = ka.HistoryStore(path)
    opened = old.manifest()
    assert opened["schema_version"] == 4 and opened["upgraded_from"] == 3
    empty = old.platform()
    assert empty.empty and dict(empty.dtypes) == dict(empty_platform().dtypes)
    assert "holds no platform lines" in empty.attrs["notes"][0]
    assert int(old.sql("select count(*) as n from platform")["n"][0]) == 0
    win = ka.load_window(old, since=SINCE, until=NOW, progress=False)
    assert win.platform.empty and "holds no platform lines" in win.platform.attrs["notes"][0]
    result = old.sync(client)
    assert result.events_added == 0 and result.platform_gaps_read >= 10
    written = json.loads(file.read_text())
    assert written["schema_version"] == 4 and written["upgraded_from"] == 3
    win = ka.load_window(old, since=SINCE, until=NOW, progress=False)
    assert len(win.platform) and win.platform.attrs["notes"] == []


def test_the_cli_syncs_platform_lines_unless_told_not_to(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KOYEB_TOKEN"}
    path = tmp_path / "h"
    run = [sys.executable, "-m", "koyeb_analytics", "sync", "--store", str(path),
           "--simulate", "--vocabulary", "opaque", "--quiet"]
    without = subprocess.run(run + ["--no-platform"], capture_output=True, text=True,
                             env=env, timeout=300)
    assert without.returncode == 0, without.stderr
    assert "Platform lines" not in without.stdout
    assert ka.HistoryStore(path).manifest()["platform"]["from"] is None
    default = subprocess.run(run, capture_output=True, text=True, env=env, timeout=300)
    assert default.returncode == 0, default.stderr
    store = ka.HistoryStore(path)
    record = store.manifest()["syncs"][-1]
    assert record["platform_gaps_read"] > 0 and len(store.platform()) > 0
    assert (f"Platform lines of lost events: {record['platform_gaps_read']} gap(s) read, "
            f"{record['platform_lines_added']} new line(s).") in default.stdout
