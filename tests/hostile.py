"""Small deliberately broken servers: not the simulator, and sharing none of its habits.

Each is a raw TCP listener on 127.0.0.1 that hands every connection to a handler
function on its own thread. Handlers speak HTTP (and websocket) by hand, so they can
lie, stall, drip, flood or redirect. Every handler loop is bounded in time; closing the
server closes every connection it accepted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "tok-" + "k" * 28 + "-secret-" + "z" * 24  # recognisable anywhere it leaks
MAX_HANDLER_SECONDS = 30.0


class Request:
    """The head of one HTTP request as received."""

    def __init__(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.method, self.target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
        self.headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()
        parts = urlsplit(self.target)
        self.path = parts.path
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.raw = head


def read_head(conn: socket.socket) -> Request | None:
    """Read one request head (up to 64 KiB, 10 s); None when the peer went away."""
    conn.settimeout(10)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return None
            data += chunk
            if len(data) > 65536:
                return None
    except OSError:
        return None
    return Request(data.split(b"\r\n\r\n", 1)[0])


def http_reply(conn: socket.socket, status: int, body: bytes | dict | list = b"",
               headers: dict[str, str] | None = None, reason: str = "X") -> None:
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}",
            "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)


def ws_accept(conn: socket.socket, req: Request, protocol: str | None = "Bearer") -> None:
    key = req.headers.get("sec-websocket-key", "")
    accept = base64.b64encode(hashlib.sha1(
        key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
    head = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept}"]
    if protocol is not None:
        head.append(f"Sec-WebSocket-Protocol: {protocol}")
    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())


def ws_frame(payload: bytes | str, opcode: int = 0x1, fin: bool = True) -> bytes:
    """A server frame (unmasked)."""
    if isinstance(payload, str):
        payload = payload.encode()
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", first, n)
    elif n < 65536:
        head = struct.pack(">BBH", first, 126, n)
    else:
        head = struct.pack(">BBQ", first, 127, n)
    return head + payload


def result_frame(stdout: bytes | None = None, *, exited: bool = False, code: Any = 0) -> bytes:
    out = {"data": base64.b64encode(stdout).decode()} if stdout is not None else None
    return ws_frame(json.dumps({"result": {"stdout": out, "stderr": None, "exited": exited,
                                           "exit_code": code}}))


def until(deadline: float) -> bool:
    return time.monotonic() < deadline


class HostileServer:
    """``with HostileServer(handler) as srv:``; ``srv.url``, ``srv.connections``."""

    def __init__(self, handler: Callable[[socket.socket, HostileServer], None]) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.requests: list[Request] = []
        self.state: dict[str, Any] = {}
        self._conns: list[socket.socket] = []
        self._closed = False
        self._lock = threading.Lock()

    def __enter__(self) -> HostileServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self.listener.close()
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handler(conn, self)
        except (OSError, ValueError):
            pass  # the test closed the server (and so this socket) first
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def next_request(self, conn: socket.socket) -> Request | None:
        req = read_head(conn)
        if req is not None:
            with self._lock:
                self.requests.append(req)
        return req


def rest(route: Callable[[Request, HostileServer], tuple[int, Any, dict[str, str]]]
         ) -> Callable[[socket.socket, HostileServer], None]:
    """A keep-alive HTTP handler answering each request with ``route(req, srv)``."""
    def handler(conn: socket.socket, srv: HostileServer) -> None:
        deadline = time.monotonic() + MAX_HANDLER_SECONDS
        while until(deadline):
            req = srv.next_request(conn)
            if req is None:
                return
            status, body, headers = route(req, srv)
            http_reply(conn, status, body, headers)
    return handler


def exceptions_in_chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__]
        todo += [getattr(e, "cause", None)]
    return seen


def assert_token_absent(exc: BaseException | None, *texts: str) -> None:
    """No exception in the chain (message, args, repr) nor any text holds the token."""
    for e in exceptions_in_chain(exc) if exc is not None else []:
        assert TOKEN not in str(e) and TOKEN not in repr(e)
        assert all(TOKEN not in repr(a) for a in e.args)
    for text in texts:
        assert TOKEN not in text
