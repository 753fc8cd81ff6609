"""The capture path's shortcuts give what the long way gives: plain output frames read
without JSON, chunks kept without copies and screened for secrets as they come, and
outputs parsed as their runs end."""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import time

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import koyeb_analytics as ka
from koyeb_analytics.execute import ErrorFrame, Exit, Output, _codec, decode_frame
from koyeb_analytics.execute._codec import _output_frame, strict_b64decode
from koyeb_analytics.execute._diagnostics import parse_output, parser_for
from koyeb_analytics.execute._run import _Capture, _kept
from koyeb_analytics.redact import DEFAULT_REDACTOR, Redactor

from .hostile import ws_frame
from .test_exec_units import IID, client_for, scripted


def the_long_way(frame: bytes) -> tuple[str, object]:
    """What decoding the frame as JSON gives (a str frame never takes the shortcut)."""
    try:
        return "events", decode_frame(frame.decode("utf-8"))
    except ValueError as exc:
        return "error", type(exc)


def the_short_way(frame: bytes) -> tuple[str, object]:
    try:
        return "events", decode_frame(frame)
    except ValueError as exc:
        return "error", type(exc)


def compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def spaced(obj: object) -> bytes:
    return json.dumps(obj).encode()


def output(stream: str, b64: str) -> dict:
    result: dict = {"stdout": None, "stderr": None, "exited": False, "exit_code": 0}
    result[stream] = {"data": b64}
    return {"result": result}


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), stream=st.sampled_from(["stdout", "stderr"]),
       dump=st.sampled_from([compact, spaced]))
def test_a_plain_output_frame_reads_as_its_json_says(data, stream, dump):
    frame = dump(output(stream, base64.b64encode(data).decode()))
    assert the_short_way(frame) == the_long_way(frame)
    if data:  # the shortcut took it: no JSON parse for the frame a command sends most
        assert _output_frame(frame) == [Output(stream, data)]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=1, max_size=60), stream=st.sampled_from(["stdout", "stderr"]),
       dump=st.sampled_from([compact, spaced]),
       edit=st.sampled_from(["escape slash", "unicode escape", "cut padding", "space",
                             "newline escape", "junk", "exited", "code 1", "both"]))
def test_any_other_frame_takes_the_json_path(data, stream, dump, edit):
    b64 = base64.b64encode(data).decode()
    frame = dump(output(stream, b64))
    first = b64[:1].encode()
    if edit == "escape slash":       # JSON may escape "/": the same string
        frame = frame.replace(b"/", b"\\/")
    elif edit == "unicode escape":   # and any character
        frame = frame.replace(b'"' + first, b'"\\u%04x' % ord(first), 1)
    elif edit == "cut padding":
        frame = frame.replace(b"=", b"", 1)
    elif edit == "space":
        frame = frame.replace(first, b" " + first, 1)
    elif edit == "newline escape":
        frame = frame.replace(first, b"\\n" + first, 1)
    elif edit == "junk":
        frame = frame.replace(first, b"*" + first, 1)
    elif edit == "exited":
        frame = frame.replace(b"false", b"true")
    elif edit == "code 1":
        frame = frame.replace(b":0}", b":1}").replace(b": 0}", b": 1}")
    elif edit == "both":
        obj = output(stream, b64)
        obj["result"]["stdout" if stream == "stderr" else "stderr"] = {"data": b64}
        frame = dump(obj)
    assert the_short_way(frame) == the_long_way(frame)


def test_the_frames_the_api_and_the_simulator_send_take_the_shortcut():
    api = b'{"result":{"stdout":{"data":"aGVsbG8K"},"stderr":null,"exited":false,"exit_code":0}}'
    assert _output_frame(api) == [Output("stdout", b"hello\n")]
    sim = ka.execute.result_frame(None, b"oops").encode()
    assert _output_frame(sim) == [Output("stderr", b"oops")]
    assert _output_frame(ka.execute.result_frame(exited=True, exit_code=3).encode()) is None
    assert decode_frame(ka.execute.result_frame(exited=True, exit_code=3).encode()) == [Exit(3)]
    escaped = api.replace(b"aGVsbG8K", b"aGVs\\/G8K")  # a JSON escape: the long way
    assert _output_frame(escaped) is None
    assert decode_frame(escaped) == decode_frame(escaped.decode())


def strictly(decode, data: bytes) -> object:
    try:
        return decode(data)
    except binascii.Error:
        return binascii.Error


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=3000), where=st.floats(min_value=0, max_value=1),
       edit=st.sampled_from(["none", "replace", "insert", "delete", "append"]),
       char=st.sampled_from(list(b"=\n -_.*\x00\xffA+/")))
def test_the_fast_decoder_gives_what_the_strict_one_gives(data, where, edit, char):
    """Valid base64 of any length (the SIMD decoder works in blocks), and the same with
    one character replaced, inserted, deleted or appended: the same bytes, or the same
    refusal."""
    b64 = bytearray(base64.b64encode(data))
    at = int(where * len(b64))
    if edit == "replace" and b64:
        b64[min(at, len(b64) - 1)] = char
    elif edit == "insert":
        b64.insert(at, char)
    elif edit == "delete" and b64:
        del b64[min(at, len(b64) - 1)]
    elif edit == "append":
        b64.append(char)
    text = bytes(b64)
    want = strictly(lambda d: binascii.a2b_base64(d, strict_mode=True), text)
    assert strictly(strict_b64decode, text) == want
    assert strictly(strict_b64decode, memoryview(b"{" + text + b"}")[1:-1]) == want


def test_the_simd_decoder_is_used_when_it_is_installed():
    installed = importlib.util.find_spec("pybase64") is not None
    assert (_codec._simd_b64decode is not None) == installed


def log_lines(n: int, start: int = 0) -> bytes:
    return b"".join(b"time=12:00:%02d level=info msg=\"served\" path=/api/%d bytes=%d\n"
                    % (i % 60, i, i * 7) for i in range(start, start + n))


SECRETS = (b"DB_PASSWORD=hunter2-not-a-real-one\n",
           b'{"access_token": "tok-1234567890abcdef", "id": 3}\n',
           b"auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl done\n",
           b"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83vEi\n"
           b"-----END RSA PRIVATE KEY-----\n")


@pytest.mark.parametrize("compact_frames", [True, False], ids=["api frames", "sim frames"])
@pytest.mark.parametrize("max_output", [None, 60_000], ids=["whole", "cut"])
def test_large_frames_with_secrets_split_across_them_give_what_the_whole_gives(
        compact_frames, max_output):
    """Output in frames of tens of KB (the fast decoder's size), each secret split
    between two frames: the result is the redaction of the whole output, cut as the
    whole would be."""
    parts, cuts, size = [], [], 0
    for k, secret in enumerate(SECRETS):
        parts.append(log_lines(400, 400 * k))
        size += len(parts[-1])
        cuts.append(size + len(secret) // 2)   # inside the secret
        parts.append(secret)
        size += len(secret)
    parts.append(log_lines(400, 9000))
    whole = b"".join(parts)
    bounds = sorted({0, *cuts, *range(41_000, len(whole), 41_000), len(whole)})
    dump = compact if compact_frames else spaced
    chunks = [whole[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    payloads = [dump(output("stdout", base64.b64encode(c).decode())) for c in chunks]
    assert [_output_frame(p) for p in payloads] == [[Output("stdout", c)] for c in chunks]
    replies = [ws_frame(p) for p in payloads]
    replies.append(ws_frame(dump({"result": {"stdout": None, "stderr": None, "exited": True,
                                             "exit_code": 0}})))
    cap = max_output or len(whole) * 2
    with scripted(replies) as srv:
        res = ka.exec_command(client_for(srv), ["sh"], instance_id=IID, timeout=10,
                              max_output=cap)
    reference = _Capture(cap)   # the whole output as one chunk
    reference.add(whole)
    stdout, cut, n = _kept(reference, DEFAULT_REDACTOR)
    assert (res.stdout, res.stdout_cut, res.redacted, res.stdout_dropped) == (
        stdout, cut, n, reference.dropped)
    assert n >= (4 if max_output is None else 1) and b"hunter2" not in res.stdout
    if max_output is None:
        assert stdout == DEFAULT_REDACTOR.redact_bytes(whole)[0]


def test_a_message_in_fragments_is_whole_and_a_ping_between_them_is_answered():
    body = b'{"result":{"stdout":{"data":"' + base64.b64encode(b"in three parts") + \
        b'"},"stderr":null,"exited":false,"exit_code":0}}'
    replies = [ws_frame(body[:10], 0x1, fin=False), ws_frame(b"hi", 0x9),
               ws_frame(body[10:30], 0x0, fin=False), ws_frame(body[30:], 0x0),
               ws_frame(b'{"result":{"stdout":{"data":"eA=="},"stderr":null,'
                        b'"exited":false,"exit_code":0}}'),
               ws_frame(b'{"result":{"stdout":null,"stderr":null,"exited":true,'
                        b'"exit_code":0}}')]
    with scripted(replies) as srv:
        result = ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)
        # The server's thread reads the client's frames on its own time: give it a
        # bounded moment to have read the pong.
        deadline = time.monotonic() + 5
        while (0xA, b"hi") not in srv.state["frames"] and time.monotonic() < deadline:
            time.sleep(0.01)
        frames = list(srv.state["frames"])
    assert (result.stdout, result.exit_code) == (b"in three partsx", 0)
    assert (0xA, b"hi") in frames  # the pong


# Chunks a command could print: text with no byte any rule needs, text with secrets,
# colour codes, keys, and pieces of them cut anywhere.
PIECES = [b"xyz ", b"0123\n", b"hello world\n", b"DB_PASSWORD=hunter2\n", b"token",
          b"=", b":", b"eyJhbGciOi.eyJzdWIi.c2ln\n", b"AKIAABCDEFGHIJKLMNOP ",
          b"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n", b"-----END RSA PRIVATE KEY-----\n",
          b"\x1b[31mSECRET\x1b[0m=v\n", b"https://u:pw@host/\n", b"\xff\xfe", b"A", b"e", b"-"]


@settings(max_examples=400, deadline=None)
@given(chunks=st.lists(st.sampled_from(PIECES) | st.binary(max_size=12), max_size=25),
       cap=st.integers(min_value=2, max_value=200),
       redactor=st.sampled_from([DEFAULT_REDACTOR, Redactor(patterns=(r"xyz",)),
                                 Redactor(enabled=False)]))
def test_screening_chunks_as_they_come_keeps_what_redacting_the_whole_keeps(chunks, cap,
                                                                            redactor):
    screened = _Capture(cap, screen=redactor.may_hold_secret if redactor.enabled else None)
    whole = _Capture(cap)
    for chunk in chunks:
        screened.add(chunk)
        whole.add(chunk)
    assert screened.value() == whole.value() and screened.dropped == whole.dropped
    assert _kept(screened, redactor) == _kept(whole, redactor)
    text = b"".join(chunks)
    clean = redactor.enabled and (not text or not redactor.patterns and not any(
        t in text for t in (b"=", b":", b"-", b"e", b"A")))
    assert screened.clean == clean  # the shortcut is taken exactly when it may be


def test_a_pattern_is_matched_in_output_that_no_built_in_rule_could_touch():
    red = Redactor(patterns=(r"x{3}",))
    cap = _Capture(100, screen=red.may_hold_secret)
    for chunk in (b"abxx", b"xcd\n"):
        cap.add(chunk)
    assert not cap.clean
    assert _kept(cap, red) == (b"ab[redacted]cd\n", None, 1)


def test_the_head_is_one_buffer_that_becomes_the_value_without_a_copy():
    cap = _Capture(1000)
    for chunk in (b"a" * 10, b"b" * 20):
        cap.add(chunk)
    value = cap.value()
    assert (value, cap.head_size) == (b"a" * 10 + b"b" * 20, 30)
    assert cap.value() is value and cap.head is value  # the buffer itself, no join
    cut = _Capture(9)  # head 4 bytes, tail 5: the chunk that fills the head is split
    for chunk in (b"abc", b"defgh", b"ijklmn"):
        cut.add(chunk)
    assert (cut.head, list(cut.tail), cut.dropped) == (b"abcd", [b"jklmn"], 5)
    assert (cut.value(), cut.total) == (b"abcdjklmn", 14)


def test_cpu_times_no_timedelta_can_hold_are_missing_not_a_crash():
    ps = ("USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND\n"
          "root 1 0.0 0.1 1000 200 ? Ss 12:00 \u00b2:00 init\n"
          "root 2 0.0 0.1 1000 200 ? Ss 12:00 99999999999999-00:00:00 spin\n"
          "root 3 0.0 0.1 1000 200 ? Ss 12:00 1-02:03:04 work\n"
          "root 4 0.0 0.1 1000 200 ? Ss 12:00 1-02:03:04 work\n")
    df = parse_output(ps, parser_for("processes"))
    assert df["time"].isna().tolist() == [True, True, False, False]
    assert df["time"].iloc[2] == pd.Timedelta("1 days 02:03:04")


def test_exec_table_parses_each_output_in_the_thread_that_ran_it(monkeypatch, exec_sim):
    import threading

    from koyeb_analytics.execute import _diagnostics

    from .conftest import fast_client

    client = fast_client(exec_sim)
    running = ka.load_instances(client, statuses="HEALTHY", progress=False).head(3)
    threads: list[str] = []
    parse = _diagnostics._parse

    def recording(text, diagnostic):
        threads.append(threading.current_thread().name)
        return parse(text, diagnostic)
    monkeypatch.setattr(_diagnostics, "_parse", recording)
    df = ka.exec_table(client, "load", instances=running, concurrency=3)
    assert sorted(df["instance_id"]) == sorted(running["id"])
    assert len(threads) == 3 and all(t.startswith("koyeb-exec") for t in threads)
    assert not df.attrs["failed"]


def test_an_error_frame_mid_run_still_ends_the_result():
    replies = [ws_frame(b'{"result":{"stdout":{"data":"b2s="},"stderr":null,"exited":false,'
                        b'"exit_code":0}}'),
               ws_frame(b'{"error":{"code":13,"message":"internal"}}')]
    with scripted(replies) as srv:
        result = ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5)
    assert result.stdout == b"ok" and result.error == "server error: internal (code 13)"
    assert ErrorFrame(13, "internal").text() == "internal (code 13)"


@pytest.mark.parametrize("redact", [True, False])
def test_a_large_clean_output_comes_back_whole(redact):
    data = b"x" * 70_000 + b"\n"
    frames = [ws_frame(ka.execute.result_frame(data[i:i + 32768]).encode())
              for i in range(0, len(data), 32768)]
    frames.append(ws_frame(ka.execute.result_frame(exited=True, exit_code=0).encode()))
    with scripted(frames) as srv:
        result = ka.exec_command(client_for(srv), ["id"], instance_id=IID, timeout=5,
                                 redact=redact)
    assert result.stdout == data and result.redacted == (0 if redact else None)


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
                   st.text(max_size=3), st.just(float("nan")))


@settings(max_examples=300, deadline=None)
@given(instances=st.lists(st.lists(st.dictionaries(st.sampled_from("abcde"), VALUES,
                                                   max_size=5), max_size=4), max_size=4))
def test_a_frame_built_from_columns_is_the_frame_of_the_rows(instances):
    from koyeb_analytics.execute._diagnostics import _columns, _frame

    # as exec_table makes them: the instance first, then what its output parsed into
    instances = [[{"instance_id": f"i{k}", **row} for row in part]
                 for k, part in enumerate(instances)]
    rows = [row for part in instances for row in part]
    parts = [_columns(part) for part in instances]
    if not rows:
        assert not any(n for _, n in parts)
        return
    pd.testing.assert_frame_equal(_frame(parts), pd.DataFrame(rows))


# -- ps output read a table at a time, as jc reads it a row at a time -----------------
PS_HEADERS = ["USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND",
              "user pid %cpu %mem vsz rss tty stat start time command",
              "UID PID PPID C STIME TTY TIME CMD", "PID TT STAT TIME COMMAND",
              "PID TTY TIME CMD", "  PID  %CPU  ", "PID PID CMD", "PID CPU_PERCENT %CPU",
              "REGION PID CMD", "INSTANCE_ID PID"]
PS_FIELDS = ["0", "1", "42", "007", "123456", "-1", "0.0", "1.5", "12.", ".5", "1.2.3", ".",
             "-", "?", "??", "pts/0", "\u00b2", "\uff11\uff12", "1e5", "9" * 25, "1" * 18,
             "9" * 5000, "1,5", "root", "Ss", "12:00", "0:01", "1-02:03:04", "x\u00a0y"]


@st.composite
def ps_outputs(draw):
    header = draw(st.sampled_from(PS_HEADERS))
    width = len(header.split())
    lines = [header]
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        n = width if draw(st.integers(0, 29)) else draw(st.integers(0, width + 2))
        fields = [draw(st.sampled_from(PS_FIELDS)) for _ in range(n)]
        if n >= width and draw(st.booleans()):  # a command with spaces
            fields.append("/usr/bin/python3 -m app  --workers 4")
        sep = draw(st.sampled_from([" ", "  ", "\t"]))
        lead = draw(st.sampled_from(["", " ", "  "]))
        lines.append(lead + sep.join(fields) + draw(st.sampled_from(["", " "])))
    end = draw(st.sampled_from(["\n", "\r\n", ""]))
    return end.join(lines) + end


def table_way(text: str, base: dict) -> object:
    from koyeb_analytics.execute import _diagnostics

    try:
        return _diagnostics._fast_columns(text, parser_for("processes"), base)
    except ValueError as exc:
        return str(exc)


def row_way(text: str, base: dict) -> object:
    from koyeb_analytics.execute import _diagnostics

    try:
        rows = _diagnostics._parse(text, parser_for("processes"))
    except ValueError as exc:
        return str(exc)
    return _diagnostics._columns([{**base, **r} for r in rows])


@settings(max_examples=500, deadline=None)
@given(text=ps_outputs())
def test_ps_output_read_as_a_table_gives_what_jc_gives_row_by_row(text):
    """Whenever the table reading answers (None: it leaves the output to jc), it gives
    jc's rows as columns, with the same values and types, or the same failure."""
    base = {"instance_id": IID, "service_id": None, "region": "fra"}
    got = table_way(text, base)
    if got is not None:
        assert got == row_way(text, base)


def test_the_table_reading_is_taken_for_ps_aux_and_left_for_what_it_does_not_read(
        monkeypatch):
    import jc.parsers.ps

    ps = ("USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND\n"
          "root 1 0.0 0.1 1000 200 ? Ss 12:00 0:01 /sbin/init  splash\n"
          "app 77 12.5 3.0 99999 4321 pts/0 R+ 12:01 1-02:03:04 python -m app\n")
    base = {"instance_id": IID}
    cols, n = table_way(ps, base)
    assert n == 2 and cols == row_way(ps, base)[0]
    assert cols["tty"] == [None, "pts/0"] and cols["cpu_percent"] == [0.0, 12.5]
    assert list(cols)[-2:] == ["cpu_percent", "mem_percent"]
    assert table_way(ps.replace("0:01 ", "", 1).replace("init  splash", "x"), base) is None
    assert table_way(ps + "\n" + ps.splitlines()[1], base) is None     # a blank line
    assert table_way(ps, {"pid": 1}) is None                             # a name of base
    monkeypatch.setattr(jc.parsers.ps.info, "version", "9.9")
    assert table_way(ps, base) is None                     # another jc: read its own way


def test_exec_table_on_the_simulator_gives_the_frame_jc_gives(exec_sim):
    from koyeb_analytics.execute import _diagnostics

    from .conftest import fast_client

    client = fast_client(exec_sim)
    running = ka.load_instances(client, statuses="HEALTHY", progress=False).head(3)
    runs = ka.exec_many(client, "ps aux", instances=running, timeout=30)
    diag = parser_for("processes")
    results = [ka.execute.ExecResult(iid, ("ps", "aux"), stdout=out.encode(), exit_code=0,
                                     exited=True) for iid, out in
               zip(runs["instance_id"], runs["stdout"], strict=True)]
    bases = [{"instance_id": r.instance_id, "service_id": "s", "region": "fra"}
             for r in results]
    fast = [_diagnostics._part_or_reason(r, diag, b) for r, b in zip(results, bases,
                                                                      strict=True)]
    assert all(table_way(r.stdout_text, b) is not None for r, b in zip(results, bases,
                                                                       strict=True))
    slow = [_diagnostics._columns([{**b, **row} for row in _diagnostics._parse(
        r.stdout_text, diag)]) for r, b in zip(results, bases, strict=True)]
    assert fast == slow
    pd.testing.assert_frame_equal(_diagnostics._typed(_diagnostics._frame(fast), diag.kib, diag),
                                  _diagnostics._typed(_diagnostics._frame(slow), diag.kib, diag))
