"""One command on one instance: capture within caps, cancel from anywhere, a result.

:func:`exec_command` drives an :class:`~koyeb_analytics.ExecStream` to its end and returns an
:class:`ExecResult`; a non-zero exit code is data, not an exception.
"""

from __future__ import annotations

import io
import secrets
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from ..api._checks import check_client
from ..api._client import KoyebClient
from ..errors import ExecFailedError, ExecInterrupted, TransportError
from ..redact import DEFAULT_REDACTOR, Redactor
from ._codec import GRPC_ERRORS, Closed, ErrorFrame, Exit, Output, error_for
from ._stream import ExecStream

DEFAULT_MAX_OUTPUT = 16 * 2**20


class _Capture:
    """Keeps a stream's head and tail within a byte cap, counting what was dropped.

    The head is written into one growing buffer as the chunks come, while each chunk
    is fresh in the cache and before the next one reuses its memory; the buffer becomes
    the result without a copy (:meth:`value`). The tail (reached only past ``cap // 2``
    bytes) keeps its chunks as they came, dropping the oldest past the cap. With
    ``screen`` (a redactor's :meth:`~koyeb_analytics.redact.Redactor.may_hold_secret`),
    each chunk is screened while it is small and fresh: ``clean`` stays true while no
    chunk could hold a secret, and then the whole needs no redaction pass.
    """

    def __init__(self, cap: int, spill: IO[bytes] | None = None,
                 screen: Callable[[bytes], bool] | None = None) -> None:
        self.cap = cap
        self.screen = screen
        self.clean = screen is not None
        self._head = io.BytesIO()
        self.head_size = 0
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.dropped = 0
        self.total = 0
        self.spill = spill

    @property
    def head(self) -> bytes:
        """The first ``cap // 2`` bytes (or fewer, all there was)."""
        return self._head.getvalue()

    def add(self, data: bytes) -> None:
        self.total += len(data)
        if self.spill is not None:
            self.spill.write(data)
        if self.clean and data and self.screen is not None and self.screen(data):
            self.clean = False
        room = self.cap // 2 - self.head_size
        if room > 0:
            if len(data) <= room:
                self._head.write(data)
                self.head_size += len(data)
                return
            self._head.write(memoryview(data)[:room])
            self.head_size += room
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
        """Head and tail as one bytes (the two sides of a cut, when one was made)."""
        head = self._head.getvalue()
        return b"".join([head, *self.tail]) if self.tail else head


@dataclass(frozen=True)
class ExecResult:
    """What one command did on one instance.

    ``exit_code`` is None and ``exited`` False when the exit is unknown (the socket
    closed first, or the run timed out); a non-zero code is data, not an exception.
    ``stdout``/``stderr`` are bytes; ``stdout_text``/``stderr_text`` decode them as
    UTF-8 (characters split across frames are whole again here). When a stream was
    larger than the cap, its middle was dropped: ``stdout_dropped`` counts the bytes,
    ``stdout_cut`` says where in ``stdout`` the head ends and the tail begins, and
    ``truncated`` is true. The bytes on either side of a cut are not neighbours: the
    lines that meet there are not one line.

    Parameters
    ----------
    instance_id, service_id, command
        Where and what ran.
    stdout, stderr, stdout_dropped, stderr_dropped
        What was kept of each stream, and how many bytes of its middle were dropped.
    stdout_cut, stderr_cut
        Where the dropped middle was, as an offset into ``stdout`` (``stderr``); None
        when nothing was dropped. When a redacted secret reaches across the cut, the
        offset is the start of the secret's line (which then counts as the tail's
        first line), or None when even that cannot be told.
    exit_code, exited, timed_out, error
        How it ended.
    started_at, ended_at
        When (UTC).
    tty
        Whether it ran under a pseudo-terminal.
    redacted
        How many secrets were redacted from the output (None: redaction was off).

    Examples
    --------
    >>> r = ExecResult("5b1f7f0e-1111-4222-8333-444455556666", ("true",), exit_code=0,
    ...                exited=True)
    >>> r.ok, r.status
    (True, 'ok')
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
    redacted: int | None = 0
    stdout_cut: int | None = None
    stderr_cut: int | None = None

    @property
    def truncated(self) -> bool:
        """True when the middle of stdout or stderr was dropped (past ``max_output``)."""
        return self.stdout_dropped > 0 or self.stderr_dropped > 0

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


def exec_command(
    client: KoyebClient,
    command: str | Sequence[str],
    *,
    instance_id: str | None = None,
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
    redact: Redactor | bool = True,
) -> ExecResult:
    """Run one command on an instance and return what it did.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    command
        A list of arguments, or a string run through ``sh -c``.
    instance_id, service_id
        Exactly one: the instance (a full id), or a service whose running instance the
        server picks.
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
    redact
        Secrets in the output become ``[redacted]`` before the result holds it (see
        :mod:`koyeb_analytics.redact`); a :class:`~koyeb_analytics.redact.Redactor`
        adds patterns, ``False`` keeps the output as it came (``result.redacted`` is
        then None). ``on_stdout``, ``on_stderr`` and ``spill_to`` get the raw bytes.

    Returns
    -------
    ExecResult
        A non-zero exit code is data; an error frame before the command started raises
        the matching :class:`~koyeb_analytics.KoyebError` (not found, not running,
        authentication).

    Examples
    --------
    >>> res = ka.exec_command(client, ["uname", "-a"], instance_id=iid)
    >>> res.ok, res.stdout_text                                            # doctest: +ELLIPSIS
    (True, 'Linux ...')
    """
    redactor = as_redactor(redact)
    if stdin is not None and not isinstance(stdin, (bytes, bytearray, str)):
        raise TypeError("stdin must be bytes, str or None")
    check_client(client)
    if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 2:
        raise ValueError(f"max_output must be an integer of at least 2 bytes, got {max_output!r}")
    stream = ExecStream(client, command, instance_id=instance_id, service_id=service_id,
                        tty=tty, timeout=timeout)
    spills: list[IO[bytes]] = []
    if spill_to is not None:
        spills = [open(spill_to, "wb"), open(f"{spill_to}.stderr", "wb")]  # noqa: SIM115
    screen = redactor.may_hold_secret if redactor.enabled else None
    out = _Capture(max_output, spills[0] if spills else None, screen)
    err = _Capture(max_output, spills[1] if spills else None, screen)
    exit_code: int | None = None
    error: str | None = None
    started = False
    if cancel is not None and cancel.cancelled:
        return _result(stream, out, err, None, "cancelled", redactor)
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
                if not started and event.code in GRPC_ERRORS:
                    raise error_for(event)
                error = "server error: " + event.text()
            elif isinstance(event, Closed):
                error = ("connection dropped before the command's exit" if event.code is None
                         else f"connection closed ({event.code}) before the command's exit")
    except KeyboardInterrupt:
        stream.close()
        result = _result(stream, out, err, None, "interrupted", redactor)
        raise ExecInterrupted(result) from None
    finally:
        stream.close()
        if cancel is not None:
            cancel._forget(stream)
        for f in spills:
            f.close()
    if cancel is not None and cancel.cancelled and exit_code is None:
        error = "cancelled"
    result = _result(stream, out, err, exit_code, error, redactor)
    if check and not result.ok:
        raise ExecFailedError(result)
    return result


def _result(stream: ExecStream, out: _Capture, err: _Capture, exit_code: int | None,
            error: str | None, redactor: Redactor) -> ExecResult:
    stdout, out_cut, n_out = _kept(out, redactor)
    stderr, err_cut, n_err = _kept(err, redactor)
    return ExecResult(
        instance_id=stream.instance_id, service_id=stream.service_id,
        command=stream.command, stdout=stdout, stderr=stderr,
        redacted=n_out + n_err if redactor.enabled else None,
        exit_code=exit_code, exited=exit_code is not None,
        timed_out=stream.timed_out, error=None if stream.timed_out else error,
        started_at=stream.started_at, ended_at=pd.Timestamp.now(tz="UTC"),
        stdout_dropped=out.dropped, stderr_dropped=err.dropped, tty=stream.tty,
        stdout_cut=out_cut, stderr_cut=err_cut)


def _kept(capture: _Capture, redactor: Redactor) -> tuple[bytes, int | None, int]:
    """What a stream kept, redacted; where its dropped middle was; how many secrets."""
    if capture.clean:  # no chunk held a byte any rule needs: nothing to redact
        return capture.value(), capture.head_size if capture.dropped else None, 0
    if not capture.dropped:
        data, n = redactor.redact_bytes(capture.value())
        return data, None, n
    head, tail = capture.head, b"".join(capture.tail)
    if not redactor.enabled:
        return head + tail, len(head), 0
    # Head and tail are redacted as one text, as before, so that a secret cut at the
    # seam is matched as far as it reaches. A seam of letters and digits (which every
    # rule's value may span) sits between them, random so the output cannot forge it.
    seam = b"KoyebCut" + secrets.token_hex(16).encode()
    data, n = redactor.redact_bytes(head + seam + tail)
    at = data.find(seam)
    if at >= 0 and data.find(seam, at + 1) < 0:
        return data[:at] + data[at + len(seam):], at, n
    # A secret reached across the seam and swallowed it: keep that redaction, and cut
    # before the line it is on when the head's whole lines are redacted alike alone
    # (the line then counts as the tail's first, partial, line).
    data, n = redactor.redact_bytes(head + tail)
    whole, _ = redactor.redact_bytes(head[:head.rfind(b"\n") + 1])
    return data, len(whole) if data.startswith(whole) else None, n


def as_redactor(redact: Redactor | bool) -> Redactor:
    """The :class:`Redactor` a ``redact=`` argument means."""
    if isinstance(redact, Redactor):
        return redact
    if redact is True:
        return DEFAULT_REDACTOR
    if redact is False:
        return Redactor(enabled=False)
    raise TypeError(f"redact must be True, False or a Redactor, got {redact!r}")
