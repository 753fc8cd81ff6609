"""The exec protocol's frames, byte for byte: every field, bound and error shape."""

from __future__ import annotations

import base64
import json

import pytest

import koyeb_analytics as ka
from koyeb_analytics.execute import (
    EXEC_PATH,
    STDIN_CHUNK,
    Closed,
    ErrorFrame,
    Exit,
    Output,
    command_frame,
    decode_frame,
    error_for,
    error_frame,
    resize_frame,
    result_frame,
    stdin_close_frame,
    stdin_frames,
)
from koyeb_analytics.execute._codec import _int32


def result(**fields):
    return json.dumps({"result": fields})


def test_command_frame_fields_exactly():
    assert json.loads(command_frame("i-1", ("echo", "a b"))) == {
        "id": "i-1", "idType": "INSTANCE_ID",
        "body": {"command": ["echo", "a b"], "disableTty": True}}
    assert json.loads(command_frame("svc", ["sh"], id_type="SERVICE_ID", tty=True)) == {
        "id": "svc", "idType": "SERVICE_ID", "body": {"command": ["sh"], "disableTty": False}}


def test_stdin_is_cut_at_exactly_4096_bytes_in_padded_base64():
    assert STDIN_CHUNK == 4096
    assert stdin_frames(b"") == []
    data = bytes(range(256)) * 16 + b"xy"           # 4098 bytes: one full frame and 2 bytes
    frames = [json.loads(f) for f in stdin_frames(data)]
    assert [list(f) for f in frames] == [["body"], ["body"]]
    chunks = [base64.b64decode(f["body"]["stdin"]["data"]) for f in frames]
    assert [len(c) for c in chunks] == [4096, 2]
    assert b"".join(chunks) == data
    assert frames[1] == {"body": {"stdin": {"data": "eHk="}}}   # padded, not urlsafe
    assert json.loads(stdin_frames(b"\xff\xfe")[0])["body"]["stdin"]["data"] == "//4="


def test_close_and_resize_frames_exactly():
    assert json.loads(stdin_close_frame()) == {"body": {"stdin": {"close": True}}}
    assert json.loads(resize_frame("24", 80.0)) == {"body": {"tty_size": {"height": 24,
                                                                         "width": 80}}}


def test_error_frame_text():
    assert ErrorFrame(9, "failed_precondition").text() == "failed_precondition (code 9)"
    assert ErrorFrame(5, "", ("a", "b")).text() == "error (code 5): a; b"
    assert ErrorFrame(3, "bad", ("only",)).text() == "bad (code 3): only"
    assert Closed(None).reason == "" and Closed(1000, "bye").code == 1000
    assert ErrorFrame(1, "m").details == ()


@pytest.mark.parametrize("value, expected", [
    (0, 0), (7, 7), (-1, -1), (2**31 - 1, 2**31 - 1), (-2**31, -2**31),
    (2**31, None), (-2**31 - 1, None), (True, None), (False, None),
    (3.0, 3), (3.5, None), ("42", 42), ("-42", -42), ("12345678901", None),
    ("99999999999", None), ("1e3", None), ("X12", None), ("12X", None), ("", None),
    ("-", None), (None, None), ([1], None),
])
def test_int32_accepts_what_a_status_or_exit_code_can_be(value, expected):
    got = _int32(value)
    assert got == expected and (got is None or type(got) is int)


def test_int32_string_length_bound():
    assert _int32("2147483647") == 2**31 - 1       # 10 digits: parsed and in range
    assert _int32("-2147483648") == -2**31         # 11 characters: still parsed
    assert _int32("00000000001") == 1              # 11 characters
    assert _int32("000000000001") is None          # 12 characters: refused before int()


def test_decode_result_frames():
    out = base64.b64encode(b"out").decode()
    err = base64.b64encode(b"err").decode()
    assert decode_frame(result(stdout={"data": out}, stderr={"data": err}, exited=False)) == [
        Output("stdout", b"out"), Output("stderr", b"err")]
    # stderr before stdout in the payload: still stdout first; bytes input too
    assert decode_frame(json.dumps({"result": {"stderr": {"data": err}, "stdout": {
        "data": out}}}).encode()) == [Output("stdout", b"out"), Output("stderr", b"err")]
    assert decode_frame(result(stdout=None, stderr=None, exited=False)) == []
    assert decode_frame(result(stdout={"data": ""}, stderr={"data": None})) == []
    assert decode_frame(result(stdout="b3V0", stderr={"nodata": 1})) == []
    assert decode_frame(result()) == []


def test_only_exited_true_ends_the_command():
    assert decode_frame(result(exited=True, exit_code=3)) == [Exit(3)]
    assert decode_frame(result(exited=True)) == [Exit(0)]
    assert decode_frame(result(exited=True, exit_code=None)) == [Exit(0)]
    assert decode_frame(result(exited=True, exit_code="137")) == [Exit(137)]
    assert decode_frame(result(exited=True, exit_code=2.0)) == [Exit(2)]
    assert decode_frame(result(exited="true", exit_code=1)) == []
    assert decode_frame(result(exited=1, exit_code=1)) == []
    assert decode_frame(result(exited=False, exit_code=1)) == []
    out = base64.b64encode(b"last").decode()
    assert decode_frame(result(stdout={"data": out}, exited=True, exit_code=0)) == [
        Output("stdout", b"last"), Exit(0)]


@pytest.mark.parametrize("code", [2**31, "x", True, 1.5, [0], "9" * 50])
def test_an_exit_code_no_process_can_have_is_refused(code):
    with pytest.raises(ValueError) as info:
        decode_frame(result(exited=True, exit_code=code))
    shown = str(code) if len(str(code)) < 40 else "9" * 40   # cut at 40 characters
    assert str(info.value) == f"exit code {shown} is not one a process can have"


def test_not_the_protocol_is_a_value_error_naming_why():
    with pytest.raises(ValueError, match="^exec frame is not a JSON object$"):
        decode_frame("[1, 2]")
    with pytest.raises(ValueError, match=r"^exec frame has neither 'result' nor 'error'$"):
        decode_frame('{"result": [1]}')
    with pytest.raises(ValueError, match=r"^exec frame has neither 'result' nor 'error'$"):
        decode_frame('{"error": null}')
    with pytest.raises(ValueError):
        decode_frame("not json")


def test_error_frames_of_any_shape():
    frame = json.loads(error_frame(9, "failed_precondition", "instance is not running"))
    assert frame == {"error": {"code": 9, "message": "failed_precondition", "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
         "message": "instance is not running"}]}}
    assert decode_frame(json.dumps(frame)) == [
        ErrorFrame(9, "failed_precondition", ("instance is not running",))]
    assert decode_frame('{"error": "boom"}') == [ErrorFrame(-1, "boom")]
    assert decode_frame(json.dumps({"error": "x" * 600})) == [ErrorFrame(-1, "x" * 500)]
    assert decode_frame('{"error": {}}') == [ErrorFrame(-1, "", ())]
    assert decode_frame('{"error": {"code": "16", "message": null}}') == [ErrorFrame(16, "")]
    assert decode_frame('{"error": {"code": 2.5, "message": 7}}') == [ErrorFrame(-1, "7")]
    assert decode_frame('{"error": {"code": 0}}') == [ErrorFrame(0, "")]
    details = [{"message": "m1"}, {"other": 1}, "plain", 5] + [f"d{i}" for i in range(30)]
    got = decode_frame(json.dumps({"error": {"code": 3, "message": "y" * 900,
                                             "details": details}}))[0]
    assert got.message == "y" * 500
    assert got.details[:4] == ("m1", "{'other': 1}", "plain", "5")
    assert len(got.details) == 20 and got.details[-1] == "d15"
    long_detail = decode_frame(json.dumps({"error": {"details": ["z" * 700,
                                                                 {"message": "w" * 700}]}}))
    assert long_detail[0].details == ("z" * 500, "w" * 500)
    assert decode_frame('{"error": {"details": "not a list"}}')[0].details == ()


@pytest.mark.parametrize("code, cls, status", [
    (3, ka.BadRequestError, 400), (5, ka.NotFoundError, 404),
    (7, ka.PermissionDeniedError, 403), (9, ka.InstanceNotRunningError, 400),
    (16, ka.AuthenticationError, 401), (13, ka.APIError, 500), (-1, ka.APIError, 500),
])
def test_error_for_maps_grpc_codes(code, cls, status):
    err = error_for(ErrorFrame(code, "msg", ("d1", "d2")))
    assert type(err) is cls
    assert (err.status, err.code, err.message, err.path) == (status, "msg", "d1; d2",
                                                             EXEC_PATH)
    bare = error_for(ErrorFrame(code, "only"), path="/elsewhere")
    assert (bare.message, bare.path) == ("only", "/elsewhere")


def test_result_frame_has_all_four_keys():
    assert json.loads(result_frame()) == {"result": {"stdout": None, "stderr": None,
                                                     "exited": False, "exit_code": 0}}
    assert json.loads(result_frame(b"o", b"", exited=True, exit_code=4)) == {
        "result": {"stdout": {"data": "bw=="}, "stderr": None, "exited": True,
                   "exit_code": 4}}
    assert decode_frame(result_frame(b"\xfb\xff", b"e", exited=True, exit_code=1)) == [
        Output("stdout", b"\xfb\xff"), Output("stderr", b"e"), Exit(1)]
    assert json.loads(result_frame(stderr=b"\xfb\xff"))["result"]["stderr"] == {
        "data": "+/8="}
