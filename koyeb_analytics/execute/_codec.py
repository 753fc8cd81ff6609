"""The exec protocol as pure functions: frames to send, frames received as typed events.

JSON text frames over ``/v1/streams/instances/exec`` (``koyeb-api-facts.md`` §8, §15).
Both sides use this module: the client encodes requests and decodes results, and the
simulator encodes results and error frames with :func:`result_frame` and
:func:`error_frame`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    InstanceNotRunningError,
    NotFoundError,
    PermissionDeniedError,
)

_simd_b64decode: Callable[..., bytes] | None
try:
    # Decoding the base64 of the output is nearly all a capture costs beyond receiving
    # it: binascii's decoder reads about 200 MB/s, this one (SIMD) several GB/s.
    from pybase64 import b64decode as _simd
except ImportError:  # pragma: no cover - a declared dependency; binascii does the same
    _simd_b64decode = None
else:
    _simd_b64decode = _simd

EXEC_PATH = "/v1/streams/instances/exec"
STDIN_CHUNK = 4096


def command_frame(target_id: str, command: Sequence[str], *, id_type: str = "INSTANCE_ID",
                  tty: bool = False) -> str:
    """The first frame: what to run, and where.

    Examples
    --------
    >>> import json
    >>> json.loads(ka.execute.command_frame("0b1c2d3e", ["uname", "-a"]))["body"]
    {'command': ['uname', '-a'], 'disableTty': True}
    """
    return json.dumps({"id": target_id, "idType": id_type,
                       "body": {"command": list(command), "disableTty": not tty}})


def stdin_frames(data: bytes) -> list[str]:
    """Stdin as frames of at most 4096 raw bytes each (standard padded base64).

    Examples
    --------
    >>> frames = ka.execute.stdin_frames(b"x" * 5000)
    >>> len(frames)
    2
    """
    return [json.dumps({"body": {"stdin": {"data": base64.b64encode(
        data[i:i + STDIN_CHUNK]).decode("ascii")}}}) for i in range(0, len(data), STDIN_CHUNK)]


def stdin_close_frame() -> str:
    """Tell the command its stdin has ended (commands that read stdin need it).

    Examples
    --------
    >>> ka.execute.stdin_close_frame()
    '{"body": {"stdin": {"close": true}}}'
    """
    return json.dumps({"body": {"stdin": {"close": True}}})


def resize_frame(height: int, width: int) -> str:
    """A terminal size change (TTY mode).

    Examples
    --------
    >>> ka.execute.resize_frame(24, 80)
    '{"body": {"tty_size": {"height": 24, "width": 80}}}'
    """
    return json.dumps({"body": {"tty_size": {"height": int(height), "width": int(width)}}})


@dataclass(frozen=True)
class Output:
    """A chunk of the command's ``stdout`` or ``stderr``."""

    stream: str
    data: bytes


@dataclass(frozen=True)
class Exit:
    """The command ended with ``code``."""

    code: int


@dataclass(frozen=True)
class ErrorFrame:
    """An error frame (google.rpc.Status): fatal for the session."""

    code: int
    message: str
    details: tuple[str, ...] = ()

    def text(self) -> str:
        extra = f": {'; '.join(self.details)}" if self.details else ""
        return f"{self.message or 'error'} (code {self.code}){extra}"


@dataclass(frozen=True)
class Closed:
    """The socket closed; ``code`` is None when it was dropped without a close frame."""

    code: int | None
    reason: str = ""


Event = Output | Exit | ErrorFrame | Closed


def _int32(value: Any) -> int | None:
    """An integer the protocol can mean (a status or exit code), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.lstrip("-").isdigit() and len(value) < 12:
        value = int(value)
    if isinstance(value, int) and -2**31 <= value < 2**31:
        return value
    return None


# The frame a running command sends most, byte for byte as the API writes it (compact)
# and as Python's json.dumps does (the simulator): one stream's data, not exited. Its
# base64 holds no quote or backslash, so the text between head and foot is the whole
# JSON string, and a strict base64 decode of it is what the JSON path would decode.
_OUTPUT_FRAMES: tuple[tuple[bytes, bytes, str], ...] = tuple(
    (head.encode(), foot.encode(), stream)
    for sep, comma in ((":", ","), (": ", ", "))
    for head, foot, stream in (
        (f'{{"result"{sep}{{"stdout"{sep}{{"data"{sep}"',
         f'"}}{comma}"stderr"{sep}null{comma}"exited"{sep}false{comma}"exit_code"{sep}0}}}}',
         "stdout"),
        (f'{{"result"{sep}{{"stdout"{sep}null{comma}"stderr"{sep}{{"data"{sep}"',
         f'"}}{comma}"exited"{sep}false{comma}"exit_code"{sep}0}}}}', "stderr")))


def strict_b64decode(data: bytes | memoryview) -> bytes:
    """``binascii.a2b_base64(data, strict_mode=True)``, decoded faster where it can be.

    The SIMD decoder accepts a subset of what the strict one does (it refuses, for
    instance, a ``=`` past the padding), with the same bytes: what it refuses, the
    strict decoder decides. Raises ``binascii.Error`` when that one does.

    Examples
    --------
    >>> strict_b64decode(b"aGk="), strict_b64decode(b"YWJj=")
    (b'hi', b'abc')
    """
    if _simd_b64decode is not None:
        try:
            return _simd_b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            pass
    return binascii.a2b_base64(data, strict_mode=True)


def _output_frame(frame: bytes) -> list[Event] | None:
    """The events of a plain output frame, or None when ``frame`` is any other."""
    for head, foot, stream in _OUTPUT_FRAMES:
        if frame.startswith(head) and frame.endswith(foot) \
                and len(frame) > len(head) + len(foot):
            try:
                data = strict_b64decode(memoryview(frame)[len(head):-len(foot)])
            except binascii.Error:
                return None  # escapes, padding inside, anything else: the JSON path
            return [Output(stream, data)]
    return None


def decode_frame(text: str | bytes) -> list[Event]:
    """Decode one server frame into events (output first, then the exit if any).

    Error frames of any shape become a :class:`ErrorFrame`. Only ``exited: true``
    ends the command; ``stdout``/``stderr`` may be null. Raises ``ValueError`` for a
    frame that is not the protocol's JSON (or whose exit code no process can have).

    Examples
    --------
    >>> ka.execute.decode_frame(ka.execute.result_frame(b"hi\\n", exited=True, exit_code=0))
    [Output(stream='stdout', data=b'hi\\n'), Exit(code=0)]
    """
    if isinstance(text, bytes):
        fast = _output_frame(text)
        if fast is not None:
            return fast
    msg = json.loads(text)
    if not isinstance(msg, dict):
        raise ValueError("exec frame is not a JSON object")
    if msg.get("error") is not None:
        err = msg["error"]
        if not isinstance(err, dict):
            return [ErrorFrame(-1, str(err)[:500])]
        raw = err.get("details")
        details = tuple(str(d.get("message", d) if isinstance(d, dict) else d)[:500]
                        for d in (raw if isinstance(raw, list) else [])[:20])
        code = _int32(err.get("code"))
        return [ErrorFrame(-1 if code is None else code, str(err.get("message") or "")[:500],
                            details)]
    result = msg.get("result")
    if not isinstance(result, dict):
        raise ValueError("exec frame has neither 'result' nor 'error'")
    events: list[Event] = []
    for stream in ("stdout", "stderr"):
        part = result.get(stream)
        if isinstance(part, dict) and isinstance(part.get("data"), str) and part["data"]:
            events.append(Output(stream, base64.b64decode(part["data"])))
    if result.get("exited") is True:
        raw = result.get("exit_code")
        code = 0 if raw is None else _int32(raw)
        if code is None:
            raise ValueError(f"exit code {str(raw)[:40]} is not one a process can have")
        events.append(Exit(code))
    return events


GRPC_ERRORS: dict[int, tuple[type[APIError], int]] = {
    3: (BadRequestError, 400), 5: (NotFoundError, 404), 7: (PermissionDeniedError, 403),
    9: (InstanceNotRunningError, 400), 16: (AuthenticationError, 401),
}


def error_for(err: ErrorFrame, path: str = EXEC_PATH) -> APIError:
    """The typed error for an error frame received before the command started.

    Examples
    --------
    >>> frame = ka.execute.error_frame(5, "not found", "instance 0b1c2d3e not found")
    >>> type(ka.execute.error_for(ka.execute.decode_frame(frame)[0])).__name__
    'NotFoundError'
    """
    cls, status = GRPC_ERRORS.get(err.code, (APIError, 500))
    return cls(status, err.message, "; ".join(err.details) or err.message, path=path)


def result_frame(stdout: bytes | None = None, stderr: bytes | None = None, *,
                 exited: bool = False, exit_code: int = 0) -> str:
    """A server result frame: all four keys every time, streams null when absent.

    Examples
    --------
    >>> ka.execute.result_frame(b"ok", exited=True, exit_code=0)
    '{"result": {"stdout": {"data": "b2s="}, "stderr": null, "exited": true, "exit_code": 0}}'
    """
    def io(data: bytes | None) -> dict[str, str] | None:
        return {"data": base64.b64encode(data).decode("ascii")} if data else None

    return json.dumps({"result": {"stdout": io(stdout), "stderr": io(stderr),
                                  "exited": exited, "exit_code": exit_code}})


def error_frame(code: int, message: str, detail: str) -> str:
    """A server error frame (google.rpc.Status), the reason in ``details[0].message``.

    Examples
    --------
    >>> ka.execute.decode_frame(ka.execute.error_frame(9, "failed precondition", "not running"))
    [ErrorFrame(code=9, message='failed precondition', details=('not running',))]
    """
    return json.dumps({"error": {"code": code, "message": message, "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "message": detail}]}})
