"""An open exec session: the socket loop over the codec.

The connection and upgrade are under a deadline (``connect_timeout``); the whole
session is under ``timeout`` when one is given, and has no limit otherwise (the
default of :func:`exec_stream`: an interactive session lasts as long as its user;
:func:`~koyeb_analytics.exec_command` and :func:`~koyeb_analytics.exec_many` default to
30 s).

Thin by design: frames are encoded and decoded in ``_codec``, the websocket is
``koyeb_analytics.api._websocket``. A socket that closes without an exit frame gives a
:class:`~koyeb_analytics.execute.Closed` event, never a hang and never a fake exit code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence

import pandas as pd

from ..api._checks import check_client
from ..api._client import KoyebClient
from ..api._websocket import OP_CLOSE, WebSocket
from ..errors import ConnectionClosed, HandshakeRefused, TransportError, WebSocketProtocolError
from ..schema import is_full_id
from ._codec import (
    EXEC_PATH,
    Closed,
    ErrorFrame,
    Event,
    Exit,
    command_frame,
    decode_frame,
    resize_frame,
    stdin_close_frame,
    stdin_frames,
)


def normalize_command(command: str | Sequence[str]) -> tuple[str, ...]:
    """Return the argv to run: a string through ``sh -c``, a list as it is.

    Raises
    ------
    ValueError, TypeError
        For an empty command or one that is neither a string nor a list of strings.

    Examples
    --------
    >>> ka.execute.normalize_command("ps aux | head")
    ('sh', '-c', 'ps aux | head')
    """
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


def check_target(instance_id: str | None, service_id: str | None) -> tuple[str, str]:
    if (instance_id is None) == (service_id is None):
        raise ValueError("pass exactly one of instance_id and service_id")
    target = instance_id if instance_id is not None else service_id
    name = "instance_id" if instance_id is not None else "service_id"
    if not isinstance(target, str) or not is_full_id(target):
        raise ValueError(f"{name} must be a full id (a UUID), got {target!r}")
    return target, "INSTANCE_ID" if instance_id is not None else "SERVICE_ID"


def check_timeout(timeout: float | None, name: str = "timeout") -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"{name} must be a finite positive number of seconds, got {timeout!r}")
    return float(timeout)


class ExecStream:
    """An open exec session: write stdin, resize, and iterate over typed events.

    Iteration yields :class:`Output`, then :class:`Exit`, :class:`ErrorFrame` or
    :class:`Closed`, and stops. At the deadline the socket is shut, whatever the server
    is sending (pings, a frame byte by byte), and iteration stops with ``timed_out``
    set. Use it as a context manager so the socket always closes.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    command
        A list of arguments, or a string run through ``sh -c``.
    instance_id, service_id
        Exactly one (full ids).
    tty
        Run under a pseudo-terminal.
    timeout
        Seconds for the whole session (None: no limit after connecting).
    connect_timeout
        Seconds for the connection and upgrade (default: the client's timeout).

    Examples
    --------
    >>> with ka.exec_stream(client, ["cat"], instance_id=iid) as s:
    ...     s.write_stdin(b"hello\\n"); s.close_stdin()
    ...     out = b"".join(e.data for e in s if isinstance(e, ka.execute.Output))
    >>> out
    b'hello\\n'
    """

    def __init__(self, client: KoyebClient, command: str | Sequence[str], *,
                 instance_id: str | None = None, service_id: str | None = None,
                 tty: bool = False, timeout: float | None = None,
                 connect_timeout: float | None = None) -> None:
        self._client = check_client(client)
        self.target, self.id_type = check_target(instance_id, service_id)
        self.instance_id = instance_id
        self.service_id = service_id
        self.command = normalize_command(command)
        self.tty = bool(tty)
        self.timeout = check_timeout(timeout)
        self.connect_timeout = check_timeout(connect_timeout, "connect_timeout") or min(
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
                if isinstance(exc, WebSocketProtocolError):
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


def exec_stream(client: KoyebClient, command: str | Sequence[str], *,
                instance_id: str | None = None, service_id: str | None = None,
                tty: bool = False, timeout: float | None = None) -> ExecStream:
    """Open a streaming exec session (use it in a ``with`` block).

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    command
        A list of arguments, or a string run through ``sh -c``.
    instance_id, service_id
        Exactly one.
    tty, timeout
        As for :class:`ExecStream`.

    Returns
    -------
    ExecStream
        Not yet open: ``with`` opens and closes it.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> from koyeb_analytics.execute import Exit, Output
    >>> with ka.simulate(seed=1, days=1, services=1) as sim:
    ...     c = sim.client()
    ...     iid = ka.load_instances(c, statuses="HEALTHY", progress=False)["id"][0]
    ...     with ka.exec_stream(c, ["cat"], instance_id=iid, timeout=30) as s:
    ...         s.write_stdin(b"hello\\n"); s.close_stdin()
    ...         events = list(s)
    >>> b"".join(e.data for e in events if isinstance(e, Output)), events[-1]
    (b'hello\\n', Exit(code=0))
    """
    return ExecStream(client, command, instance_id=instance_id, service_id=service_id,
                      tty=tty, timeout=timeout)
