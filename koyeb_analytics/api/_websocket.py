"""A small websocket client for exec: our own handshake and frame reader, with caps.

Exec talks to servers we do not control, so the parts that decide safety are ours: the
handshake never follows a redirect and never logs the subprotocols (they carry the
token); the handshake is bounded by a deadline, and what follows by the one the
caller sets (:meth:`WebSocket.set_deadline`), both enforced by
:data:`~koyeb_analytics.api._network.WATCHDOG`; one message may hold at most
``max_message`` bytes, continuation frames included; pings are answered and count
against the same deadline. Outgoing frames are built (and masked) by websocket-client's
``ABNF``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import struct
import threading
import time
from typing import Any

from websocket import ABNF

from ..errors import ConnectionClosed, DeadlineExceeded, HandshakeRefused, TransportError
from ..errors import WebSocketProtocolError as ProtocolError
from ._network import WATCHDOG, Network, target_of

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_REFUSAL_BODY = 65536
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocket:
    """A client websocket on a connected socket; see :meth:`connect`."""

    def __init__(self, sock: socket.socket, reader: Any, max_message: int) -> None:
        self.sock = sock
        self._reader = reader
        self.max_message = max_message
        self._send_lock = threading.Lock()
        self._watch: int | None = None
        self.closed = False

    @classmethod
    def connect(cls, network: Network, url: str, *, subprotocols: list[str],
                deadline: float, max_message: int) -> WebSocket:
        """Open ``url`` and complete the upgrade before ``deadline`` (monotonic)."""
        scheme, host, port, path = target_of(url)
        query = url.split("?", 1)[1] if "?" in url else ""
        sock = network.open(scheme, host, port, deadline=deadline)
        key = base64.b64encode(os.urandom(16)).decode()
        default_port = 443 if scheme == "wss" else 80
        lines = [f"GET {path or '/'}{'?' + query if query else ''} HTTP/1.1",
                 f"Host: {host}" + ("" if port == default_port else f":{port}"),
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13", "User-Agent: koyeb-analytics"]
        if subprotocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
        failure: BaseException | None = None
        try:
            with WATCHDOG.guard(sock, deadline):
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
                resp = http.client.HTTPResponse(sock)
                resp.begin()
                if time.monotonic() >= deadline:
                    raise DeadlineExceeded("the exec handshake did not complete in time")
                if resp.status != 101:
                    body = resp.read(MAX_REFUSAL_BODY) if resp.status >= 400 else b""
                    raise HandshakeRefused(
                        f"the exec handshake was answered {resp.status} {resp.reason[:60]}"
                        + (" (a redirect: not followed, so the token stays here)"
                           if 300 <= resp.status < 400 else ""), resp.status, body)
                expected = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())
                if (resp.getheader("Upgrade") or "").lower() != "websocket" or \
                        (resp.getheader("Sec-WebSocket-Accept") or "").encode() != expected:
                    raise ProtocolError("the exec handshake's answer is not a websocket "
                                        "upgrade (Upgrade or Sec-WebSocket-Accept is wrong)")
                if time.monotonic() >= deadline:
                    raise DeadlineExceeded("the exec handshake did not complete in time")
                chosen = resp.getheader("Sec-WebSocket-Protocol")
                if chosen is not None and chosen.strip() != (subprotocols or [""])[0]:
                    raise ProtocolError("the exec handshake's answer names a subprotocol "
                                        "other than the one offered first")
        except (OSError, http.client.HTTPException, TransportError) as exc:
            sock.close()
            if time.monotonic() >= deadline:
                failure = DeadlineExceeded("the exec handshake did not complete in time")
            elif isinstance(exc, TransportError):
                failure = exc
            else:
                failure = TransportError(f"the exec handshake failed: {type(exc).__name__}")
        if failure is not None:
            raise failure  # raised here, so no handshake state rides along as context
        reader, resp.fp = resp.fp, None  # type: ignore[assignment]  # frames may be buffered
        return cls(sock, reader, max_message)

    # -- deadlines ---------------------------------------------------------------
    def set_deadline(self, deadline: float | None) -> None:
        """Shut the connection down at ``deadline`` (monotonic; None: no deadline)."""
        if self._watch is not None:
            WATCHDOG.forget(self._watch)
            self._watch = None
        self.sock.settimeout(None)
        if deadline is not None:
            self._watch = WATCHDOG.watch(self.sock, deadline)

    # -- sending -----------------------------------------------------------------
    def send(self, payload: bytes | str, opcode: int = OP_TEXT) -> None:
        frame = ABNF.create_frame(payload, opcode).format()
        with self._send_lock:
            if self.closed:
                raise ConnectionClosed("the exec socket is closed")
            self.sock.sendall(frame)

    # -- receiving ---------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        data = self._reader.read(n)
        if data is None or len(data) < n:
            raise ConnectionClosed("the connection ended in the middle of a frame"
                                   if data else "the connection ended")
        return bytes(data)

    def recv(self) -> tuple[int, bytes]:
        """The next whole message ``(opcode, payload)``, or ``(OP_CLOSE, payload)``.

        Pings are answered here; pongs are skipped. Raises :class:`ProtocolError` for a
        broken frame or a message over ``max_message``, :class:`ConnectionClosed` when
        the connection ends without a close frame.
        """
        message = bytearray()
        kind: int | None = None
        while True:
            first, second = self._read(2)
            fin, opcode = first & 0x80, first & 0x0F
            if first & 0x70:
                raise ProtocolError("a frame sets reserved bits (no extension was agreed)")
            size = second & 0x7F
            if size == 126:
                size = struct.unpack(">H", self._read(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self._read(8))[0]
            if opcode >= 0x8 and (size > 125 or not fin):
                raise ProtocolError("a control frame is fragmented or over 125 bytes")
            if len(message) + size > self.max_message:
                raise ProtocolError(f"a message exceeds the {self.max_message}-byte cap")
            mask = self._read(4) if second & 0x80 else None
            payload = self._read(size) if size else b""
            if mask is not None:
                payload = _unmask(payload, mask)
            if opcode == OP_PING:
                try:
                    self.send(payload, OP_PONG)
                except OSError:
                    pass
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                return OP_CLOSE, payload
            if opcode == OP_CONT:
                if kind is None:
                    raise ProtocolError("a continuation frame starts no message")
            elif opcode in (OP_TEXT, OP_BINARY):
                if kind is not None:
                    raise ProtocolError("a new message starts inside another")
                kind = opcode
            else:
                raise ProtocolError(f"unknown frame opcode {opcode}")
            if fin and not message:
                return kind, payload  # one frame, the usual case: no copy
            message += payload
            if fin:
                return kind, bytes(message)

    def close(self, code: int = 1000) -> None:
        """Send a close frame (best effort) and close the socket; safe to call twice."""
        with self._send_lock:
            if self.closed:
                return
            self.closed = True
        if self._watch is not None:
            WATCHDOG.forget(self._watch)
        try:
            self.sock.settimeout(1)
            self.sock.sendall(ABNF.create_frame(struct.pack(">H", code), OP_CLOSE).format())
        except OSError:
            pass
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
