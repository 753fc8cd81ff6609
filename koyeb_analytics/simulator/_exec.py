"""The simulator's exec websocket: commands run as real local processes.

**Simulated exec runs local processes** on the machine running the simulator, as the
user running it, in a scratch directory per instance. The server only listens on
loopback and requires the run's token; do not expose it.

Frames follow ``koyeb-api-facts.md`` §8: the first client frame names the target and the
command; stdin, stdin close and resize frames follow; the server sends result frames
with base64 output and a final ``exited`` frame, or an ``error`` frame.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import os
import secrets
import signal
import struct
import sys
import termios
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from ..execute._codec import error_frame, result_frame
from ..schema import EXEC_STATUSES
from ._vocabulary import STATUSES

READ_CHUNK = 32 * 1024
# Runs in the new session: take the pty on stdin as controlling terminal, then become
# the command; a command that cannot start exits 127 or 126, as in a container.
_TTY_LAUNCHER = """
import fcntl, os, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
try:
    os.execvp(sys.argv[1], sys.argv[1:])
except OSError as exc:
    sys.stderr.write(f"exec: {sys.argv[1]}: {exc.strerror}\\n")
    sys.exit(127 if isinstance(exc, FileNotFoundError) else 126)
"""


@dataclass
class ExecFaults:
    """Faults of the exec endpoint, settable at start or at run time.

    Attributes
    ----------
    drop_after_bytes
        Drop the connection (no close frame) once this much output was sent.
    no_exit_frame
        Close normally (1000) when the command ends, without sending the exit frame.
    frame_delay
        Seconds to wait before each output frame.
    split_utf8
        Cut output frames in the middle of multi-byte UTF-8 characters.
    """

    drop_after_bytes: int | None = None
    no_exit_frame: bool = False
    frame_delay: float = 0.0
    split_utf8: bool = False


async def close_process(proc: asyncio.subprocess.Process) -> None:
    """Wait for a killed process, then close its transport while the loop runs.

    A transport left to the garbage collector closes its pipes through the loop, which
    may be closed by then ("Event loop is closed" at interpreter exit).
    """
    if proc.returncode is None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(proc.wait()), 5)
    transport = getattr(proc, "_transport", None)  # asyncio keeps it private
    if transport is not None:
        transport.close()
    await asyncio.sleep(0)  # let the pipes' connection_lost callbacks run


def _split_points(data: bytes) -> list[bytes]:
    """Cut ``data`` inside the first multi-byte character, if there is one."""
    for i, b in enumerate(data):
        if b >= 0xC0 and i + 1 < len(data):
            return [data[: i + 1], data[i + 1:]]
    return [data]


class ExecEndpoint:
    """Serves ``GET /v1/streams/instances/exec`` for one :class:`Simulator`."""

    def __init__(self, sim: Any, root: Path) -> None:
        self.sim = sim
        self.root = root
        self.processes: dict[int, asyncio.subprocess.Process] = {}

    def _token_from(self, request: web.Request) -> str | None:
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "")
                     .split(",")]
        if len(protocols) >= 2 and protocols[0] == "Bearer":
            return protocols[1]
        auth = request.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sim = self.sim
        token = self._token_from(request)
        authorized = token is not None and secrets.compare_digest(token.encode(),
                                                                  sim.token.encode())
        if not authorized and sim.exec_auth == "handshake":
            return web.json_response({"status": 401, "code": "authentication_error",
                                      "message": "Request unauthenticated with bearer"},
                                     status=401)
        ws = web.WebSocketResponse(protocols=("Bearer",), autoping=True, max_msg_size=0)
        await ws.prepare(request)
        try:
            if not authorized:
                # What the gateway most likely does: an error frame, then an abrupt end.
                await ws.send_str(error_frame(16, "unauthenticated", "invalid or expired token"))
                self._abort(request)
                return ws
            await self._session(request, ws)
        finally:
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
        return ws

    @staticmethod
    def _abort(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()

    def _resolve(self, first: dict[str, Any]) -> tuple[int | None, str | None]:
        """Return (instance index, error frame) for the first client frame."""
        fleet = self.sim.fleet
        # The console and the MCP server also put the id in the URL (``?id=``).
        target = first.get("id") or first.get("query_id")
        id_type = first.get("idType") or first.get("id_type") or "INVALID"
        index = self.sim._id_index()
        if id_type == "SERVICE_ID":
            rows = [i for i, s in enumerate(fleet.inst["service"]) if s == target]
            running = [i for i in rows if STATUSES[fleet.inst["status"][i]] in EXEC_STATUSES]
            if not rows:
                return None, error_frame(5, "not_found", f"service {target} not found")
            if not running:
                return None, error_frame(9, "failed_precondition",
                                    "No running instance in this service")
            return running[0], None
        i = index.get(target) if isinstance(target, str) else None
        if i is None:
            return None, error_frame(5, "not_found", f"instance {target} not found")
        status = STATUSES[fleet.inst["status"][i]]
        if status not in EXEC_STATUSES:
            return None, error_frame(9, "failed_precondition",
                                f"Instance is not running (status {status})")
        return i, None

    async def _session(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        msg = await ws.receive()
        if msg.type != WSMsgType.TEXT:
            return
        try:
            first = json.loads(msg.data)
            command = first["body"]["command"]
            if not command or not all(isinstance(a, str) for a in command):
                raise ValueError("empty command")
        except (ValueError, KeyError, TypeError):
            await ws.send_str(error_frame(3, "invalid_argument",
                                     "the first frame must carry body.command"))
            self._abort(request)
            return
        if not first.get("id") and request.query.get("id"):
            first["query_id"] = request.query["id"]
        index, err = self._resolve(first)
        if err is not None or index is None:
            await ws.send_str(err or error_frame(13, "internal", "no target"))
            self._abort(request)
            return
        tty = not bool(first["body"].get("disableTty", False))
        await _Run(self, request, ws, index, command, tty).run()

    def env_for(self, index: int) -> dict[str, str]:
        f = self.sim.fleet.inst
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir(index)),
            "LANG": "C.UTF-8",
            "KOYEB_INSTANCE_ID": f["id"][index],
            "KOYEB_SERVICE_ID": f["service"][index],
            "KOYEB_APP_ID": f["app"][index],
            "KOYEB_REGION": f["region"][index],
            "KOYEB_DC": f["datacenter"][index],
            "KOYEB_REPLICA_INDEX": str(int(f["replica_index"][index])),
            "KOYEB_INSTANCE_TYPE": f["type"][index],
            # Fake secrets of the shapes real services carry, so that redaction is
            # exercised end to end (and look-alikes that must stay).
            "DATABASE_URL": f"postgres://app:pw-{index:05d}-fake@db.internal:5432/app",
            "API_TOKEN": f"tok_fake_{index:08d}_not_a_real_token",
            "STRIPE_SECRET_KEY": f"sk_test_fake{index:012d}",
            "KEYBOARD_LAYOUT": "us",
        }

    def workdir(self, index: int) -> Path:
        path = self.root / self.sim.fleet.inst["id"][index]
        path.mkdir(parents=True, exist_ok=True)
        return Path(path)


class _Run:
    """One command: a process, its output pumps, and the client's frames."""

    def __init__(self, endpoint: ExecEndpoint, request: web.Request,
                 ws: web.WebSocketResponse, index: int, command: list[str], tty: bool) -> None:
        self.ep = endpoint
        self.request = request
        self.ws = ws
        self.index = index
        self.command = command
        self.tty = tty
        self.sent = 0
        self.dropped = False
        self.master: int | None = None
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def faults(self) -> ExecFaults:
        faults: ExecFaults = self.ep.sim.exec_faults
        return faults

    async def send_output(self, stream: str, data: bytes) -> None:
        if self.dropped:
            return
        parts = _split_points(data) if self.faults.split_utf8 else [data]
        for part in parts:
            if self.faults.frame_delay:
                await asyncio.sleep(self.faults.frame_delay)
            frame = result_frame(part if stream == "stdout" else None,
                            part if stream == "stderr" else None)
            await self.ws.send_str(frame)
            self.sent += len(part)
            limit = self.faults.drop_after_bytes
            if limit is not None and self.sent >= limit:
                self.dropped = True
                self.ep._abort(self.request)
                return

    async def run(self) -> None:
        cwd = self.ep.workdir(self.index)
        env = self.ep.env_for(self.index)
        try:
            if self.tty:
                self.master, slave = os.openpty()
                # Through a small launcher that makes the pty the controlling terminal
                # of the new session, so resizes reach the command as SIGWINCH.
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-I", "-S", "-c", _TTY_LAUNCHER, *self.command,
                    stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                    start_new_session=True)
                os.close(slave)
            else:
                self.proc = await asyncio.create_subprocess_exec(
                    *self.command, stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd,
                    env=env, start_new_session=True)
        except OSError as exc:
            # Like a container runtime: a command that cannot start exits 127 or 126.
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            await self.send_output("stderr", f"exec: {self.command[0]}: {exc.strerror}\n"
                                   .encode())
            if not self.dropped:
                await self.ws.send_str(result_frame(exited=True, exit_code=code))
            return
        self.ep.processes[self.proc.pid] = self.proc
        reader = asyncio.ensure_future(self.read_client())
        try:
            pumps = ([self.pump_pty()] if self.tty else
                     [self.pump(self.proc.stdout, "stdout"), self.pump(self.proc.stderr,
                                                                       "stderr")])
            done: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*pumps))
            await asyncio.wait([done, reader], return_when=asyncio.FIRST_COMPLETED)
            if not done.done():
                # The client went away first: the process goes with it.
                self.kill()
                done.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await done
                return
            code = await self.proc.wait()
            if code < 0:
                code = 128 - code  # killed by a signal: the shell's convention
            if self.dropped:
                return
            if self.faults.no_exit_frame:
                await self.ws.close(code=1000)
                return
            await self.ws.send_str(result_frame(exited=True, exit_code=code))
            # grpc-websocket-proxy drops the TCP connection after the last frame.
            await asyncio.sleep(0.05)
            self.ep._abort(self.request)
        except (ConnectionResetError, asyncio.CancelledError):
            self.kill()
            raise
        finally:
            await self.reap()
            reader.cancel()
            if self.master is not None:
                with contextlib.suppress(OSError):
                    os.close(self.master)
            self.ep.processes.pop(self.proc.pid, None)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def reap(self) -> None:
        """Kill the process and wait for it, so no transport outlives the loop."""
        self.kill()
        if self.proc is not None:
            await close_process(self.proc)

    async def pump(self, pipe: asyncio.StreamReader | None, stream: str) -> None:
        assert pipe is not None
        while True:
            data = await pipe.read(READ_CHUNK)
            if not data:
                return
            await self.send_output(stream, data)

    async def pump_pty(self) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        master = self.master
        assert master is not None

        def readable() -> None:
            try:
                data = os.read(master, READ_CHUNK)
            except OSError:
                data = b""
            queue.put_nowait(data)
            if not data:
                loop.remove_reader(master)

        loop.add_reader(master, readable)
        try:
            while True:
                data = await queue.get()
                if not data:
                    return
                await self.send_output("stdout", data)
        finally:
            loop.remove_reader(master)

    async def read_client(self) -> None:
        """Apply stdin, stdin close and resize frames until the client leaves."""
        proc = self.proc
        assert proc is not None
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                body = json.loads(msg.data).get("body") or {}
            except ValueError:
                continue
            # The Koyeb CLI repeats id, idType and command in every frame: ignore them.
            stdin = body.get("stdin") or {}
            if stdin.get("data"):
                data = base64.b64decode(stdin["data"])
                if self.tty and self.master is not None:
                    os.write(self.master, data)
                elif proc.stdin is not None and not proc.stdin.is_closing():
                    proc.stdin.write(data)
                    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                        await proc.stdin.drain()
            if stdin.get("close"):
                if self.tty and self.master is not None:
                    os.write(self.master, b"\x04")
                elif proc.stdin is not None:
                    proc.stdin.close()
            size = body.get("tty_size")
            if size and self.master is not None:
                fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                            struct.pack("HHHH", int(size.get("height", 24)),
                                        int(size.get("width", 80)), 0, 0))
