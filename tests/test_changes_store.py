"""The history store keeps deployments and activities: the same frames as the live
loaders, a second sync adds nothing, and a store written before them is upgraded."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import koyeb_analytics as ka

from .conftest import NOW, fast_client


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "history"
    with ka.simulate(seed=4, days=4, services=8, now=NOW, outages=2) as sim:
        client = fast_client(sim)
        store = ka.HistoryStore(path)
        first = store.sync(client)
        again = store.sync(client)
        live_dep = ka.load_deployments(client, window="2D", until=NOW, progress=False)
        live_act = ka.load_activities(client, window="2D", until=NOW, progress=False)
        yield store, first, again, live_dep, live_act, path


def test_sync_keeps_deployments_and_activities_once(synced):
    store, first, again, *_ = synced
    assert first.deployment_records_added > 10 and first.activities_added > 10
    assert again.deployment_records_added == 0 and again.activities_added == 0
    manifest = store.manifest()
    assert manifest["schema_version"] == 4
    assert manifest["high_water"]["deployments"] and manifest["high_water"]["activities"]


def test_the_store_answers_with_the_live_frames(synced):
    store, _, _, live_dep, live_act, _ = synced
    dep = store.deployments(window="2D", until=NOW)
    assert list(dep.columns[: len(ka.schema.DEPLOYMENT_COLUMNS)]) == \
        list(ka.schema.DEPLOYMENT_COLUMNS)
    cols = ["id", "status", "in_window", "parent_id", "created_at", "terminated_at"]
    pd.testing.assert_frame_equal(dep[cols], live_dep[cols])
    assert dep["definition"].tolist() == live_dep["definition"].tolist()
    act = store.activities(window="2D", until=NOW)
    cols = ["id", "created_at", "verb", "verb_known", "service_id", "count", "previous_count"]
    pd.testing.assert_frame_equal(act[cols], live_act[cols])
    # and the changes built from either are the same
    a, b = ka.changes(dep, act), ka.changes(live_dep, live_act)
    pd.testing.assert_frame_equal(a[["changed_at", "change_id", "event", "summary"]],
                                  b[["changed_at", "change_id", "event", "summary"]])


def test_a_version_1_store_is_upgraded_not_refused(tmp_path):
    path = tmp_path / "old"
    with ka.simulate(seed=1, days=2, services=3, now=NOW) as sim:
        client = fast_client(sim)
        ka.HistoryStore(path).sync(client)
        # what version 1 wrote: no deployments, no activities
        manifest_file = path / "manifest.json"
        manifest = json.loads(manifest_file.read_text())
        for table in ("deployments", "activities"):
            manifest.pop(table)
            manifest["high_water"].pop(table)
            for f in (path / table).rglob("*.parquet"):
                f.unlink()
        manifest["schema_version"] = 1
        manifest_file.write_text(json.dumps(manifest))
        old = ka.HistoryStore(path)
        events = len(old.events())
        assert events > 0 and old.deployments().empty
        result = old.sync(client)
    assert result.events_added == 0 and result.deployment_records_added > 0
    upgraded = json.loads(manifest_file.read_text())
    assert upgraded["schema_version"] == 4 and upgraded["upgraded_from"] == 1
    assert len(ka.HistoryStore(path).deployments()) == result.deployment_records_added


def test_a_store_of_an_unknown_version_is_refused(tmp_path):
    path = tmp_path / "future"
    with ka.simulate(seed=1, days=1, services=2, now=NOW) as sim:
        ka.HistoryStore(path).sync(fast_client(sim))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ka.StoreError, match="schema version 99"):
        ka.HistoryStore(path).deployments()
