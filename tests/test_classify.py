"""Events to statuses: the rules, the vocabulary review, and accuracy on a simulator
whose event types the toolkit has never seen (``vocabulary="opaque"``)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.analysis._classify import classify_events, status_from_message
from koyeb_analytics.simulator._vocabulary import OPAQUE_VOCABULARY

from .conftest import NOW, fast_client
from .test_lifecycle import clip_truth

# The texts of koyeb-api-facts.md §15, both eras, and what each announces.
REAL_TEXTS = [
    ("Instance created. Preparing to start...", "ALLOCATING"),
    ("Instance allocated in nomad", "ALLOCATING"),
    ("Instance is starting... Waiting for health checks to pass.", "STARTING"),
    ("Instance is starting. Propagating network configuration...", "STARTING"),
    ("Instance is starting", "STARTING"),
    ("Instance is healthy. All health checks are passing.", "HEALTHY"),
    ("TCP health check failed on port 8080.", "UNHEALTHY"),
    ("HTTP health check failed on port 3000 path /healthz: status 503.", "UNHEALTHY"),
    ("Instance is unhealthy", "UNHEALTHY"),
    ("Instance is stopping.", "STOPPING"),
    ("Instance stopped.", "STOPPED"),
    ("Instance terminated in nomad", "STOPPED"),
    ("Application exited with code 1. This usually indicates an application failure.",
     "ERROR"),
    ("ERROR: no command to run your application: set a run command", "ERROR"),
    ("Instance is sleeping. It will wake up on the next request.", "SLEEPING"),
    ("Instance is waking up. Waiting for health checks to pass.", "STARTING"),
]
INFORMATIONAL = [
    "Starting download for registry01.prod.koyeb.com/k-1234/app:latest",
    "Download progress: 100% |██████████|", "Download complete for registry/app:latest",
    "Network configuration propagated", "Service mesh is not ready yet",
    "Service mesh is propagated",
]


@pytest.mark.parametrize("text, status", REAL_TEXTS)
def test_each_real_message_announces_its_status(text, status):
    assert status_from_message(text) == (status, "message")


@pytest.mark.parametrize("text", INFORMATIONAL)
def test_informational_messages_are_no_status_change(text):
    assert status_from_message(text) == (None, "informational")


def statuses(decided: pd.DataFrame) -> list:
    return [None if pd.isna(v) else v for v in decided["status"]]


def test_rules_apply_in_order():
    ev = pd.DataFrame({
        "type": ["a", "b", "c", "d", "e"],
        "message": ["Instance stopped.", "Instance stopped.", "Instance stopped.",
                    "something new", "Download progress: 5%"],
        "metadata": [{}, {"new_status": "healthy"}, {"state": "INSTANCE_STATUS_ERROR"}, {},
                     {}],
    })
    got = classify_events(ev)
    assert statuses(got) == ["STOPPED", "HEALTHY", "ERROR", None, None]
    assert got["rule"].tolist() == ["message", "metadata", "metadata", "unclassified",
                                    "informational"]
    mapped = classify_events(ev, mapping={"a": "SLEEPING", "b": None})
    assert statuses(mapped)[:2] == ["SLEEPING", None]
    assert mapped["rule"].tolist()[:2] == ["mapping", "mapping"]
    by_row = classify_events(ev, mapping=lambda row: "ERROR" if row["type"] == "d" else ...)
    assert statuses(by_row)[3] == "ERROR"
    assert by_row["rule"].tolist() == ["message", "metadata", "metadata", "mapping",
                                       "informational"]
    with pytest.raises(ValueError, match="mapping: unknown statuses"):
        classify_events(ev, mapping={"a": "RUNNING"})
    with pytest.raises(TypeError, match="mapping"):
        classify_events(ev, mapping=["a"])


MILD_OPAQUE = dataclasses.replace(OPAQUE_VOCABULARY, unknown_share=0.0, missing_share=0.0)


@pytest.fixture(scope="module", params=[1, 2, 3])
def opaque(request):
    # The whole history, every event served, every message of a known family: the
    # harsher defaults are measured over windows in test_window_start.py.
    seed = request.param
    with ka.simulate(seed=seed, days=3, services=8, now=NOW,
                     vocabulary=MILD_OPAQUE) as sim:
        client = fast_client(sim)
        inst = ka.load_instances(client, details=True, progress=False)
        ev = ka.load_events(client, progress=False)
        truth = sim.truth_intervals()
    return seed, inst, ev, truth


def test_opaque_events_look_like_the_real_api(opaque):
    _, inst, ev, _ = opaque
    known = {"instance." + s.lower() for s in ka.STATUSES}
    assert not set(ev["type"]) & known
    assert all(m == {} for m in ev["metadata"])
    voc = ka.event_vocabulary(ev)
    assert list(voc.columns) == ["type", "example_message", "count", "share", "status",
                                 "rule", "after"]
    unhealthy = voc[voc["status"] == "UNHEALTHY"]
    assert len(unhealthy) and set(unhealthy["after"]) == {"HEALTHY"}
    assert set(voc.loc[voc["status"].isna(), "after"]) <= {""}
    assert voc["count"].sum() == len(ev) and abs(voc["share"].sum() - 1) < 1e-9
    assert set(voc["rule"]) <= {"message", "informational"}
    assert voc.attrs["unclassified_share"] == 0.0


def test_types_are_learned_from_the_messages_they_carry():
    # 5 % of status messages from no known family: their type still names their status.
    with ka.simulate(seed=4, days=3, services=8, now=NOW, vocabulary="opaque") as sim:
        ev = ka.load_events(fast_client(sim), progress=False)
    decided = classify_events(ev)
    learned = decided["rule"] == "learned"
    assert learned.sum() > 10
    assert not ev.loc[learned, "message"].str.contains("nstance is|stopped", regex=True).any()
    # every learned status is the one the same type carries when its message is known
    known = ev.assign(s=decided["status"].astype(str))[decided["rule"] == "message"]
    table = known.groupby("type")["s"].agg(lambda x: x.mode()[0])
    got = ev.loc[learned, "type"].map(table)
    assert (got == decided.loc[learned, "status"].astype(str)).all()
    assert (decided["rule"] == "unclassified").sum() == 0
    # a type that means two statuses is not learned
    mixed = ev.assign(type="instance.event.any")
    assert (classify_events(mixed)["rule"] == "learned").sum() == 0


def per_status(iv: pd.DataFrame) -> pd.Series:
    iv = iv.assign(status=iv["status"].astype(str), duration=iv["end"] - iv["start"])
    return iv.groupby("status")["duration"].sum()


def sequences(iv: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    iv = iv.sort_values(["instance_id", "start", "end"])
    out = {}
    for iid, grp in iv.groupby("instance_id"):
        seq = [str(s) for s in grp["status"]]
        out[iid] = tuple(s for i, s in enumerate(seq) if i == 0 or s != seq[i - 1])
    return out


def test_opaque_lifecycles_meet_the_accuracy_targets(opaque):
    seed, inst, ev, truth = opaque
    iv = ka.lifecycles(inst, ev)
    since, until = iv["start"].min(), iv.attrs["until"]
    want = clip_truth(truth, since, until)
    got_t, want_t = per_status(iv), per_status(want)
    for status, total in want_t.items():
        if total > pd.Timedelta(hours=1):
            error = abs(got_t.get(status, pd.Timedelta(0)) - total) / total
            assert error < 0.01, (seed, status, error)
    got_s, want_s = sequences(iv), sequences(want)
    exact = sum(got_s.get(i) == s for i, s in want_s.items()) / len(want_s)
    assert exact >= 0.99, (seed, exact)
    # Uptime per service and incident counts, against the same from the truth.
    attrs = inst.set_index("id")[["service_id", "app_id", "region", "datacenter",
                                  "replica_index", "type", "app_name", "service_name"]]
    truth_iv = want.join(attrs, on="instance_id").assign(
        status=lambda d: pd.Categorical(d["status"], categories=list(ka.STATUSES),
                                        ordered=True),
        duration=lambda d: d["end"] - d["start"], source="events")
    truth_iv = truth_iv[list(iv.columns)]
    truth_iv.attrs = {"since": since, "until": until, "findings": []}
    up, up_truth = ka.uptime(iv), ka.uptime(truth_iv)
    diff = (up.set_index("service_id")["availability"]
            - up_truth.set_index("service_id")["availability"]).abs()
    assert (diff * 100 < 0.05).all(), diff.max()
    n, n_truth = len(ka.incidents(iv)), len(ka.incidents(truth_iv))
    assert abs(n - n_truth) <= max(1, 0.05 * n_truth)


def test_invented_and_opaque_give_the_same_intervals():
    frames = []
    for vocabulary in ("invented", MILD_OPAQUE):
        with ka.simulate(seed=4, days=2, services=5, now=NOW, vocabulary=vocabulary) as sim:
            client = fast_client(sim)
            iv = ka.lifecycles(ka.load_instances(client, progress=False),
                               ka.load_events(client, progress=False), until=NOW)
            frames.append(iv[["instance_id", "status", "start", "end"]])
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_the_report_runs_on_opaque_events(tmp_path):
    from koyeb_analytics.cli import main

    out = tmp_path / "report.html"
    assert main(["report", "--simulate", "--vocabulary", "opaque", "--window", "2d",
                 "--quiet", "--out", str(out)]) == 0
    html = out.read_text()
    assert "Data quality" in html and 'id="vocabulary-table"' in html
    # Opaque types, every one understood from its message texts.
    assert "instance.event." in html and "0 of " in html and "(0.0%)" in html


# -- each rule, each edge, with exact expectations (mutation testing found these) -----

def frame(types, messages=None, metadata=None, index=None):
    n = len(types)
    data = {"type": pd.Series(types, dtype=object)}
    if messages is not None:
        data["message"] = pd.Series(messages, dtype=object)
    if metadata is not None:
        data["metadata"] = pd.Series(metadata, dtype=object)
    df = pd.DataFrame(data)
    df.index = index if index is not None else range(n)
    return df


def test_classify_events_rules_dtypes_and_index_exactly(monkeypatch):
    from koyeb_analytics.analysis import _classify as classify

    monkeypatch.setattr(classify, "KNOWN_TYPES", {"known.crash": "ERROR"})
    ev = frame(["mapped", None, "known.crash", "odd", "odd", "meta"],
               ["", "", "", "Instance is healthy. All health checks are passing.",
                "who knows", ""],
               [{}, {}, {}, {}, {}, {"status": "stopping"}], index=[10, 20, 30, 40, 50, 60])
    got = classify_events(ev, {"mapped": "sleeping"})
    assert list(got.index) == [10, 20, 30, 40, 50, 60]
    assert [s if isinstance(s, str) else None for s in got["status"]] == [
        "SLEEPING", None, "ERROR", "HEALTHY", None, "STOPPING"]
    assert got["rule"].tolist() == ["mapping", "unclassified", "type", "message",
                                    "unclassified", "metadata"]
    assert got["status"].dtype.ordered
    assert list(got["status"].dtype.categories) == list(ka.STATUSES)
    assert list(got["rule"].dtype.categories) == list(classify.RULES)


def test_a_mapping_to_none_means_no_change_and_missing_types_are_not_mapped():
    ev = frame(["a", None, "b"], ["", "", "Instance stopped."], [{}, {}, {}])
    got = classify_events(ev, {"a": None, "b": "healthy"})
    assert got["rule"].tolist() == ["mapping", "unclassified", "mapping"]
    assert [s if isinstance(s, str) else None for s in got["status"]] == [
        None, None, "HEALTHY"]
    called = classify_events(ev, lambda row: None if row["type"] == "a" else ...)
    assert called["rule"].tolist() == ["mapping", "unclassified", "message"]
    assert pd.isna(called["status"].iloc[0]) and called["status"].iloc[2] == "STOPPED"


def test_frames_without_the_optional_columns_are_classified_as_far_as_possible():
    bare = pd.DataFrame({"id": ["x", "y"]})
    got = classify_events(bare)
    assert got["rule"].tolist() == ["unclassified", "unclassified"]
    only_meta = pd.DataFrame({"metadata": [{"new_status": "ERROR"}, None]})
    assert classify_events(only_meta)["rule"].tolist() == ["metadata", "unclassified"]
    only_message = pd.DataFrame({"message": ["Instance stopped.", "?"]})
    assert classify_events(only_message)["rule"].tolist() == ["message", "unclassified"]


def test_event_vocabulary_on_nothing_keeps_its_columns_and_dtypes():
    for empty in (None, frame([], [], [])):
        voc = ka.event_vocabulary(empty)
        assert list(voc.columns) == ["type", "example_message", "count", "share",
                                     "status", "rule", "after"]
        assert str(voc["count"].dtype) == "int64" and str(voc["share"].dtype) == "float64"
        assert voc["type"].dtype == object and voc.attrs["unclassified_share"] == 0.0


def test_event_vocabulary_counts_shares_and_the_mapping_exactly():
    ev = frame(["x", "x", None, "y", "x"],
               ["Instance stopped.", "Instance stopped.", "m?", "q", "Instance stopped."],
               [{}, {}, {}, {}, {}])
    voc = ka.event_vocabulary(ev)
    assert voc["type"].tolist() == ["x", "<none>", "y"]
    assert voc["count"].tolist() == [3, 1, 1]
    assert voc["share"].tolist() == [0.6, 0.2, 0.2]
    assert voc["status"].tolist()[0] == "STOPPED" and voc["status"].isna().tolist() == [
        False, True, True]
    assert voc["rule"].tolist() == ["message", "unclassified", "unclassified"]
    assert voc["example_message"].tolist() == ["Instance stopped.", "m?", "q"]
    assert voc.attrs["unclassified_share"] == 0.4
    mapped = ka.event_vocabulary(ev, {"y": "error"})
    assert mapped.loc[mapped["type"] == "y", "rule"].item() == "mapping"
    assert mapped.loc[mapped["type"] == "y", "status"].item() == "ERROR"
    assert mapped.attrs["unclassified_share"] == 0.2
    no_message = ka.event_vocabulary(ev.drop(columns="message"))
    assert no_message["example_message"].isna().all() and no_message["count"].sum() == 5
