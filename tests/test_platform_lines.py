"""The platform's own lines (the ``koyeb`` log stream) place events that never arrived.

Rules on hand-made timelines, the loader against the simulator over real sockets (a
fleet that loses 5 % of its events), and against a small server that names other
instances, fails, or never answers about logs."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.load._platform import read_platform
from koyeb_analytics.simulator._vocabulary import OPAQUE_VOCABULARY

from .hostile import TOKEN, HostileServer, rest
from .window_truth import per_status, truth_intervals

T0 = pd.Timestamp("2026-11-01T00:00:00Z")
MSG = {"ALLOCATING": "Instance created. Preparing to start...",
       "STARTING": "Instance is starting... Waiting for health checks to pass.",
       "HEALTHY": "Instance is healthy. All health checks are passing.",
       "UNHEALTHY": "TCP health check failed on port 8000.",
       "STOPPING": "Instance is stopping.", "STOPPED": "Instance stopped.",
       "ERROR": "Application exited with code 1.",
       "SLEEPING": "Instance is sleeping. It will wake up on the next request."}


def m(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def _timeline(rows):
    ev = pd.DataFrame({"id": [f"e{i}" for i in range(len(rows))],
                       "instance_id": [r[0] for r in rows], "when": [m(r[1]) for r in rows],
                       "type": "t", "message": [MSG[r[2]] for r in rows],
                       "metadata": [{}] * len(rows)})
    ids = sorted({r[0] for r in rows})
    last = {r[0]: r for r in rows}
    inst = pd.DataFrame({"id": ids, "status": [last[i][2] for i in ids],
                         "created_at": m(0), "updated_at": [m(last[i][1]) for i in ids]})
    return inst, ev


def _lines(rows):
    return pd.DataFrame({"ts": [m(t) for _, t, _ in rows], "instance_id": [i for i, _, _ in rows],
                         "msg": [s if s not in MSG else MSG[s] for _, _, s in rows]})


def _spans(iv, who):
    return [(str(r.status), (r.start - T0) / pd.Timedelta("1min"),
             (r.end - T0) / pd.Timedelta("1min"), r.source)
            for r in iv[iv.instance_id == who].itertuples()]


# a: four flaps of 4 minutes (the median), then HEALTHY at 40 and HEALTHY at 100: the
# UNHEALTHY between them never arrived; it began at 91 (the platform says so).
FLAPS = [("a", 0, "ALLOCATING"), ("a", 1, "STARTING"), ("a", 2, "HEALTHY")] + [
    row for k in range(4) for row in (("a", 10 + 7 * k, "UNHEALTHY"), ("a", 14 + 7 * k, "HEALTHY"))
] + [("a", 100, "HEALTHY")]


def test_a_lost_flap_takes_the_time_the_platform_lines_say_not_a_median():
    inst, ev = _timeline(FLAPS)
    guessed = ka.lifecycles(inst, ev, until=m(120))
    # without the lines: the median's guess, 4 minutes before the recovery
    assert _spans(guessed, "a")[-3:] == [("HEALTHY", 35, 96, "events"),
                                         ("UNHEALTHY", 96, 100, "gap"),
                                         ("HEALTHY", 100, 120, "events")]
    lines = _lines([("a", 35, "HEALTHY"), ("a", 91, "UNHEALTHY"), ("a", 91 + 1 / 6, "UNHEALTHY"),
                    ("a", 95, "Network configuration propagated"), ("a", 99.9, "UNHEALTHY"),
                    ("a", 100, "HEALTHY")])
    iv = ka.lifecycles(inst, ev, until=m(120), platform=lines)
    assert _spans(iv, "a")[-3:] == [("HEALTHY", 35, 91, "events"),
                                    ("UNHEALTHY", 91, 100, "platform"),
                                    ("HEALTHY", 100, 120, "events")]
    lost = [f for f in iv.attrs["findings"] if f["kind"] == "missing_events"]
    assert lost[0]["n_lost"] == 1 and lost[0]["n_placed"] == 1
    assert list(iv.attrs["lost_events"]) == [{"instance_id": "a", "after": m(35), "before": m(100),
                                        "betrayed": True, "placed": True}]


def test_lines_that_cannot_lead_from_one_event_to_the_next_are_not_believed():
    inst, ev = _timeline(FLAPS)
    # a STOPPED between two HEALTHY events, or a HEALTHY right after HEALTHY: no chain
    for said in ([("a", 91, "STOPPED")], [("a", 50, "SLEEPING"), ("a", 60, "UNHEALTHY")]):
        iv = ka.lifecycles(inst, ev, until=m(120), platform=_lines(said))
        assert _spans(iv, "a")[-2][1:] == (96, 100, "gap")
        assert iv.attrs["lost_events"][0]["placed"] is False
    # another instance's lines say nothing about this one
    iv = ka.lifecycles(inst, ev, until=m(120), platform=_lines([("b", 91, "UNHEALTHY")]))
    assert _spans(iv, "a")[-2][3] == "gap"


def test_a_crash_may_hide_a_lost_unhealthy_that_only_the_lines_reveal():
    rows = [("c", 0, "ALLOCATING"), ("c", 1, "STARTING"), ("c", 2, "HEALTHY"), ("c", 50, "ERROR")]
    inst, ev = _timeline(rows)
    plain = ka.lifecycles(inst, ev, until=m(60))
    assert _spans(plain, "c")[-2:] == [("HEALTHY", 2, 50, "events"), ("ERROR", 50, 50, "events")]
    assert list(plain.attrs["lost_events"]) == [{"instance_id": "c", "after": m(2), "before": m(50),
                                           "betrayed": False, "placed": False}]
    # the ERROR's own line, written a moment before its event, is not a change of its own
    lines = _lines([("c", 43, "UNHEALTHY"), ("c", 45, "UNHEALTHY"), ("c", 49.99, "ERROR")])
    iv = ka.lifecycles(inst, ev, until=m(60), platform=lines)
    assert _spans(iv, "c")[-3:] == [("HEALTHY", 2, 43, "events"),
                                    ("UNHEALTHY", 43, 50, "platform"),
                                    ("ERROR", 50, 50, "events")]
    hidden = [f for f in iv.attrs["findings"] if f["kind"] == "hidden_events"]
    assert hidden and hidden[0]["n_found"] == 1
    assert not [f for f in iv.attrs["findings"] if f["kind"] == "missing_events"]


def test_a_wake_whose_start_was_lost_is_placed_from_a_plain_start_line():
    rows = [("w", 0, "ALLOCATING"), ("w", 1, "STARTING"), ("w", 2, "HEALTHY"),
            ("w", 10, "SLEEPING"), ("w", 60, "HEALTHY")]
    inst, ev = _timeline(rows)
    iv = ka.lifecycles(inst, ev, until=m(70), platform=_lines([("w", 59, "STARTING")]))
    assert _spans(iv, "w")[-3:] == [("SLEEPING", 10, 59, "events"),
                                    ("STARTING", 59, 60, "platform"),
                                    ("HEALTHY", 60, 70, "events")]


def test_platform_must_be_a_frame_with_its_columns():
    inst, ev = _timeline(FLAPS)
    with pytest.raises(TypeError, match="platform must be a DataFrame with ts, instance_id"):
        ka.lifecycles(inst, ev, platform=pd.DataFrame({"ts": []}))


LOSSY = dataclasses.replace(OPAQUE_VOCABULARY, missing_share=0.05)
NOW = pd.Timestamp("2026-11-20T12:00:00Z")


@pytest.fixture(scope="module")
def lossy():
    with ka.simulate(seed=3, days=4, services=6, now=NOW, vocabulary=LOSSY) as sim:
        yield sim


def test_load_window_reads_the_lines_of_each_lost_event_and_lands_on_the_truth(lossy):
    since = NOW - pd.Timedelta("2D")
    client = lossy.client()
    with pytest.raises(ValueError, match="platform must be one of 'lost', 'all', 'none'"):
        ka.load_window(client, since=since, until=NOW, platform="yes", progress=False)
    plain = ka.load_window(client, since=since, until=NOW, platform="none", progress=False)
    assert plain.platform is not None and not len(plain.platform)
    before = len(lossy.requests)
    win = ka.load_window(client, since=since, until=NOW, progress=False)
    log_queries = [r for r in lossy.requests[before:] if r.path == "/v1/streams/logs/query"]
    said = win.platform
    assert said.attrs["gaps"] >= 5 and said.attrs["requests"] == len(log_queries)
    assert said.attrs["failed"] == 0 and len(said)
    assert list(said.columns) == ["ts", "instance_id", "msg"]
    assert set(said["instance_id"]) <= set(win.instances["id"])
    truth = truth_intervals(lossy, win.instances, since, NOW)
    want = per_status(truth)
    errors = {}
    for name, w in (("none", plain), ("lost", win)):
        iv = ka.analyse(w).intervals
        got = per_status(iv)
        errors[name] = sum(abs(got.get(s, pd.Timedelta(0)) - t).total_seconds()
                           for s, t in want.items())
        if name == "lost":
            placed = iv[iv["source"] == "platform"]
            assert len(placed)
            # every placed span starts where a true span of that instance starts
            starts = set(zip(truth["instance_id"], truth["start"], strict=True))
            assert all((r.instance_id, r.start) in starts for r in placed.itertuples())
    assert errors["lost"] < errors["none"] / 3


def test_platform_all_also_reads_the_stretch_before_each_crash_and_stop(lossy):
    since = NOW - pd.Timedelta("1D")
    lost = ka.load_window(lossy.client(), since=since, until=NOW, progress=False)
    every = ka.load_window(lossy.client(), since=since, until=NOW, platform="all",
                           progress=False)
    iv = ka.lifecycles(every.instances, every.events, since=since, until=NOW,
                       start_status=every.start_status)
    pairs = iv.attrs["lost_events"]
    # shared, not copied, by the frames derived from the intervals
    assert iv.head().attrs["lost_events"] is pairs
    assert every.platform.attrs["gaps"] == len(pairs)
    assert lost.platform.attrs["gaps"] == sum(g["betrayed"] for g in pairs)
    assert every.platform.attrs["gaps"] > lost.platform.attrs["gaps"]


def _logs_server(lines_for, status=200):
    def route(req, srv):
        if req.path != "/v1/streams/logs/query":
            return 404, {"code": "not_found"}, {}
        if status != 200:
            return status, {"code": "internal", "message": "boom"}, {}
        return 200, {"data": lines_for(req), "pagination": {"has_more": False}}, {}
    return HostileServer(rest(route))


RECENT = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta("2h")  # inside log retention


def r(minutes: float) -> pd.Timestamp:
    return RECENT + pd.Timedelta(minutes=minutes)


GAPS = [{"instance_id": "i-1", "after": r(0), "before": r(60)},
        {"instance_id": "i-2", "after": r(10), "before": r(20)}]


def _line(minute, msg, instance_id=None):
    labels = {"stream": "koyeb", "service_id": "s"}
    if instance_id:
        labels["instance_id"] = instance_id
    return {"msg": msg, "created_at": r(minute).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "labels": labels}


def test_read_platform_keeps_its_own_lines_and_drops_those_naming_another_instance():
    def lines_for(req):
        asked = req.query["instance_ids"]
        at = 30 if asked == "i-1" else 15  # inside each gap
        return [_line(at, MSG["UNHEALTHY"]), _line(at + 1, MSG["UNHEALTHY"], asked),
                _line(at + 2, MSG["HEALTHY"], "someone-else")]
    with _logs_server(lines_for) as srv:
        got = read_platform(ka.KoyebClient(TOKEN, base_url=srv.url), GAPS)
        asked = sorted(r.query["instance_ids"] for r in srv.requests)
    assert asked == ["i-1", "i-2"]
    assert got.attrs["gaps"] == 2 and got.attrs["requests"] == 2 and got.attrs["failed"] == 0
    # the line naming nobody is the asked instance's; the one naming another is dropped
    assert sorted(set(got["instance_id"])) == ["i-1", "i-2"]
    assert (got["msg"] == MSG["HEALTHY"]).sum() == 0 and len(got) == 4


def test_read_platform_bounds_the_gaps_it_reads_and_keeps_going_when_logs_fail():
    with _logs_server(lambda req: [], status=500) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0)
        got = read_platform(client, GAPS)
    assert len(got) == 0 and got.attrs["failed"] == 2
    assert all("could not be read" in n for n in got.attrs["notes"])
    with _logs_server(lambda req: [_line(15, MSG["UNHEALTHY"])]) as srv:
        got = read_platform(ka.KoyebClient(TOKEN, base_url=srv.url), GAPS, max_gaps=1)
        assert len(srv.requests) == 1
    # the newest gap first; the other is said to keep the median's guess
    assert got.attrs["skipped"] == 1 and "keep the median's guess" in got.attrs["notes"][0]
    assert set(got["instance_id"]) == {"i-1"}
    with pytest.raises(ValueError, match="max_gaps must be a non-negative integer"):
        read_platform(client, GAPS, max_gaps=-1)


def test_a_server_whose_instance_filter_leaves_out_platform_lines_keeps_the_guess(lossy):
    since = NOW - pd.Timedelta("2D")
    lossy.streams.platform_by_instance = False
    try:
        win = ka.load_window(lossy.client(), since=since, until=NOW, progress=False)
    finally:
        lossy.streams.platform_by_instance = True
    assert win.platform.attrs["gaps"] >= 5 and len(win.platform) == 0
    iv = ka.analyse(win).intervals
    lost = [f for f in iv.attrs["findings"] if f["kind"] == "missing_events"][0]
    assert lost["n_lost"] >= 5 and lost["n_placed"] == 0
    assert "platform" not in set(iv["source"]) and "gap" in set(iv["source"])


def test_the_poller_reads_each_lost_gap_once_and_places_it():
    from koyeb_analytics.poller import Poller

    with ka.simulate(seed=3, days=3, services=6, vocabulary=LOSSY) as lossy:  # now: the clock
        _poller_reads_each_gap_once(lossy, Poller)


def _poller_reads_each_gap_once(lossy, Poller):
    with pytest.raises(TypeError, match="platform must be True or False"):
        Poller(lossy.client(), platform="lost")
    p = Poller(lossy.client(), window="2D", lookbehind="6h")
    p.poll()
    before = len(lossy.requests)
    iv = p.intervals()
    first = [r for r in lossy.requests[before:] if r.path == "/v1/streams/logs/query"]
    assert first and "platform" in set(iv["source"])
    lost = [f for f in iv.attrs["findings"] if f["kind"] == "missing_events"][0]
    assert lost["n_placed"] >= 1
    before = len(lossy.requests)
    again = p.intervals()
    assert not [r for r in lossy.requests[before:] if r.path == "/v1/streams/logs/query"]
    assert (again["source"] == "platform").sum() == (iv["source"] == "platform").sum()
    off = Poller(lossy.client(), window="2D", lookbehind="6h", platform=False)
    off.poll()
    assert "platform" not in set(off.intervals()["source"])


def test_a_start_after_a_sleep_is_a_wake_not_a_lost_event_whatever_its_message():
    rows = [("s", 0, "ALLOCATING"), ("s", 1, "STARTING"), ("s", 2, "HEALTHY"),
            ("s", 10, "SLEEPING"), ("s", 50, "STARTING"), ("s", 51, "HEALTHY")]
    inst, ev = _timeline(rows)  # the start's text says nothing of waking up
    iv = ka.lifecycles(inst, ev, until=m(60))
    assert not [f for f in iv.attrs["findings"] if f["kind"] == "missing_events"]
    assert not [g for g in iv.attrs["lost_events"] if g["betrayed"]]
    assert _spans(iv, "s")[-3:] == [("SLEEPING", 10, 50, "events"),
                                    ("STARTING", 50, 51, "events"),
                                    ("HEALTHY", 51, 60, "events")]
