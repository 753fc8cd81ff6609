"""The live view and the terminal watch, against a simulator whose fleet keeps living.

Incidents are injected into the running simulator; the tests bound every wait.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.poller import MAX_BACKOFF, Poller

from .conftest import fast_client


@pytest.fixture
def live_sim():
    # Quiet by chance (no random flaps or crashes), so that every change is one the
    # test caused; speed 600 makes an incident of "10min" last one second.
    with ka.simulate(seed=4, days=1, services=4, live=True, speed=600,
                     crash_mtbf_hours=1e9, flap_mtbf_hours=1e9) as sim:
        yield sim


def running_service(sim) -> str:
    inst = ka.load_instances(sim.client(), statuses="HEALTHY", progress=False)
    return inst["service_id"].value_counts().index[0]


def test_the_live_simulator_extends_history_and_ground_truth(live_sim):
    sim = live_sim
    before = sim.fleet.event_ids()
    svc = running_service(sim)
    incident = sim.inject_incident(svc, "crash_loop", "30min")  # three seconds here
    assert incident.kind == "crash_loop" and incident.instance_ids
    assert incident.end - incident.start == pd.Timedelta("3s")
    time.sleep(4)
    after = sim.fleet.event_ids()
    assert after[: len(before)] == before  # history keeps its ids
    truth = sim.truth_intervals()
    hit = truth[truth["instance_id"].isin(incident.instance_ids)]
    assert (hit["status"] == "ERROR").sum() == len(incident.instance_ids)
    inst = ka.load_instances(sim.client(), progress=False)
    mine = inst[inst["service_id"] == svc]
    # The slot's replacements failed while the incident lasted, then one came up.
    assert (mine["status"] == "HEALTHY").sum() >= len(incident.instance_ids)
    assert len(mine) > len(incident.instance_ids) * 2
    with pytest.raises(ValueError, match="kind must be one of"):
        sim.inject_incident(svc, "meteor")
    with pytest.raises(ValueError, match="not a service of this fleet"):
        sim.inject_incident("nope")


def test_inject_incident_needs_a_live_simulator():
    with ka.simulate(seed=1, days=1, services=1) as sim, \
            pytest.raises(RuntimeError, match="live=True"):
        sim.inject_incident("x")


@pytest.mark.parametrize("kind, status", [("unhealthy", "UNHEALTHY"),
                                          ("crash_loop", "ERROR"),
                                          ("scale_to_zero", "SLEEPING")])
def test_an_injected_incident_is_on_the_board_within_two_polls(live_sim, kind, status):
    sim = live_sim
    poller = Poller(fast_client(sim), window="2h", every="0.2s")
    first = poller.poll()
    assert first.error is None and first.changes.empty  # the window's past is not news
    svc = running_service(sim)
    label = ka.load_instances(sim.client(), progress=False).pipe(
        lambda i: f"{i.loc[i['service_id'] == svc, 'app_name'].iloc[0]}/"
                  f"{i.loc[i['service_id'] == svc, 'service_name'].iloc[0]}")
    incident = sim.inject_incident(svc, kind, "1h")
    seen = pd.concat([poller.poll().changes for _ in range(2)])
    hit = seen[seen["instance_id"].isin(incident.instance_ids)]
    assert set(hit["instance_id"]) == set(incident.instance_ids)
    assert set(hit["new"]) == {status} and set(hit["service"]) == {label}
    assert set(hit["old"]) == {"HEALTHY"}  # where each stood, even with no recent event
    board = poller.board().set_index("service")
    if kind == "crash_loop":
        # a crash loop's replacements crash too: on a slow machine more of them have
        # by the time the board is read
        assert board.loc[label, status] >= len(incident.instance_ids)
    else:
        assert board.loc[label, status] == len(incident.instance_ids)
    assert set(incident.instance_ids) <= set(poller.events["instance_id"])


def test_fifty_polls_with_churn_and_429s_lose_nothing_and_repeat_nothing(live_sim):
    sim = live_sim
    client = fast_client(sim, max_retries=0)
    poller = Poller(client, window="30h", every="0.05s")
    poller.poll()
    svc = running_service(sim)
    shown: list[str] = []
    errors = 0
    sim.faults.churn_per_request = 1
    for k in range(50):
        if k % 7 == 3:
            sim.inject("429", times=1, path="/v1/instance_events")
        if k == 10:
            sim.inject_incident(svc, "unhealthy", "1h")
        result = poller.poll()
        errors += result.error is not None
        shown += result.changes["event_id"].tolist()
    sim.faults.churn_per_request = 0
    sim.clear_faults()
    cut = sim.now  # the fleet keeps living: what it adds after this may or may not be read
    poller.poll()  # one clean poll after the last 429
    assert errors == 7  # each 429 cost one poll, nothing more
    assert len(shown) == len(set(shown))
    ev = poller.events
    assert ev["id"].is_unique
    since = poller.events["when"].min()
    when = pd.to_datetime(sim.fleet.ev["when"], unit="us", utc=True)
    ids = sim.fleet.event_ids()
    expected = {ids[i] for i in range(len(ids)) if since <= when[i] <= cut}
    later = {ids[i] for i in range(len(ids)) if when[i] > cut}
    got = set(ev["id"])
    assert expected <= got and got - expected <= later  # every event of the window, once


def test_backoff_is_visible_bounded_and_recovers(live_sim):
    sim = live_sim
    view = ka.follow(fast_client(sim, max_retries=0), window="1h", every="1s", start=False)
    view.poll_once()
    sim.inject("503", times=None, path="/v1/instance_events")
    delays = [view.poll_once().delay for _ in range(7)]
    assert delays == [2.0, 4.0, 8.0, 16.0, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]
    assert "backing off after 7 failed poll(s)" in view.status.value
    assert sim.token not in view.status.value
    sim.clear_faults()
    ok = view.poll_once()
    assert ok.error is None and ok.delay == 1.0 and "live" in view.status.value


def test_stop_ends_the_thread_and_the_frames_are_the_loaders(live_sim):
    sim = live_sim
    view = ka.follow(fast_client(sim), window="2h", every="0.1s")
    deadline = time.monotonic() + 10
    while view.poller.polls < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert view.running and view.poller.polls >= 3
    thread = view._thread
    view.pause()
    paused_at = view.poller.polls
    time.sleep(0.5)
    assert view.poller.polls <= paused_at + 1
    view.stop()
    assert not view.running and thread not in threading.enumerate()
    assert "stopped" in view.status.value
    live = ka.load_instances(sim.client(), window="2h", progress=False)
    assert list(view.instances.columns) == list(live.columns)
    assert list(view.instances.dtypes.astype(str)) == list(live.dtypes.astype(str))
    assert {"instance_id", "status", "start", "end"} <= set(view.intervals.columns)
    assert view.chart.value[:4] == b"\x89PNG"


def test_remote_text_in_the_feed_is_escaped(live_sim):
    sim = live_sim
    view = ka.follow(fast_client(sim), window="2h", every="1s", start=False)
    view.poll_once()
    sim.inject_incident(running_service(sim), "unhealthy", "1h")
    view.poll_once()
    view.poller.changes.loc[len(view.poller.changes) - 1, "message"] = "<b>bold</b><script>"
    view._render_feed()
    assert "&lt;script&gt;" in view.feed.value and "<script>" not in view.feed.value


def test_every_poll_appends_to_a_history_store(live_sim, tmp_path):
    sim = live_sim
    store = ka.HistoryStore(tmp_path / "h")
    poller = Poller(fast_client(sim), window="30h", every="0.1s", store=store)
    poller.poll()
    sim.inject_incident(running_service(sim), "unhealthy", "1h")
    poller.poll()
    kept = store.events()
    assert set(poller.events["id"]) <= set(kept["id"]) and kept["id"].is_unique
    assert set(store.instances()["id"]) >= set(poller.instances["id"])


def test_watch_prints_an_injected_change_and_exits_cleanly_on_ctrl_c(live_sim):
    sim = live_sim
    svc = running_service(sim)
    env = {**os.environ, "KOYEB_TOKEN": sim.token, "KOYEB_URL": sim.url,
           "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "koyeb_analytics", "watch", "--every",
                             "0.3s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    lines: list[str] = []
    try:
        lines.append(proc.stdout.readline())
        assert lines[0].startswith("Watching"), lines
        incident = sim.inject_incident(svc, "unhealthy", "1h")
        short = {i[:8] for i in incident.instance_ids}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "-> UNHEALTHY" in line and line.split()[3] in short:
                break
        else:
            pytest.fail(f"no change printed: {lines}")
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # Where it is stuck: every thread's stack (PYTHONFAULTHANDLER), then fail.
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"watch did not stop on Ctrl-C; its threads:\n{err[-6000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Stopped:" in out and "status change(s)" in out
    assert sim.token not in "".join(lines) + out + err
    assert "\x1b[" not in "".join(lines)  # piped: plain text


def test_closing_the_widget_ends_its_thread(live_sim):
    view = ka.follow(fast_client(live_sim), window="1h", every="0.1s")
    deadline = time.monotonic() + 10
    while view.poller.polls < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    thread = view._thread
    assert thread is not None and thread.is_alive()
    view.close()  # what the front end does when the output goes away
    thread.join(5)
    assert not thread.is_alive()


def test_bad_arguments_fail_before_any_request(live_sim):
    n = len(live_sim.requests)
    with pytest.raises(ValueError, match="every"):
        ka.follow(live_sim.client(), every="often")
    with pytest.raises(TypeError, match="client must be a KoyebClient"):
        ka.follow("http://127.0.0.1:1")
    with pytest.raises(TypeError, match="store must be a HistoryStore"):
        ka.follow(live_sim.client(), store="/tmp/x")
    with pytest.raises(ValueError, match="speed"):
        ka.simulate(live=True, speed=0)
    assert len(live_sim.requests) == n


def test_a_failed_first_poll_does_not_replay_the_window_as_news(live_sim):
    sim = live_sim
    poller = Poller(fast_client(sim, max_retries=0), window="30h", every="0.1s")
    sim.inject("503", times=1, path="/v1/instance_events")
    assert poller.poll().error is not None
    second = poller.poll()
    assert second.error is None and second.changes.empty  # history, not news
    svc = running_service(sim)
    incident = sim.inject_incident(svc, "unhealthy", "1h")
    seen = pd.concat([poller.poll().changes for _ in range(2)])
    hit = seen[seen["instance_id"].isin(incident.instance_ids)]
    assert set(hit["old"]) == {"HEALTHY"} and set(hit["new"]) == {"UNHEALTHY"}


def test_the_live_chart_marks_what_changed_and_can_go_without(monkeypatch):
    from koyeb_analytics.widgets import _liveview

    drawn = []
    real = _liveview.plot_lifecycles

    def spy(iv, **kw):
        ax = real(iv, **kw)
        drawn.append((kw.get("changes"), [c.get_label() for c in ax.collections]))
        return ax

    monkeypatch.setattr(_liveview, "plot_lifecycles", spy)
    with ka.simulate(seed=1, days=3, services=6) as sim:
        client = fast_client(sim)
        view = ka.follow(client, window="2D", every="1s", start=False)
        view.poll_once()
        view._render_chart()  # a second draw reads the changes again only after 5 min
        mark = len(sim.requests)
        bare = ka.follow(client, window="2D", every="1s", start=False, changes_every=None)
        bare.poll_once()
        later = [r.path for r in sim.requests[mark:]]
    (changes, labels), (again, _), (none, bare_labels) = drawn
    assert changes is not None and len(changes) > 0 and again is changes
    # the window's changes (and, as context, the deployments in force at its start)
    assert (changes["changed_at"] >= sim.now - pd.Timedelta("2D")).any()
    assert any(label.startswith("change: ") for label in labels)
    assert none is None and not any(label.startswith("change: ") for label in bare_labels)
    assert not any(p.startswith(("/v1/deployments", "/v1/activities")) for p in later)
