"""Promises the README makes, each tested against a server that makes it matter.

The simulator filters windows itself, never 404s a listed instance, keeps connections
open and never fails an exec handshake for one instance among many; these servers do.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pandas as pd
import pytest

import koyeb_analytics as ka

from .hostile import (
    TOKEN,
    HostileServer,
    http_reply,
    rest,
    result_frame,
    ws_accept,
)

N = 250
BASE = pd.Timestamp("2026-11-20T00:00:00Z")


def instance(k: int, *, status: str = "HEALTHY", hours_alive: int | None = None) -> dict:
    created = BASE + pd.Timedelta(hours=k)
    ended = None if hours_alive is None else created + pd.Timedelta(hours=hours_alive)
    return {"id": f"5b1f7f0e-1111-4222-8333-{k:012d}",
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "updated_at": (ended or created).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "status": "STOPPED" if ended is not None else status}


def event(k: int) -> dict:
    return {"id": f"6c2f7f0e-1111-4222-8333-{k:012d}",
            "when": (BASE + pd.Timedelta(minutes=k)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "instance_id": f"5b1f7f0e-1111-4222-8333-{k % 7:012d}", "type": "t",
            "message": f"m{k}", "metadata": {}}


INSTANCES = [instance(k, hours_alive=2 if k % 2 else None) for k in range(40)]
EVENTS = [event(k) for k in range(N)]


def window_blind(req, srv):
    """Answers every listing in full, whatever ``starting_time``/``ending_time`` say."""
    limit, offset = int(req.query.get("limit", 100)), int(req.query.get("offset", 0))
    if req.path == "/v1/instances":
        return 200, {"instances": INSTANCES[offset:offset + limit],
                     "count": len(INSTANCES)}, {}
    if req.path == "/v1/instance_events":
        rows = EVENTS[::-1][offset:offset + limit]
        return 200, {"events": rows, "has_next": offset + limit < N}, {}
    return 404, {"code": "not_found"}, {}


@pytest.mark.parametrize("read_ahead", ["pipelined", "threads", "none"])
def test_the_window_holds_when_the_server_ignores_it(read_ahead):
    since, until_ = BASE + pd.Timedelta("10h"), BASE + pd.Timedelta("20h")
    with HostileServer(rest(window_blind)) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, read_ahead=read_ahead, timeout=5)
        inst = ka.load_instances(client, since=since, until=until_, names=False,
                                 progress=False)
        ev = ka.load_events(client, since=BASE + pd.Timedelta("100min"),
                            until=BASE + pd.Timedelta("150min"), progress=False)
        asked = [r.query for r in srv.requests if r.path == "/v1/instances"]
    # Alive in [10h, 20h): created before 20h, and running or stopped at/after 10h.
    expected = {r["id"] for r in INSTANCES
                if pd.Timestamp(r["created_at"]) < until_
                and (r["status"] != "STOPPED" or pd.Timestamp(r["updated_at"]) >= since)}
    assert set(inst["id"]) == expected and len(expected) == 16
    assert all("starting_time" in q for q in asked)  # it was asked, and ignored
    assert ev["message"].tolist() == [f"m{k}" for k in range(100, 150)]


def details_with_holes(req, srv):
    limit, offset = int(req.query.get("limit", 100)), int(req.query.get("offset", 0))
    if req.path == "/v1/instances":
        return 200, {"instances": INSTANCES[offset:offset + limit],
                     "count": len(INSTANCES)}, {}
    k = int(req.path.rsplit("-", 1)[-1])
    if k % 5 == 0:
        return 404, {"code": "not_found", "message": "gone"}, {}
    return 200, {"instance": {**INSTANCES[k], "hypervisor": f"hv{k}",
                              "started_at": INSTANCES[k]["created_at"]}}, {}


def test_details_tolerate_404s_and_record_which_are_missing():
    with HostileServer(rest(details_with_holes)) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, timeout=5, max_retries=0)
        df = ka.load_instances(client, details=True, names=False, progress=False)
    gone = [r["id"] for k, r in enumerate(INSTANCES) if k % 5 == 0]
    assert len(df) == len(INSTANCES)
    assert sorted(df.attrs["details_missing"]) == sorted(gone)
    have = df.set_index("id")
    assert have.loc[gone, "hypervisor"].isna().all()
    kept = have.drop(index=gone)
    assert (kept["hypervisor"] == [f"hv{int(i[-12:])}" for i in kept.index]).all()
    assert kept["started_at"].notna().all()


def test_a_connection_closed_under_pipelined_requests_is_reopened():
    # Every connection answers one request and closes, so each request sent ahead on
    # it fails: it must be sent again, and no page may be lost or read twice.
    def handler(conn, srv):
        req = srv.next_request(conn)
        if req is None:
            return
        status, body, headers = window_blind(req, srv)
        http_reply(conn, status, body, headers)

    with HostileServer(handler) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, read_ahead="pipelined",
                                timeout=5, max_retries=0)
        ev = ka.load_events(client, progress=False)
    assert ev["message"].tolist() == [f"m{k}" for k in range(N)]
    offsets = {int(r.query["offset"]) for r in srv.requests}
    assert {0, 100, 200} <= offsets <= {0, 100, 200, 300} and srv.connections >= 3


def test_exec_many_isolates_an_instance_whose_exec_raises():
    # In turn: a clean run, a refused handshake (exec raises PermissionDeniedError), a
    # frame cut off mid-stream (the reader raises), a clean run.
    ids = [f"5b1f7f0e-1111-4222-8333-00000000000{k}" for k in range(4)]
    behaviours = iter(["ok", "refuse", "break", "ok"])

    def handler(conn, srv):
        req = srv.next_request(conn)
        if req is None:
            return
        what = next(behaviours)
        if what == "refuse":
            http_reply(conn, 403, {"code": "forbidden", "message": "no"})
            return
        ws_accept(conn, req)
        conn.recv(65536)
        if what == "break":  # a frame header announcing 2**63 bytes, then nothing
            conn.sendall(result_frame(b"partial\n") + b"\x81\x7f" + b"\xff" * 8)
        else:
            conn.sendall(result_frame(b"ok\n") + result_frame(None, exited=True, code=0))
        time.sleep(0.3)  # the client closes first

    with HostileServer(handler) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url, timeout=5, max_retries=0)
        runs = ka.exec_many(client, ["id"], instances=ids, timeout=5, concurrency=1)
    assert runs["instance_id"].tolist() == ids
    assert runs["exit_code"][0] == 0 and runs["exit_code"][3] == 0
    assert runs["stdout"][0] == "ok\n" and runs["stdout"][3] == "ok\n"
    assert pd.isna(runs["exit_code"][1]) and "403" in runs["error"][1]
    assert pd.isna(runs["exit_code"][2]) and runs["stdout"][2] == "partial\n"
    assert isinstance(runs["error"][2], str) and runs["error"][2]


def test_exec_keeps_the_head_and_the_tail_and_counts_the_middle(tmp_path):
    # Numbered lines: head, dropped middle and tail are told apart byte for byte.
    full = "".join(f"{k}\n" for k in range(1, 200_001)).encode()
    script = tmp_path / "count.py"
    script.write_text("import sys\nsys.stdout.write(''.join(f'{k}\\n' for k in "
                      "range(1, 200001)))\n")
    with ka.simulate(seed=1, days=1, services=1) as sim:
        client = sim.client()
        iid = ka.load_instances(client, statuses="HEALTHY", progress=False)["id"][0]
        res = ka.exec_command(client, [sys.executable, str(script)], instance_id=iid,
                              max_output=2**16, timeout=60)
    assert res.ok
    assert res.stdout == full[: 2**15] + full[-(2**15):]
    assert res.stdout_dropped == len(full) - 2**16
    assert subprocess.run([sys.executable, str(script)], capture_output=True,
                          check=True).stdout == full
