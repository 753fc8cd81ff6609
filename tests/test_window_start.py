"""A window that opens in the middle of instances' lives, on the real API's shape.

Each rule of the window's start has its test: the status at ``since`` from the
instance record and from a bounded look-behind (and the store's, with no request),
message transitions, unknown time left out of availability with the coverage said, no
incident at the window's start because the status before it was unknown, and the
figures of 24-hour and 7-day windows of 21-day opaque histories against the truth.
"""

from __future__ import annotations

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.analysis._classify import TRANSITIONS, possible_previous, previous_from_message
from koyeb_analytics.analysis._startstatus import start_status

from .conftest import fast_client
from .window_truth import compare, truth_intervals

NOW = pd.Timestamp("2026-11-20T12:00:00Z")
T0 = pd.Timestamp("2026-11-20T00:00:00Z")


def m(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


@pytest.fixture(scope="module")
def opaque21():
    with ka.simulate(seed=2, days=21, services=12, now=NOW, vocabulary="opaque") as sim:
        yield sim


def _window(sim, length, **options):
    since = NOW - pd.Timedelta(length)
    return since, ka.load_window(fast_client(sim), since=since, until=NOW, progress=False,
                                 **options)


@pytest.mark.parametrize("length", ["24h", "7D"])
def test_window_figures_match_the_truth(opaque21, length):
    since, win = _window(opaque21, length)
    a = ka.analyse(win)
    got = compare(a.intervals, truth_intervals(opaque21, win.instances, since, NOW),
                  since, NOW)
    assert got["availability_pp"] <= 0.02, got
    n, want = got["incidents"], got["incidents_truth"]
    assert abs(n - want) <= max(1, 0.1 * want), got
    assert got["unknown_share"] <= 0.01, got
    # every event loaded is in the window; what came before travels on its own
    assert (win.events["when"] >= since).all()
    assert (win.start_status["evidence_at"] < since).all()


def test_without_the_start_status_the_numbers_are_wrong(opaque21):
    # What the evidence buys: the same window with none of it.
    since, win = _window(opaque21, "24h", lookbehind=0)
    bare = ka.lifecycles(win.instances.assign(updated_at=NOW), win.events, since=since,
                         until=NOW)
    with_it = ka.analyse(_window(opaque21, "24h")[1]).intervals
    share = lambda iv: float(((iv["end"] - iv["start"])[iv["status"].isna()]).sum()  # noqa: E731
                             / (iv["end"] - iv["start"]).sum())
    assert share(bare) > 0.05 > 0.01 >= share(with_it)


def test_look_behind_stops_at_its_bound_and_reads_quiet_instances_one_by_one(opaque21):
    since, win = _window(opaque21, "24h")
    cost = win.lookbehind
    _, none = _window(opaque21, "24h", lookbehind=0)
    assert cost["duration"] == pd.Timedelta("6h")
    assert cost["pages_total"] + cost["requests"] > none.lookbehind["pages_total"]
    sources = set(win.start_status["source"])
    assert {"record", "lookbehind"} <= sources
    look = win.start_status[win.start_status["source"] == "lookbehind"]
    # within the bound, except those read in a listing of their own (quiet for longer)
    far = look[look["evidence_at"] < since - pd.Timedelta("6h")]
    assert 1 <= len(far) <= cost["per_instance"]
    assert cost["requests"] >= 1
    # a longer bound reads more pages and leaves fewer to the listing of the rest
    _, long = _window(opaque21, "24h", lookbehind="2D")
    assert long.lookbehind["pages"] > cost["pages"]
    assert long.lookbehind["per_instance"] < cost["per_instance"]
    # lookbehind=0 reads nothing before since
    assert none.lookbehind["pages"] == none.lookbehind["per_instance"] == 0
    assert "lookbehind" not in set(none.start_status["source"])
    with pytest.raises(ValueError, match="lookbehind"):
        _window(opaque21, "24h", lookbehind="soon")


@pytest.mark.parametrize("length", ["24h", "7D"])
def test_the_start_status_is_the_truth_at_since(opaque21, length):
    since, win = _window(opaque21, length)
    truth = opaque21.truth_intervals()
    end = truth["end"].fillna(NOW + pd.Timedelta("1D"))
    at = truth[(truth["start"] <= since) & (end > since)].drop_duplicates(
        "instance_id", keep="last").set_index("instance_id")["status"].astype(str)
    got = win.start_status.set_index("instance_id")
    assert "lookbehind" in set(got["source"])
    for source in set(got["source"]):
        part = got[got["source"] == source]
        agree = (part["status"].astype(str) == at.reindex(part.index)).mean()
        # the record is exact; a look-behind misses only where an event was lost
        assert agree == 1.0 if source == "record" else agree >= 0.95, (source, agree)


def test_a_history_store_answers_the_look_behind_with_no_request(opaque21, tmp_path):
    store = ka.HistoryStore(tmp_path / "h")
    store.sync(fast_client(opaque21))
    before = len(opaque21.requests)
    since = NOW - pd.Timedelta("24h")
    win = ka.load_window(store, since=since, until=NOW, progress=False)
    assert len(opaque21.requests) == before
    assert "lookbehind" in set(win.start_status["source"])
    api = _window(opaque21, "24h")[1]
    both = win.start_status.merge(api.start_status, on="instance_id")
    assert len(both) >= 0.9 * len(api.start_status)
    assert (both["status_x"].astype(str) == both["status_y"].astype(str)).mean() >= 0.98


def test_record_start_status_rules():
    inst = pd.DataFrame({
        "id": ["quiet", "busy", "born-later", "ended-before", "ended-after"],
        "status": ["HEALTHY", "HEALTHY", "HEALTHY", "STOPPED", "ERROR"],
        "created_at": [m(0), m(0), m(20), m(0), m(0)],
        "updated_at": [m(5), m(15), m(25), m(8), m(12)]})
    before = pd.DataFrame({"id": ["e1", "e2", "e3"], "instance_id": ["busy", "busy", "quiet"],
                           "when": [m(2), m(6), m(3)], "type": ["x", "x", "x"],
                           "message": ["Instance is starting", "Instance is sleeping.",
                                       "Instance is stopping."], "metadata": [{}, {}, {}]})
    got = start_status(inst, before, m(10))
    rows = {r.instance_id: (str(r.status), r.source, r.evidence_at) for r in got.itertuples()}
    # quiet: its record holds since 5 (the record wins over a look-behind event);
    # busy: changed after since, so its last event before since tells; the others were
    # not alive at since
    assert rows == {"quiet": ("HEALTHY", "record", m(5)),
                    "busy": ("SLEEPING", "lookbehind", m(6))}
    assert list(got.columns) == ["instance_id", "status", "source", "evidence_at"]
    # the lifecycle uses it for the stretch before each instance's first event
    ev = pd.DataFrame({"id": ["w1"], "instance_id": ["busy"], "when": [m(15)], "type": ["x"],
                       "message": ["Instance is waking up."], "metadata": [{}]})
    iv = ka.lifecycles(inst, ev, since=m(10), until=m(30), start_status=got)
    busy = iv[iv["instance_id"] == "busy"]
    assert [(str(s), src) for s, src in zip(busy["status"], busy["source"], strict=True)] == [
        ("SLEEPING", "lookbehind"), ("STARTING", "events")]
    start = [f for f in iv.attrs["findings"] if f["kind"] == "start_status"][0]
    # quiet's record holds (its listing's timestamps say as much); ended-after changed
    # after since and nothing tells what it was before: unknown, and said so
    assert (start["n_lookbehind"], start["n_timestamps"], start["n_unknown"]) == (1, 1, 1)
    assert start["detail"].startswith("status at the window's start of 3 instances: 1 from ")
    assert start["detail"].endswith(", 1 unknown")
    with pytest.raises(TypeError, match="start_status"):
        ka.lifecycles(inst, ev, since=m(10), start_status=[("busy", "HEALTHY")])


def test_transitions_match_the_invented_vocabulary_truth():
    # The table was written from the lifecycle and the message families; here it meets
    # every transition the invented vocabulary's metadata states.
    with ka.simulate(seed=3, days=7, services=12, now=NOW) as sim:
        ev = ka.load_events(fast_client(sim), progress=False)
    st = ev["metadata"].map(lambda d: d.get("status"))
    prev = ev["metadata"].map(lambda d: d.get("previousStatus"))
    pairs = pd.DataFrame({"status": st, "previous": prev}).dropna()
    wake = (pairs["status"] == "STARTING") & (pairs["previous"] == "SLEEPING")
    allowed = pairs[~wake].apply(lambda r: r["previous"] in TRANSITIONS[r["status"]], axis=1)
    assert len(pairs) > 500 and allowed.all()
    single = pairs[pairs["status"].map(lambda s: len(TRANSITIONS[s]) == 1) & ~wake]
    assert (single["status"].map(previous_from_message) == single["previous"]).all()
    assert possible_previous("STARTING", "Instance is waking up. Waiting for health checks "
                             "to pass.") == ("SLEEPING",)


def intervals(rows):
    return pd.DataFrame(rows, columns=["instance_id", "service_id", "status", "start", "end"]
                        ).assign(status=lambda d: pd.Categorical(
                            d["status"], categories=list(ka.STATUSES), ordered=True))


def test_unknown_time_is_left_out_and_the_coverage_said():
    iv = intervals([("a", "s", None, m(0), m(10)), ("a", "s", "HEALTHY", m(10), m(50)),
                    ("a", "s", "UNHEALTHY", m(50), m(60))])
    up = ka.uptime(iv, since=m(0), until=m(60))
    row = up.iloc[0]
    assert row["unknown_time"] == pd.Timedelta(minutes=10)
    assert row["observed_time"] == pd.Timedelta(minutes=50)
    assert row["availability"] == pytest.approx(40 / 50)
    assert row["coverage"] == pytest.approx(50 / 60)
    assert up.attrs["coverage"] == pytest.approx(50 / 60)
    # no incident at the window's start because the status before was unknown
    inc = ka.incidents(iv, since=m(0), until=m(60))
    assert inc["start"].tolist() == [m(50)]
    # beside a healthy replica an unknown one changes nothing (any); alone it is unknown
    two = intervals([("a", "s", None, m(0), m(60)), ("b", "s", "HEALTHY", m(0), m(30)),
                     ("b", "s", "UNHEALTHY", m(30), m(60))])
    for combine, unknown, avail in (("any", 30, 1.0), ("all", 30, 0.0),
                                    ("fraction", 0, 0.5)):
        got = ka.uptime(two, since=m(0), until=m(60),
                        policy=ka.UptimePolicy(combine=combine)).iloc[0]
        assert got["unknown_time"] == pd.Timedelta(minutes=unknown), combine
        assert got["availability"] == pytest.approx(avail), combine


def test_the_headline_states_the_coverage(opaque21):
    since, win = _window(opaque21, "24h", lookbehind=0)
    a = ka.analyse(ka.Window(win.instances, win.events, since, NOW))
    h = ka.headline(a)
    assert h.coverage < 0.99 and h.unknown_time > pd.Timedelta(0)
    assert h.coverage_note is not None and "unknown" in h.coverage_note
    assert f"{1 - h.coverage:.1%}".replace("%", " %") in h.availability_text()
    full = ka.headline(ka.analyse(_window(opaque21, "24h")[1]))
    assert full.coverage >= 0.99 and full.coverage_note is None


def test_the_cli_reports_a_week_of_a_30_day_opaque_history_truthfully(tmp_path):
    # The user's check: a simulator with 30 days of the real API's shape in one process,
    # `report --window 7d` against it in another.
    import re

    from .test_cli import run

    with ka.simulate(seed=7, days=30, services=12, vocabulary="opaque") as sim:
        env = {"KOYEB_TOKEN": sim.token, "KOYEB_URL": sim.url}
        proc = run(["report", "--window", "7d", "--out", "r.html", "--quiet"], env=env,
                   cwd=tmp_path)
        until = pd.Timestamp.now(tz="UTC")
        assert proc.returncode == 0, proc.stderr
        inst = ka.load_instances(fast_client(sim), progress=False)
        since = until - pd.Timedelta("7D")
        want = ka.uptime(truth_intervals(sim, inst, since, until), since=since, until=until)
    truth = 1 - want["down_time"].sum() / want["observed_time"].sum()
    got = float(re.search(r"overall (\d+\.\d+)%", proc.stdout).group(1)) / 100
    assert abs(got - truth) * 100 <= 0.02, (got, truth)


def test_lost_events_are_seen_and_filled_from_what_can_follow_what():
    msg = {"HEALTHY": "Instance is healthy. All health checks are passing.",
           "UNHEALTHY": "Instance is unhealthy", "ERROR": "Application exited with code 1.",
           "STARTING": "Instance is starting", "ALLOCATING": "Instance created.",
           "STOPPING": "Instance is stopping.", "STOPPED": "Instance stopped."}
    rows = [  # a: two flaps of 4 min (the medians), then a recovery that never arrived
        ("a", 0, "ALLOCATING"), ("a", 1, "STARTING"), ("a", 2, "HEALTHY"),
        ("a", 10, "UNHEALTHY"), ("a", 14, "HEALTHY"), ("a", 20, "UNHEALTHY"),
        ("a", 24, "HEALTHY"), ("a", 30, "UNHEALTHY"), ("a", 530, "ERROR"),
        # b: a flap whose UNHEALTHY never arrived, then a stop whose STOPPING never did
        ("b", 0, "ALLOCATING"), ("b", 1, "STARTING"), ("b", 2, "HEALTHY"),
        ("b", 50, "HEALTHY"), ("b", 60, "STOPPED")]
    ev = pd.DataFrame({"id": [f"e{i}" for i in range(len(rows))],
                       "instance_id": [r[0] for r in rows], "when": [m(r[1]) for r in rows],
                       "type": "t", "message": [msg[r[2]] for r in rows], "metadata": [{}] * 14})
    inst = pd.DataFrame({"id": ["a", "b"], "status": ["ERROR", "STOPPED"],
                         "created_at": [m(0), m(0)], "updated_at": [m(530), m(60)]})
    iv = ka.lifecycles(inst, ev, until=m(600))
    got = [(r.instance_id, str(r.status), (r.start - T0) / pd.Timedelta("1min"),
            (r.end - T0) / pd.Timedelta("1min"), r.source) for r in iv.itertuples()]
    a = [g for g in got if g[0] == "a"][-3:]
    # a: UNHEALTHY at 30 lasting 500 min (over 100 times its median) before a crash
    # betrays a lost recovery: it keeps its median (4 min), then HEALTHY fills the gap
    assert a == [("a", "UNHEALTHY", 30, 34, "events"), ("a", "HEALTHY", 34, 530, "gap"),
                 ("a", "ERROR", 530, 530, "events")]
    b = [g for g in got if g[0] == "b"][2:]
    # b: HEALTHY then HEALTHY: the UNHEALTHY between them (median 4 min) ended at 50;
    # HEALTHY then STOPPED: the STOPPING (no median seen: zero) is not invented
    assert b == [("b", "HEALTHY", 2, 46, "events"), ("b", "UNHEALTHY", 46, 50, "gap"),
                 ("b", "HEALTHY", 50, 60, "events"), ("b", "STOPPED", 60, 60, "events")]
    lost = [f for f in iv.attrs["findings"] if f["kind"] == "missing_events"]
    assert lost and lost[0]["detail"].startswith("3 times, two consecutive status events")


def test_a_start_far_longer_than_this_fleets_starts_hides_a_lost_healthy():
    msg = {"HEALTHY": "Instance is healthy. All health checks are passing.",
           "ERROR": "Application exited with code 1.", "STARTING": "Instance is starting",
           "ALLOCATING": "Instance created."}
    rows = []
    for k in range(24):  # the reference: starts that end HEALTHY take 1 minute
        rows += [(f"r{k}", 0, "ALLOCATING"), (f"r{k}", 1, "STARTING"), (f"r{k}", 2, "HEALTHY")]
    # long: a 25-minute start (over 3 times the 99th percentile and 10 minutes) before a
    # crash: its HEALTHY never arrived. short: a 3-minute start that failed is a failed start.
    rows += [("long", 0, "ALLOCATING"), ("long", 1, "STARTING"), ("long", 26, "ERROR"),
             ("short", 0, "ALLOCATING"), ("short", 1, "STARTING"), ("short", 4, "ERROR")]
    ev = pd.DataFrame({"id": [f"e{i}" for i in range(len(rows))],
                       "instance_id": [r[0] for r in rows], "when": [m(r[1]) for r in rows],
                       "type": "t", "message": [msg[r[2]] for r in rows],
                       "metadata": [{}] * len(rows)})
    ids = sorted({r[0] for r in rows})
    inst = pd.DataFrame({"id": ids, "status": ["ERROR" if i in ("long", "short") else "HEALTHY"
                                               for i in ids],
                         "created_at": m(0), "updated_at": m(26)})
    iv = ka.lifecycles(inst, ev, until=m(60))
    got = {i: [(str(r.status), (r.start - T0) / pd.Timedelta("1min"), r.source)
               for r in iv[iv.instance_id == i].itertuples()] for i in ("long", "short")}
    assert got["long"] == [("ALLOCATING", 0, "events"), ("STARTING", 1, "events"),
                           ("HEALTHY", 2, "gap"), ("ERROR", 26, "events")]
    assert got["short"] == [("ALLOCATING", 0, "events"), ("STARTING", 1, "events"),
                            ("ERROR", 4, "events")]


def test_a_lost_start_between_allocating_and_healthy_is_filled_with_starting():
    msg = {"HEALTHY": "Instance is healthy. All health checks are passing.",
           "STARTING": "Instance is starting", "ALLOCATING": "Instance created."}
    rows = []
    for k in range(5):  # medians: ALLOCATING 1 min, STARTING 2 min
        rows += [(f"r{k}", 0, "ALLOCATING"), (f"r{k}", 1, "STARTING"), (f"r{k}", 3, "HEALTHY")]
    rows += [("x", 0, "ALLOCATING"), ("x", 5, "HEALTHY")]  # its STARTING never arrived
    ev = pd.DataFrame({"id": [f"e{i}" for i in range(len(rows))],
                       "instance_id": [r[0] for r in rows], "when": [m(r[1]) for r in rows],
                       "type": "t", "message": [msg[r[2]] for r in rows],
                       "metadata": [{}] * len(rows)})
    ids = sorted({r[0] for r in rows})
    inst = pd.DataFrame({"id": ids, "status": "HEALTHY", "created_at": m(0),
                         "updated_at": m(5)})
    iv = ka.lifecycles(inst, ev, until=m(10))
    got = [(str(r.status), (r.start - T0) / pd.Timedelta("1min"), r.source)
           for r in iv[iv.instance_id == "x"].itertuples()]
    # ALLOCATING keeps its median; the one status that fits between fills the rest
    assert got == [("ALLOCATING", 0, "events"), ("STARTING", 1, "gap"), ("HEALTHY", 5, "events")]


def test_the_poller_knows_the_status_at_its_window_start():
    from koyeb_analytics.poller import Poller
    from koyeb_analytics.widgets._liveview import availability_line

    def unknown(iv):
        d = iv["end"] - iv["start"]
        return float(d[iv["status"].isna()].sum() / d.sum())

    with ka.simulate(seed=5, days=10, services=12, vocabulary="opaque") as sim:
        bare = Poller(fast_client(sim), window="12h", lookbehind=0)
        bare.poll()
        p = Poller(fast_client(sim), window="12h")
        p.poll()
        again = p.poll()
    assert again.new_events == 0 and len(p.changes) == 0
    assert (p.events["when"] >= sim.now - pd.Timedelta("13h")).all()
    assert len(p._before) > 0
    iv, iv_bare = p.intervals(), bare.intervals()
    assert unknown(iv) <= 0.01 < unknown(iv_bare)
    line = availability_line(iv_bare)
    assert line.startswith("availability ") and " of service-time; " in line
    assert line.endswith(" % unknown")
    assert "unknown" not in availability_line(iv) or unknown(iv) > 0


def test_an_unread_event_whose_type_only_ever_announces_one_status_is_that_status():
    # The real API prints texts nobody has catalogued; the event still arrives, with its
    # time and its type. Where that type, in the same data, announces one status and
    # nothing else, and the events around it allow that status, it is that status: here
    # a sleep whose text is unknown, before a wake (which only follows a sleep).
    msg = {"HEALTHY": "Instance is healthy. All health checks are passing.",
           "STARTING": "Instance is starting", "ALLOCATING": "Instance created.",
           "SLEEPING": "Instance is sleeping. It will wake up on the next request.",
           "WAKE": "Instance is waking up. Waiting for health checks to pass.",
           "UNHEALTHY": "Instance is unhealthy", "ERROR": "Application exited with code 1.",
           "?": "Lifecycle hook completed with result 6162."}
    kind = {"HEALTHY": "t.h", "STARTING": "t.s", "WAKE": "t.s", "ALLOCATING": "t.a",
            "SLEEPING": "t.z", "UNHEALTHY": "t.u", "ERROR": "t.e"}
    rows = [("r", 0, "ALLOCATING", None), ("r", 1, "STARTING", None), ("r", 2, "HEALTHY", None),
            ("r", 30, "SLEEPING", None), ("r", 90, "WAKE", None), ("r", 91, "HEALTHY", None),
            ("r", 200, "SLEEPING", None),
            # a: asleep at 100 (text unknown, type t.z: always SLEEPING), woken at 700
            ("a", 0, "ALLOCATING", None), ("a", 1, "STARTING", None), ("a", 2, "HEALTHY", None),
            ("a", 100, "?", "t.z"), ("a", 700, "WAKE", None), ("a", 701, "HEALTHY", None),
            # b: an unknown text of a type seen announcing two statuses tells nothing
            ("b", 0, "ALLOCATING", None), ("b", 1, "STARTING", None), ("b", 2, "HEALTHY", None),
            ("b", 100, "?", "t.mixed"), ("b", 140, "UNHEALTHY", "t.mixed"),
            ("b", 145, "HEALTHY", "t.mixed"),
            # c: a type that always means SLEEPING, where SLEEPING cannot be (it is
            # followed by a recovery, which only follows UNHEALTHY): left unread
            ("c", 0, "ALLOCATING", None), ("c", 1, "STARTING", None), ("c", 2, "HEALTHY", None),
            ("c", 50, "UNHEALTHY", None), ("c", 52, "?", "t.z"), ("c", 54, "HEALTHY", None)]
    ev = pd.DataFrame({"id": [f"e{i}" for i in range(len(rows))],
                       "instance_id": [r[0] for r in rows], "when": [m(r[1]) for r in rows],
                       "type": [r[3] or kind[r[2]] for r in rows],
                       "message": [msg[r[2]] for r in rows], "metadata": [{}] * len(rows)})
    inst = pd.DataFrame({"id": ["r", "a", "b", "c"],
                         "status": ["SLEEPING", "HEALTHY", "HEALTHY", "HEALTHY"],
                         "created_at": m(0), "updated_at": [m(200), m(701), m(145), m(54)]})
    iv = ka.lifecycles(inst, ev, until=m(800))

    def of(i):
        return [(str(r.status), (r.start - T0) / pd.Timedelta("1min"), r.source)
                for r in iv[iv.instance_id == i].itertuples()][2:]

    assert of("a") == [("HEALTHY", 2, "events"), ("SLEEPING", 100, "events"),
                       ("STARTING", 700, "events"), ("HEALTHY", 701, "events")]
    assert of("b") == [("HEALTHY", 2, "events"), ("UNHEALTHY", 140, "events"),
                       ("HEALTHY", 145, "events")]
    assert of("c") == [("HEALTHY", 2, "events"), ("UNHEALTHY", 50, "events"),
                       ("HEALTHY", 54, "events")]
    unread = [f for f in iv.attrs["findings"] if f["kind"] == "unknown_event_types"]
    assert unread and unread[0]["detail"].startswith("2 of 25 events")

