"""Exec's parts one by one: capture, results, targets, grouping, argument checks, and a
session against a scripted websocket server that is not the simulator."""

from __future__ import annotations

import io
import json
import socket
import struct
import time
import warnings

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.execute import (
    CancelToken,
    Closed,
    ErrorFrame,
    ExecResult,
    ExecStream,
    Exit,
    Output,
    group_outputs,
    instance_targets,
    normalize_command,
)
from koyeb_analytics.execute._run import DEFAULT_MAX_OUTPUT, _Capture, as_redactor
from koyeb_analytics.execute._stream import check_client, check_target, check_timeout
from koyeb_analytics.redact import DEFAULT_REDACTOR, Redactor

from .hostile import TOKEN, HostileServer, result_frame, ws_accept, ws_frame

IID = "5b1f7f0e-1111-4222-8333-444455556666"
OTHER = "5b1f7f0e-1111-4222-8333-444455557777"
T = pd.Timestamp("2026-11-20 00:00", tz="UTC")


# -- capture ------------------------------------------------------------------------
def test_capture_keeps_half_the_cap_as_head_and_the_rest_as_tail():
    spill = io.BytesIO()
    cap = _Capture(7, spill)       # head 3 bytes, tail 4
    for chunk in (b"ab", b"cd", b"efgh", b"ij"):
        cap.add(chunk)
    assert (cap.value(), cap.dropped, cap.total) == (b"abcghij", 3, 10)
    assert bytes(cap.head) == b"abc" and list(cap.tail) == [b"gh", b"ij"]
    assert cap.tail_size == 4 and spill.getvalue() == b"abcdefghij"
    one = _Capture(10)
    one.add(b"0123456789abcdef")
    assert (one.value(), one.dropped, one.total) == (b"01234bcdef", 6, 16)
    small = _Capture(10)
    small.add(b"0123456789")
    assert (small.value(), small.dropped) == (b"0123456789", 0)
    small.add(b"")
    assert (small.value(), small.total) == (b"0123456789", 10)
    whole = _Capture(4)
    for chunk in (b"ab", b"c", b"d", b"e", b"fg"):
        whole.add(chunk)
    # a tail chunk that is all extra goes whole, one that is partly extra is cut
    assert (whole.value(), whole.dropped, list(whole.tail)) == (b"abfg", 3, [b"fg"])
    assert DEFAULT_MAX_OUTPUT == 16 * 2**20


# -- results ------------------------------------------------------------------------
def test_exec_result_properties():
    base = ExecResult(IID, ("echo", "a b"))
    assert (base.ok, base.status, base.duration, base.exited, base.redacted) == (
        False, "unknown", None, False, 0)
    assert ExecResult(IID, ("x",), started_at=T).duration is None
    assert ExecResult(IID, ("x",), ended_at=T).duration is None
    done = ExecResult(IID, ("true",), exit_code=0, exited=True, started_at=T,
                      ended_at=T + pd.Timedelta(seconds=2), stdout=b"ok\xff", stderr=b"\xfe")
    assert (done.ok, done.status, done.duration) == (True, "ok", pd.Timedelta(seconds=2))
    assert (done.stdout_text, done.stderr_text) == ("ok\ufffd", "\ufffd")
    assert ExecResult(IID, ("x",), exit_code=3, exited=True).status == "exit 3"
    assert not ExecResult(IID, ("x",), exit_code=3, exited=True).ok
    assert not ExecResult(IID, ("x",), exit_code=0, exited=False).ok
    assert ExecResult(IID, ("x",), timed_out=True, error="e").status == "timed out"
    assert ExecResult(IID, ("x",), error="boom").status == "error"
    assert repr(done) == "<ExecResult 5b1f7f0e 'true' ok, 3 B out, 1 B err>"
    assert repr(ExecResult(None, ("echo", "a b"))) == \
        "<ExecResult ? 'echo a b' unknown, 0 B out, 0 B err>"


def test_as_redactor():
    assert as_redactor(True) is DEFAULT_REDACTOR
    off = as_redactor(False)
    assert isinstance(off, Redactor) and off.enabled is False
    mine = Redactor(patterns=("x+",))
    assert as_redactor(mine) is mine
    with pytest.raises(TypeError, match=r"^redact must be True, False or a Redactor, got 1$"):
        as_redactor(1)


class _Stream:
    def __init__(self):
        self.closed = 0

    def close(self):
        self.closed += 1


def test_cancel_token_closes_what_is_registered_and_what_comes_after():
    token = CancelToken()
    a, b, c = _Stream(), _Stream(), _Stream()
    token._register(a)
    token._register(b)
    token._forget(b)
    assert not token.cancelled and (a.closed, b.closed) == (0, 0)
    token.cancel()
    assert token.cancelled and (a.closed, b.closed) == (1, 0)
    token._register(c)          # registered after the cancel: closed at once
    assert c.closed == 1
    token._forget(c)
    token._forget(c)            # forgetting twice is harmless
    token.cancel()
    assert (a.closed, c.closed) == (2, 1)


# -- targets and grouping -----------------------------------------------------------
def test_instance_targets():
    frame = pd.DataFrame({"id": [IID, OTHER, IID], "service_id": ["s1", "s2", "s1"],
                          "extra": [1, 2, 3]}, index=[5, 6, 7])
    out = instance_targets(frame)
    assert list(out.columns) == ["instance_id", "service_id", "region"]
    assert out.to_dict("list") == {"instance_id": [IID, OTHER], "service_id": ["s1", "s2"],
                                   "region": [None, None]}
    assert list(out.index) == [0, 1]
    named = instance_targets(pd.DataFrame({"instance_id": [OTHER], "region": ["fra"]}),
                             defaults={"service_id": "svc"})
    assert named.to_dict("list") == {"instance_id": [OTHER], "service_id": ["svc"],
                                     "region": ["fra"]}
    assert instance_targets(IID, columns=()).to_dict("list") == {"instance_id": [IID]}
    assert instance_targets([OTHER, IID, OTHER])["instance_id"].tolist() == [OTHER, IID]
    with pytest.raises(ValueError, match=r"^the instances frame needs an 'id' or "
                                         r"'instance_id' column$"):
        instance_targets(pd.DataFrame({"x": [IID]}))
    with pytest.raises(ValueError, match=r"^instance ids must be full ids \(UUIDs\), got "
                                         r"'5b1f7f0e'$"):
        instance_targets([IID, "5b1f7f0e"])
    with pytest.raises(ValueError, match=r"got 7$"):
        instance_targets([7])


def runs(*rows):
    return pd.DataFrame(rows, columns=["instance_id", "exit_code", "stdout", "stderr",
                                       "error"]).astype({"exit_code": "Int64"})


def test_group_outputs_exactly():
    empty = group_outputs(runs())
    assert empty.attrs["summary"] == "0 instances" and len(empty) == 0
    assert list(empty.columns) == ["instances", "instance_ids", "exit_code", "stdout",
                                   "stderr", "majority", "diff_vs_majority"]
    same = group_outputs(runs(("b", 0, "x\n", "", None), ("a", 0, "x\n", "", None)))
    assert same.attrs["summary"] == "2 instances: identical"
    assert same["instance_ids"].tolist() == [["b", "a"]] and same["majority"].tolist() == [
        True]
    g = group_outputs(runs(("c", 0, "a\nb\n", "", None), ("d", 1, "a\nc\n", "w\n", None),
                           ("e", 0, "a\nb\n", "", None), ("f", None, "", "", "timed out"),
                           ("g", 1, "a\nc\n", "w\n", None)))
    assert g.attrs["summary"] == "5 instances: 2 identical; 3 differ (2 other outputs)"
    assert g["instance_ids"].tolist() == [["c", "e"], ["d", "g"], ["f"]]
    assert g["instances"].tolist() == [2, 2, 1]
    assert g["exit_code"].dtype == "Int64" and g["exit_code"].tolist() == [0, 1, pd.NA]
    assert g["error"].isna().tolist() == [True, True, False] and g["error"][2] == "timed out"
    assert g["majority"].tolist() == [True, False, False]
    assert g["diff_vs_majority"].tolist()[0] == ""
    assert g["diff_vs_majority"].tolist()[1] == (
        "--- majority (2)\n+++ d (2)\n@@ -1,2 +1,3 @@\n a\n-b\n+c\n+w\n")
    assert g["diff_vs_majority"].tolist()[2] == "--- majority (2)\n+++ f (1)\n@@ -1,2 +0,0 @@\n" \
                                                "-a\n-b\n"
    two = group_outputs(runs((IID, 0, "x", "", None), (OTHER, 2, "y", "", None),
                             ("z", 0, "x", "", None)))
    assert two.attrs["summary"] == "3 instances: 2 identical; 1 differ (1 other output)"
    assert two["diff_vs_majority"].tolist()[1].splitlines()[:2] == [
        "--- majority (2)", "+++ 5b1f7f0e (1)"]
    # ties: the group whose first instance sorts first leads
    tie = group_outputs(runs(("q", 0, "1", "", None), ("p", 0, "2", "", None)))
    assert tie["instance_ids"].tolist() == [["p"], ["q"]]
    # without an error column, errors are not part of the key
    plain = group_outputs(runs(("a", 0, "x", "", None)).drop(columns="error"))
    assert plain["error"].isna().all()


# -- argument checks ----------------------------------------------------------------
def test_command_and_target_checks():
    assert normalize_command("ls -l") == ("sh", "-c", "ls -l")
    assert normalize_command(["ls", "-l"]) == ("ls", "-l")
    for bad, exc, words in [("  ", ValueError, "^command is empty$"),
                            (b"ls", TypeError, "^command must be a string"),
                            (5, TypeError, "or a list of strings$"),
                            ([], ValueError, "^command must be a non-empty list of strings$"),
                            (["ls", 1], ValueError, "non-empty list of strings")]:
        with pytest.raises(exc, match=words):
            normalize_command(bad)
    assert check_target(IID, None) == (IID, "INSTANCE_ID")
    assert check_target(None, OTHER) == (OTHER, "SERVICE_ID")
    with pytest.raises(ValueError, match="^pass exactly one of instance_id and service_id$"):
        check_target(IID, OTHER)
    with pytest.raises(ValueError, match="^pass exactly one"):
        check_target(None, None)
    with pytest.raises(ValueError, match=r"^service_id must be a full id \(a UUID\), got 'x'$"):
        check_target(None, "x")
    with pytest.raises(ValueError, match=r"^instance_id must be a full id \(a UUID\), got 3$"):
        check_target(3, None)
    assert check_timeout(None) is None
    assert check_timeout(2) == 2.0 and type(check_timeout(2)) is float
    for bad in (0, -1, float("nan"), float("inf"), True, "3"):
        with pytest.raises(ValueError, match=rf"^wait must be a finite positive number of "
                                             rf"seconds, got {bad!r}$"):
            check_timeout(bad, "wait")
    with pytest.raises(TypeError, match=r"^client must be a KoyebClient \(sim.client\(\) for "
                                        r"the simulator, KoyebClient.from_env\(\) for the API\), "
                                        r"got str$"):
        check_client("http://x")


def test_exec_many_checks_its_arguments_before_connecting():
    client = ka.KoyebClient(TOKEN, base_url="http://127.0.0.1:9", max_retries=0)
    for kwargs, exc, words in [({"concurrency": 0}, ValueError, "got 0$"),
                               ({"concurrency": True}, ValueError, "got True$"),
                               ({"concurrency": 2.0}, ValueError,
                                r"^concurrency must be a positive integer, got 2\.0$"),
                               ({"stdin": 5}, TypeError, "^stdin must be bytes, str or None$"),
                               ({"timeout": -1}, ValueError, "^timeout must be"),
                               ({"redact": "yes"}, TypeError, "^redact must be")]:
        with pytest.raises(exc, match=words):
            ka.exec_many(client, ["id"], instances=[IID], **kwargs)
    with pytest.raises(TypeError, match="^client must be a KoyebClient"):
        ka.exec_many(object(), ["id"], instances=[IID])
    for kwargs, exc, words in [({"stdin": 5}, TypeError, "^stdin must be bytes, str or None$"),
                               ({"max_output": 1}, ValueError, r"^max_output must be an "
                                r"integer of at least 2 bytes, got 1$"),
                               ({"max_output": True}, ValueError, "got True$"),
                               ({"max_output": 2.5}, ValueError, r"got 2\.5$"),
                               ({"redact": None}, TypeError, "^redact must be")]:
        with pytest.raises(exc, match=words):
            ka.exec_command(client, ["id"], instance_id=IID, **kwargs)


def test_connect_timeout_defaults_to_the_shorter_of_timeout_and_the_clients():
    client = ka.KoyebClient(TOKEN, base_url="http://127.0.0.1:9", timeout=7)
    assert ExecStream(client, ["id"], instance_id=IID).connect_timeout == 7
    assert ExecStream(client, ["id"], instance_id=IID, timeout=3).connect_timeout == 3
    assert ExecStream(client, ["id"], instance_id=IID, timeout=30).connect_timeout == 7
    assert ExecStream(client, ["id"], instance_id=IID, timeout=3,
                      connect_timeout=5).connect_timeout == 5
    s = ExecStream(client, "uptime", service_id=OTHER, tty=1)
    assert (s.target, s.id_type, s.command, s.tty, s.timeout) == (
        OTHER, "SERVICE_ID", ("sh", "-c", "uptime"), True, None)
    assert (s.timed_out, s.deadline, s.started_at) == (False, None, None)


# -- a scripted session -------------------------------------------------------------
def read_client_frame(conn: socket.socket) -> tuple[int, bytes] | None:
    """One masked client frame (opcode, payload), or None when the peer went away."""
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data
    try:
        b1, b2 = exactly(2)
        n = b2 & 0x7F
        if n == 126:
            n = struct.unpack(">H", exactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", exactly(8))[0]
        mask = exactly(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(exactly(n)))
    except (ConnectionError, OSError):
        return None
    return b1 & 0x0F, payload


def upgraded(then):
    """An exec endpoint that accepts the upgrade, then does ``then(conn, srv)``."""
    def handler(conn, srv):
        req = srv.next_request(conn)
        if req is not None:
            ws_accept(conn, req)
            conn.settimeout(5)
            then(conn, srv)
    return HostileServer(handler)


def dropped(conn, srv):
    conn.shutdown(socket.SHUT_RDWR)


def scripted(replies, *, read=1):
    """Accept, read ``read`` client frames, send ``replies``; record every frame read."""
    def then(conn, srv):
        frames = srv.state.setdefault("frames", [])
        for _ in range(read):
            frame = read_client_frame(conn)
            if frame is None:
                return
            frames.append(frame)
        conn.sendall(b"".join(replies))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:   # read the rest (stdin, close) until quiet
            conn.settimeout(max(deadline - time.monotonic(), 0.01))
            frame = read_client_frame(conn)
            if frame is None:
                return
            frames.append(frame)
    return upgraded(then)


def client_for(srv):
    return ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=5)


def session(replies, **kwargs):
    with scripted(replies) as srv, ExecStream(client_for(srv), ["id"], instance_id=IID, timeout=5,
                                              **kwargs) as s:
        return list(s), s


@pytest.mark.parametrize("replies, last", [
    ([ws_frame(struct.pack(">H", 4000) + b"bye", 0x8)], Closed(4000, "bye")),
    ([ws_frame(b"", 0x8)], Closed(1005, "")),
    ([ws_frame(struct.pack(">H", 1011) + "é".encode() * 61, 0x8)], Closed(1011, "é" * 61)),
    ([ws_frame(b"not json")], None),
    ([ws_frame(b"x", 0x3)], None),
])
def test_how_a_session_ends(replies, last):
    events, s = session([result_frame(b"out")] + replies)
    assert events[0] == Output("stdout", b"out") and len(events) == 2
    if last is not None:
        assert events[1] == last
    elif replies[0][0] & 0x0F == 0x1:
        assert isinstance(events[1], ErrorFrame) and events[1].code == -1
        assert events[1].message.startswith("malformed exec frame: ")
    else:
        assert isinstance(events[1], ErrorFrame) and events[1].code == -1
        assert events[1].message.startswith("broken exec stream: ")
    assert not s.timed_out


def test_a_dropped_connection_is_closed_without_a_code():
    def partial_then_drop(conn, srv):
        conn.sendall(result_frame(b"partial"))
        dropped(conn, srv)
    with upgraded(partial_then_drop) as srv:
        result = ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)
    assert result.stdout == b"partial" and result.exit_code is None
    assert result.error == "connection dropped before the command's exit"
    with scripted([result_frame(b"p"), ws_frame(struct.pack(">H", 4001), 0x8)]) as srv:
        result = ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)
    assert result.error == "connection closed (4001) before the command's exit"


def test_iteration_stops_at_the_exit_or_the_error():
    events, _ = session([result_frame(b"a"), result_frame(None, exited=True, code=3),
                         result_frame(b"after")])
    assert events == [Output("stdout", b"a"), Exit(3)]
    err = ws_frame(json.dumps({"error": {"code": 13, "message": "internal"}}))
    events, _ = session([err, result_frame(b"after")])
    assert events == [ErrorFrame(13, "internal")]
    # an error frame after the output started is data, with what came before
    with scripted([result_frame(b"a"), ws_frame(json.dumps(
            {"error": {"code": 5, "message": "gone", "details": ["d"]}}))]) as srv:
        result = ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)
    assert (result.stdout, result.error) == (b"a", "server error: gone (code 5): d")
    # ... and before it, the typed error
    with scripted([ws_frame(json.dumps({"error": {"code": 5, "message": "gone"}}))]) as srv, \
            pytest.raises(ka.NotFoundError):
        ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)


def test_the_frames_sent_stdin_once_closed():
    with scripted([result_frame(None, exited=True, code=0)]) as srv:
        result = ka.exec_command(client_for(srv), ["cat"], instance_id=IID, timeout=5,
                                 stdin="hé")
        time.sleep(0.2)
        frames = [json.loads(p) for op, p in srv.state["frames"] if op == 0x1]
    assert result.ok
    assert frames == [
        {"id": IID, "idType": "INSTANCE_ID", "body": {"command": ["cat"], "disableTty": True}},
        {"body": {"stdin": {"data": "aMOp"}}}, {"body": {"stdin": {"close": True}}}]
    with scripted([]) as srv, ExecStream(client_for(srv), ["cat"], instance_id=IID, timeout=5) as s:
        s.close_stdin()
        s.close_stdin()
        with pytest.raises(ValueError, match="^stdin is already closed$"):
            s.write_stdin(b"late")
        s.resize(30, 100)
        time.sleep(0.3)
        frames = [json.loads(p) for op, p in srv.state["frames"] if op == 0x1]
    assert frames[1:] == [{"body": {"stdin": {"close": True}}},
                          {"body": {"tty_size": {"height": 30, "width": 100}}}]


def test_a_send_on_a_closed_stream_is_a_transport_error():
    client = ka.KoyebClient(TOKEN, base_url="http://127.0.0.1:9", timeout=5)
    s = ExecStream(client, ["id"], instance_id=IID)
    with pytest.raises(ka.TransportError, match="^exec socket failed while sending: "
                                                "ConnectionClosed$"):
        s.resize(1, 1)
    assert list(s) == []     # never opened: nothing to iterate
    s.close()                # closing a stream never opened is harmless


def test_a_cancelled_token_returns_before_connecting():
    token = CancelToken()
    token.cancel()
    client = ka.KoyebClient(TOKEN, base_url="http://127.0.0.1:9", timeout=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = ka.exec_command(client, ["id"], instance_id=IID, cancel=token)
    assert (result.error, result.exited, result.started_at) == ("cancelled", False, None)


def frame(stdout=None, stderr=None, *, exited=False, code=0):
    from koyeb_analytics.execute import result_frame as encode
    return ws_frame(encode(stdout, stderr, exited=exited, exit_code=code))


def test_callbacks_spill_check_and_redaction(tmp_path):
    replies = [frame(b"API_TOKEN=abc123\n"), frame(None, b"e1"), frame(b"x" * 50, b"e2"),
               frame(exited=True, code=3)]
    seen = []
    with scripted(replies) as srv:
        result = ka.exec_command(client_for(srv), ["env"], instance_id=IID, timeout=5,
                                 on_stdout=lambda b: seen.append(("out", b)),
                                 on_stderr=lambda b: seen.append(("err", b)),
                                 spill_to=tmp_path / "out", max_output=20)
    assert seen == [("out", b"API_TOKEN=abc123\n"), ("err", b"e1"), ("out", b"x" * 50),
                    ("err", b"e2")]
    assert (tmp_path / "out").read_bytes() == b"API_TOKEN=abc123\n" + b"x" * 50
    assert (tmp_path / "out.stderr").read_bytes() == b"e1e2"
    # kept: the first 10 bytes and the last 10, the middle counted; then redacted
    assert (result.stdout, result.stdout_dropped) == (b"API_TOKEN=[redacted]", 47)
    assert (result.stderr, result.stderr_dropped) == (b"e1e2", 0)
    assert (result.exit_code, result.exited, result.status, result.error) == (3, True,
                                                                              "exit 3", None)
    assert (result.instance_id, result.service_id, result.command, result.tty) == (
        IID, None, ("env",), False)
    assert result.redacted == 1 and result.started_at <= result.ended_at
    with scripted(replies) as srv:
        secret = ka.exec_command(client_for(srv), ["env"], instance_id=IID, timeout=5)
        raw = ka.exec_command(client_for(srv), ["env"], instance_id=IID, timeout=5,
                              redact=False)
    assert secret.stdout.startswith(b"API_TOKEN=[redacted]\n") and secret.redacted == 1
    assert raw.stdout.startswith(b"API_TOKEN=abc123\n") and raw.redacted is None
    with scripted(replies) as srv, pytest.raises(ka.ExecFailedError) as info:
        ka.exec_command(client_for(srv), ["env"], instance_id=IID, timeout=5, check=True)
    assert info.value.result.exit_code == 3
    ok = [frame(b"fine"), frame(exited=True, code=0)]
    with scripted(ok) as srv:
        assert ka.exec_command(client_for(srv), "true", service_id=OTHER, timeout=5,
                               check=True, tty=True).stdout == b"fine"
        first = json.loads(srv.state["frames"][0][1])
    assert first == {"id": OTHER, "idType": "SERVICE_ID",
                     "body": {"command": ["sh", "-c", "true"], "disableTty": False}}


def test_exec_many_rows_hold_each_result():
    answers = {IID: [frame(b"one\n"), frame(exited=True, code=0)],
               OTHER: [frame(None, b"PASSWORD=x\n"), frame(exited=True, code=2)]}

    def answer(conn, srv):
        first = read_client_frame(conn)
        if first is not None:
            conn.sendall(b"".join(answers[json.loads(first[1])["id"]]))
            time.sleep(0.3)
    with upgraded(answer) as srv:
        runs = ka.exec_many(client_for(srv), ["id"], instances=pd.DataFrame({
            "id": [OTHER, IID], "service_id": ["s2", "s1"], "region": ["was", "fra"]}),
            timeout=5, concurrency=2)
    assert list(runs.columns) == list(ka.execute.MANY_COLUMNS)
    assert runs.attrs["command"] == ["id"]
    assert runs[["instance_id", "service_id", "region", "stdout", "stderr"]].values.tolist() == [
        [OTHER, "s2", "was", "", "PASSWORD=[redacted]\n"], [IID, "s1", "fra", "one\n", ""]]
    assert runs["exit_code"].tolist() == [2, 0] and str(runs["exit_code"].dtype) == "Int64"
    assert runs["redacted"].tolist() == [1, 0] and str(runs["redacted"].dtype) == "Int64"
    assert runs["exited"].tolist() == [True, True]
    assert runs["timed_out"].tolist() == [False, False]
    assert runs["error"].isna().all() and runs["duration"].dtype == "timedelta64[us]"
    assert (runs["duration"] >= pd.Timedelta(0)).all()


def test_exec_many_turns_any_exception_into_an_error_row(monkeypatch):
    from koyeb_analytics.execute import _fanout as fanout

    def boom(client, argv, **kwargs):
        if kwargs["instance_id"] == IID:
            raise RuntimeError(f"bad {TOKEN}")
        raise ka.NotFoundError(404, "not_found", "gone", path="/x")
    monkeypatch.setattr(fanout, "exec_command", boom)
    client = ka.KoyebClient(TOKEN, base_url="http://127.0.0.1:9")
    runs = ka.exec_many(client, ["id"], instances=[IID, OTHER])
    assert runs["error"].tolist() == ["RuntimeError: bad <hidden>", "404 on /x: gone (not_found)"]
    assert runs["exit_code"].isna().all() and not runs["exited"].any()
    assert (runs["duration"] == pd.Timedelta(0)).all()
    assert runs["stdout"].tolist() == ["", ""]


def silent_after(replies):
    """Sends ``replies`` after the first frame, then keeps the socket open, silent."""
    def then(conn, srv):
        if read_client_frame(conn) is not None:
            conn.sendall(b"".join(replies))
            time.sleep(10)
    return upgraded(then)


def test_a_cancel_from_another_thread_ends_the_runs_with_what_came():
    import threading
    token = CancelToken()
    with silent_after([frame(b"partial")]) as srv:
        client = client_for(srv)
        threading.Timer(0.5, token.cancel).start()
        start = time.monotonic()
        runs = ka.exec_many(client, ["sleep", "100"], instances=[IID, OTHER], timeout=8,
                            cancel=token)
        elapsed = time.monotonic() - start
    assert runs["error"].tolist() == ["cancelled", "cancelled"]
    assert runs["stdout"].tolist() == ["partial", "partial"]
    assert not runs["timed_out"].any() and runs["exit_code"].isna().all()
    assert elapsed < 4


def test_an_interrupt_keeps_the_output_so_far():
    def interrupt(data):
        if data == b"second":
            raise KeyboardInterrupt
    with silent_after([frame(b"first"), frame(b"second")]) as srv, \
            pytest.raises(ka.ExecInterrupted) as info:
        ka.exec_command(client_for(srv), ["top"], instance_id=IID, timeout=8,
                        on_stdout=interrupt)
    result = info.value.result
    assert (result.stdout, result.error, result.exited) == (b"firstsecond", "interrupted",
                                                            False)


def test_a_session_that_ends_before_stdin_is_sent_is_a_result():
    with upgraded(dropped) as srv:
        result = ka.exec_command(client_for(srv), ["cat"], instance_id=IID, timeout=5,
                                 stdin=b"x" * 100_000)
    assert result.error == "connection dropped before the command's exit"
    assert (result.exit_code, result.stdout) == (None, b"")


def test_handshakes_that_fail():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    client = ka.KoyebClient(TOKEN, base_url=f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(ka.TransportError) as info:
        ka.exec_command(client, ["id"], instance_id=IID, timeout=5)
    assert type(info.value) is ka.TransportError
    assert str(info.value).startswith("exec connection failed: ")

    def answer(status, body):
        def handler(conn, srv):
            if srv.next_request(conn) is None:
                return
            from .hostile import http_reply
            http_reply(conn, status, body)
        return HostileServer(handler)
    with answer(404, {"code": "not_found", "message": f"no {TOKEN}"}) as srv, \
            pytest.raises(ka.NotFoundError) as info:
        ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)
    assert (info.value.status, info.value.message, info.value.path) == (
        404, "no <hidden>", "/v1/streams/instances/exec")
    with answer(200, {"ok": True}) as srv, pytest.raises(ka.TransportError) as info:
        ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)
    assert not isinstance(info.value, ka.APIError) and TOKEN not in str(info.value)


def test_a_stalled_handshake_ends_at_the_run_timeout_when_it_is_shorter():
    def handler(conn, srv):
        srv.next_request(conn)
        time.sleep(5)   # never answers
    with HostileServer(handler) as srv:
        start = time.monotonic()
        with pytest.raises(ka.DeadlineExceeded):
            ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=0.5)
        assert time.monotonic() - start < 2          # not the client's 5 s
        s = ExecStream(client_for(srv), ["id"], instance_id=IID, timeout=30, connect_timeout=0.5)
        start = time.monotonic()
        with pytest.raises(ka.DeadlineExceeded):
            s.open()
        assert time.monotonic() - start < 2
        assert s.deadline is not None and s.deadline - time.monotonic() > 25
        assert s.started_at is not None


def test_exec_many_passes_every_option_to_each_run():
    def then(conn, srv):
        frames = srv.state.setdefault("frames", [])
        while True:
            got = read_client_frame(conn)
            if got is None:
                return
            frames.append(json.loads(got[1]))
            if frames[-1].get("body", {}).get("stdin", {}).get("close"):
                break
        conn.sendall(frame(b"API_TOKEN=abc123 " + b"x" * 50)
                     + frame(exited=True, code=0))
        time.sleep(0.3)
    with upgraded(then) as srv, pytest.warns(UserWarning, match="47 bytes"):
        runs = ka.exec_many(client_for(srv), ["cat"], instances=[IID], stdin=b"hi", tty=True,
                            max_output=20, redact=False, timeout=5)
        frames = srv.state["frames"]
    assert frames == [
        {"id": IID, "idType": "INSTANCE_ID", "body": {"command": ["cat"], "disableTty": False}},
        {"body": {"stdin": {"data": "aGk="}}}, {"body": {"stdin": {"close": True}}}]
    assert runs["stdout"].tolist() == [  # head and tail, raw, the cut marked between
        "API_TOKEN=\n[… 47 bytes dropped here: raise max_output= to keep them …]\n"
        + "x" * 10]
    assert runs["redacted"].isna().tolist() == [True]


def test_result_fields_from_the_run():
    replies = [frame(None, b"e" * 30), frame(b"out"), frame(exited=True, code=0)]
    token = CancelToken()
    with scripted(replies) as srv:
        result = ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5,
                                 tty=True, max_output=10, cancel=token)
    assert (result.stderr, result.stderr_dropped, result.stdout_dropped) == (b"e" * 10, 20, 0)
    assert result.tty is True and token._streams == set() and not token.cancelled
    closed = ka.KoyebClient(TOKEN, base_url="http://127.0.0.1:9", timeout=2, max_retries=0)
    with pytest.raises(ka.TransportError):      # two bytes is a cap: accepted, then connect
        ka.exec_command(closed, ["id"], instance_id=IID, max_output=2)


def test_stream_arguments():
    client = ka.KoyebClient(TOKEN, base_url="http://127.0.0.1:9", timeout=5)
    s = ka.exec_stream(client, ["id"], service_id=OTHER, timeout=7)
    assert (s.service_id, s.instance_id, s.id_type, s.timeout, s.tty) == (
        OTHER, None, "SERVICE_ID", 7.0, False)
    assert ExecStream(client, ["id"], instance_id=IID).tty is False
    with pytest.raises(TypeError, match="positional argument"):
        ka.exec_stream(client, IID, ["id"])   # the instance is named, never positional
    with pytest.raises(ValueError, match="^connect_timeout must be a finite positive"):
        ExecStream(client, ["id"], instance_id=IID, connect_timeout=0)

    class HalfClient:
        def websocket_url(self, path):
            return "ws://127.0.0.1:9" + path
    with pytest.raises(TypeError, match="got HalfClient$"):
        ExecStream(HalfClient(), ["id"], instance_id=IID)


def test_how_a_stream_ends_and_that_it_stays_ended():
    cases = [
        ([ws_frame(struct.pack(">H", 4000) + b"\xffbye", 0x8)], Closed(4000, "\ufffdbye")),
        ([ws_frame(b"not json")],
         ErrorFrame(-1, "malformed exec frame: Expecting value: line 1 column 1 (char 0)")),
        ([frame(exited=True, code=0)], Exit(0)),
    ]
    for replies, last in cases:
        with scripted(replies) as srv, ExecStream(client_for(srv), ["id"], instance_id=IID,
                                                  timeout=5) as s:
            assert list(s) == [last]
            assert list(s) == []          # ended: iterating again reads nothing more

    with upgraded(dropped) as srv, ExecStream(client_for(srv), ["id"], instance_id=IID,
                                              timeout=5) as s:
        assert list(s) == [Closed(None, "connection dropped")]
        assert list(s) == []


def test_a_stream_closed_by_the_client_says_so():
    import threading
    with silent_after([frame(b"x")]) as srv, ExecStream(client_for(srv), ["id"], instance_id=IID,
                                                        timeout=8) as s:
        threading.Timer(0.3, s.close).start()
        start = time.monotonic()
        events = list(s)
    assert events == [Output("stdout", b"x"), Closed(1000, "closed by the client")]
    assert time.monotonic() - start < 3 and not s.timed_out


def test_a_handshake_refused_with_400_is_the_apis_error():
    def handler(conn, srv):
        if srv.next_request(conn) is not None:
            from .hostile import http_reply
            http_reply(conn, 400, {"code": "invalid_argument", "message": "bad id"})
    with HostileServer(handler) as srv, pytest.raises(ka.BadRequestError) as info:
        ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)
    assert info.value.message == "bad id"

    def ok(conn, srv):
        if srv.next_request(conn) is not None:
            from .hostile import http_reply
            http_reply(conn, 200, {"token": TOKEN}, reason="OK")
    with HostileServer(ok) as srv, pytest.raises(ka.TransportError) as info:
        ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)
    assert "200" in str(info.value) and TOKEN not in str(info.value)
