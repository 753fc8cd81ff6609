"""The simulator's HTTP server: the instance endpoints of the Koyeb API on loopback.

Long because it mirrors the API's surface in one place: the three REST endpoints with
their validation, the fault injection every test relies on, and the options for what
the public material leaves open. Fleet generation is ``_fleet``, exec ``_exec``.

Replies follow the Swagger subset in ``../shared/spec`` (every field emitted, ``null``
when unset, RFC 3339 UTC timestamps with a ``Z``). Behaviours the public material
leaves open (see ``koyeb-api-facts.md`` §13) are options of :class:`Simulator`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from aiohttp import web

from ..api._client import KoyebClient
from ..execute._codec import EXEC_PATH
from ._changes import ChangeStory
from ._exec import ExecEndpoint, ExecFaults, close_process
from ._faults import FaultPlan, Faults
from ._fleet import Fleet, FleetConfig, to_us
from ._realtime import Incident, LiveFleet
from ._streams import TAIL_PATH, Streams
from ._vocabulary import (
    STATUS_MESSAGES,
    STATUSES,
    VOCABULARIES,
    info_message,
    real_message,
    unknown_message,
)

_EPOCH = datetime(1970, 1, 1)
_STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}
_INSTANCE_FILTERS = {
    "app_id": "app",
    "service_id": "service",
    "deployment_id": "deployment",
    "regional_deployment_id": "regional_deployment",
    "allocation_id": "allocation",
}


def _ts(us: int, digits: int | None = None) -> str:
    # isoformat drops the fraction when it is zero: RFC 3339 allows 0 to 9 digits.
    text = (_EPOCH + timedelta(microseconds=int(us))).isoformat()
    return (_digits(text, digits) if digits is not None else text) + "Z"


def _digits(text: str, digits: int) -> str:
    """An isoformat time (no zone) with ``digits`` fractional digits, or as few more as
    keep it exact (protojson writes 0, 3, 6 or 9)."""
    base, _, frac = text.partition(".")
    frac = frac.ljust(6, "0")
    need = 0 if frac == "000000" else 3 if frac.endswith("000") else 6
    n = max(digits, need)
    return base + ("." + (frac + "000")[:n] if n else "")


@dataclass
class RequestRecord:
    """One request the simulator received (the token is never recorded)."""

    method: str
    path: str
    query: list[tuple[str, str]]
    status: int = 0
    in_flight: int = 1
    """Requests being handled when this one arrived, itself included."""


class _BadRequest(Exception):
    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class Simulator:
    """A local Koyeb API: a seeded fleet served over HTTP on 127.0.0.1.

    Parameters
    ----------
    seed, days, services, now
        The fleet: its seed, how many days of history end at ``now``, how many services.
        ``now`` defaults to the current time (to the second); pass it for runs that are
        identical from one day to the next.
    host, port
        Where to listen. Only loopback addresses are accepted; port 0 picks a free one.
    emit_nulls
        Emit unset fields as ``null`` (what the evidence points to) or omit them.
    default_order
        Order of listings when the request names none (``"desc"`` or ``"asc"``).
    limit_policy
        ``"error"``: a limit outside 1..100 is a 400; ``"cap"``: it is clamped.
    not_found_code
        The ``code`` of a 404 body: ``"not_found"`` or ``"unknown_resource"``.
    faults
        Random faults (see :class:`Faults`); change ``sim.faults`` at run time too.
    exec_auth
        How the exec websocket refuses a bad token: ``"frame"`` (upgrade, send an error
        frame, drop the connection: what the gateway most likely does) or
        ``"handshake"`` (HTTP 401 before the upgrade).
    exec_faults
        Faults of the exec endpoint (see :class:`ExecFaults`); ``sim.exec_faults`` can
        be changed at run time.
    time_digits
        Fractional digits of timestamps: ``"auto"`` (none when zero, else six, like
        ``isoformat``) or ``"mixed"`` (0, 3, 6 or 9 within one reply, as protojson may
        write them; never fewer than keep the value exact).
    ssl_context
        An ``ssl.SSLContext`` to serve HTTPS and WSS with (tests of certificate
        authorities and proxies); ``url`` then starts with ``https://``.
    live, speed
        Keep the fleet evolving after its history, on the wall clock (flaps, crashes;
        ``inject_incident`` forces one); ``speed`` makes that ``speed`` times as frequent
        and short (see :class:`~koyeb_analytics.simulator.LiveFleet`).

    Notes
    -----
    Simulated exec runs the requested commands as **real local processes**, as the
    user running the simulator, in a scratch directory per instance.
    **fleet_options
        More :class:`FleetConfig` fields (rates, outages, vocabulary,
        ``prehistory_share``). ``vocabulary="opaque"`` is the real API's shape:
        opaque types, empty metadata, real texts, 5 % of status messages from no known
        family, 1 % of events never served, and (unless ``prehistory_share`` says
        otherwise) 30 % of services created 1 to 60 days before the history opens.

    Examples
    --------
    >>> with Simulator(seed=7, days=1, services=2) as sim:
    ...     client = sim.client()
    ...     n = client.get("/v1/instances", {"limit": 1})["count"]
    >>> n > 0
    True
    """

    def __init__(
        self,
        seed: int = 0,
        days: float = 7,
        services: int = 12,
        now: datetime | pd.Timestamp | str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        emit_nulls: bool = True,
        default_order: str = "desc",
        limit_policy: str = "error",
        not_found_code: str = "not_found",
        faults: Faults | None = None,
        exec_auth: str = "frame",
        exec_faults: ExecFaults | None = None,
        ssl_context: Any = None,
        time_digits: str = "auto",
        live: bool = False,
        speed: float = 1.0,
        **fleet_options: Any,
    ) -> None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ValueError(f"host must be a loopback address, got {host!r}")
        if default_order not in ("asc", "desc"):
            raise ValueError(f"default_order must be 'asc' or 'desc', got {default_order!r}")
        if limit_policy not in ("error", "cap"):
            raise ValueError(f"limit_policy must be 'error' or 'cap', got {limit_policy!r}")
        if not_found_code not in ("not_found", "unknown_resource"):
            raise ValueError(
                f"not_found_code must be 'not_found' or 'unknown_resource', got {not_found_code!r}"
            )
        if time_digits not in ("auto", "mixed"):
            raise ValueError(f"time_digits must be 'auto' or 'mixed', got {time_digits!r}")
        self.time_digits = time_digits
        if exec_auth not in ("frame", "handshake"):
            raise ValueError(f"exec_auth must be 'frame' or 'handshake', got {exec_auth!r}")
        vocabulary = fleet_options.get("vocabulary")
        if isinstance(vocabulary, str):
            if vocabulary not in VOCABULARIES:
                raise ValueError(f"vocabulary must be one of {sorted(VOCABULARIES)} or an "
                                 f"EventVocabulary, got {vocabulary!r}")
            fleet_options["vocabulary"] = VOCABULARIES[vocabulary]
            if vocabulary == "opaque":
                # The real API's shape includes fleets older than the history it serves.
                fleet_options.setdefault("prehistory_share", 0.3)
        start: datetime | None = None
        if now is not None:
            ts = pd.Timestamp(now)
            start = (ts if ts.tzinfo else ts.tz_localize("UTC")).to_pydatetime()
        self.fleet = Fleet(FleetConfig(seed=seed, days=days, services=services, now=start,
                                       **fleet_options))
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.emit_nulls = emit_nulls
        self.default_order = default_order
        self.limit_policy = limit_policy
        self.not_found_code = not_found_code
        self.faults = faults or Faults()
        self.exec_auth = exec_auth
        self.exec_faults = exec_faults or ExecFaults()
        self._exec: ExecEndpoint | None = None
        self._exec_root: str | None = None
        self._plan = FaultPlan(seed=seed)
        self.requests: list[RequestRecord] = []
        self._active = 0
        self._token = secrets.token_hex(32)  # 64 characters, like a personal access token
        self._index: dict[str, int] | None = None
        self._item_cache: dict[int, bytes] = {}
        self._selections: dict[tuple[Any, ...], np.ndarray] = {}
        self._clock_us = self.fleet.now_us
        self.changes = ChangeStory(self)
        self._lock = threading.Lock()
        if not isinstance(live, bool):
            raise TypeError(f"live must be True or False, got {live!r}")
        self.live: LiveFleet | None = LiveFleet(
            self.fleet, lock=self._lock, on_change=self.invalidate, speed=speed,
            seed=seed) if live else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ public
    @property
    def token(self) -> str:
        """The bearer token this run accepts (fresh at every start)."""
        return self._token

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:54321``."""
        if self._thread is None:
            raise RuntimeError("the simulator is not running; use start() or a with block")
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def now(self) -> pd.Timestamp:
        """The simulated present: history ends here."""
        return pd.Timestamp(self.fleet.now_us * 1000, tz="UTC")

    def __repr__(self) -> str:
        state = f"url={self.url!r}" if self._thread else "stopped"
        n = len(self.fleet.inst["id"])
        return f"<Simulator {state} instances={n} events={len(self.fleet.ev['when'])}>"

    def client(self, **options: Any) -> Any:
        """Return a :class:`~koyeb_analytics.KoyebClient` pointed at this server.

        When the server simulates latency, the client reads ahead on threads, as it
        would from a remote API (``read_ahead="threads"``), unless told otherwise.
        """
        if self.faults.latency or self.faults.path_latency:
            options.setdefault("read_ahead", "threads")
        client = KoyebClient(self._token, base_url=self.url, **options)
        client.simulated = True
        return client

    def truth_intervals(self) -> pd.DataFrame:
        """Return the ground truth: instance_id, status, start, end of every span."""
        with self._lock:
            return self.fleet.truth_intervals()

    def inject(self, kind: str, times: int | None = 1, *, after: int = 0,
               path: str | None = None, body: str = "json") -> None:
        """Plan a fault: skip ``after`` matching requests, then answer ``times`` with it.

        ``kind`` is an HTTP status (``"429"``, ``"503"``, …) or ``"drop"``,
        ``"malformed"``, ``"truncated"``, ``"text"``; ``times=None`` means forever;
        ``path`` limits it to request paths starting with that prefix; ``body`` picks
        the error body (``"json"``, ``"empty"`` or ``"text"``; 429 is always empty).
        """
        self._plan.add(kind, times, after, path, body)

    def clear_faults(self) -> None:
        """Remove planned faults and reset the random ones."""
        self._plan.clear()
        self.faults = Faults()

    def add_instances(self, n: int = 1) -> list[str]:
        """Create ``n`` new instances now (each ALLOCATING, with its event)."""
        ids = []
        with self._lock:
            for _ in range(n):
                self._clock_us = max(self._clock_us + 1_000, self.fleet.now_us)
                idx = self.fleet.add_instance(self._clock_us)
                ids.append(self.fleet.inst["id"][idx])
            self.invalidate()
        return ids

    def invalidate(self) -> None:
        """Forget what was derived from the fleet (call with the lock held)."""
        self._index = None
        self._item_cache.clear()
        self._selections.clear()

    def inject_incident(self, service_id: str, kind: str = "crash_loop",
                        duration: str | pd.Timedelta = "5min") -> Incident:
        """Force an incident on a service of a live simulator, starting now.

        Parameters
        ----------
        service_id
            A service id, or ``"app/service"`` by name.
        kind
            ``"crash_loop"`` (instances fail and their replacements fail to start until
            the end), ``"unhealthy"`` (health checks fail until the end) or
            ``"scale_to_zero"`` (asleep until the end).
        duration
            How long, before ``speed`` compresses it (``"5min"`` at ``speed=60`` lasts
            five seconds).

        Returns
        -------
        Incident
            The service, kind, start, end and the instances hit.
        """
        if self.live is None:
            raise RuntimeError("inject_incident needs a live simulator: "
                               "simulate(..., live=True)")
        return self.live.inject_incident(service_id, kind, duration)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Simulator:
        """Start serving in a background thread; returns ``self``."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # surfaced to the caller of start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            try:
                loop.run_until_complete(self._shutdown())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="koyeb-simulator", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            self._thread = None
            raise errors[0]
        if self.live is not None:
            self.live.start()
        return self

    def stop(self) -> None:
        """Stop the server and its thread."""
        if self.live is not None:
            self.live.stop()
        if self._thread is None or self._loop is None:
            return
        if self._exec is not None:
            for proc in list(self._exec.processes.values()):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        if self._exec_root is not None:
            shutil.rmtree(self._exec_root, ignore_errors=True)
            self._exec_root = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        """End every connection and task on the loop, so nothing outlives it."""
        if self._runner is not None:
            await self._runner.cleanup()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._exec is not None:
            for proc in list(self._exec.processes.values()):
                await close_process(proc)

    async def _serve(self) -> None:
        app = self.make_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]

    def make_app(self) -> web.Application:
        """Build the aiohttp application (routes and middlewares)."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v1/instances", self._list_instances)
        app.router.add_get("/v1/instances/{id}", self._get_instance)
        app.router.add_get("/v1/instance_events", self._list_events)
        app.router.add_get("/v1/apps", self._list_apps)
        app.router.add_get("/v1/services", self._list_services)
        self.changes.add_routes(app)
        self._exec_root = tempfile.mkdtemp(prefix="koyeb-sim-exec-")
        self._exec = ExecEndpoint(self, Path(self._exec_root))
        app.router.add_get(EXEC_PATH, self._exec.handle)
        self.streams = Streams(self)  # logs, metrics, catalog
        self.streams.register(app)
        return app

    # ------------------------------------------------------------------ plumbing
    def _error(self, status: int, code: str, message: str, **extra: Any) -> web.Response:
        return web.json_response({"status": status, "code": code, "message": message, **extra},
                                 status=status)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self._active += 1
        record = RequestRecord(request.method, request.path, list(request.query.items()),
                               in_flight=self._active)
        self.requests.append(record)
        try:
            response = await self._dispatch(request, handler)
        finally:
            self._active -= 1
        record.status = response.status
        return response

    async def _dispatch(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in (EXEC_PATH, TAIL_PATH):
            answer: web.StreamResponse = await handler(request)  # websockets check their token
            return answer
        auth = request.headers.get("Authorization", "")
        if not secrets.compare_digest(auth.encode(), f"Bearer {self._token}".encode()):
            return self._error(401, "authentication_error", "Request unauthenticated with bearer")
        faults = self.faults
        delay = faults.delay(request.path)
        if delay > 0:
            await asyncio.sleep(delay)
        rng = self._plan.rng
        planned = self._plan.take(request.path)
        kind = planned.kind if planned else None
        if kind is None:
            draw = rng.random()
            for name, rate in (("429", faults.rate_limit_rate), (str(faults.error_status),
                               faults.error_rate), ("drop", faults.drop_rate),
                               ("malformed", faults.malformed_rate)):
                if draw < rate:
                    kind = name
                    break
                draw -= rate
        if kind is not None and kind not in ("malformed", "truncated", "text"):
            return self._fault_response(request, kind, planned.body if planned else "json")
        if faults.churn_per_request and request.path in ("/v1/instances", "/v1/instance_events"):
            self.add_instances(faults.churn_per_request)
        try:
            response: web.StreamResponse = await handler(request)
        except _BadRequest as exc:
            return self._error(400, "invalid_argument", "Invalid argument",
                               fields=[{"field": exc.field, "description": exc.description}])
        if kind is None or response.status != 200:
            return response
        body = cast(bytes, getattr(response, "body", b""))
        if kind == "malformed":
            return web.Response(body=body[: len(body) // 2], content_type="application/json")
        if kind == "text":
            return web.Response(text="upstream connect error", content_type="text/plain")
        # truncated: promise the whole body, send half, hang up
        stream = web.StreamResponse(headers={"Content-Type": "application/json",
                                             "Content-Length": str(len(body))})
        await stream.prepare(request)
        await stream.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return stream

    def _fault_response(self, request: web.Request, kind: str, body: str) -> web.StreamResponse:
        if kind == "drop":
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("simulated dropped connection")
        status = int(kind)
        if status == 429:
            headers = {}
            if self.faults.retry_after is not None:
                headers["Retry-After"] = f"{self.faults.retry_after:g}"
            return web.Response(status=429, body=b"", headers=headers)
        if body == "empty":
            return web.Response(status=status, body=b"")
        if body == "text":
            return web.Response(status=status, text=f"<html><body>{status} upstream error"
                                "</body></html>", content_type="text/html")
        codes = {400: "invalid_argument", 401: "authentication_error",
                 403: "authentication_required", 404: self.not_found_code}
        messages = {401: "Request unauthenticated with bearer",
                    403: "You don't have the requested permission to access to resource.",
                    404: "Not found", 503: "Service unavailable"}
        extra: dict[str, Any] = {}
        if status == 400:
            extra["fields"] = [{"field": "simulated", "description": "injected fault"}]
        return self._error(status, codes.get(status, "api_error"),
                           messages.get(status, "Internal server error"), **extra)

    # ------------------------------------------------------------------ parsing
    async def _list_apps(self, request: web.Request) -> web.Response:
        """``GET /v1/apps``: names for the app ids the instances carry."""
        limit, offset, _ = self._paging(request.query)
        fl = self.fleet
        created = _ts(fl.start_us)
        apps = [{"id": a, "name": n, "organization_id": fl.organization_id,
                 "created_at": created, "updated_at": created, "status": "HEALTHY",
                 "domains": [], "messages": []} for a, n in fl.app_names.items()]
        return self._named_page("apps", apps, limit, offset)

    async def _list_services(self, request: web.Request) -> web.Response:
        """``GET /v1/services`` (``app_id=`` filters): names for the service ids."""
        q = request.query
        limit, offset, _ = self._paging(q)
        fl = self.fleet
        created = _ts(fl.start_us)
        services = [{"id": s.service_id, "name": fl.service_names[s.service_id],
                     "app_id": s.app_id, "organization_id": fl.organization_id,
                     "type": "WEB", "status": "HEALTHY", "created_at": created,
                     "updated_at": created, "messages": []}
                    for s in fl.services if not q.get("app_id") or s.app_id == q["app_id"]]
        return self._named_page("services", services, limit, offset)

    @staticmethod
    def _named_page(key: str, items: list[dict[str, Any]], limit: int,
                    offset: int) -> web.Response:
        page = items[offset:offset + limit]
        return web.json_response({key: page, "limit": limit, "offset": offset,
                                  "count": len(items),
                                  "has_next": offset + len(page) < len(items)})

    def _paging(self, q: Any) -> tuple[int, int, str]:
        limit_s, offset_s = q.get("limit", "20"), q.get("offset", "0")
        try:
            limit = int(limit_s)
        except ValueError:
            raise _BadRequest("limit", f"must be an integer, got {limit_s!r}") from None
        if not 1 <= limit <= 100:
            if self.limit_policy == "error":
                raise _BadRequest("limit", "must be a positive integer lower or equal to 100")
            limit = min(max(limit, 1), 100)
        try:
            offset = int(offset_s)
        except ValueError:
            raise _BadRequest("offset", f"must be an integer, got {offset_s!r}") from None
        if offset < 0:
            raise _BadRequest("offset", "must be a non-negative integer")
        order = q.get("order", self.default_order)
        if order not in ("asc", "desc"):
            raise _BadRequest("order", "must be 'asc' or 'desc'")
        return limit, offset, order

    @staticmethod
    def _time(q: Any, name: str) -> int | None:
        raw = q.get(name)
        if raw is None or raw == "":
            return None
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise _BadRequest(name, f"not an RFC 3339 date-time: {raw!r}") from None
        if value.tzinfo is None:
            raise _BadRequest(name, "an RFC 3339 date-time needs a time zone")
        return to_us(value.astimezone(UTC))

    def _id_index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {iid: i for i, iid in enumerate(self.fleet.inst["id"])}
        return self._index

    def _digits_for(self, k: int) -> int | None:
        return (0, 3, 6, 9)[int(k) % 4] if self.time_digits == "mixed" else None

    def _nullable(self, d: dict[str, Any], key: str, us: int) -> None:
        if us >= 0:
            d[key] = _ts(us, self._digits_for(us))
        elif self.emit_nulls:
            d[key] = None

    def _instance_json(self, i: int, full: bool) -> dict[str, Any]:
        f = self.fleet.inst
        status = STATUSES[f["status"][i]]
        d: dict[str, Any] = {
            "id": f["id"][i],
            "created_at": _ts(f["created"][i], self._digits_for(i)),
            "updated_at": _ts(f["updated"][i], self._digits_for(i + 1)),
            "organization_id": self.fleet.organization_id,
            "app_id": f["app"][i],
            "service_id": f["service"][i],
            "regional_deployment_id": f["regional_deployment"][i],
            "allocation_id": f["allocation"][i],
            "type": f["type"][i],
            "replica_index": int(f["replica_index"][i]),
            "region": f["region"][i],
            "datacenter": f["datacenter"][i],
            "status": status,
            "messages": [real_message(status, i) if self.fleet.vocabulary.real_messages
                         else STATUS_MESSAGES[status]],
            "xyz_deployment_id": f["deployment"][i],
        }
        if full:
            d["hypervisor"] = f["hypervisor"][i]
            for key, col in (("started_at", "started"), ("succeeded_at", "succeeded"),
                             ("terminated_at", "terminated")):
                self._nullable(d, key, int(f[col][i]))
        return d

    def _events_json(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Render events ``rows`` (ids and timestamps formatted for the page at once)."""
        fl = self.fleet
        ev = fl.ev
        vocab = fl.vocabulary
        hexes = ev["uuid"][rows].tobytes().hex()
        whens = np.datetime_as_string(ev["when"][rows].astype("datetime64[us]"), unit="us")
        instance_ids = fl.inst["id"]
        mixed = self.time_digits == "mixed"
        out = []
        for k, (j, when) in enumerate(zip(rows.tolist(), whens.tolist(), strict=True)):
            code = int(ev["type"][j])
            metadata: dict[str, Any] = {}
            if code < len(STATUSES):
                status = STATUSES[code]
                prev = int(ev["previous"][j])
                if vocab.metadata:
                    metadata[vocab.status_key] = status
                    if prev >= 0:
                        metadata[vocab.previous_key] = STATUSES[prev]
                message = (unknown_message(j) if ev["unknown"][j] else
                           real_message(status, j, STATUSES[prev] if prev >= 0 else None)) \
                    if vocab.real_messages else STATUS_MESSAGES[status]
                etype = vocab.status_types[status]
            else:
                etype = fl.event_types[code]
                message = info_message(j) if vocab.real_messages else vocab.info_types[etype]
            h = hexes[32 * k: 32 * k + 32]
            out.append({
                "id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
                # Like isoformat: no fraction when it is zero (RFC 3339 allows 0-9 digits).
                "when": (_digits(when, (0, 3, 6, 9)[j % 4]) if mixed else
                         when[:-7] if when.endswith(".000000") else when) + "Z",
                "organization_id": fl.organization_id,
                "instance_id": instance_ids[ev["instance"][j]],
                "type": etype,
                "message": message,
                "metadata": metadata,
            })
        return out

    # ------------------------------------------------------------------ handlers
    def _selection(self, path: str, q: Any, order: str, compute: Any) -> np.ndarray:
        """The filtered, ordered row numbers of a listing, kept per query.

        Paging through a listing asks the same question with another offset; keeping
        the answer (like a database index would) makes each page cost only its rows.
        """
        key = (path, order, tuple(sorted((k, v) for k, v in q.items()
                                         if k not in ("limit", "offset"))))
        rows = self._selections.get(key)
        if rows is None:
            mask = compute()
            rows = np.arange(self._count(path)) if mask is None else np.flatnonzero(mask)
            if order == "desc":
                rows = rows[::-1]
            if len(self._selections) >= 64:
                self._selections.clear()
            self._selections[key] = rows
        return rows

    def _count(self, path: str) -> int:
        return len(self.fleet.inst["id"] if path == "instances" else self.fleet.ev["when"])

    async def _list_instances(self, request: web.Request) -> web.Response:
        q = request.query
        limit, offset, order = self._paging(q)
        with self._lock:
            rows = self._selection("instances", q, order, lambda: self._instance_mask(q))
            count = len(rows)
            items = b",".join(self._list_item(int(i)) for i in rows[offset: offset + limit])
        # Each list item is rendered once and kept: a page is then a join of bytes.
        tail = json.dumps({"limit": limit, "offset": offset, "count": count, "order": order})
        return web.Response(body=b'{"instances":[' + items + b"]," + tail[1:].encode(),
                            content_type="application/json")

    def _instance_mask(self, q: Any) -> np.ndarray | None:
        f = self.fleet.inst
        mask: np.ndarray | None = None

        def narrow(m: np.ndarray) -> None:
            nonlocal mask
            mask = m if mask is None else mask & m

        for param, col in _INSTANCE_FILTERS.items():
            value = q.get(param)
            if value:
                narrow(f[col] == value)
        if q.get("replica_index"):
            try:
                narrow(f["replica_index"] == int(q["replica_index"]))
            except ValueError:
                raise _BadRequest("replica_index", "must be an integer") from None
        statuses = q.getall("statuses", [])
        if statuses:
            bad = [s for s in statuses if s not in _STATUS_CODE]
            if bad:
                raise _BadRequest("statuses", f"unknown status {bad[0]!r}")
            narrow(np.isin(f["status"], [_STATUS_CODE[s] for s in statuses]))
        start, end = self._time(q, "starting_time"), self._time(q, "ending_time")
        if start is not None and end is not None and start > end:
            raise _BadRequest("ending_time", "must not be before starting_time")
        # Overlap of the instance's life [created, terminated] with the period.
        if end is not None:
            narrow(f["created"] <= end)
        if start is not None:
            narrow((f["terminated"] < 0) | (f["terminated"] >= start))
        return mask

    def _list_item(self, i: int) -> bytes:
        item = self._item_cache.get(i)
        if item is None:
            item = json.dumps(self._instance_json(i, False)).encode()
            self._item_cache[i] = item
        return item

    async def _get_instance(self, request: web.Request) -> web.Response:
        i = self._id_index().get(request.match_info["id"])
        if i is None:
            return self._error(404, self.not_found_code, "Instance not found")
        with self._lock:
            return web.json_response({"instance": self._instance_json(i, True)})

    async def _list_events(self, request: web.Request) -> web.Response:
        q = request.query
        limit, offset, order = self._paging(q)
        with self._lock:
            rows = self._selection("events", q, order, lambda: self._event_mask(q))
            page = rows[offset: offset + limit]
            body = {"events": self._events_json(page), "limit": limit,
                    "offset": offset, "order": order,
                    "has_next": offset + len(page) < len(rows)}
        return web.json_response(body)

    def _event_mask(self, q: Any) -> np.ndarray | None:
        ev = self.fleet.ev
        served = ev["served"]
        mask: np.ndarray | None = None if served.all() else served
        ids = q.getall("instance_ids", [])
        if ids:
            index = self._id_index()
            m = np.isin(ev["instance"], [index[i] for i in ids if i in index])
            mask = m if mask is None else mask & m
        types = q.getall("types", [])
        if types:
            codes = [k for k, t in enumerate(self.fleet.event_types) if t in types]
            m = np.isin(ev["type"], codes)
            mask = m if mask is None else mask & m
        return mask


def simulate(seed: int = 0, days: float = 7, services: int = 12, **options: Any) -> Simulator:
    """Create a simulator; use it in a ``with`` block, which starts and stops it.

    Parameters
    ----------
    seed, days, services
        The fleet's seed, days of history and number of services.
    **options
        Everything else :class:`Simulator` accepts (``now``, ``faults``, ``emit_nulls``,
        ``vocabulary``, ``time_digits``…).

    Returns
    -------
    Simulator
        Not started: ``with`` starts it (or ``.start()``).

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=7, days=2, services=3) as sim:
    ...     n = len(ka.load_instances(sim.client(), progress=False))
    >>> n > 0
    True
    """
    return Simulator(seed=seed, days=days, services=services, **options)
