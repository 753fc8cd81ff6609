"""Exec over the simulator's websocket: real sockets, real local processes."""

from __future__ import annotations

import base64
import json
import os
import time
import tracemalloc

import pandas as pd
import pytest
import websocket

import koyeb_analytics as ka
from koyeb_analytics.execute import (
    Exit,
    Output,
    command_frame,
    decode_frame,
    resize_frame,
    stdin_close_frame,
    stdin_frames,
)
from koyeb_analytics.simulator import ExecFaults

from .conftest import NOW, fast_client


@pytest.fixture
def esim(exec_sim):
    return exec_sim


@pytest.fixture
def ec(esim):
    esim.exec_faults = ExecFaults()
    return fast_client(esim)


@pytest.fixture(scope="module")
def healthy(exec_sim):
    inst = ka.load_instances(fast_client(exec_sim), statuses=["HEALTHY"], progress=False)
    return inst.reset_index(drop=True)


def test_frames_round_trip():
    first = json.loads(command_frame("abc", ["ls", "-la"]))
    assert first == {"id": "abc", "idType": "INSTANCE_ID",
                     "body": {"command": ["ls", "-la"], "disableTty": True}}
    frames = stdin_frames(bytes(range(256)) * 40)
    assert len(frames) == 3
    data = b"".join(base64.b64decode(json.loads(f)["body"]["stdin"]["data"]) for f in frames)
    assert data == bytes(range(256)) * 40
    assert json.loads(stdin_close_frame()) == {"body": {"stdin": {"close": True}}}
    assert json.loads(resize_frame(40, 120))["body"]["tty_size"] == {"height": 40, "width": 120}
    events = decode_frame('{"result":{"stdout":{"data":"aGk="},"stderr":null,"exited":true,'
                          '"exit_code":2}}')
    assert events == [Output("stdout", b"hi"), Exit(2)]
    err = decode_frame('{"error":{"code":9,"message":"failed_precondition",'
                       '"details":[{"message":"not running"}]}}')[0]
    assert err.code == 9 and err.details == ("not running",)
    with pytest.raises(ValueError):
        decode_frame('{"nothing": 1}')


def test_stdout_stderr_and_exit_codes(ec, healthy):
    iid = healthy["id"][0]
    res = ka.exec_command(ec, ["sh", "-c", "echo out; echo err >&2; exit 0"], instance_id=iid)
    assert (res.stdout, res.stderr, res.exit_code, res.exited, res.ok) == \
        (b"out\n", b"err\n", 0, True, True)
    res = ka.exec_command(ec, "exit 1", instance_id=iid)
    assert res.exit_code == 1 and not res.ok and res.status == "exit 1"
    res = ka.exec_command(ec, "kill -9 $$", instance_id=iid)
    assert res.exit_code == 137 and res.exited
    with pytest.raises(ka.ExecFailedError, match="exited with 1"):
        ka.exec_command(ec, "exit 1", instance_id=iid, check=True)
    assert res.duration is not None and res.duration >= pd.Timedelta(0)


def test_stdin_round_trip_every_byte_value(ec, healthy):
    payload = bytes(range(256)) * 100
    res = ka.exec_command(ec, ["cat"], instance_id=healthy["id"][0], stdin=payload)
    assert res.stdout == payload and res.ok
    assert ka.exec_command(ec, ["cat"], instance_id=healthy["id"][0]).stdout == b""  # stdin closed


def test_environment_and_scratch_directory(ec, healthy):
    row = healthy.iloc[1]
    res = ka.exec_command(ec, "echo $KOYEB_INSTANCE_ID $KOYEB_SERVICE_ID $KOYEB_REGION; pwd",
                          instance_id=row["id"])
    ids, cwd = res.stdout_text.splitlines()
    assert ids.split() == [row["id"], row["service_id"], row["region"]]
    assert cwd.endswith(row["id"])


def test_multibyte_characters_split_across_frames(esim, ec, healthy):
    esim.exec_faults = ExecFaults(split_utf8=True)
    chunks = []
    text = "héllo wörld ✓ 日本\n"
    res = ka.exec_command(ec, ["printf", "%s", text], instance_id=healthy["id"][0],
                          on_stdout=chunks.append)
    assert len(chunks) >= 2
    with pytest.raises(UnicodeDecodeError):
        chunks[0].decode("utf-8")  # the first frame ends inside a character
    assert res.stdout_text == text


def test_large_output_stays_within_the_cap(ec, healthy, tmp_path):
    size = 50 * 2**20
    spill = tmp_path / "out.bin"
    tracemalloc.start()
    try:
        res = ka.exec_command(ec, f"head -c {size} /dev/zero | tr '\\0' x",
                              instance_id=healthy["id"][0],
                              max_output=2**20, spill_to=spill, timeout=120)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.ok and len(res.stdout) == 2**20
    assert res.stdout_dropped == size - 2**20
    assert peak < 16 * 2**20  # far below the 50 MB that went through
    assert spill.stat().st_size == size


def test_timeout_closes_the_socket_and_kills_the_process(esim, ec, healthy):
    start = time.monotonic()
    res = ka.exec_command(ec, "echo started; exec sleep 60", instance_id=healthy["id"][0],
                          timeout=1)
    assert time.monotonic() - start < 5
    assert res.timed_out and not res.exited and res.exit_code is None
    assert res.stdout == b"started\n" and res.status == "timed out"
    deadline = time.monotonic() + 5
    while esim._exec.processes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not esim._exec.processes


def test_close_without_exit_frame_is_an_unknown_exit(esim, ec, healthy):
    esim.exec_faults = ExecFaults(no_exit_frame=True)
    res = ka.exec_command(ec, "echo partial", instance_id=healthy["id"][0])
    assert res.stdout == b"partial\n"
    assert (res.exited, res.exit_code) == (False, None)
    assert "1000" in res.error and res.status == "error"
    esim.exec_faults = ExecFaults(drop_after_bytes=100_000)
    res = ka.exec_command(ec, "head -c 1000000 /dev/zero", instance_id=healthy["id"][0])
    assert not res.exited and res.exit_code is None
    assert 100_000 <= len(res.stdout) < 1_000_000 and "dropped" in res.error


def test_error_frames_raise_typed_errors(esim, ec):
    inst = ka.load_instances(ec, progress=False)
    stopped = inst.loc[inst["status"] == "STOPPED", "id"].iloc[0]
    with pytest.raises(ka.InstanceNotRunningError, match="not running"):
        ka.exec_command(ec, ["true"], instance_id=stopped)
    with pytest.raises(ka.NotFoundError):
        ka.exec_command(ec, ["true"], instance_id="5b1f7f0e-1111-4222-8333-444455556666")
    bad = ka.KoyebClient("x" * 64, base_url=esim.url)
    with pytest.raises(ka.AuthenticationError):
        ka.exec_command(bad, ["true"], instance_id=inst["id"][0])


def test_handshake_401_mode():
    with ka.simulate(seed=1, days=1, services=2, now=NOW, exec_auth="handshake") as s:
        iid = ka.load_instances(s.client(), statuses=["HEALTHY"], progress=False)["id"][0]
        bad = ka.KoyebClient("y" * 64, base_url=s.url)
        with pytest.raises(ka.AuthenticationError) as err:
            ka.exec_command(bad, ["true"], instance_id=iid)
        assert "y" * 64 not in str(err.value)
        assert ka.exec_command(s.client(), ["true"], instance_id=iid).ok


def test_service_id_picks_a_running_instance(ec, healthy):
    svc = healthy["service_id"][0]
    res = ka.exec_command(ec, "echo $KOYEB_SERVICE_ID $KOYEB_INSTANCE_ID", service_id=svc)
    got_svc, got_iid = res.stdout_text.split()
    assert got_svc == svc and got_iid in set(healthy.loc[healthy["service_id"] == svc, "id"])
    assert res.service_id == svc and res.instance_id is None


def test_tty_mode_and_resize(ec, healthy):
    with ka.exec_stream(ec, ["sh", "-c", "sleep 0.5; stty size"],
                        instance_id=healthy["id"][0], tty=True,
                        timeout=10) as s:
        s.resize(40, 120)
        events = list(s)
    out = b"".join(e.data for e in events if isinstance(e, Output))
    assert out.strip() == b"40 120"
    assert isinstance(events[-1], Exit) and events[-1].code == 0



def test_tty_resize_reaches_the_command_as_sigwinch(ec, healthy):
    # The pty is the command's controlling terminal, so a resize signals it.
    script = "trap 'stty size; exit 0' WINCH; echo ready; i=0; " \
             "while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exit 3"
    with ka.exec_stream(ec, ["sh", "-c", script], instance_id=healthy["id"][0], tty=True,
                        timeout=20) as s:
        out = b""
        for event in s:
            if isinstance(event, Output):
                out += event.data
                if b"ready" in out:
                    break
        s.resize(33, 99)
        events = list(s)
    out += b"".join(e.data for e in events if isinstance(e, Output))
    assert b"33 99" in out
    assert isinstance(events[-1], Exit) and events[-1].code == 0


def test_tty_command_not_found_exits_127(ec, healthy):
    res = ka.exec_command(ec, ["no-such-command-here"], instance_id=healthy["id"][0], tty=True,
                          timeout=10)
    assert res.exit_code == 127 and b"no-such-command-here" in res.stdout

def test_streaming_cat(ec, healthy):
    with ka.exec_stream(ec, ["cat"], instance_id=healthy["id"][0], timeout=10) as s:
        s.write_stdin(b"hello\n")
        s.close_stdin()
        events = list(s)
    assert b"".join(e.data for e in events if isinstance(e, Output)) == b"hello\n"
    assert events[-1] == Exit(0)


def test_the_frames_the_koyeb_cli_sends(esim, healthy):
    # The CLI: literal "Bearer, <token>" header, idType, and id/command in every frame.
    iid = healthy["id"][0]
    url = esim.url.replace("http://", "ws://") + "/v1/streams/instances/exec"
    ws = websocket.create_connection(url, timeout=10,
                                     header=[f"Sec-WebSocket-Protocol: Bearer, {esim.token}"])
    head = {"id": iid, "idType": "INSTANCE_ID"}
    ws.send(json.dumps({**head, "body": {"command": ["cat"], "disableTty": True}}))
    for chunk in (b"abc", b"def"):
        ws.send(json.dumps({**head, "body": {"command": ["cat"], "stdin": {
            "data": base64.b64encode(chunk).decode()}}}))
    ws.send(json.dumps({**head, "body": {"command": ["cat"], "stdin": {"close": True}}}))
    out, code = b"", None
    while code is None:
        for event in decode_frame(ws.recv()):
            if isinstance(event, Output):
                out += event.data
            elif isinstance(event, Exit):
                code = event.code
    ws.close()
    assert (out, code) == (b"abcdef", 0)
    # The console spells it id_type.
    ws = websocket.create_connection(url, timeout=10, subprotocols=["Bearer", esim.token])
    ws.send(json.dumps({"id": iid, "id_type": "INSTANCE_ID",
                        "body": {"command": ["echo", "x"], "disableTty": True}}))
    assert decode_frame(ws.recv()) == [Output("stdout", b"x\n")]
    ws.close()


def test_exec_many_isolates_failures_and_hangs(ec, healthy):
    ids = list(healthy["id"][:20])
    assert len(ids) == 20
    script = (f'case $KOYEB_INSTANCE_ID in {ids[3]}) echo boom >&2; exit 1;; '
              f'{ids[7]}) exec sleep 60;; *) echo ok;; esac')
    start = time.monotonic()
    runs = ka.exec_many(ec, script, instances=healthy.iloc[:20], concurrency=8, timeout=3)
    took = time.monotonic() - start
    assert took < 8  # the hang costs its own timeout, not everyone's
    assert list(runs.columns) == list(ka.execute.MANY_COLUMNS)
    assert list(runs["instance_id"]) == ids
    assert runs.loc[3, "exit_code"] == 1 and runs.loc[3, "stderr"] == "boom\n"
    assert bool(runs.loc[7, "timed_out"]) and pd.isna(runs.loc[7, "exit_code"])
    ok = runs.drop(index=[3, 7])
    assert (ok["exit_code"] == 0).all() and (ok["stdout"] == "ok\n").all()
    assert (runs["region"] == healthy["region"][:20]).all()
    grouped = ka.group_outputs(runs)
    assert grouped.attrs["summary"] == "20 instances: 18 identical; 2 differ (2 other outputs)"
    assert grouped["instances"].tolist() == [18, 1, 1]
    assert "+boom" in grouped.loc[grouped["exit_code"] == 1, "diff_vs_majority"].iloc[0]


def test_group_outputs_on_known_inputs():
    runs = pd.DataFrame({"instance_id": ["a", "b", "c", "d"],
                         "exit_code": pd.array([0, 0, 0, 2], dtype="Int64"),
                         "stdout": ["v1\nx\n", "v1\nx\n", "v2\nx\n", "v1\nx\n"],
                         "stderr": ["", "", "", "fail\n"], "error": [None] * 4})
    g = ka.group_outputs(runs)
    assert g["instance_ids"].tolist() == [["a", "b"], ["c"], ["d"]]
    assert g["majority"].tolist() == [True, False, False]
    assert "-v1" in g["diff_vs_majority"][1] and "+v2" in g["diff_vs_majority"][1]
    one = ka.group_outputs(runs.iloc[:2])
    assert one.attrs["summary"] == "2 instances: identical"


def test_ctrl_c_closes_and_keeps_the_partial_output(esim, ec, healthy):
    def interrupt(chunk):
        raise KeyboardInterrupt

    with pytest.raises(ka.ExecInterrupted) as err:
        ka.exec_command(ec, "echo first; exec sleep 30", instance_id=healthy["id"][0],
                        on_stdout=interrupt)
    assert err.value.result.stdout == b"first\n" and not err.value.result.exited
    deadline = time.monotonic() + 5
    while esim._exec.processes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not esim._exec.processes


@pytest.mark.parametrize("args, exc, words", [
    (("not-a-uuid", ["ls"]), ValueError, "instance_id"),
    ((None, ["ls"]), ValueError, "exactly one"),
    (("5b1f7f0e-1111-4222-8333-444455556666", []), ValueError, "command"),
    (("5b1f7f0e-1111-4222-8333-444455556666", "  "), ValueError, "command"),
    (("5b1f7f0e-1111-4222-8333-444455556666", [1, 2]), ValueError, "command"),
])
def test_bad_input_fails_before_connecting(esim, ec, args, exc, words):
    target, command = args
    with pytest.raises(exc, match=words):
        ka.exec_command(ec, command, instance_id=target)
    with pytest.raises(ValueError, match="timeout"):
        ka.exec_command(ec, ["ls"], instance_id="5b1f7f0e-1111-4222-8333-444455556666", timeout=-1)


def test_simulated_processes_do_not_outlive_the_simulator(healthy):
    with ka.simulate(seed=7, days=7, services=12, now=NOW) as s:
        stream = ka.exec_stream(s.client(), "echo $$; exec sleep 30", instance_id=healthy["id"][0],
                                timeout=30).open()
        first = next(iter(stream))
        pid = int(first.data)
        os.kill(pid, 0)  # running while the session is open
    time.sleep(0.2)
    try:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        stream.close()


def test_delayed_frames_arrive_late_but_whole(esim, ec, healthy):
    esim.exec_faults = ExecFaults(frame_delay=0.3)
    start = time.monotonic()
    res = ka.exec_command(ec, "echo one; sleep 0.1; echo two >&2", instance_id=healthy["id"][0])
    # each frame is held back 0.3 s; stderr's is produced 0.1 s after stdout's
    assert time.monotonic() - start >= 0.4
    assert (res.stdout, res.stderr, res.exit_code) == (b"one\n", b"two\n", 0)
