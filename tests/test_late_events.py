"""Late events: an older event that arrives after newer ones of its instance.

The events endpoint lists newest first and nothing promises an event reaches it in
order. A scripted server (not the simulator, which only appends in time order) serves
an instance's recovery, then an UNHEALTHY older than that recovery.
"""

from __future__ import annotations

import pandas as pd

import koyeb_analytics as ka
from koyeb_analytics.poller import Poller, format_change

from .hostile import HostileServer, rest

IID = "8c2d3f4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
SID = "1c2d3f4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
MESSAGES = {"ALLOCATING": "Instance created. Preparing to start...",
            "STARTING": "Instance is starting",
            "HEALTHY": "Instance is healthy. All health checks are passing.",
            "UNHEALTHY": "Instance is unhealthy"}


def event(n: int, minutes_ago: float, status: str) -> dict:
    when = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=minutes_ago)
    return {"id": f"00000000-0000-4000-8000-{n:012d}", "instance_id": IID,
            "when": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "type": "instance.event",
            "message": MESSAGES[status], "metadata": {}, "organization_id": "o"}


def route(req, srv):
    if req.path == "/v1/instances":
        item = {"id": IID, "service_id": SID, "app_id": "a", "status": "HEALTHY",
                "created_at": srv.state["created"], "updated_at": srv.state["updated"],
                "organization_id": "o", "region": "fra", "datacenter": "fra1",
                "type": "nano", "replica_index": 0, "messages": []}
        return 200, {"instances": [item], "limit": 100, "offset": 0, "count": 1}, {}
    if req.path == "/v1/instance_events":
        rows = sorted(srv.state["events"], key=lambda e: e["when"], reverse=True)
        offset, limit = int(req.query.get("offset", 0)), int(req.query.get("limit", 100))
        page = rows[offset: offset + limit]
        return 200, {"events": page, "limit": limit, "offset": offset,
                     "has_next": offset + len(page) < len(rows)}, {}
    return 200, {"apps": [], "services": [], "limit": 100, "offset": 0, "count": 0}, {}


def test_a_late_event_is_placed_in_history_once_and_the_present_kept():
    with HostileServer(rest(route)) as srv:
        history = [event(1, 60, "ALLOCATING"), event(2, 59, "STARTING"),
                   event(3, 58, "HEALTHY")]
        srv.state.update(events=list(history), created=history[0]["when"],
                         updated=history[2]["when"])
        client = ka.KoyebClient("t" * 64, base_url=srv.url)
        poller = Poller(client, window="2h", overlap="30min", lookbehind=0)
        poller.poll()
        # a flap and its recovery, then the late one: an UNHEALTHY from before the flap
        srv.state["events"] += [event(4, 20, "UNHEALTHY"), event(5, 18, "HEALTHY")]
        second = poller.poll()
        assert [(c.old, c.new, c.late) for c in second.changes.itertuples()] == [
            ("HEALTHY", "UNHEALTHY", False), ("UNHEALTHY", "HEALTHY", False)]
        srv.state["events"].append(event(6, 25, "UNHEALTHY"))
        third = poller.poll()
        assert len(third.changes) == 1
        late = third.changes.iloc[0]
        assert (late["old"], late["new"], late["late"]) == ("HEALTHY", "UNHEALTHY", True)
        assert poller.late_events == 1
        assert poller._status[IID] == "HEALTHY"          # the present is unchanged
        assert "(late)" in format_change(late)
        # history corrected: UNHEALTHY from 25 to 20 minutes ago
        iv = poller.intervals()
        unhealthy = iv[iv["status"] == "UNHEALTHY"]
        assert len(unhealthy) == 2
        assert (unhealthy["end"] - unhealthy["start"]).min() == pd.Timedelta(minutes=2)
        # yielded once: the overlap reads it again, and nothing is reported
        fourth = poller.poll()
        assert len(fourth.changes) == 0 and poller.late_events == 1
        assert len(poller.changes) == 3


def test_a_new_instance_says_new():
    row = {"when": pd.Timestamp("2026-11-20T12:00:00Z"), "service": "s", "instance_id": IID,
           "old": None, "new": "ALLOCATING", "message": "Instance created.", "late": False}
    line = format_change(row)
    assert " new -> ALLOCATING " in line and "nan" not in line and "(late)" not in line
