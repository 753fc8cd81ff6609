"""Lifecycle spans from small hand-written fleets, every span and finding written out.

The simulator tests compare with its ground truth; these pin each rule on its own:
which timestamp starts and ends which span, merging, clipping, the record joined to the
events, the stretch before the first event, and the exact findings.
"""

from __future__ import annotations

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.analysis._lifecycle import INTERVAL_COLUMNS

T0 = pd.Timestamp("2026-11-20 00:00", tz="UTC")
UNTIL = T0 + pd.Timedelta(minutes=60)
MAPPING = {"alloc": "ALLOCATING", "start": "STARTING", "up": "HEALTHY",
           "sick": "UNHEALTHY", "stop": "STOPPED", "fail": "ERROR", "note": None}


def m(minutes):
    return pd.NaT if minutes is None else T0 + pd.Timedelta(minutes=minutes)


def instances(rows, details=True, terminated=True):
    """rows: (id, status, created, updated, started, succeeded, terminated) in minutes."""
    out = pd.DataFrame({
        "id": [r[0] for r in rows], "status": [r[1] for r in rows],
        "created_at": [m(r[2]) for r in rows], "updated_at": [m(r[3]) for r in rows],
        "service_id": [f"svc-{r[0]}" for r in rows], "region": "fra"})
    if details:
        out["started_at"] = [m(r[4]) for r in rows]
        out["succeeded_at"] = [m(r[5]) for r in rows]
        if terminated:
            out["terminated_at"] = [m(r[6]) for r in rows]
    for col in ("created_at", "updated_at", "started_at", "succeeded_at", "terminated_at"):
        if col in out:
            out[col] = pd.Series(list(out[col]), dtype="datetime64[us, UTC]")
    return out


def events(rows):
    """rows: (instance_id, minutes, type[, metadata])."""
    return pd.DataFrame({
        "id": [f"e{i}" for i in range(len(rows))],
        "instance_id": [r[0] for r in rows],
        "when": pd.Series([m(r[1]) for r in rows], dtype="datetime64[us, UTC]"),
        "type": [r[2] for r in rows], "message": "",
        "metadata": [r[3] if len(r) > 3 else {} for r in rows]})


def spans(iv):
    """(instance, status, start min, end min, open_ended, source) per row, in order."""
    def minutes(t):
        return (t - T0) / pd.Timedelta(minutes=1)
    return [(r.instance_id, None if pd.isna(r.status) else str(r.status), minutes(r.start),
             minutes(r.end), bool(r.open_ended), str(r.source))
            for r in iv.itertuples(index=False)]


def kinds(iv):
    return sorted(zip(ka.findings(iv)["instance_id"], ka.findings(iv)["kind"], strict=True))


def test_timestamps_path_with_details_span_by_span():
    inst = instances([
        ("a", "HEALTHY", 0, 3, 1, 3, None),          # running since it succeeded
        ("b", "STOPPED", 0, 11, 1, 2, 10),           # ended at terminated_at
        ("c", "ERROR", 0, 5, 1, None, None),         # ended at updated_at, never healthy
        ("d", "UNHEALTHY", 0, 7, 1, 2, None),        # unhealthy since its last update
        ("e", "STARTING", 0, 1, 1, None, None),      # still starting
        ("f", "STARTING", 0, 4, 1, None, None),      # updated while starting: one span
        ("g", "ALLOCATING", 0, 0, None, None, None),  # nothing but its creation
        ("h", "HEALTHY", None, 5, None, None, None),  # nothing known at all
        ("i", "STOPPED", 0, 9, None, None, 6),       # stopped before it ever started
    ])
    iv = ka.lifecycles(inst, None, until=UNTIL)
    assert list(iv.columns) == list(INTERVAL_COLUMNS)
    t = "timestamps"
    assert spans(iv) == [
        ("a", "ALLOCATING", 0, 1, False, t), ("a", "STARTING", 1, 3, False, t),
        ("a", "HEALTHY", 3, 60, True, t),
        ("b", "ALLOCATING", 0, 1, False, t), ("b", "STARTING", 1, 2, False, t),
        ("b", "HEALTHY", 2, 10, False, t), ("b", "STOPPED", 10, 10, False, t),
        ("c", "ALLOCATING", 0, 1, False, t), ("c", "STARTING", 1, 5, False, t),
        ("c", "ERROR", 5, 5, False, t),
        ("d", "ALLOCATING", 0, 1, False, t), ("d", "STARTING", 1, 2, False, t),
        ("d", "HEALTHY", 2, 7, False, t), ("d", "UNHEALTHY", 7, 60, True, t),
        ("e", "ALLOCATING", 0, 1, False, t), ("e", "STARTING", 1, 60, True, t),
        ("f", "ALLOCATING", 0, 1, False, t), ("f", "STARTING", 1, 60, True, t),
        ("g", "ALLOCATING", 0, 60, True, t),
        ("i", "ALLOCATING", 0, 6, False, t), ("i", "STOPPED", 6, 6, False, t),
    ]
    assert iv["duration"].tolist() == (iv["end"] - iv["start"]).tolist()
    assert iv["service_id"].tolist() == [f"svc-{i}" for i in iv["instance_id"]]
    assert set(iv["region"]) == {"fra"}
    assert iv["app_id"].dtype == object and iv["app_id"].isna().all()
    assert iv["source"].cat.categories.tolist() == ["events", "timestamps", "both",
                                                     "lookbehind", "record", "transition",
                                                     "gap", "platform"]
    assert iv["open_ended"].dtype == bool
    bare = iv.copy()
    bare.attrs = {}
    assert ka.findings(bare).empty
    assert iv.attrs["since"] is None and iv.attrs["until"] == UNTIL
    assert kinds(iv) == []   # no events were given: no event findings


def test_without_terminated_at_the_update_ends_a_terminal_instance():
    inst = instances([("b", "STOPPED", 0, 11, 1, 2, None)], terminated=False)
    assert spans(ka.lifecycles(inst, None, until=UNTIL)) == [
        ("b", "ALLOCATING", 0, 1, False, "timestamps"),
        ("b", "STARTING", 1, 2, False, "timestamps"),
        ("b", "HEALTHY", 2, 11, False, "timestamps"),
        ("b", "STOPPED", 11, 11, False, "timestamps")]


def test_without_details_the_time_before_the_last_update_is_unknown():
    inst = instances([("a", "HEALTHY", 0, 5, 0, 0, 0), ("b", "STOPPED", 0, 8, 0, 0, 0),
                      ("c", "HEALTHY", 2, 2, 0, 0, 0)], details=False)
    iv = ka.lifecycles(inst, None, until=UNTIL)
    assert spans(iv) == [
        ("a", None, 0, 5, False, "timestamps"), ("a", "HEALTHY", 5, 60, True, "timestamps"),
        ("b", None, 0, 8, False, "timestamps"), ("b", "STOPPED", 8, 8, False, "timestamps"),
        ("c", "HEALTHY", 2, 60, True, "timestamps")]
    assert kinds(iv) == [("a", "unknown_status"), ("b", "unknown_status")]
    found = ka.findings(iv)
    assert set(found["detail"]) == {"a stretch before the first known status"}


def test_clipping_to_a_window():
    inst = instances([("b", "STOPPED", 0, 11, 1, 2, 10), ("a", "HEALTHY", 0, 3, 1, 3, None),
                      ("z", "STOPPED", 0, 4, 1, 2, 4)])
    iv = ka.lifecycles(inst, None, since=m(1.5), until=m(10))
    t = "timestamps"
    assert spans(iv) == [
        ("b", "STARTING", 1.5, 2, False, t), ("b", "HEALTHY", 2, 10, False, t),
        ("a", "STARTING", 1.5, 3, False, t), ("a", "HEALTHY", 3, 10, True, t),
        ("z", "STARTING", 1.5, 2, False, t), ("z", "HEALTHY", 2, 4, False, t),
        ("z", "STOPPED", 4, 4, False, t)]
    # STOPPED at 10 is not before until=10; a zero-length end at `since` is kept
    iv2 = ka.lifecycles(inst, None, since=m(4), until=m(11))
    assert [s for s in spans(iv2) if s[0] == "z"] == [("z", "STOPPED", 4, 4, False, t)]
    assert ("b", "STOPPED", 10, 10, False, t) in spans(iv2)
    assert iv2.attrs["since"] == m(4) and iv2.attrs["until"] == m(11)
    # ending exactly at `since` is outside; starting exactly at `until` too
    iv3 = ka.lifecycles(inst, None, since=m(3), until=m(60))
    assert [s[1:3] for s in spans(iv3) if s[0] == "a"] == [("HEALTHY", 3)]
    iv4 = ka.lifecycles(inst, None, since=m(0), until=m(1))
    assert [s[1:5] for s in spans(iv4)] == [("ALLOCATING", 0, 1, False)] * 3


def test_until_defaults_to_when_the_data_was_fetched():
    inst = instances([("a", "HEALTHY", 0, 3, 1, 3, None)])
    inst.attrs["fetched_at"] = m(30)
    iv = ka.lifecycles(inst, None)
    assert iv.attrs["until"] == m(30) and spans(iv)[-1] == ("a", "HEALTHY", 3, 30, True,
                                                             "timestamps")
    ev = events([("a", 0, "alloc")])
    ev.attrs["fetched_at"] = m(40)
    assert ka.lifecycles(inst, ev, mapping=MAPPING).attrs["until"] == m(40)
    iv = ka.lifecycles(inst, None, window="10min")
    assert (iv.attrs["since"], iv.attrs["until"]) == (m(20), m(30))


def test_events_path_span_by_span():
    inst = instances([("a", "HEALTHY", 0, 3, 1, 3, None), ("b", "STOPPED", 0, 9, 1, 2, 9),
                      ("c", "HEALTHY", 0, 1, 1, 1, None)])
    ev = events([("a", 3, "up"), ("a", 0, "alloc"), ("a", 1, "start"), ("a", 2, "note"),
                 ("b", 0, "alloc"), ("b", 2, "up"), ("b", 9, "stop"), ("a", 20, "sick")])
    iv = ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING)
    assert spans(iv) == [
        ("a", "ALLOCATING", 0, 1, False, "events"), ("a", "STARTING", 1, 3, False, "events"),
        ("a", "HEALTHY", 3, 20, False, "events"), ("a", "UNHEALTHY", 20, 60, True, "events"),
        ("b", "ALLOCATING", 0, 1, False, "events"), ("b", "STARTING", 1, 2, False, "gap"),
        ("b", "HEALTHY", 2, 9, False, "events"),
        ("b", "STOPPED", 9, 9, False, "events"),
        ("c", "ALLOCATING", 0, 1, False, "timestamps"),
        ("c", "HEALTHY", 1, 60, True, "timestamps")]
    # a's record says HEALTHY since 3 but its last event says UNHEALTHY at 20: the record
    # is older than the event, so no disagreement; c has no events at all; b went from
    # ALLOCATING to HEALTHY: its STARTING event never arrived, and STARTING (the one
    # status between them, whose length a shows) fills the gap after ALLOCATING's median
    assert kinds(iv) == [("", "missing_events"), ("c", "no_events")]
    assert ka.findings(iv)["detail"].tolist()[-1] == \
        "no status events; spans rebuilt from timestamps"


def test_the_record_ends_what_the_events_leave_open():
    inst = instances([("a", "ERROR", 0, 30, 1, 2, 25), ("b", "STOPPED", 0, 30, 1, 2, None),
                      ("c", "UNHEALTHY", 0, 40, 1, 2, None), ("d", "HEALTHY", 0, 1, 1, 1,
                                                                None)])
    ev = events([("a", 0, "alloc"), ("a", 2, "up"), ("b", 0, "alloc"), ("b", 2, "up"),
                 ("c", 0, "alloc"), ("c", 2, "up"), ("d", 0, "alloc"), ("d", 5, "up")])
    iv = ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING)
    rows = spans(iv)
    assert [r for r in rows if r[0] == "a"] == [
        ("a", "ALLOCATING", 0, 2, False, "events"), ("a", "HEALTHY", 2, 25, False, "both"),
        ("a", "ERROR", 25, 25, False, "timestamps")]
    assert [r for r in rows if r[0] == "b"] == [
        ("b", "ALLOCATING", 0, 2, False, "events"), ("b", "HEALTHY", 2, 30, False, "both"),
        ("b", "STOPPED", 30, 30, False, "timestamps")]
    # c: the record (UNHEALTHY since 40) disagrees with its last event: the event of
    # that change never arrived, the record says what and when
    assert [r for r in rows if r[0] == "c"][-2:] == [("c", "HEALTHY", 2, 40, False, "events"),
                                                    ("c", "UNHEALTHY", 40, 60, True, "record")]
    # d: the record (HEALTHY, updated at 1) is older than its last event: no finding
    found = ka.findings(iv)
    assert list(zip(found["instance_id"], found["kind"], found["detail"], strict=True)) == [
        ("a", "terminal_from_record",
         "the events stop before the instance's end; ERROR taken from its record"),
        ("b", "terminal_from_record",
         "the events stop before the instance's end; STOPPED taken from its record"),
        ("c", "record_disagrees",
         "the record says UNHEALTHY since its last update, the last event HEALTHY; the "
         "record's status is used from then on"),
        ("", "missing_events",
         "4 times, two consecutive status events cannot follow each other: an event "
         "between them never arrived (a steady status they imply fills the gap, source "
         "'gap')")]


def test_a_record_ending_before_the_last_event_is_not_used():
    inst = instances([("a", "STOPPED", 0, 1, 1, 1, 1)])
    ev = events([("a", 0, "alloc"), ("a", 5, "up")])
    iv = ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING)
    assert spans(iv) == [("a", "ALLOCATING", 0, 5, False, "events"),
                         ("a", "HEALTHY", 5, 60, True, "events")]
    assert kinds(iv) == [("", "missing_events"), ("a", "missing_terminal_event")]
    assert ka.findings(iv)["detail"].tolist()[-1] == \
        "the instance is STOPPED/ERROR but no span records its end"


def test_the_stretch_before_the_first_event():
    inst = instances([("a", "HEALTHY", 0, 3, 1, 3, None), ("b", "HEALTHY", 0, 3, 1, 3, None),
                      ("c", "HEALTHY", 0, 3, 1, 3, None), ("d", "HEALTHY", 10, 10, 10, 10,
                                                           None)])
    ev = events([("a", 10, "sick", {"previousStatus": "HEALTHY"}),
                 ("b", 10, "sick", {"before": "STARTING"}),
                 ("c", 10, "sick", {}), ("d", 10, "up", {"previousStatus": "STARTING"})])
    iv = ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING, previous_key="before")
    assert spans(iv) == [
        ("a", "HEALTHY", 0, 10, False, "events"), ("a", "UNHEALTHY", 10, 60, True, "events"),
        ("b", "STARTING", 0, 10, False, "events"), ("b", "UNHEALTHY", 10, 60, True, "events"),
        # nothing in c's metadata: UNHEALTHY follows a state that was up
        ("c", "HEALTHY", 0, 10, False, "transition"),
        ("c", "UNHEALTHY", 10, 60, True, "events"),
        ("d", "HEALTHY", 10, 60, True, "events")]   # created at its first event: no gap
    assert kinds(iv) == []
    # without previous_key, b's "before" is not read
    iv2 = ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING)
    assert [s for s in spans(iv2) if s[0] == "b"][0] == \
        ("b", "HEALTHY", 0, 10, False, "transition")
    # without a metadata column only the transitions tell the stretch before
    iv3 = ka.lifecycles(inst, ev.drop(columns="metadata"), until=UNTIL, mapping=MAPPING)
    assert [s[1:] for s in spans(iv3) if s[2] == 0] == [
        ("HEALTHY", 0, 10, False, "transition")] * 3
    # a status that more than one can precede leaves the stretch unknown
    up = events([("a", 10, "up", {})])
    iv4 = ka.lifecycles(inst.iloc[:1], up, until=UNTIL, mapping=MAPPING)
    assert spans(iv4)[0] == ("a", None, 0, 10, False, "events")
    assert kinds(iv4) == [("a", "unknown_status")]


def test_event_findings_exactly():
    inst = instances([("a", "STOPPED", 0, 5, 1, 2, 5), ("b", "HEALTHY", 0, 3, 1, 3, None)])
    ev = events([("a", 0, "alloc"), ("a", 5, "stop"), ("a", 7, "up"),
                 ("b", 0, "alloc"), ("b", 3, "up"), ("b", 3, "sick"), ("ghost", 4, "up"),
                 ("ghost", 5, "up"), ("b", 4, "weird"), ("b", 6, None)])
    iv = ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING)
    found = ka.findings(iv)
    by_kind = dict(zip(found["kind"], zip(found["instance_id"], found["detail"],
                                          strict=True), strict=True))
    assert by_kind["unknown_event_types"] == (
        "", "2 of 10 events (20.0%) match no rule, by type: weird (1), <none> (1); "
        "instances without usable events fall back to their timestamps. See "
        "event_vocabulary(); pass mapping= to use them.")
    assert by_kind["events_without_instance"] == (
        "", "2 events belong to instances missing from the instance listing; they were "
            "left out")
    assert by_kind["event_after_terminal"] == ("a", "a status event follows STOPPED or ERROR")
    assert by_kind["simultaneous_events"] == (
        "b", "two status events share a timestamp; their order is a guess")
    assert by_kind["missing_events"][0] == ""
    assert len(found) == 5
    # ties keep the input's order: b is UNHEALTHY from 3 (the later row), HEALTHY for 0 s
    assert [s for s in spans(iv) if s[0] == "b"] == [
        ("b", "ALLOCATING", 0, 3, False, "events"), ("b", "HEALTHY", 3, 3, False, "events"),
        ("b", "UNHEALTHY", 3, 60, True, "events")]


def test_many_unknown_types_are_summed_up():
    inst = instances([("a", "HEALTHY", 0, 3, 1, 3, None)])
    ev = events([("a", i, f"t{i:02d}") for i in range(13)] + [("a", 20, "t00")])
    iv = ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING)
    detail = ka.findings(iv).set_index("kind").loc["unknown_event_types", "detail"]
    shown = ", ".join(["t00 (2)"] + [f"t{i:02d} (1)" for i in range(1, 10)])
    assert detail.startswith(f"14 of 14 events (100.0%) match no rule, by type: {shown} "
                             "and 3 more;")
    assert kinds(iv) == [("", "unknown_event_types"), ("a", "no_events")]


def test_duplicate_instances_and_bad_arguments():
    inst = instances([("a", "HEALTHY", 0, 3, 1, 3, None)] * 2)
    assert len(ka.lifecycles(inst, None, until=UNTIL)) == 3
    with pytest.raises(TypeError, match=r"^instances must be a DataFrame from load_instances"):
        ka.lifecycles(inst.drop(columns="id"), None)
    with pytest.raises(TypeError, match=r"^events must be a DataFrame from load_events, or "
                                        r"None$"):
        ka.lifecycles(inst, events([]).drop(columns="when"))
    with pytest.raises(TypeError, match="events must"):
        ka.lifecycles(inst, [("a", 1, "up")])
    empty = ka.lifecycles(inst.iloc[:0], None, until=UNTIL)
    assert len(empty) == 0 and list(empty.columns) == list(INTERVAL_COLUMNS)
    assert list(ka.findings(empty).columns) == ["instance_id", "kind", "detail"]


def test_timestamps_edge_cases():
    inst = instances([
        ("j", "HEALTHY", 0, 2, None, 2, None),       # no started_at: allocating until healthy
        ("k", "ALLOCATING", 0, 3, None, None, None),  # two allocating stretches: one span
        ("l", "PAUSED", 0, 4, 1, None, None),        # a status this package does not know
    ])
    assert spans(ka.lifecycles(inst, None, until=UNTIL)) == [
        ("j", "ALLOCATING", 0, 2, False, "timestamps"),
        ("j", "HEALTHY", 2, 60, True, "timestamps"),
        ("k", "ALLOCATING", 0, 60, True, "timestamps"),
        ("l", "ALLOCATING", 0, 1, False, "timestamps"),
        ("l", "STARTING", 1, 4, False, "timestamps"),
        ("l", None, 4, 60, True, "timestamps")]
    # started_at without succeeded_at is not the detail columns: the record alone
    partial = instances([("a", "HEALTHY", 0, 5, 1, 3, None)]).drop(columns="succeeded_at")
    assert spans(ka.lifecycles(partial, None, until=UNTIL)) == [
        ("a", None, 0, 5, False, "timestamps"), ("a", "HEALTHY", 5, 60, True, "timestamps")]


def test_events_with_the_fewest_columns_and_no_creation_time():
    inst = instances([("a", "HEALTHY", 0, 3, 1, 3, None)]).drop(columns="created_at")
    ev = events([("a", 1, "start"), ("a", 3, "up")])[["instance_id", "when", "type"]]
    assert spans(ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING)) == [
        ("a", "STARTING", 1, 3, False, "events"), ("a", "HEALTHY", 3, 60, True, "events")]
    with pytest.raises(ValueError, match="mapping"):
        ka.lifecycles(instances([("a", "HEALTHY", 0, 3, 1, 3, None)]), None,
                      mapping={"x": "RUNNING"})


def test_which_silent_instances_are_said_to_lack_events():
    inst = instances([("a", "HEALTHY", 0, 3, 1, 3, None),
                      ("born-at-until", "HEALTHY", 60, 60, 60, 60, None),
                      ("born-before", "HEALTHY", 59, 59, 59, 59, None),
                      ("quiet-before", "HEALTHY", 0, 9, 1, 2, None),
                      ("changed-at-since", "HEALTHY", 0, 10, 1, 2, None)])
    ev = events([("a", 0, "alloc")])
    iv = ka.lifecycles(inst, ev, since=m(10), until=UNTIL, mapping=MAPPING)
    assert [i for i, k in kinds(iv) if k == "no_events"] == ["born-before",
                                                              "changed-at-since"]
    iv = ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING)
    assert [i for i, k in kinds(iv) if k == "no_events"] == [
        "born-before", "changed-at-since", "quiet-before"]


def test_odd_metadata_before_the_first_event():
    inst = instances([("a", "HEALTHY", 0, 3, 1, 3, None), ("b", "HEALTHY", 0, 3, 1, 3, None)])
    ev = events([("a", 10, "sick", None), ("b", 10, "sick", "previousStatus=HEALTHY")])
    for key in (None, "before"):
        iv = ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING, previous_key=key)
        # unreadable metadata: what the message implies (UNHEALTHY follows HEALTHY)
        assert [s[:4] for s in spans(iv)] == [
            ("a", "HEALTHY", 0, 10), ("a", "UNHEALTHY", 10, 60),
            ("b", "HEALTHY", 0, 10), ("b", "UNHEALTHY", 10, 60)]
        assert set(iv.loc[iv["start"] == T0, "source"]) == {"transition"}


def test_the_record_at_the_very_time_of_the_last_event():
    inst = instances([("a", "STOPPED", 0, 5, 1, 2, 5), ("b", "ALLOCATING", 0, 9, None, None,
                                                         None),
                      ("c", "HEALTHY", 0, 9, 1, 2, None)])
    ev = events([("a", 0, "alloc"), ("a", 5, "up"), ("b", 0, "alloc"), ("b", 2, "start"),
                 ("c", 0, "alloc")])
    iv = ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING)
    assert [s for s in spans(iv) if s[0] == "a"] == [
        ("a", "ALLOCATING", 0, 5, False, "events"), ("a", "HEALTHY", 5, 5, False, "both"),
        ("a", "STOPPED", 5, 5, False, "timestamps")]
    found = ka.findings(iv)
    assert list(zip(found["instance_id"], found["detail"], strict=True)) == [
        ("a", "the events stop before the instance's end; STOPPED taken from its record"),
        ("b", "the record says ALLOCATING since its last update, the last event STARTING; "
              "the record's status is used from then on"),
        ("c", "the record says HEALTHY since its last update, the last event ALLOCATING; "
              "the record's status is used from then on"),
        ("", "1 times, two consecutive status events cannot follow each other: an event "
             "between them never arrived (a steady status they imply fills the gap, source "
             "'gap')")]


def test_ten_unknown_types_are_all_named():
    inst = instances([("a", "HEALTHY", 0, 3, 1, 3, None)])
    for n, more in ((10, ""), (11, " and 1 more")):
        ev = events([("a", i, f"t{i:02d}") for i in range(n)])
        detail = ka.findings(ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING)).set_index(
            "kind").loc["unknown_event_types", "detail"]
        shown = ", ".join(f"t{i:02d} (1)" for i in range(10))
        assert detail.startswith(f"{n} of {n} events (100.0%) match no rule, by type: "
                                 f"{shown}{more}; ")


def test_events_without_a_time_are_left_out_and_said_so():
    inst = instances([("a", "HEALTHY", 0, 3, 1, 3, None)])
    ev = events([("a", None, "alloc"), ("a", 1, "start"), ("a", 3, "up"), ("a", None, "up")])
    iv = ka.lifecycles(inst, ev, until=UNTIL, mapping=MAPPING)
    # what came first is lost, but a start follows an allocation
    assert spans(iv) == [("a", "ALLOCATING", 0, 1, False, "transition"),
                         ("a", "STARTING", 1, 3, False, "events"),
                         ("a", "HEALTHY", 3, 60, True, "events")]
    found = ka.findings(iv)
    assert list(zip(found["kind"], found["detail"], strict=True))[0] == (
        "events_without_time", "2 events have no readable time; they were left out")
    assert kinds(iv) == [("", "events_without_time")]
    only = ka.lifecycles(inst, events([("a", None, "up")]), until=UNTIL, mapping=MAPPING)
    assert [s[1] for s in spans(only)] == ["ALLOCATING", "STARTING", "HEALTHY"]
    assert kinds(only) == [("", "events_without_time"), ("a", "no_events")]


def test_windows_finer_than_a_microsecond_are_cut_to_whole_microseconds():
    inst = instances([("a", "HEALTHY", 0, 3, 1, 3, None)])
    iv = ka.lifecycles(inst, None, since=m(2) + pd.Timedelta(nanoseconds=999),
                       until=m(30) + pd.Timedelta(nanoseconds=999))
    assert iv["start"].tolist()[0] == m(2) and iv["end"].tolist()[-1] == m(30)
    assert iv["start"].dtype == "datetime64[us, UTC]"
