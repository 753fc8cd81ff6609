"""Class 5: malformed data becomes missing values with a note, or a KoyebError that
keeps the rows; never a raw pandas or Python error."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

import koyeb_analytics as ka

from .hostile import TOKEN, HostileServer, rest, result_frame, ws_accept, ws_frame

IID = "5b1f7f0e-1111-4222-8333-444455556666"
OTHER = "5b1f7f0e-1111-4222-8333-444455557777"


def good(k: int) -> dict:
    return {"id": f"5b1f7f0e-1111-4222-8333-{k:012d}", "created_at": "2026-11-20T00:00:00Z",
            "updated_at": "2026-11-20T01:00:00Z", "status": "HEALTHY", "replica_index": 0,
            "region": "fra"}


def serve_instances(rows):
    def route(req, srv):
        if req.path.startswith("/v1/instances/"):
            return 200, rows, {}
        return 200, {"instances": rows, "count": len(rows)}, {}
    return HostileServer(rest(route))


def client_for(srv):
    return ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=5)


@pytest.mark.parametrize("field, value, column", [
    ("created_at", "not-a-date", "created_at"),
    ("updated_at", 12345, "updated_at"),
    ("replica_index", 1.5, "replica_index"),
    ("replica_index", 10**30, "replica_index"),
    ("replica_index", "many", "replica_index"),
    ("region", ["fra", "was"], "region"),
    ("id", ["a", "list"], "id"),
    ("status", {"nested": True}, "status"),
])
def test_a_bad_value_becomes_missing_with_a_note(field, value, column):
    rows = [good(k) for k in range(5)]
    rows[2][field] = value
    with serve_instances(rows) as srv:
        df = ka.load_instances(client_for(srv), progress=False)
    assert len(df) == 5
    assert pd.isna(df.loc[df.index[df[column].isna()], column]).all()
    assert df[column].isna().sum() == 1
    assert any(n.startswith(f"{column}: 1 value") for n in df.attrs["notes"])
    assert str(df["created_at"].dtype) == "datetime64[us, UTC]"
    assert str(df["replica_index"].dtype) == "Int64"


def test_an_event_with_an_odd_time_is_kept_and_noted():
    events = [{"id": f"e{k}", "when": f"2026-11-20T00:00:0{k}Z", "instance_id": IID,
               "type": "t", "message": "m", "metadata": {}} for k in range(4)]
    events[1]["when"] = "yesterday"

    def route(req, srv):
        return 200, {"events": events, "has_next": False}, {}

    with HostileServer(rest(route)) as srv:
        ev = ka.load_events(client_for(srv), progress=False)
    assert len(ev) == 4 and ev["when"].isna().sum() == 1
    assert any(n.startswith("when: 1 value") for n in ev.attrs["notes"])


@pytest.mark.parametrize("reply, match", [
    ({"instance": None}, "null"),
    ({"instance": [1, 2]}, "list"),
    ({"instance": {**good(1), "id": OTHER}}, "another instance"),
    ({}, "null"),
])
def test_get_instance_refuses_a_reply_that_is_not_the_instance(reply, match):
    with serve_instances(reply) as srv:
        with pytest.raises(ka.MalformedResponseError, match=match):
            ka.get_instance(client_for(srv), IID)


def exec_server(frames: list[bytes]):
    def handler(conn, srv):
        req = srv.next_request(conn)
        if req is None:
            return
        ws_accept(conn, req)
        conn.recv(65536)
        conn.sendall(b"".join(frames))
        time.sleep(0.5)
    return HostileServer(handler)


@pytest.mark.parametrize("frame", [
    {"error": "boom"},
    {"error": ["a", {"b": 1}]},
    {"error": {"code": "not-a-number", "message": ["x"], "details": "oops"}},
    {"error": {"code": 10**30, "message": "huge code"}},
    {"result": {"exited": True, "exit_code": 1e400}},
    {"result": {"exited": True, "exit_code": 2**70}},
    {"result": "nope"},
    [1, 2, 3],
])
def test_exec_frames_of_any_shape_give_a_result_with_an_error(frame):
    text = json.dumps(frame).replace("Infinity", "1e400")
    with exec_server([result_frame(b"before\n"), ws_frame(text)]) as srv:
        result = ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)
    assert result.stdout == b"before\n" and not result.exited and result.error
    with exec_server([result_frame(b"before\n"), ws_frame(text)]) as srv:
        runs = ka.exec_many(client_for(srv), ["id"], instances=[IID, OTHER], timeout=5)
    assert list(runs["instance_id"]) == [IID, OTHER] and runs["error"].notna().all()


def test_only_exited_true_ends_the_command():
    frames = [result_frame(b"a"), ws_frame(json.dumps({"result": {
        "stdout": None, "stderr": None, "exited": "yes", "exit_code": 0}})),
        result_frame(b"b"), result_frame(None, exited=True, code=0)]
    with exec_server(frames) as srv:
        result = ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)
    assert result.ok and result.stdout == b"ab"


def test_exec_many_keeps_a_row_per_instance_whatever_one_server_sends():
    # Instances answered in turn: an error frame, garbage bytes, a clean exit.
    answers = iter([ws_frame('{"error": 42}'), ws_frame(b"\xff\xfe not json"),
                    result_frame(b"ok\n") + result_frame(None, exited=True, code=0)])

    def handler(conn, srv):
        req = srv.next_request(conn)
        if req is None:
            return
        ws_accept(conn, req)
        conn.recv(65536)
        conn.sendall(next(answers))
        time.sleep(0.5)

    iids = [IID, OTHER, "5b1f7f0e-1111-4222-8333-444455558888"]
    with HostileServer(handler) as srv:
        runs = ka.exec_many(client_for(srv), ["id"], instances=iids, timeout=5, concurrency=1)
    assert list(runs["instance_id"]) == iids
    assert runs["error"].notna().sum() == 2 and runs["exit_code"].tolist()[2] == 0
