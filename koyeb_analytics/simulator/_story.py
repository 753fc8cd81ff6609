"""What the simulated system says: the causes behind the fleet's troubles, and its log lines.

The fleet (``_fleet``) says *that* instances flapped, crashed or failed to start; this
module says *why*, from the same seed, without changing a single transition: each
disruption becomes an *episode* with a cause (an application error, a failing
dependency, an overload, an out-of-memory kill) and, for the first two, the error line
the application writes. Log lines are then a function of time: the lines of a time
bucket are generated on demand, vectorised, from the segments alive in it and the
episodes around it, with a generator seeded by the bucket, so any query sees the same
lines and no simulator holds its whole history of lines.

The texts are **invented** (koyeb-api-beyond-instances.md §3 gives only the shape and a
few platform messages): ordinary request and worker lines on ``stdout``, warnings and
errors on ``stderr``, the lifecycle's platform messages on ``koyeb`` (the status texts
of ``_vocabulary``, a health-check failure every 10 s while unhealthy, an invented
out-of-memory notice). Their variable parts are numbers, ids, hex, addresses and times,
so that a template per family is the right answer for a pattern miner.

Long because the episodes, the line families and the vectorised generation of each kind
of line (background, boots, platform messages, health checks, error bursts and point
errors) describe one story and read best side by side.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._fleet import MINUTE, US, Fleet, S, us_to_timestamps
from ._vocabulary import STATUS_MESSAGES, STATUSES, real_message, unknown_message

SECOND = US
STREAMS: tuple[str, ...] = ("stdout", "stderr", "koyeb")
CAUSES: tuple[str, ...] = ("app_error", "dependency", "overload", "oom")
APP_CAUSES = frozenset({"app_error", "dependency"})
"""Causes whose incidents the application explains with an error line of its own."""
KINDS: tuple[str, ...] = ("flap", "crash", "failed_start")

_M64 = (1 << 64) - 1


def mix(*values: int) -> int:
    """A 64-bit hash of integers (splitmix64 steps): stable across runs and platforms."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & _M64)) & _M64
        h = (h + 0x9E3779B97F4A7C15) & _M64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _M64
        h ^= h >> 31
    return h


def unit(*values: int) -> float:
    """A number in [0, 1) drawn from ``values`` (see :func:`mix`)."""
    return mix(*values) / 2.0 ** 64


def _ip(a: int) -> str:
    return f"10.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"


def _uuid(a: int, b: int) -> str:
    h = f"{a & 0xFFFFFFFF:08x}{b & 0xFFFFFFFF:08x}{(a * 31 + b) & 0xFFFFFFFFFFFFFFFF:016x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


_TIMES: dict[str, list[str]] = {}


def _table(fmt: str) -> list[str]:
    """65536 times (about 60 days, 79 s apart) in ``fmt``: formatted once, indexed after."""
    table = _TIMES.get(fmt)
    if table is None:
        table = _TIMES[fmt] = [time.strftime(fmt, time.gmtime(1_790_000_000 + 79 * k))
                               for k in range(65536)]
    return table


def _clf(a: int) -> str:
    return _table("%d/%b/%Y:%H:%M:%S +0000")[a & 0xFFFF]


def _iso(a: int) -> str:
    return _table("%Y-%m-%dT%H:%M:%SZ")[a & 0xFFFF]


@dataclass(frozen=True)
class Family:
    """One kind of log line: its stream, its text from three integers, its signature."""

    stream: int
    render: Callable[[int, int, int], str]
    signature: str = ""
    """A constant part that names the family (what a correct template keeps)."""


# Background: what a healthy web service prints (weights in _BACKGROUND_P).
FAMILIES: list[Family] = [
    Family(0, lambda a, b, c: f'{_ip(a)} - - [{_clf(b)}] "GET /api/v1/items/{c % 100000} '
           f'HTTP/1.1" 200 {b % 20000 + 120} {c % 900 + 3}ms', '"GET /api/v1/items/'),
    Family(0, lambda a, b, c: f"INFO request_id={_uuid(a, b)} method=POST path=/api/v1/orders "
           f"status=201 duration={c % 700 + 12}ms", "path=/api/v1/orders status=201"),
    Family(0, lambda a, b, c: f"INFO worker: processed job {a & 0xFFFFFFFF:08x} in "
           f"{b % 5000 + 5}ms ({c % 500} items)", "worker: processed job"),
    Family(0, lambda a, b, c: f"DEBUG cache hit ratio {(a % 1000) / 1000:.3f} over "
           f"{b % 90000 + 100} lookups", "cache hit ratio"),
    Family(0, lambda a, b, c: f"INFO {_iso(a)} scheduler: next run at {_iso(a + 4)}",
           "scheduler: next run at"),
    Family(0, lambda a, b, c: f"INFO GET /healthz 200 {a % 40 + 1}ms", "GET /healthz 200"),
    Family(1, lambda a, b, c: f"WARN slow query took {a % 4000 + 1000}ms: SELECT * FROM "
           f"orders WHERE id = {b % 1000000}", "slow query took"),
    Family(1, lambda a, b, c: f"WARN retrying connection to cache {_ip(a)}:6379 "
           f"(attempt {b % 5 + 1})", "retrying connection to cache"),
    # boot
    Family(0, lambda a, b, c: f"Starting server (build {a & 0xFFFFFFF:07x}, pid {b % 30000 + 7})",
           "Starting server (build"),
    Family(0, lambda a, b, c: "Listening on http://0.0.0.0:8000", "Listening on http://0.0.0.0"),
    # application errors (the causes), each with its stack frames
    Family(1, lambda a, b, c: f"ERROR request {_uuid(a, b)} failed: KeyError: 'customer_id'",
           "KeyError: 'customer_id'"),
    Family(1, lambda a, b, c: f"ERROR TypeError: Cannot read properties of undefined (reading "
           f"'total') in cart {a & 0xFFFFFFFF:08x}",
           "TypeError: Cannot read properties of undefined (reading 'total')"),
    Family(1, lambda a, b, c: f"panic: runtime error: index out of range [{a % 64 + 4}] with "
           f"length {a % 4}", "panic: runtime error: index out of range"),
    Family(1, lambda a, b, c: f"ERROR Unhandled exception: java.lang.NullPointerException: "
           f"Cannot invoke \"String.length()\" because \"name\" is null (request {b % 99999})",
           "java.lang.NullPointerException"),
    Family(1, lambda a, b, c: f"    at handler (/app/src/routes/orders.js:{a % 400 + 1}:"
           f"{b % 60 + 1})", "at handler (/app/src/routes/orders.js"),
    Family(1, lambda a, b, c: f"    at process.processTicksAndRejections (node:internal/process/"
           f"task_queues:{a % 100 + 1}:{b % 9 + 1})", "at process.processTicksAndRejections"),
    # failing dependencies
    Family(1, lambda a, b, c: f"ERROR could not connect to database at {_ip(a)}:5432: "
           "connection refused", "could not connect to database"),
    Family(1, lambda a, b, c: f"ERROR upstream payments-api returned 503 after {b % 5 + 1} "
           f"retries ({c % 9000 + 1000}ms)", "upstream payments-api returned 503"),
    Family(1, lambda a, b, c: f"Error: connect ECONNREFUSED {_ip(a)}:6379", "connect ECONNREFUSED"),
    # overload
    Family(1, lambda a, b, c: f"WARN request {a & 0xFFFFFFFF:08x} GET /api/v1/search timed out "
           f"after {b % 25000 + 5000}ms", "GET /api/v1/search timed out"),
    # platform: out of memory (invented text)
    Family(2, lambda a, b, c: "Instance ran out of memory: the process was killed (OOM) after "
           "reaching its memory limit.", "ran out of memory"),
]
_KOYEB_BASE = len(FAMILIES)


def _constant(text: str) -> Callable[[int, int, int], str]:
    return lambda a, b, c: text


def _status_line(status: str) -> Callable[[int, int, int], str]:
    """The platform's line for a change to ``status``: the text its event carries (``a``
    the event's row, ``b`` the previous status code + 1, ``c`` flags: 1 real message
    texts, 2 a message of no known family), as koyeb-api-facts.md §15 saw them."""
    def render(a: int, b: int, c: int) -> str:
        if c & 2:
            return unknown_message(a)
        if c & 1:
            return real_message(status, a, STATUSES[b - 1] if 0 < b <= len(STATUSES) else None)
        return STATUS_MESSAGES[status]
    return render


for _status in STATUSES:
    FAMILIES.append(Family(2, _status_line(_status), STATUS_MESSAGES[_status]))

BACKGROUND = np.array([0, 1, 2, 3, 4, 5, 6, 7])
_BACKGROUND_P = np.array([0.35, 0.15, 0.15, 0.08, 0.04, 0.17, 0.04, 0.02])
BOOT = (8, 9)
APP_ERRORS = (10, 11, 12, 13)
FRAMES = (14, 15)
DEPENDENCY_ERRORS = (16, 17, 18)
OVERLOAD = 19
OOM = 20
HEALTH_CHECK = len(FAMILIES)
FAMILIES.append(Family(2, _constant(STATUS_MESSAGES["UNHEALTHY"]), "health check failed"))


@dataclass
class Lines:
    """Log lines as columns (times in ns since the epoch, sorted)."""

    t: np.ndarray
    inst: np.ndarray
    family: np.ndarray
    params: np.ndarray

    @staticmethod
    def empty() -> Lines:
        return Lines(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                     np.empty((0, 3), np.int64))

    def __len__(self) -> int:
        return len(self.t)

    def take(self, idx: Any) -> Lines:
        return Lines(self.t[idx], self.inst[idx], self.family[idx], self.params[idx])

    @staticmethod
    def concat(parts: list[Lines]) -> Lines:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Lines.empty()
        return Lines(np.concatenate([p.t for p in parts]), np.concatenate([p.inst for p in parts]),
                     np.concatenate([p.family for p in parts]),
                     np.concatenate([p.params for p in parts]))

    def stream(self) -> np.ndarray:
        out: np.ndarray = STREAM_OF[self.family]
        return out

    def text(self, i: int) -> str:
        a, b, c = (int(x) for x in self.params[i])
        return FAMILIES[int(self.family[i])].render(a, b, c)

    def texts(self) -> list[str]:
        """Every line's message, in order (each family's lines rendered together)."""
        n = len(self)
        if not n:
            return []
        order = np.argsort(self.family, kind="stable")
        fams = self.family[order]
        cuts = np.flatnonzero(fams[1:] != fams[:-1]) + 1
        out: list[str] = [""] * n
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), n], strict=True):
            rows = order[lo:hi]
            family = FAMILIES[int(fams[lo])]
            batch = _BATCHES.get(family.signature)
            p = self.params[rows]
            if batch is not None:
                texts = batch(p[:, 0], p[:, 1], p[:, 2])
            else:
                texts = [family.render(a, b, c) for a, b, c in p.tolist()]
            for k, text in zip(rows.tolist(), texts, strict=True):
                out[k] = text
        return out


STREAM_OF = np.array([f.stream for f in FAMILIES], np.int8)

# ---------------------------------------------------------------- rendering many at once
# A page of a thousand lines rendered one lambda at a time is most of what the simulator
# spends on a log query. These render a family's lines together: the variable parts
# computed on arrays, then one format per line; each gives exactly what ``render``
# gives line by line (a test compares them on every family).

Batch = Callable[[np.ndarray, np.ndarray, np.ndarray], list[str]]
_HEX = np.array([ord(c) for c in "0123456789abcdef"], np.uint32)
_SHIFT32 = np.arange(28, -1, -4, dtype=np.uint64)
_SHIFT64 = np.arange(60, -1, -4, dtype=np.uint64)
# Where each character of a uuid comes from: a hex digit of the 32 (by index), or a
# constant character (as a string); digits 12 and 16 are replaced, as _uuid does.
_UUID_LAYOUT: list[int | str] = [*range(8), "-", *range(8, 12), "-", "4", *range(13, 16),
                                 "-", "a", *range(17, 20), "-", *range(20, 32)]


def _ips(a: np.ndarray) -> list[str]:
    return [f"10.{x}.{y}.{z}" for x, y, z in zip(((a >> 16) & 255).tolist(),
                                                ((a >> 8) & 255).tolist(),
                                                (a & 255).tolist(), strict=True)]


def _uuids(a: np.ndarray, b: np.ndarray) -> list[str]:
    """:func:`_uuid` of each pair: the hex digits as code points, read as strings."""
    ua, ub = a.astype(np.uint64), b.astype(np.uint64)
    with np.errstate(over="ignore"):
        c = ua * np.uint64(31) + ub  # modulo 2**64, as _uuid's mask
    low = np.uint64(0xFFFFFFFF)
    digits = np.concatenate([((ua & low)[:, None] >> _SHIFT32) & np.uint64(15),
                             ((ub & low)[:, None] >> _SHIFT32) & np.uint64(15),
                             (c[:, None] >> _SHIFT64) & np.uint64(15)], axis=1)
    chars = np.empty((len(a), len(_UUID_LAYOUT)), np.uint32)
    for k, src in enumerate(_UUID_LAYOUT):
        chars[:, k] = ord(src) if isinstance(src, str) else _HEX[digits[:, src]]
    out: list[str] = chars.view(f"U{len(_UUID_LAYOUT)}").ravel().tolist()
    return out


def _at(table: list[str], a: np.ndarray) -> list[str]:
    return [table[k] for k in (a & 0xFFFF).tolist()]


def _clfs(a: np.ndarray) -> list[str]:
    return _at(_table("%d/%b/%Y:%H:%M:%S +0000"), a)


def _isos(a: np.ndarray) -> list[str]:
    return _at(_table("%Y-%m-%dT%H:%M:%SZ"), a)


def _z(*columns: Any) -> Any:
    return zip(*(c.tolist() if isinstance(c, np.ndarray) else c for c in columns), strict=True)


_BATCHES: dict[str, Batch] = {
    '"GET /api/v1/items/': lambda a, b, c: [
        f'{ip} - - [{t}] "GET /api/v1/items/{x} HTTP/1.1" 200 {y} {z}ms'
        for ip, t, x, y, z in _z(_ips(a), _clfs(b), c % 100000, b % 20000 + 120, c % 900 + 3)],
    "path=/api/v1/orders status=201": lambda a, b, c: [
        f"INFO request_id={u} method=POST path=/api/v1/orders status=201 duration={x}ms"
        for u, x in _z(_uuids(a, b), c % 700 + 12)],
    "worker: processed job": lambda a, b, c: [
        f"INFO worker: processed job {x:08x} in {y}ms ({z} items)"
        for x, y, z in _z(a & 0xFFFFFFFF, b % 5000 + 5, c % 500)],
    "cache hit ratio": lambda a, b, c: [
        f"DEBUG cache hit ratio {x / 1000:.3f} over {y} lookups"
        for x, y in _z(a % 1000, b % 90000 + 100)],
    "scheduler: next run at": lambda a, b, c: [
        f"INFO {x} scheduler: next run at {y}" for x, y in _z(_isos(a), _isos(a + 4))],
    "GET /healthz 200": lambda a, b, c: [f"INFO GET /healthz 200 {x}ms" for x in
                                         (a % 40 + 1).tolist()],
    "slow query took": lambda a, b, c: [
        f"WARN slow query took {x}ms: SELECT * FROM orders WHERE id = {y}"
        for x, y in _z(a % 4000 + 1000, b % 1000000)],
    "retrying connection to cache": lambda a, b, c: [
        f"WARN retrying connection to cache {ip}:6379 (attempt {y})"
        for ip, y in _z(_ips(a), b % 5 + 1)],
    "Starting server (build": lambda a, b, c: [
        f"Starting server (build {x:07x}, pid {y})" for x, y in _z(a & 0xFFFFFFF, b % 30000 + 7)],
    "KeyError: 'customer_id'": lambda a, b, c: [
        f"ERROR request {u} failed: KeyError: 'customer_id'" for u in _uuids(a, b)],
    "TypeError: Cannot read properties of undefined (reading 'total')": lambda a, b, c: [
        f"ERROR TypeError: Cannot read properties of undefined (reading 'total') in cart "
        f"{x:08x}" for x in (a & 0xFFFFFFFF).tolist()],
    "panic: runtime error: index out of range": lambda a, b, c: [
        f"panic: runtime error: index out of range [{x}] with length {y}"
        for x, y in _z(a % 64 + 4, a % 4)],
    "java.lang.NullPointerException": lambda a, b, c: [
        f"ERROR Unhandled exception: java.lang.NullPointerException: Cannot invoke "
        f"\"String.length()\" because \"name\" is null (request {x})"
        for x in (b % 99999).tolist()],
    "at handler (/app/src/routes/orders.js": lambda a, b, c: [
        f"    at handler (/app/src/routes/orders.js:{x}:{y})"
        for x, y in _z(a % 400 + 1, b % 60 + 1)],
    "at process.processTicksAndRejections": lambda a, b, c: [
        f"    at process.processTicksAndRejections (node:internal/process/task_queues:{x}:{y})"
        for x, y in _z(a % 100 + 1, b % 9 + 1)],
    "could not connect to database": lambda a, b, c: [
        f"ERROR could not connect to database at {ip}:5432: connection refused"
        for ip in _ips(a)],
    "upstream payments-api returned 503": lambda a, b, c: [
        f"ERROR upstream payments-api returned 503 after {x} retries ({y}ms)"
        for x, y in _z(b % 5 + 1, c % 9000 + 1000)],
    "connect ECONNREFUSED": lambda a, b, c: [f"Error: connect ECONNREFUSED {ip}:6379"
                                             for ip in _ips(a)],
    "GET /api/v1/search timed out": lambda a, b, c: [
        f"WARN request {x:08x} GET /api/v1/search timed out after {y}ms"
        for x, y in _z(a & 0xFFFFFFFF, b % 25000 + 5000)],
}
"""Each family's lines rendered at once, by signature; the others (constant texts and any
family without one) are rendered line by line."""


class Story:
    """Episodes (causes) and log lines of one fleet, derived from its seed.

    Parameters
    ----------
    fleet
        The simulator's fleet.
    seed
        The simulator's seed (the causes and the lines are drawn from it).
    rate
        Background lines per second of each running instance.
    now
        A callable giving the present in microseconds (the wall clock for a live fleet).
    """

    def __init__(self, fleet: Fleet, seed: int, rate: float = 0.2,
                 now: Callable[[], int] | None = None) -> None:
        self.fleet = fleet
        self.seed = seed
        self.rate = rate
        self._now = now or (lambda: fleet.now_us)
        self._version: tuple[int, int] | None = None
        self._bucket_us = 0
        self._cache: OrderedDict[tuple[int, bool], Lines] = OrderedDict()
        self.cache_size = 48
        self.platform_span = 64
        """How many buckets one bucket of platform lines alone spans (they are few): at
        least 64, and six hours (set with the bucket's length)."""

    # ------------------------------------------------------------------ episodes
    def now(self) -> int:
        """The present, in microseconds."""
        return int(self._now())

    def refresh(self) -> None:
        """Derive the segments' columns and the episodes again if the fleet changed."""
        fl = self.fleet
        seg = fl.seg
        version = (len(seg["start"]), fl.now_us)
        if version == self._version:
            return
        self._version = version
        service_index = {s.service_id: k for k, s in enumerate(fl.services)}
        self.inst_service = np.array([service_index[s] for s in fl.inst["service"]], np.int64)
        n = len(seg["start"])
        inst = seg["instance"].astype(np.int64)
        status = seg["status"].astype(np.int64)
        start = seg["start"].astype(np.int64)
        end = seg["end"].astype(np.int64)
        same_prev = np.zeros(n, bool)
        same_prev[1:] = inst[1:] == inst[:-1]
        prev = np.where(same_prev, np.roll(status, 1), -1)
        same_next = np.zeros(n, bool)
        same_next[:-1] = inst[:-1] == inst[1:]
        nxt = np.where(same_next, np.roll(status, -1), -1)
        self.seg_inst, self.seg_status, self.seg_start, self.seg_end = inst, status, start, end
        # what each change's platform line says: its event's text (see _status_line)
        vocab = fl.vocabulary
        event = seg["event"].astype(np.int64)
        flags = np.full(n, 1 if vocab.real_messages else 0, np.int64)
        if vocab.real_messages:
            flags |= np.where(fl.ev["unknown"][event], 2, 0)
        self.seg_line = np.stack([event, prev + 1, flags], axis=1)
        # Segments by start, and the UNHEALTHY ones (closed by start, and the open ones):
        # a bucket's platform lines are found by binary search, not a scan of the fleet.
        self._by_start = np.argsort(start, kind="stable")
        self._sorted_start = start[self._by_start]
        unhealthy = np.flatnonzero(status == S["UNHEALTHY"])
        closed = unhealthy[end[unhealthy] >= 0]
        self._unhealthy = closed[np.argsort(start[closed], kind="stable")]
        self._unhealthy_start = start[self._unhealthy]
        self._unhealthy_longest = int((end[closed] - start[closed]).max()) if len(closed) else 0
        self._unhealthy_open = unhealthy[end[unhealthy] < 0]
        self.seg_prev = prev
        self._episodes(prev, nxt)
        if not self._bucket_us:
            self._bucket_us = self._choose_bucket()
            self.platform_span = max(64, -(-6 * 3600 * US // self._bucket_us))

    def _episodes(self, prev: np.ndarray, nxt: np.ndarray) -> None:
        fl, seed = self.fleet, self.seed
        status, start, end, inst = self.seg_status, self.seg_start, self.seg_end, self.seg_inst
        now = self.now()
        unhealthy = status == S["UNHEALTHY"]
        crash = (status == S["ERROR"]) & (prev == S["HEALTHY"])
        failed = (status == S["ERROR"]) & (prev == S["STARTING"])
        rows = np.flatnonzero(unhealthy | crash | failed)
        out: dict[str, list[Any]] = {k: [] for k in (
            "inst", "kind", "cause", "family", "start", "end", "crash", "outage")}
        outages = [[(oa, ob) for oa, ob in s.outages] for s in fl.services]
        for k in rows.tolist():
            i = int(inst[k])
            svc = int(self.inst_service[i])
            s = int(start[k])
            if unhealthy[k]:
                kind, a, b = 0, s, int(end[k]) if end[k] >= 0 else now
                crashed = int(nxt[k]) == S["ERROR"]
            elif crash[k]:
                kind, a, b, crashed = 1, s, s, True
            else:
                kind, a, b, crashed = 2, int(start[k - 1]), s, True
            hit = next((j for j, (oa, ob) in enumerate(outages[svc])
                        if oa - MINUTE <= s < ob + 10 * MINUTE), None)
            if hit is not None:
                u = unit(seed, svc, outages[svc][hit][0], 1)
                cause = 0 if u < 0.5 else 1
                key = (seed, svc, outages[svc][hit][0], 2)
            else:
                u = unit(seed, i, s, 3)
                if kind == 0:
                    cause = 0 if u < 0.35 else 1 if u < 0.65 else 2
                elif kind == 1:
                    cause = 0 if u < 0.6 else 3
                else:
                    cause = 0
                key = (seed, i, s, 4)
            pool = APP_ERRORS if cause == 0 else DEPENDENCY_ERRORS if cause == 1 else (
                OVERLOAD,) if cause == 2 else (OOM,)
            for col, value in (("inst", i), ("kind", kind), ("cause", cause),
                               ("family", pool[mix(*key) % len(pool)]), ("start", a),
                               ("end", b), ("crash", crashed), ("outage", hit is not None)):
                out[col].append(value)
        self.ep = {k: np.asarray(v, dtype=bool if k in ("crash", "outage") else np.int64)
                   for k, v in out.items()}

    def truth(self) -> pd.DataFrame:
        """Return the episodes: who, when, what kind, which cause, which error line.

        Columns ``service_id, instance_id, kind`` (``flap``, ``crash``,
        ``failed_start``), ``cause`` (``app_error``, ``dependency``, ``overload``,
        ``oom``), ``start, end, crashed, outage`` and ``error_line``: the constant part
        of the line the application writes for it (empty for overload and oom).
        """
        self.refresh()
        ep, fl = self.ep, self.fleet
        return pd.DataFrame({
            "service_id": pd.Series(fl.inst["service"][ep["inst"]], dtype="str"),
            "instance_id": pd.Series(fl.inst["id"][ep["inst"]], dtype="str"),
            "kind": pd.Series([KINDS[k] for k in ep["kind"]], dtype="str"),
            "cause": pd.Series([CAUSES[c] for c in ep["cause"]], dtype="str"),
            "start": us_to_timestamps(ep["start"]),
            "end": us_to_timestamps(ep["end"]),
            "crashed": ep["crash"],
            "outage": ep["outage"],
            "error_line": pd.Series([FAMILIES[f].signature if c < 2 else ""
                                     for f, c in zip(ep["family"], ep["cause"], strict=True)],
                                    dtype="str"),
        })

    # ------------------------------------------------------------------ buckets
    def _choose_bucket(self) -> int:
        """A bucket length that holds a few thousand lines (fixed once chosen)."""
        running = np.isin(self.seg_status, (S["HEALTHY"], S["UNHEALTHY"]))
        end = np.where(self.seg_end >= 0, self.seg_end, self.now())
        busy = float((end - self.seg_start)[running].sum()) / US
        span = max(float(self.now() - self.fleet.start_us) / US, 1.0)
        per_second = max(self.rate * busy / span, 1e-3)
        seconds = min(max(4000 / per_second, 1.0), 6 * 3600.0)
        return int(seconds) * US

    @property
    def bucket_us(self) -> int:
        """The length of one generation bucket, in microseconds."""
        self.refresh()
        return self._bucket_us

    def bucket(self, b: int, platform_only: bool = False) -> Lines:
        """The lines of bucket ``b`` (``[b, b + 1) * bucket_us``), sorted; cached when whole.

        With ``platform_only``, ``b`` counts buckets :attr:`platform_span` times as long,
        and only their ``koyeb`` lines are generated: exactly those of the whole buckets
        (a query of platform lines over days)."""
        self.refresh()
        key = (b, platform_only)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        lines, whole = self._generate(b, platform_only)
        if whole:
            self._cache[key] = lines
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return lines

    def _generate(self, b: int, platform_only: bool = False) -> tuple[Lines, bool]:
        L = self._bucket_us * (self.platform_span if platform_only else 1)
        b0, b1 = b * L, (b + 1) * L
        now = self.now()
        hi = min(b1, now)
        if hi <= b0:
            return Lines.empty(), False
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0x10C5, b])
        start, status, inst = self.seg_start, self.seg_status, self.seg_inst
        end = np.where(self.seg_end >= 0, self.seg_end, now)
        if platform_only:  # the platform's messages and its out-of-memory notices
            parts = [self._platform(b0, hi, start, end, status, inst),
                     self._points(b0, hi, causes=(CAUSES.index("oom"),))]
        else:
            parts = [self._background(rng, b0, hi, start, end, status, inst),
                     self._platform(b0, hi, start, end, status, inst),
                     self._episode_lines(rng, b0, hi)]
        lines = Lines.concat(parts)
        keep = (lines.t >= b0 * 1000) & (lines.t < hi * 1000)
        if platform_only:  # the boot lines generated beside the platform's are stdout
            keep &= lines.stream() == STREAMS.index("koyeb")
        lines = lines.take(keep)
        order = np.lexsort((lines.params[:, 0], lines.family, lines.inst, lines.t))
        return lines.take(order), b1 <= now

    def _background(self, rng: np.random.Generator, b0: int, hi: int, start: np.ndarray,
                    end: np.ndarray, status: np.ndarray, inst: np.ndarray) -> Lines:
        running = ((status == S["HEALTHY"]) | (status == S["UNHEALTHY"])) & (start < hi) \
            & (end > b0)
        sel = np.flatnonzero(running)
        lo = np.maximum(start[sel], b0)
        span = np.minimum(end[sel], hi) - lo
        counts = rng.poisson(self.rate * span / US)
        total = int(counts.sum())
        lo_r = np.repeat(lo, counts)
        t = (lo_r * 1000 + (rng.random(total) * np.repeat(span, counts) * 1000).astype(np.int64))
        family = BACKGROUND[rng.choice(len(BACKGROUND), size=total, p=_BACKGROUND_P)]
        params = rng.integers(0, 2 ** 40, size=(total, 3), dtype=np.int64)
        return Lines(t, np.repeat(inst[sel], counts), family, params)

    def _platform(self, b0: int, hi: int, start: np.ndarray, end: np.ndarray,
                  status: np.ndarray, inst: np.ndarray) -> Lines:
        parts = []
        # One platform message per status change, and the application's boot lines.
        first, last = np.searchsorted(self._sorted_start, [b0 - SECOND, hi]).tolist()
        sel = np.sort(self._by_start[first:last])
        if len(sel):
            t = start[sel] * 1000
            parts.append(Lines(t, inst[sel], _KOYEB_BASE + status[sel], self.seg_line[sel]))
            boot = sel[status[sel] == S["STARTING"]]
            for k, family in enumerate(BOOT):
                p = np.stack([boot * 7919 + start[boot], start[boot] // 13, boot], axis=1)
                parts.append(Lines(start[boot] * 1000 + (150 + 250 * k) * 1_000_000,
                                   inst[boot], np.full(len(boot), family), p))
        # A failed health check every 10 s while unhealthy.
        step = 10 * SECOND
        first, last = np.searchsorted(self._unhealthy_start,
                                      [b0 - self._unhealthy_longest, hi]).tolist()
        near = np.concatenate([self._unhealthy[first:last], self._unhealthy_open])
        sel = np.sort(near[(start[near] < hi) & (end[near] > b0)])
        if len(sel):
            k_lo = np.maximum(1, -((start[sel] - b0) // step))
            k_hi = -((start[sel] - np.minimum(end[sel], hi)) // step)
            n = np.maximum(k_hi - k_lo, 0)
            owner = np.repeat(sel, n)
            k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + np.repeat(k_lo, n)
            t = (start[owner] + k * step) * 1000
            parts.append(Lines(t, inst[owner], np.full(len(t), HEALTH_CHECK),
                               np.stack([owner, k, owner], axis=1)))
        return Lines.concat(parts)

    def _episode_lines(self, rng: np.random.Generator, b0: int, hi: int) -> Lines:
        ep = self.ep
        if not len(ep["inst"]):
            return Lines.empty()
        parts = []
        lead = np.where(ep["cause"] == 2, 300 * SECOND, 30 * SECOND)
        rate = np.select([ep["cause"] == 0, ep["cause"] == 1, ep["cause"] == 2], [0.5, 0.3, 1.0],
                         0.0)
        # Bursts: errors (or time-outs) from shortly before a flap until its end.
        burst = (ep["kind"] == 0) & (rate > 0) & (ep["start"] - lead < hi) & (ep["end"] > b0)
        for j in np.flatnonzero(burst).tolist():
            lo = max(int(ep["start"][j] - lead[j]), b0)
            up = min(int(ep["end"][j]), hi)
            n = int(rng.poisson(rate[j] * (up - lo) / US))
            t = lo * 1000 + (rng.random(n) * (up - lo) * 1000).astype(np.int64)
            parts.append(self._error_lines(j, t, rng.integers(0, 2 ** 40, (n, 3))))
        parts.append(self._points(b0, hi))
        return Lines.concat(parts)

    def _points(self, b0: int, hi: int, causes: tuple[int, ...] | None = None) -> Lines:
        """The error just before a crash or a failed start (no random draw: a bucket's
        platform lines alone are those of the whole bucket)."""
        ep = self.ep
        parts = []
        point = (ep["kind"] > 0) & (ep["end"] >= b0 - SECOND) & (ep["start"] < hi + 10 * SECOND)
        if causes is not None:
            point &= np.isin(ep["cause"], causes)
        for j in np.flatnonzero(point).tolist():
            at = int(ep["end"][j])
            if ep["cause"][j] == 3:
                times = [at * 1000 - 1_000_000]
            elif ep["cause"][j] == 1 and ep["kind"][j] == 2:
                times = [(int(ep["start"][j]) + d * SECOND) * 1000 for d in (1, 3, 7)
                         if int(ep["start"][j]) + d * SECOND < at]
            else:
                times = [at * 1000 - 500_000_000]
            t = np.asarray(times, np.int64)
            params = np.array([[mix(j, at, k) >> 24, mix(at, k) >> 24, k]
                               for k in range(len(t))], np.int64).reshape(-1, 3)
            parts.append(self._error_lines(j, t, params))
        return Lines.concat(parts)

    def _error_lines(self, j: int, t: np.ndarray, params: np.ndarray) -> Lines:
        ep = self.ep
        i = int(ep["inst"][j])
        family = int(ep["family"][j])
        fams = [family] + (list(FRAMES) if family in APP_ERRORS else [])
        # Stack frames follow their error line, a few nanoseconds later.
        return Lines(np.concatenate([t + k for k in range(len(fams))]),
                     np.full(len(t) * len(fams), i),
                     np.repeat(np.array(fams, np.int64), len(t)),
                     np.concatenate([params] * len(fams)))
