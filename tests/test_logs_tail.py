"""tail_logs: the backlog, then lines as they are written; a dropped connection is opened
again from the last line, and the line sent twice is dropped; every tail is bounded."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

import koyeb_analytics as ka
from tests.hostile import TOKEN, HostileServer, until, ws_accept, ws_frame


def test_the_backlog_then_new_lines_from_a_live_fleet():
    with ka.simulate(seed=2, days=0.2, services=3, live=True) as sim:
        sim.streams.story.rate = 5.0
        sim.streams.tail_poll = 0.2
        svc = sim.fleet.services[0].service_id
        opened = pd.Timestamp.now(tz="UTC")
        lines = list(ka.tail_logs(sim.client(), service_id=svc, duration="3s",
                                  since=opened - pd.Timedelta("20s")))
    assert lines
    ts = [line["ts"] for line in lines]
    assert ts == sorted(ts)
    assert any(t < opened for t in ts) and any(t > opened + pd.Timedelta("1s") for t in ts)
    assert {line["service_id"] for line in lines} == {svc}
    keys = [(line["ts"], line["instance_id"], line["stream"], line["msg"]) for line in lines]
    assert len(keys) == len(set(keys))


def _entry(t: str, msg: str) -> bytes:
    return json.dumps({"result": {"msg": msg, "created_at": t, "labels": {
        "stream": "stdout", "instance_id": "i-1", "service_id": "s"}}}).encode()


def test_a_dropped_tail_reconnects_from_the_last_line_without_repeating_it():
    def handler(conn, srv):
        req = srv.next_request(conn)
        if req is None:
            return
        ws_accept(conn, req)
        n = len(srv.requests)
        if n == 1:
            conn.sendall(ws_frame(_entry("2026-11-20T10:00:00.000000001Z", "one")))
            conn.sendall(ws_frame(_entry("2026-11-20T10:00:00.000000002Z", "two")))
            return  # dropped without a close frame
        conn.sendall(ws_frame(_entry("2026-11-20T10:00:00.000000002Z", "two")))
        conn.sendall(ws_frame(_entry("2026-11-20T10:00:01Z", "three")))
        deadline = time.monotonic() + 5
        while until(deadline):
            time.sleep(0.05)

    with HostileServer(handler) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, timeout=5)
        lines = list(ka.tail_logs(client, service_id="s", duration="2s", reconnect_wait=0.1))
    assert [line["msg"] for line in lines] == ["one", "two", "three"]
    assert len(srv.requests) >= 2
    assert "start=2026-11-20T10%3A00%3A00.000000002Z" in srv.requests[1].target
    assert lines[1]["ts"].nanosecond == 2


def test_a_tail_ends_at_its_deadline_and_says_so_by_ending():
    def handler(conn, srv):
        req = srv.next_request(conn)
        if req is None:
            return
        ws_accept(conn, req)
        deadline = time.monotonic() + 10
        while until(deadline):  # a server that never says anything
            time.sleep(0.05)

    with HostileServer(handler) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, timeout=5)
        started = time.monotonic()
        lines = list(ka.tail_logs(client, service_id="s", duration="1s", reconnects=0))
    assert lines == [] and time.monotonic() - started < 4


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "whose lines"),
    ({"service_id": "s", "regex": "("}, "does not compile"),
    ({"service_id": "s", "max_lines": 0}, "max_lines"),
    ({"service_id": "s", "streams": "stdio"}, "unknown stream"),
])
def test_bad_tail_input_is_refused_at_once(kwargs, match):
    client = ka.KoyebClient(TOKEN, base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match=match):
        ka.tail_logs(client, **kwargs)


def test_the_live_view_tails_the_affected_instances():
    from koyeb_analytics.poller import Poller
    from koyeb_analytics.widgets import LiveView

    with ka.simulate(seed=4, days=1, services=4, live=True, speed=600,
                     crash_mtbf_hours=1e9, flap_mtbf_hours=1e9) as sim:
        sim.streams.story.rate = 2.0
        sim.streams.tail_poll = 0.2
        client = sim.client()
        inst = ka.load_instances(client, statuses="HEALTHY", progress=False)
        svc = inst["service_id"].value_counts().index[0]
        view = LiveView(Poller(client, window="2h", every="0.2s"), start=False)
        view.poll_once()
        assert view.affected() == []
        assert view.tail().empty
        incident = sim.inject_incident(svc, "unhealthy", "1h")
        view.poll_once()
        assert set(incident.instance_ids) <= set(view.affected())
        lines = view.tail(duration="2s", max_lines=50)
        view.close()
    assert len(lines) and set(lines["instance_id"].dropna()) <= set(view.affected())
    assert set(lines["instance_id"].dropna()) & set(incident.instance_ids)
