"""Exec: run commands on instances over the exec websocket, one or many.

The protocol (``koyeb-api-facts.md`` §8) is JSON text frames over
``/v1/streams/instances/exec``. Encoding and decoding frames are pure functions; the
socket loop is thin, every wait has a deadline, and the socket is closed in
``finally``. A socket that closes without an exit frame gives ``exited=False`` and
``exit_code=None`` with the output received so far — never a hang, never a fake 0.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ExecFailedError,
    ExecInterrupted,
    InstanceNotRunningError,
    KoyebError,
    NotFoundError,
    PermissionDeniedError,
    TransportError,
)
from .wsclient import OP_CLOSE, ConnectionClosed, HandshakeRefused, ProtocolError, WebSocket

EXEC_PATH = "/v1/streams/instances/exec"
STDIN_CHUNK = 4096
DEFAULT_MAX_OUTPUT = 16 * 2**20
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")


# --------------------------------------------------------------------------- frames
def command_frame(target_id: str, command: Sequence[str], *, id_type: str = "INSTANCE_ID",
                  tty: bool = False) -> str:
    """The first frame: what to run, and where."""
    return json.dumps({"id": target_id, "idType": id_type,
                       "body": {"command": list(command), "disableTty": not tty}})


def stdin_frames(data: bytes) -> list[str]:
    """Stdin as frames of at most 4096 raw bytes each (standard padded base64)."""
    return [json.dumps({"body": {"stdin": {"data": base64.b64encode(
        data[i:i + STDIN_CHUNK]).decode("ascii")}}}) for i in range(0, len(data), STDIN_CHUNK)]


def stdin_close_frame() -> str:
    """Tell the command its stdin has ended (commands that read stdin need it)."""
    return json.dumps({"body": {"stdin": {"close": True}}})


def resize_frame(height: int, width: int) -> str:
    """A terminal size change (TTY mode)."""
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


ServerError = ErrorFrame
"""Deprecated name of :class:`ErrorFrame` (it clashed with the HTTP ``ServerError``)."""

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


def decode_frame(text: str | bytes) -> list[Event]:
    """Decode one server frame into events (output first, then the exit if any).

    Error frames of any shape become a :class:`ErrorFrame`. Only ``exited: true``
    ends the command; ``stdout``/``stderr`` may be null. Raises ``ValueError`` for a
    frame that is not the protocol's JSON (or whose exit code no process can have).
    """
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
        code = _int32(result.get("exit_code", 0) if result.get("exit_code") is not None else 0)
        if code is None:
            raise ValueError(f"exit code {str(result.get('exit_code'))[:40]} is not one a "
                             "process can have")
        events.append(Exit(code))
    return events


_GRPC_ERRORS: dict[int, tuple[type[APIError], int]] = {
    3: (BadRequestError, 400), 5: (NotFoundError, 404), 7: (PermissionDeniedError, 403),
    9: (InstanceNotRunningError, 400), 16: (AuthenticationError, 401),
}


def error_for(err: ErrorFrame, path: str = EXEC_PATH) -> APIError:
    """The typed error for an error frame received before the command started."""
    cls, status = _GRPC_ERRORS.get(err.code, (APIError, 500))
    return cls(status, err.message, "; ".join(err.details) or err.message, path=path)


# --------------------------------------------------------------------------- capture
class _Capture:
    """Keeps a stream's head and tail within a byte cap, counting what was dropped."""

    def __init__(self, cap: int, spill: IO[bytes] | None = None) -> None:
        self.cap = cap
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.dropped = 0
        self.total = 0
        self.spill = spill

    def add(self, data: bytes) -> None:
        self.total += len(data)
        if self.spill is not None:
            self.spill.write(data)
        room = self.cap // 2 - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail.append(data)
        self.tail_size += len(data)
        limit = self.cap - self.cap // 2
        while self.tail_size > limit:
            extra = self.tail_size - limit
            first = self.tail[0]
            if len(first) <= extra:
                self.tail.popleft()
                self.tail_size -= len(first)
                self.dropped += len(first)
            else:
                self.tail[0] = first[extra:]
                self.tail_size -= extra
                self.dropped += extra

    def value(self) -> bytes:
        return bytes(self.head) + b"".join(self.tail)


@dataclass(frozen=True)
class ExecResult:
    """What one command did on one instance.

    ``exit_code`` is None and ``exited`` False when the exit is unknown (the socket
    closed first, or the run timed out); a non-zero code is data, not an exception.
    ``stdout``/``stderr`` are bytes; ``stdout_text``/``stderr_text`` decode them as
    UTF-8 (characters split across frames are whole again here). When a stream was
    larger than the cap, its middle was dropped: ``stdout_dropped`` counts the bytes.
    """

    instance_id: str | None
    command: tuple[str, ...]
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int | None = None
    exited: bool = False
    timed_out: bool = False
    error: str | None = None
    started_at: pd.Timestamp | None = None
    ended_at: pd.Timestamp | None = None
    service_id: str | None = None
    stdout_dropped: int = 0
    stderr_dropped: int = 0
    tty: bool = False

    @property
    def duration(self) -> pd.Timedelta | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @property
    def ok(self) -> bool:
        """True when the command exited with 0."""
        return self.exited and self.exit_code == 0

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    @property
    def status(self) -> str:
        """``"ok"``, ``"exit N"``, ``"timed out"``, ``"error"`` or ``"unknown"``."""
        if self.exited:
            return "ok" if self.exit_code == 0 else f"exit {self.exit_code}"
        if self.timed_out:
            return "timed out"
        return "error" if self.error else "unknown"

    def __repr__(self) -> str:
        iid = (self.instance_id or "?")[:8]
        return (f"<ExecResult {iid} {' '.join(self.command)!r} {self.status}, "
                f"{len(self.stdout)} B out, {len(self.stderr)} B err>")


class CancelToken:
    """Cancels runs from another thread: ``cancel()`` closes their sockets.

    Pass the same token to several :func:`exec_command` calls (``cancel=token``); a run
    cancelled this way ends with ``error="cancelled"`` and the output so far.
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._streams: set[ExecStream] = set()
        self.cancelled = False

    def _register(self, stream: ExecStream) -> None:
        with self._lock:
            self._streams.add(stream)
            cancelled = self.cancelled
        if cancelled:
            stream.close()

    def _forget(self, stream: ExecStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            streams = list(self._streams)
        for stream in streams:
            stream.close()


# --------------------------------------------------------------------------- stream
def normalize_command(command: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(command, str):
        if not command.strip():
            raise ValueError("command is empty")
        return ("sh", "-c", command)
    if isinstance(command, bytes) or not isinstance(command, Sequence):
        raise TypeError("command must be a string (run through sh -c) or a list of strings")
    argv = tuple(command)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("command must be a non-empty list of strings")
    return argv


def _check_target(instance_id: str | None, service_id: str | None) -> tuple[str, str]:
    if (instance_id is None) == (service_id is None):
        raise ValueError("pass exactly one of instance_id and service_id")
    target = instance_id if instance_id is not None else service_id
    name = "instance_id" if instance_id is not None else "service_id"
    if not isinstance(target, str) or not _UUID.fullmatch(target):
        raise ValueError(f"{name} must be a full id (a UUID), got {target!r}")
    return target, "INSTANCE_ID" if instance_id is not None else "SERVICE_ID"


def _check_timeout(timeout: float | None, name: str = "timeout") -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"{name} must be a finite positive number of seconds, got {timeout!r}")
    return float(timeout)


def _check_client(client: Any) -> Any:
    if not hasattr(client, "websocket_url") or not hasattr(client, "auth_subprotocols"):
        raise TypeError(f"client must be a KoyebClient (sim.client() for the simulator), "
                        f"got {type(client).__name__}")
    return client


class ExecStream:
    """A live exec session: write stdin, resize, and iterate over typed events.

    Iteration yields :class:`Output`, then :class:`Exit`, :class:`ErrorFrame` or
    :class:`Closed`, and stops. At the deadline the socket is shut, whatever the server
    is sending (pings, a frame byte by byte), and iteration stops with ``timed_out``
    set. Use it as a context manager so the socket always closes.

    Examples
    --------
    >>> with ka.exec_stream(client, iid, ["cat"]) as s:      # doctest: +SKIP
    ...     s.write_stdin(b"hello\\n"); s.close_stdin()
    ...     out = b"".join(e.data for e in s if isinstance(e, ka.execute.Output))
    """

    def __init__(self, client: Any, instance_id: str | None, command: str | Sequence[str], *,
                 service_id: str | None = None, tty: bool = False,
                 timeout: float | None = None, connect_timeout: float | None = None) -> None:
        self._client = _check_client(client)
        self.target, self.id_type = _check_target(instance_id, service_id)
        self.instance_id = instance_id
        self.service_id = service_id
        self.command = normalize_command(command)
        self.tty = bool(tty)
        self.timeout = _check_timeout(timeout)
        self.connect_timeout = _check_timeout(connect_timeout, "connect_timeout") or min(
            self.timeout or client.timeout, client.timeout)
        self._ws: WebSocket | None = None
        self._stdin_closed = False
        self._done = False
        self.timed_out = False
        self.deadline: float | None = None
        self.started_at: pd.Timestamp | None = None

    def open(self) -> ExecStream:
        self.started_at = pd.Timestamp.now(tz="UTC")
        now = time.monotonic()
        self.deadline = now + self.timeout if self.timeout else None
        connect_by = now + self.connect_timeout
        if self.deadline is not None:
            connect_by = min(connect_by, self.deadline)
        client = self._client
        failure: BaseException | None = None
        try:
            self._ws = WebSocket.connect(
                client.network, client.websocket_url(EXEC_PATH),
                subprotocols=client.auth_subprotocols(), deadline=connect_by,
                max_message=client.max_response_bytes)
        except HandshakeRefused as exc:
            if exc.status >= 400:
                failure = client.error_from_reply(exc.status, exc.body, EXEC_PATH)
            else:
                failure = TransportError(client.scrub(str(exc)))
        except TransportError as exc:
            failure = type(exc)(client.scrub(f"exec connection failed: {exc}"))
        if failure is not None:
            raise failure
        assert self._ws is not None
        self._ws.set_deadline(self.deadline)
        self._send(command_frame(self.target, self.command, id_type=self.id_type,
                                 tty=self.tty))
        return self

    def __enter__(self) -> ExecStream:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, frame: str) -> None:
        failure = None
        try:
            if self._ws is None:
                raise ConnectionClosed("closed")
            self._ws.send(frame)
        except (OSError, TransportError) as exc:
            failure = TransportError(f"exec socket failed while sending: {type(exc).__name__}")
        if failure is not None:
            raise failure

    def write_stdin(self, data: bytes | str) -> None:
        """Send bytes to the command's stdin (in 4096-byte frames)."""
        if self._stdin_closed:
            raise ValueError("stdin is already closed")
        if isinstance(data, str):
            data = data.encode()
        for frame in stdin_frames(bytes(data)):
            self._send(frame)

    def close_stdin(self) -> None:
        """Send the end of stdin (once)."""
        if not self._stdin_closed:
            self._stdin_closed = True
            self._send(stdin_close_frame())

    def resize(self, height: int, width: int) -> None:
        """Change the terminal size (TTY mode)."""
        self._send(resize_frame(height, width))

    def close(self) -> None:
        """Close the socket (normal closure); safe to call twice, from any thread."""
        ws = self._ws
        if ws is not None:
            ws.close()

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def __iter__(self) -> Iterator[Event]:
        ws = self._ws
        while not self._done and ws is not None:
            try:
                opcode, data = ws.recv()
            except (OSError, TransportError) as exc:
                self._done = True
                if self._past_deadline():
                    self.timed_out = True
                    ws.close()
                    return
                if isinstance(exc, ProtocolError):
                    yield ErrorFrame(-1, f"broken exec stream: {exc}")
                elif not ws.closed:
                    yield Closed(None, "connection dropped")
                else:
                    yield Closed(1000, "closed by the client")
                return
            if opcode == OP_CLOSE:
                self._done = True
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                yield Closed(code, data[2:].decode("utf-8", "replace")[:200])
                return
            try:
                events = decode_frame(data)
            except (ValueError, TypeError, KeyError, RecursionError) as exc:
                self._done = True
                yield ErrorFrame(-1, f"malformed exec frame: {str(exc)[:200]}")
                return
            for event in events:
                if isinstance(event, (Exit, ErrorFrame)):
                    self._done = True
                yield event
                if self._done:
                    return


def exec_stream(client: Any, instance_id: str | None, command: str | Sequence[str], *,
                service_id: str | None = None, tty: bool = False,
                timeout: float | None = None) -> ExecStream:
    """Open a streaming exec session (use it in a ``with`` block)."""
    return ExecStream(client, instance_id, command, service_id=service_id, tty=tty,
                      timeout=timeout)


def exec_command(
    client: Any,
    instance_id: str | None,
    command: str | Sequence[str],
    *,
    service_id: str | None = None,
    stdin: bytes | str | None = None,
    timeout: float | None = 30,
    tty: bool = False,
    check: bool = False,
    on_stdout: Callable[[bytes], Any] | None = None,
    on_stderr: Callable[[bytes], Any] | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    spill_to: str | Path | None = None,
    cancel: CancelToken | None = None,
) -> ExecResult:
    """Run one command on an instance and return what it did.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    instance_id
        The instance (a full id); None with ``service_id`` lets the server pick a
        running instance of that service.
    command
        A list of arguments, or a string run through ``sh -c``.
    stdin
        Bytes (or text) for the command's stdin. The end of stdin is always sent, so
        commands that read it do not hang.
    timeout
        Seconds for the whole run; past it the socket is closed (the remote process goes
        with it) and the result says ``timed_out`` with the output so far.
    tty
        Run under a pseudo-terminal (stderr is then merged into stdout).
    check
        Raise :class:`ExecFailedError` unless the command exited with 0.
    on_stdout, on_stderr
        Called with each chunk as it arrives.
    max_output
        Bytes kept per stream (head and tail); the middle beyond it is counted, not kept.
    spill_to
        Also write the complete stdout there (stderr goes to ``<path>.stderr``).
    cancel
        A :class:`CancelToken`; cancelling it ends the run from another thread.

    Returns
    -------
    ExecResult
        A non-zero exit code is data; an error frame before the command started raises
        the matching :class:`~koyeb_analytics.KoyebError` (not found, not running,
        authentication).

    Examples
    --------
    >>> res = ka.exec_command(client, iid, ["uname", "-a"], timeout=30)   # doctest: +SKIP
    >>> res.ok, res.stdout_text                                            # doctest: +SKIP
    (True, 'Linux ...')
    """
    if stdin is not None and not isinstance(stdin, (bytes, bytearray, str)):
        raise TypeError("stdin must be bytes, str or None")
    _check_client(client)
    if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 2:
        raise ValueError(f"max_output must be an integer of at least 2 bytes, got {max_output!r}")
    stream = ExecStream(client, instance_id, command, service_id=service_id, tty=tty,
                        timeout=timeout)
    spills: list[IO[bytes]] = []
    if spill_to is not None:
        spills = [open(spill_to, "wb"), open(f"{spill_to}.stderr", "wb")]  # noqa: SIM115
    out = _Capture(max_output, spills[0] if spills else None)
    err = _Capture(max_output, spills[1] if spills else None)
    exit_code: int | None = None
    error: str | None = None
    started = False
    if cancel is not None and cancel.cancelled:
        return _result(stream, out, err, None, "cancelled", client)
    try:
        stream.open()
        if cancel is not None:
            cancel._register(stream)
        try:
            if stdin:
                stream.write_stdin(stdin)
            stream.close_stdin()
        except TransportError:
            pass  # the session already ended; the events below tell how
        for event in stream:
            if isinstance(event, Output):
                started = True
                (out if event.stream == "stdout" else err).add(event.data)
                callback = on_stdout if event.stream == "stdout" else on_stderr
                if callback is not None:
                    callback(event.data)
            elif isinstance(event, Exit):
                exit_code = event.code
            elif isinstance(event, ErrorFrame):
                if not started and event.code in _GRPC_ERRORS:
                    raise error_for(event)
                error = "server error: " + event.text()
            elif isinstance(event, Closed):
                error = ("connection dropped before the command's exit" if event.code is None
                         else f"connection closed ({event.code}) before the command's exit")
    except KeyboardInterrupt:
        stream.close()
        result = _result(stream, out, err, None, "interrupted", client)
        raise ExecInterrupted(result) from None
    finally:
        stream.close()
        if cancel is not None:
            cancel._forget(stream)
        for f in spills:
            f.close()
    if cancel is not None and cancel.cancelled and exit_code is None:
        error = "cancelled"
    result = _result(stream, out, err, exit_code, error, client)
    if check and not result.ok:
        raise ExecFailedError(result)
    return result


def _result(stream: ExecStream, out: _Capture, err: _Capture, exit_code: int | None,
            error: str | None, client: Any) -> ExecResult:
    return ExecResult(
        instance_id=stream.instance_id, service_id=stream.service_id,
        command=stream.command, stdout=out.value(), stderr=err.value(),
        exit_code=exit_code, exited=exit_code is not None,
        timed_out=stream.timed_out, error=None if stream.timed_out else error,
        started_at=stream.started_at, ended_at=pd.Timestamp.now(tz="UTC"),
        stdout_dropped=out.dropped, stderr_dropped=err.dropped, tty=stream.tty)


# --------------------------------------------------------------------------- fan-out
MANY_COLUMNS = ("instance_id", "service_id", "region", "exit_code", "exited", "timed_out",
                "error", "duration", "stdout", "stderr")


def _targets(instances: pd.DataFrame | Iterable[str]) -> pd.DataFrame:
    if isinstance(instances, pd.DataFrame):
        if "id" in instances:
            df = instances.rename(columns={"id": "instance_id"})
        elif "instance_id" in instances:
            df = instances
        else:
            raise ValueError("the instances frame needs an 'id' or 'instance_id' column")
        df = df.drop_duplicates("instance_id")
    else:
        if isinstance(instances, str):
            instances = [instances]
        df = pd.DataFrame({"instance_id": list(dict.fromkeys(instances))})
    for col in ("service_id", "region"):
        if col not in df:
            df = df.assign(**{col: None})
    for iid in df["instance_id"]:
        if not isinstance(iid, str) or not _UUID.fullmatch(iid):
            raise ValueError(f"instance ids must be full ids (UUIDs), got {iid!r}")
    return df[["instance_id", "service_id", "region"]].reset_index(drop=True)


def exec_many(client: Any, instances: pd.DataFrame | Iterable[str],
              command: str | Sequence[str], *, concurrency: int = 8,
              timeout: float | None = 30, stdin: bytes | str | None = None,
              tty: bool = False, max_output: int = DEFAULT_MAX_OUTPUT,
              cancel: CancelToken | None = None) -> pd.DataFrame:
    """Run the same command on many instances, ``concurrency`` at a time.

    One instance failing, timing out or hanging never stops the others, nor delays them
    beyond its own timeout.

    Returns
    -------
    DataFrame
        One row per instance, in the order given: ``instance_id, service_id, region,
        exit_code, exited, timed_out, error, duration, stdout, stderr`` (text). The full
        :class:`ExecResult` objects are in ``attrs["results"]``.
    """
    _check_client(client)
    argv = normalize_command(command)
    targets = _targets(instances)
    _check_timeout(timeout)
    if stdin is not None and not isinstance(stdin, (bytes, bytearray, str)):
        raise TypeError("stdin must be bytes, str or None")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")

    def one(iid: str) -> ExecResult:
        try:
            return exec_command(client, iid, argv, timeout=timeout, stdin=stdin, tty=tty,
                                max_output=max_output, cancel=cancel)
        except Exception as exc:  # noqa: BLE001 - one instance never sinks the others
            now = pd.Timestamp.now(tz="UTC")
            what = str(exc) if isinstance(exc, KoyebError) else f"{type(exc).__name__}: {exc}"
            return ExecResult(instance_id=iid, command=argv, error=client.scrub(what),
                              started_at=now, ended_at=now)

    with ThreadPoolExecutor(max_workers=min(concurrency, max(len(targets), 1)),
                            thread_name_prefix="koyeb-exec") as pool:
        results = list(pool.map(one, targets["instance_id"]))
    df = targets.assign(
        exit_code=pd.array([r.exit_code for r in results], dtype="Int64"),
        exited=[r.exited for r in results],
        timed_out=[r.timed_out for r in results],
        error=pd.Series([r.error for r in results], dtype=object),
        duration=pd.to_timedelta([r.duration for r in results]),
        stdout=[r.stdout_text for r in results],
        stderr=[r.stderr_text for r in results],
    )
    df = df[list(MANY_COLUMNS)]
    df.attrs["results"] = results
    df.attrs["command"] = list(argv)
    return df


def group_outputs(runs: pd.DataFrame) -> pd.DataFrame:
    """Collapse identical outputs; show how each outlier differs from the majority.

    Returns
    -------
    DataFrame
        One row per distinct (exit_code, stdout, stderr), largest group first:
        ``instances`` (count), ``instance_ids``, ``exit_code``, ``stdout``, ``stderr``,
        ``majority`` and ``diff_vs_majority`` (a unified diff against the majority's
        output).
        ``attrs["summary"]`` reads like "12 instances: 10 identical; 2 differ".
    """
    import difflib

    if runs.empty:
        out = pd.DataFrame(columns=["instances", "instance_ids", "exit_code", "stdout",
                                    "stderr", "majority", "diff_vs_majority"])
        out.attrs["summary"] = "0 instances"
        return out
    key = runs.assign(_code=runs["exit_code"].astype(object).where(runs["exit_code"].notna(),
                                                                  None),
                      _err=runs["error"].fillna("") if "error" in runs else "")
    groups = []
    for (code, out, err, error), grp in key.groupby(["_code", "stdout", "stderr", "_err"],
                                                    sort=False, dropna=False):
        groups.append({"instances": len(grp), "instance_ids": list(grp["instance_id"]),
                       "exit_code": code, "stdout": out, "stderr": err,
                       "error": error or None})
    groups.sort(key=lambda g: (-g["instances"], g["instance_ids"][0]))
    major = groups[0]
    base = (major["stdout"] + major["stderr"]).splitlines(keepends=True)
    for i, g in enumerate(groups):
        g["majority"] = i == 0
        g["diff_vs_majority"] = "" if i == 0 else "".join(difflib.unified_diff(
            base, (g["stdout"] + g["stderr"]).splitlines(keepends=True),
            fromfile=f"majority ({major['instances']})",
            tofile=f"{g['instance_ids'][0][:8]} ({g['instances']})"))
    out = pd.DataFrame(groups)
    n = len(runs)
    differ = n - major["instances"]
    out.attrs["summary"] = (f"{n} instances: identical" if differ == 0 else
                            f"{n} instances: {major['instances']} identical; {differ} differ "
                            f"({len(groups) - 1} other output{'s' if len(groups) > 2 else ''})")
    return out
