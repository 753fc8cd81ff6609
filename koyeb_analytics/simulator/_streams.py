"""The simulator's log and metric endpoints, and the instance catalog.

``GET /v1/streams/logs/query`` (a time-window cursor: ``has_more`` always sent,
``next_start``/``next_end``, ``limit`` at most 1000, ``asc``/``desc``),
``GET /v1/streams/logs/tail`` (a websocket: the backlog, then new lines),
``GET /v1/streams/metrics`` (one metric per call, labelled series, string timestamps)
and ``GET /v1/catalog/instances``, in the shapes of koyeb-api-beyond-instances.md §3-5.
Long because the endpoints share their argument checks, and a log page and a metric body
are each built in bulk (labels, times and values rendered once and shared, one join),
which reads best beside the handler it serves.

Where the public material is silent the simulator chooses, and says so: a query's
window is ``[start, end)``; the cursor's next window *includes* the time of the last
line sent, so lines sharing that time come again (clients dedupe, as the console does);
lines older than the organisation's log retention are not served. Build logs
(``type=build``) are each deployment's build and deploy step (``_builds``), selected by
``deployment_id``, ``service_id`` or ``app_id``; they carry no instance id, so a query
by ``instance_ids`` or ``regional_deployment_id`` finds none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from typing import Any

import numpy as np
import pandas as pd
from aiohttp import WSMsgType, web

from ._builds import BuildLines, build_entries, build_truth, select
from ._fleet import US
from ._metrics import METRICS, PER_INSTANCE, MetricSource, catalog_items, grid
from ._story import FAMILIES, STREAMS, Lines, Story, mix

QUERY_PATH = "/v1/streams/logs/query"
TAIL_PATH = "/v1/streams/logs/tail"
METRICS_PATH = "/v1/streams/metrics"
CATALOG_PATH = "/v1/catalog/instances"
MAX_LOG_LIMIT = 1000
_FILTERS = {"app_id": "app", "service_id": "service", "deployment_id": "deployment",
            "regional_deployment_id": "regional_deployment"}
_STEP = re.compile(r"^(\d+)([mh])$")
_quote: Any = json.encoder.encode_basestring  # C, no ASCII-escaping


class _Bad(Exception):
    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


def _error(status: int, field: str, description: str) -> web.Response:
    return web.json_response({"status": status, "code": "invalid_argument",
                              "message": "Invalid argument",
                              "fields": [{"field": field, "description": description}]},
                             status=status)


def _time_ns(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    try:
        ts = pd.Timestamp(raw)
    except (ValueError, TypeError):
        raise _Bad(name, f"not an RFC 3339 date-time: {raw!r}") from None
    if ts is pd.NaT or ts.tzinfo is None:
        raise _Bad(name, "an RFC 3339 date-time needs a time zone")
    return int(ts.tz_convert("UTC").value)


def _rfc3339_ns(t: np.ndarray) -> list[str]:
    text = np.datetime_as_string(t.astype("datetime64[ns]"), unit="ns")
    return [s + "Z" for s in text.tolist()]


class Streams:
    """Logs, metrics and the catalog of one simulator (``sim.streams``).

    Attributes
    ----------
    story
        The episodes and line generator (``story.truth()`` is the ground truth of
        causes; ``story.rate`` the background lines per second of each instance).
    retention_days
        The organisation's log retention: older lines are not served.
    bad_utf8_share
        Share of log lines sent with a byte that is not UTF-8 (a server that passes
        an application's bytes through).
    nan_share
        Share of metric samples sent as ``"NaN"`` (protojson's spelling).
    tail_poll
        Seconds between two looks for new lines on a tail.
    platform_by_instance
        Whether a query by ``instance_ids`` selects the ``koyeb`` lines of those
        instances (True, the default), though the lines carry no instance id, or none
        of them (False). What the API does is not known; the client must cope with both.
    """

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        live = sim.live
        self.story = Story(sim.fleet, sim.fleet.config.seed, rate=0.2,
                           now=live.now_us if live is not None else None)
        self.metrics = MetricSource(self.story)
        self.retention_days = 30.0
        self.bad_utf8_share = 0.0
        self.nan_share = 0.0
        self.tail_poll = 0.5
        self.platform_by_instance = True
        self._labels: dict[Any, Any] = {}
        self._builds: dict[tuple[Any, ...], BuildLines] = {}

    def register(self, app: web.Application) -> None:
        """Add the routes to the simulator's application."""
        app.router.add_get(QUERY_PATH, self.query)
        app.router.add_get(TAIL_PATH, self.tail)
        app.router.add_get(METRICS_PATH, self.metric)
        app.router.add_get(CATALOG_PATH, self.catalog)

    def truth(self) -> pd.DataFrame:
        """The episodes behind the fleet's troubles (see :meth:`Story.truth`)."""
        with self.sim._lock:
            return self.story.truth()

    def build_truth(self) -> pd.DataFrame:
        """Which deployments' build logs show an error or carry an incident's cause
        (see :func:`~koyeb_analytics.simulator._builds.build_truth`)."""
        with self.sim._lock:
            return build_truth(self.sim.changes.listing())

    # ------------------------------------------------------------------ logs
    def _selection(self, q: Any, *, tail: bool = False) -> dict[str, Any]:
        kind = q.get("type", "runtime") or "runtime"
        if kind not in ("runtime", "build"):
            raise _Bad("type", "must be 'runtime' or 'build'")
        fleet = self.sim.fleet
        inst = fleet.inst
        allowed = np.ones(len(inst["id"]), bool)
        named = False
        for param, col in _FILTERS.items():
            value = q.get(param)
            if value:
                allowed &= inst[col] == value
                named = True
        ids = q.getall("instance_ids", []) + q.getall("instance_id", [])
        ids = [i for i in ids if i]
        if ids:
            allowed &= np.isin(inst["id"], ids)
            named = True
        if not named:
            raise _Bad("app_id", "at least one of app_id, service_id, deployment_id, "
                                 "regional_deployment_id or instance_ids must be set")
        regions = [r for r in q.getall("regions", []) if r and r != "none"]
        if regions:
            allowed &= np.isin(inst["region"], regions)
        streams = [s for s in q.getall("streams", []) + q.getall("stream", []) if s]
        bad = [s for s in streams if s not in STREAMS]
        if bad:
            raise _Bad("streams", f"unknown stream {bad[0]!r}; expected stdout, stderr or koyeb")
        wanted = np.array([not streams or s in streams for s in STREAMS])
        if ids and not self.platform_by_instance:
            wanted[STREAMS.index("koyeb")] = False  # its lines name no instance
        text, regex = q.get("text") or None, q.get("regex") or None
        if text is not None and regex is not None:
            raise _Bad("regex", "regex and text are mutually exclusive")
        pattern = None
        if regex is not None:
            try:
                pattern = re.compile(regex)
            except re.error as exc:
                raise _Bad("regex", f"invalid regular expression: {exc}") from None
        limit_s = q.get("limit", "1000" if tail else "100")
        try:
            limit = int(limit_s)
        except ValueError:
            raise _Bad("limit", f"must be an integer, got {limit_s!r}") from None
        if not 1 <= limit <= MAX_LOG_LIMIT:
            raise _Bad("limit", "must be between 1 and 1000 (Maximum of 1000)")
        order = q.get("order", "desc") or "desc"
        if order not in ("asc", "desc"):
            raise _Bad("order", "must be 'asc' or 'desc'")
        return {"build": kind == "build", "allowed": allowed, "streams": wanted,
                "text": text, "pattern": pattern, "limit": limit, "order": order,
                "filters": {p: q.get(p) for p in _FILTERS if q.get(p)},
                "by_instance": bool(ids)}

    def _window(self, q: Any, *, tail: bool = False) -> tuple[int, int]:
        now_ns = self.story.now() * 1000
        end = None if tail else _time_ns(q, "end")
        end = now_ns if end is None else end
        start = _time_ns(q, "start")
        if start is None:
            start = end - (24 * 3600 if tail else 15 * 60) * 10 ** 9
        if not tail and start >= end:
            raise _Bad("start", "start must be before end")
        floor = now_ns - int(self.retention_days * 86400 * 10 ** 9)
        return max(start, floor), min(end, now_ns)

    def _build_lines(self, sel: dict[str, Any], lo: int, hi: int) -> BuildLines:
        """The build lines of ``[lo, hi)`` the query asks for, sorted by time."""
        if sel["by_instance"]:
            return BuildLines.empty()  # build lines belong to no instance
        lines = select(self.sim.changes.listing(), self.sim.fleet.config.seed,
                       sel["filters"], lo, hi, self._builds)
        lines = lines.take(sel["streams"][lines.stream_code])
        if sel["text"] is not None:
            lines = lines.take(np.array([sel["text"] in m for m in lines.msg], bool))
        elif sel["pattern"] is not None:
            lines = lines.take(np.array([sel["pattern"].search(m) is not None
                                         for m in lines.msg], bool))
        return lines

    def _match(self, lines: Lines, sel: dict[str, Any], lo: int, hi: int,
               want: int | None = None, asc: bool = True) -> Lines:
        """The lines of ``[lo, hi)`` that the query selects (with ``want``, only the
        first ``want`` of them in the query's order)."""
        # A bucket's lines are sorted by time: cut to the window before masking.
        first, last = np.searchsorted(lines.t, [lo, hi]).tolist()
        lines = lines.take(slice(first, last))
        keep = sel["allowed"][lines.inst] & sel["streams"][lines.stream()]
        if sel["text"] is not None or sel["pattern"] is not None:
            lines = lines.take(keep)
            texts = lines.texts()
            if sel["text"] is not None:
                hit = [sel["text"] in s for s in texts]
            else:
                hit = [sel["pattern"].search(s) is not None for s in texts]
            keep = np.asarray(hit, bool)
        rows = np.flatnonzero(keep)
        if want is not None:
            rows = rows[:want] if asc else rows[len(rows) - min(want, len(rows)):]
        return lines.take(rows)

    def _collect(self, sel: dict[str, Any], lo: int, hi: int, want: int,
                 asc: bool) -> Any:
        """Up to ``want`` lines of ``[lo, hi)`` in the query's order."""
        story = self.story
        if lo >= hi:
            return Lines.empty()
        if sel["build"]:
            lines = self._build_lines(sel, lo, hi)
            return (lines if asc else lines.take(slice(None, None, -1))).take(slice(0, want))
        koyeb = STREAMS.index("koyeb")
        platform_only = bool(sel["streams"][koyeb]) and int(sel["streams"].sum()) == 1
        L = story.bucket_us * (story.platform_span if platform_only else 1) * 1000
        first, last = lo // L, (hi - 1) // L
        parts: list[Lines] = []
        got = 0
        for b in (range(first, last + 1) if asc else range(last, first - 1, -1)):
            part = self._match(story.bucket(b, platform_only), sel, lo, hi, want - got, asc)
            if not asc:
                part = part.take(slice(None, None, -1))
            parts.append(part)
            got += len(part)
            if got >= want:
                break
        return Lines.concat(parts).take(slice(0, want))

    def _entries(self, lines: Any) -> list[str]:
        """Each line as the JSON of a ``LogEntry`` (labels rendered once per instance)."""
        if not len(lines):
            return []
        fleet = self.sim.fleet
        if isinstance(lines, BuildLines):
            return build_entries(lines, _rfc3339_ns(lines.t), fleet.organization_id)
        inst = fleet.inst
        times = np.datetime_as_string(lines.t.astype("datetime64[ns]"), unit="ns").tolist()
        texts = lines.texts()
        cache = self._labels
        if cache.get("fleet") is not fleet.inst:
            cache.clear()
            cache["fleet"] = fleet.inst
        # A page holds a few hundred (instance, stream) pairs: one head for each, then
        # taken by line.
        keys, where = np.unique(lines.inst * 4 + lines.stream(), return_inverse=True)
        unique_heads = []
        for key in keys.tolist():
            head = cache.get(key)
            if head is None:
                i, stream = divmod(key, 4)
                d = {"type": "runtime", "stream": STREAMS[stream],
                     "organization_id": fleet.organization_id, "app_id": inst["app"][i],
                     "service_id": inst["service"][i]}
                if STREAMS[stream] != "koyeb":  # platform lines carry no instance id
                    d["instance_id"] = inst["id"][i]
                head = cache[key] = 'Z","labels":' + json.dumps(d) + "}"
            unique_heads.append(head)
        heads = [unique_heads[k] for k in where.ravel().tolist()]
        if self.bad_utf8_share:
            for k, (t, i) in enumerate(zip(lines.t.tolist(), lines.inst.tolist(), strict=True)):
                if mix(t, i) / 2.0 ** 64 < self.bad_utf8_share:
                    texts[k] += " \udcff\udcfe"  # two bytes that are not UTF-8, sent raw
        return [f'{{"msg":{m},"created_at":"{t}{h}'
                for m, t, h in zip(map(_quote, texts), times, heads, strict=True)]

    async def query(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/streams/logs/query``."""
        q = request.query
        try:
            with self.sim._lock:
                sel = self._selection(q)
                lo, hi = self._window(q)
                asc = sel["order"] == "asc"
                lines = self._collect(sel, lo, hi, sel["limit"] + 1, asc)
                more = len(lines) > sel["limit"]
                page = lines.take(slice(0, sel["limit"]))
                data = self._entries(page)
        except _Bad as exc:
            return _error(400, exc.field, exc.description)
        pagination: dict[str, Any] = {"has_more": more, "next_start": None, "next_end": None}
        if more:
            edge = int(page.t[-1])
            # The next window includes the last line's time: ties are sent again.
            nxt = (edge, hi) if asc else (lo, edge + 1)
            pagination["next_start"], pagination["next_end"] = _rfc3339_ns(np.array(nxt))
        body = ('{"data":[' + ",".join(data) + '],"pagination":' + json.dumps(pagination)
                + "}").encode("utf-8", "surrogateescape")
        return web.Response(body=body, content_type="application/json")

    async def tail(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/streams/logs/tail`` as a websocket: the backlog, then new lines."""
        token = None
        proto = request.headers.get("Sec-WebSocket-Protocol", "")
        parts = [p.strip() for p in proto.split(",")]
        if len(parts) >= 2 and parts[0] == "Bearer":
            token = parts[1]
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = token or auth[7:]
        if token is None or not secrets.compare_digest(token.encode(),
                                                       self.sim.token.encode()):
            return web.json_response({"status": 401, "code": "authentication_error",
                                      "message": "Request unauthenticated with bearer"},
                                     status=401)
        try:
            with self.sim._lock:
                sel = self._selection(request.query, tail=True)
                lo, hi = self._window(request.query, tail=True)
        except _Bad as exc:
            return _error(400, exc.field, exc.description)
        ws = web.WebSocketResponse(protocols=("Bearer",), autoping=True, heartbeat=None)
        await ws.prepare(request)
        try:
            # The backlog: the last `limit` lines before now, oldest first.
            with self.sim._lock:
                backlog = self._collect(sel, lo, hi, sel["limit"], asc=False)
                entries = self._entries(backlog.take(slice(None, None, -1)))
            for entry in entries:
                await ws.send_bytes(('{"result":' + entry + "}").encode("utf-8",
                                                                       "surrogateescape"))
            cursor = hi
            while not ws.closed:
                with contextlib.suppress(asyncio.TimeoutError):
                    msg = await ws.receive(timeout=self.tail_poll)
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                        break
                with self.sim._lock:
                    now_ns = self.story.now() * 1000
                    fresh = self._collect(sel, cursor, now_ns, 10 ** 6, asc=True)
                    entries = self._entries(fresh)
                cursor = max(cursor, now_ns)
                for entry in entries:
                    await ws.send_bytes(('{"result":' + entry + "}").encode(
                        "utf-8", "surrogateescape"))
        finally:
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
        return ws

    # ------------------------------------------------------------------ metrics
    async def metric(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/streams/metrics``: one metric, labelled series, string timestamps."""
        q = request.query
        try:
            with self.sim._lock:
                body = self._metric_body(q)
        except _Bad as exc:
            return _error(400, exc.field, exc.description)
        return web.Response(body=body.encode(), content_type="application/json")

    def _metric_body(self, q: Any) -> str:
        name = q.get("name") or "UNKNOWN"
        if name not in METRICS:
            raise _Bad("name", f"unknown metric {name!r}")
        step_s = q.get("step") or "5m"
        m = _STEP.match(step_s)
        if not m or int(m.group(1)) == 0:
            raise _Bad("step", "must be a valid duration in hours (h) or minutes (m)")
        step = int(m.group(1)) * (60 if m.group(2) == "m" else 3600) * US
        story = self.story
        story.refresh()
        now = story.now()
        end_ns = _time_ns(q, "end")
        end = now if end_ns is None else end_ns // 1000
        start_ns = _time_ns(q, "start")
        start = end - 3600 * US if start_ns is None else start_ns // 1000
        if start >= end:
            raise _Bad("start", "start must be before end")
        if (end - start) // step > 20_000:
            raise _Bad("step", "too many points: use a larger step or a shorter range")
        fleet = self.sim.fleet
        index = {iid: i for i, iid in enumerate(fleet.inst["id"])}
        iid, sid = q.get("instance_id"), q.get("service_id")
        if iid:
            if iid not in index:
                raise _Bad("instance_id", "instance not found")
            targets = [index[iid]]
            svc = int(story.inst_service[index[iid]])
        elif sid:
            found = [k for k, s in enumerate(fleet.services) if s.service_id == sid]
            if not found:
                raise _Bad("service_id", "service not found")
            svc = found[0]
            targets = np.flatnonzero(story.inst_service == svc).tolist()
        else:
            raise _Bad("service_id", "service_id or instance_id must be set")
        t = grid(start, min(end, now), step)
        stamps = np.datetime_as_string(t.astype("datetime64[us]"), unit="s")
        # Each series as its labels, the grid steps it has a value at, and those values.
        series: list[tuple[dict[str, str], np.ndarray, np.ndarray]] = []
        if name in PER_INSTANCE:
            inst, ks, sampled = self.metrics.instance_samples(name, targets, t)
            cuts = (np.flatnonzero(inst[1:] != inst[:-1]) + 1).tolist()
            for a, b in zip([0, *cuts], [*cuts, len(inst)], strict=True):
                if a < b:
                    series.append(({"instance_id": fleet.inst["id"][int(inst[a])]},
                                   ks[a:b], sampled[a:b]))
        else:
            for labels, values in self.metrics.service_series(name, svc, t, step):
                ok = np.flatnonzero(~np.isnan(values))
                series.append((labels, ok, values[ok]))
            sampled = np.concatenate([v for _, _, v in series] + [np.empty(0)])
        # Hundreds of thousands of samples: each timestamp's text is made once and shared
        # by every series, each distinct value's once (by its bits, so that -0.0 keeps
        # its sign), and the body is one join of its pieces laid side by side: per series
        # its opening, then per sample its timestamp, its value and what closes it.
        heads = np.array([f'{{"timestamp":"{x}Z","value":' for x in stamps.tolist()],
                         dtype=object)
        if name == "MEM_RSS" or name.startswith("PUBLIC_DATA"):
            texts = np.array(list(map(str, sampled.astype(np.int64).tolist())), dtype=object)
        else:
            bits, where = np.unique(sampled.view(np.int64), return_inverse=True)
            texts = np.array(list(map(str, bits.view(np.float64).tolist())),
                             dtype=object)[where.ravel()]
        sizes = np.array([len(ok) for _, ok, _ in series], np.int64)
        steps = np.concatenate([ok for _, ok, _ in series] + [np.empty(0, np.int64)])
        if self.nan_share:
            texts[_unit_of(t[steps]) < self.nan_share] = '"NaN"'
        opening = np.cumsum(3 * sizes + 1) - (3 * sizes + 1)
        pieces = np.empty(int(opening[-1] + 3 * sizes[-1] + 1) if len(sizes) else 0, object)
        pieces[opening] = [("," if k else "") + '{"labels":' + json.dumps(labels)
                           + ',"samples":[' + ("" if size else "]}")
                           for k, ((labels, _, _), size) in enumerate(
                               zip(series, sizes.tolist(), strict=True))]
        at = np.repeat(opening + 1, sizes) + 3 * _positions(sizes)
        pieces[at] = heads[steps]
        pieces[at + 1] = texts
        pieces[at + 2] = "},"
        pieces[(opening + 3 * sizes)[sizes > 0]] = "}]}"
        return '{"metrics":[' + "".join(pieces.tolist()) + "]}"

    async def catalog(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/catalog/instances``: every instance type with its memory and vCPU."""
        items = catalog_items()
        q = request.query
        try:
            limit = int(q.get("limit", "100"))
            offset = int(q.get("offset", "0"))
        except ValueError:
            return _error(400, "limit", "must be an integer")
        page = items[offset: offset + limit]
        return web.json_response({"instances": page, "limit": limit, "offset": offset,
                                  "count": len(items)})


def _positions(count: np.ndarray) -> np.ndarray:
    """0 .. count[0] - 1, 0 .. count[1] - 1, ...: each item's place within its run."""
    out: np.ndarray = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return out


def _unit_of(t: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = t.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(11)).astype(np.float64) / 2.0 ** 53


__all__ = ["CATALOG_PATH", "FAMILIES", "METRICS", "METRICS_PATH", "QUERY_PATH", "TAIL_PATH",
           "Streams"]
