"""The simulator's metrics: CPU, memory, throughput, latency and transfer, from the story.

Values are a function of time (a daily load curve per service, per-instance factors,
noise hashed from the time and the instance, never from the query), so any two queries
agree where they overlap. The episodes of ``_story`` shape them: CPU climbs to
saturation before and during an overload, memory climbs to the type's limit before an
out-of-memory kill, and the share of 5xx replies rises while a service has no healthy
instance or its application is failing.

Units (our reading of koyeb-api-beyond-instances.md §4, which leaves them open): CPU in
percent of the instance's CPU limit, memory in bytes, throughput in requests per second
averaged over the step, response times in milliseconds (one service-level series),
data transfer in bytes per step. The instance catalog's memory and vCPU values are the
public plan figures where known, invented otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._fleet import DAY, INSTANCE_TYPES, MINUTE, US, S
from ._story import Story, unit

METRICS: tuple[str, ...] = (
    "CPU_TOTAL_PERCENT", "MEM_RSS", "HTTP_THROUGHPUT", "HTTP_RESPONSE_TIME_50P",
    "HTTP_RESPONSE_TIME_90P", "HTTP_RESPONSE_TIME_99P", "HTTP_RESPONSE_TIME_MAX",
    "PUBLIC_DATA_TRANSFER_IN", "PUBLIC_DATA_TRANSFER_OUT",
)
PER_INSTANCE = frozenset({"CPU_TOTAL_PERCENT", "MEM_RSS"})
CODES: tuple[str, ...] = ("2xx", "3xx", "4xx", "5xx")

MB = 2 ** 20
CATALOG: dict[str, tuple[int, float]] = {
    "free": (512 * MB, 0.1), "nano": (256 * MB, 0.25), "micro": (512 * MB, 0.5),
    "small": (1024 * MB, 1.0), "medium": (2048 * MB, 1.0), "large": (4096 * MB, 2.0),
    "xlarge": (8192 * MB, 4.0), "eco-nano": (256 * MB, 0.1), "eco-small": (1024 * MB, 0.5),
    "eco-medium": (2048 * MB, 1.0), "gpu-nvidia-l4": (44 * 1024 * MB, 15.0),
    "gpu-nvidia-a100": (180 * 1024 * MB, 15.0),
}
"""Memory (bytes) and vCPU shares per instance type."""
assert set(CATALOG) == set(INSTANCE_TYPES)


def catalog_items() -> list[dict[str, Any]]:
    """The instance catalog as ``GET /v1/catalog/instances`` lists it."""
    out = []
    for name in INSTANCE_TYPES:
        memory, shares = CATALOG[name]
        out.append({
            "id": name, "description": "", "vcpu": max(1, int(shares)),
            "memory": f"{memory // MB}MB" if memory < 1024 * MB else f"{memory // (1024 * MB)}GB",
            "disk": "4GB", "price_per_second": "0", "price_hourly": "0", "price_monthly": "0",
            "regions": [], "status": "AVAILABLE", "require_plan": [], "vcpu_shares": shares,
            "display_name": name, "aliases": [], "type": "gpu" if "gpu" in name else "standard",
            "service_types": ["web", "worker"], "volumes_enabled": False,
            "light_sleep_enabled": False,
        })
    return out


_RUNNING = np.zeros(len(S), bool)
"""Whether a status has a running process, by status code."""
_RUNNING[[S["STARTING"], S["HEALTHY"], S["UNHEALTHY"]]] = True


def _ramps(count: np.ndarray) -> np.ndarray:
    """0, 1, ... count[0] - 1, 0, 1, ... count[1] - 1, ...: positions within each run."""
    total = int(count.sum())
    out: np.ndarray = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    return out


def _noise(t: np.ndarray, key: int | np.ndarray) -> np.ndarray:
    """Uniform [0, 1) noise hashed from times and a key (vectorised splitmix64)."""
    keys = np.uint64(key & (2**64 - 1)) if isinstance(key, int) else key.astype(np.uint64)
    with np.errstate(over="ignore"):
        h = t.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + keys
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / 2.0 ** 53


def grid(start_us: int, end_us: int, step_us: int) -> np.ndarray:
    """Sample times: multiples of the step in ``[start, end]``."""
    first = -(-start_us // step_us) * step_us
    return np.arange(first, end_us + 1, step_us, dtype=np.int64)


class MetricSource:
    """Metric values of a story's fleet (see the module's docstring)."""

    def __init__(self, story: Story) -> None:
        self.story = story
        self._index: tuple[Any, ...] | None = None

    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment bounds per instance (segments are grouped by instance) and episodes
        sorted by instance, kept while the story is the same."""
        st = self.story
        key = (id(st.seg_inst), id(st.ep["inst"]))
        if self._index is None or self._index[0] != key:
            n = len(st.inst_service)
            bounds = np.searchsorted(st.seg_inst, np.arange(n + 1))
            order = np.argsort(st.ep["inst"], kind="stable")
            ep_bounds = np.searchsorted(st.ep["inst"][order], np.arange(n + 1))
            self._index = (key, bounds, order, ep_bounds)
        return self._index[1], self._index[2], self._index[3]

    def _load(self, svc: int, t: np.ndarray) -> np.ndarray:
        seed = self.story.seed
        phase = 2 * np.pi * unit(seed, svc, 11)
        level = 0.25 + 0.35 * unit(seed, svc, 12)
        day = np.sin(2 * np.pi * (t % DAY) / DAY + phase)
        return np.clip(level * (1 + 0.6 * day) + 0.08 * (_noise(t // MINUTE, svc) - 0.5),
                       0.02, 1.0)

    def _episode_ramp(self, i: int, t: np.ndarray, cause: int, lead: int) -> np.ndarray:
        """0..1: how far an episode of ``cause`` of instance ``i`` has pushed at ``t``."""
        ep = self.story.ep
        out = np.zeros(len(t))
        _, order, bounds = self._rows()
        mine = order[bounds[i]:bounds[i + 1]]
        for j in mine[ep["cause"][mine] == cause].tolist():
            a, b = int(ep["start"][j]), int(ep["end"][j])
            ramp = np.clip((t - (a - lead)) / lead, 0, 1)
            out = np.maximum(out, np.where(t <= b, ramp, 0.0))
        return out

    def running(self, i: int, t: np.ndarray) -> np.ndarray:
        """Whether instance ``i`` has a running process at each time."""
        st = self.story
        bounds = self._rows()[0]
        rows = np.arange(bounds[i], bounds[i + 1])
        if not len(rows):
            return np.zeros(len(t), bool)
        k = np.searchsorted(st.seg_start[rows], t, side="right") - 1
        up: np.ndarray = _RUNNING[st.seg_status[rows]]
        return np.where(k >= 0, up[np.maximum(k, 0)], False)

    def instance_series(self, name: str, i: int, t: np.ndarray) -> np.ndarray:
        """CPU percent or memory bytes of instance ``i`` at ``t`` (NaN where not running)."""
        svc = int(self.story.inst_service[i])
        return np.where(self.running(i, t), self._value(name, i, t, self._load(svc, t)),
                        np.nan)

    def instance_samples(self, name: str, targets: list[int],
                         t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples of :meth:`instance_series` of every target at once, where it ran.

        Returns ``(instance, step, value)`` arrays ordered by instance then time (``step``
        indexes ``t``, a regular grid). Every step of the computation is elementwise, so
        the values are those of :meth:`instance_series`, without its NaNs.
        """
        st = self.story
        n = len(t)
        bounds = self._rows()[0]
        mine = np.unique(np.asarray(targets, np.int64))
        count = bounds[mine + 1] - bounds[mine]
        rows = np.repeat(bounds[mine], count) + _ramps(count)
        inst, start = st.seg_inst[rows], st.seg_start[rows]
        # A segment holds from its start to the next one's (the last one, for good): the
        # grid steps inside, ceil((x - t0) / step), of the segments with a running status.
        last = np.ones(len(rows), bool)
        last[:-1] = inst[1:] != inst[:-1]
        t0 = int(t[0]) if n else 0
        step = int(t[1] - t[0]) if n > 1 else 1
        lo = np.clip(-((t0 - start) // step), 0, n)
        hi = np.where(last, n, np.clip(-((t0 - np.roll(start, -1)) // step), 0, n))
        size = np.where(_RUNNING[st.seg_status[rows]], np.maximum(hi - lo, 0), 0)
        k = np.repeat(lo, size) + _ramps(size)
        inst = np.repeat(inst, size)
        tk = t[k]
        services = st.inst_service[inst]
        load = np.empty(len(k))
        for svc in np.unique(services).tolist():
            here = services == svc
            load[here] = self._load(svc, t)[k[here]]
        seed = st.seed
        ran = np.unique(inst)  # the instances with samples: their own draws only
        where = np.searchsorted(ran, inst)
        if name == "CPU_TOTAL_PERCENT":
            factor = np.array([0.6 + 0.5 * unit(seed, i, 21) for i in ran.tolist()])
            cpu = 100 * load * factor[where] \
                + 6 * (_noise(tk, inst * 7 + 1) - 0.5)
            push = self._ramps_of(inst, k, t, 2, 15 * MINUTE)
            value = np.clip(cpu * (1 - push) + 98 * push, 0.0, 100.0).round(2)
        else:
            fl = st.fleet
            memory = np.array([CATALOG[fl.inst["type"][i]][0] for i in ran.tolist()],
                              np.float64)[where]
            created = np.asarray(fl.inst["created"], np.int64)[inst]
            base = np.array([0.3 + 0.25 * unit(seed, i, 22) for i in ran.tolist()])[where]
            age_days = np.maximum(tk - created, 0) / DAY
            share = base + np.minimum(0.1 * age_days, 0.15) + 0.05 * load \
                + 0.01 * _noise(tk, inst * 7 + 2)
            push = self._ramps_of(inst, k, t, 3, 20 * MINUTE)
            value = np.round(memory * np.minimum(share * (1 - push) + 0.995 * push, 1.0))
        return inst, k, value

    def _ramps_of(self, inst: np.ndarray, k: np.ndarray, t: np.ndarray, cause: int,
                  lead: int) -> np.ndarray:
        """:meth:`_episode_ramp` of samples ordered by instance then step ``k`` of the
        regular grid ``t``: every episode's ramp over its own instance's samples at once."""
        ep = self.story.ep
        out = np.zeros(len(k))
        first = np.ones(len(inst), bool)
        first[1:] = inst[1:] != inst[:-1]
        rows = np.flatnonzero((ep["cause"] == cause) & np.isin(ep["inst"], inst[first]))
        if not len(rows) or not len(k):
            return out
        n = len(t)
        t0, step = int(t[0]), int(t[1] - t[0]) if n > 1 else 1
        a, b = ep["start"][rows], ep["end"][rows]
        # Each episode's samples, from the ramp's foot to the episode's end, found by a
        # search on (instance, step), by which the samples are sorted.
        key = inst * (n + 1) + k
        base = ep["inst"][rows] * (n + 1)
        lo = np.searchsorted(key, base + np.clip(-((t0 - (a - lead)) // step), 0, n))
        hi = np.searchsorted(key, base + np.clip((b - t0) // step, -1, n - 1), side="right")
        size = np.maximum(hi - lo, 0)
        at = np.repeat(lo, size) + _ramps(size)
        tt = t[k[at]]
        b_at = np.repeat(b, size)
        ramp = np.clip((tt - (np.repeat(a, size) - lead)) / lead, 0, 1)
        np.maximum.at(out, at, np.where(tt <= b_at, ramp, 0.0))
        return out

    def _value(self, name: str, i: int, t: np.ndarray, load: np.ndarray) -> np.ndarray:
        """CPU percent or memory bytes of instance ``i`` at ``t``, given the service's load
        at ``t``, as if it ran throughout."""
        st = self.story
        seed = st.seed
        if name == "CPU_TOTAL_PERCENT":
            factor = 0.6 + 0.5 * unit(seed, i, 21)
            cpu = 100 * load * factor + 6 * (_noise(t, i * 7 + 1) - 0.5)
            push = self._episode_ramp(i, t, 2, 15 * MINUTE)
            value: np.ndarray = np.clip(cpu * (1 - push) + 98 * push, 0.0, 100.0).round(2)
            return value
        memory = CATALOG[self.story.fleet.inst["type"][i]][0]
        created = int(st.fleet.inst["created"][i])
        age_days = np.maximum(t - created, 0) / DAY
        share = 0.3 + 0.25 * unit(seed, i, 22) + np.minimum(0.1 * age_days, 0.15) \
            + 0.05 * load + 0.01 * _noise(t, i * 7 + 2)
        push = self._episode_ramp(i, t, 3, 20 * MINUTE)
        out: np.ndarray = np.round(memory * np.minimum(share * (1 - push) + 0.995 * push, 1.0))
        return out

    def service_state(self, svc: int, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Healthy instances of service ``svc`` at ``t``, and whether it existed then."""
        st = self.story
        mine = st.inst_service[st.seg_inst] == svc
        now = st.now()
        end = np.where(st.seg_end >= 0, st.seg_end, now)
        healthy = mine & (st.seg_status == S["HEALTHY"])
        starts = np.sort(st.seg_start[healthy])
        ends = np.sort(end[healthy])
        count = np.searchsorted(starts, t, side="right") - np.searchsorted(ends, t, side="right")
        first = st.seg_start[mine].min() if mine.any() else now
        return count, t >= first

    def failing(self, svc: int, t: np.ndarray) -> np.ndarray:
        """Share of the service's instances in an application-error episode at ``t``."""
        st = self.story
        ep = st.ep
        rows = np.flatnonzero((st.inst_service[ep["inst"]] == svc) & (ep["cause"] <= 1))
        # Episodes under way at t: begun by t, less those already over (each ends after
        # it begins).
        begun = np.searchsorted(np.sort(ep["start"][rows] - 30 * US), t, side="right")
        over = np.searchsorted(np.sort(ep["end"][rows]), t, side="left")
        return np.minimum((begun - over).astype(np.float64), 1.0)

    def service_series(self, name: str, svc: int, t: np.ndarray,
                       step_us: int) -> list[tuple[dict[str, str], np.ndarray]]:
        """The labelled series of a service-level metric (NaN before the service existed)."""
        seed = self.story.seed
        healthy, existed = self.service_state(svc, t)
        load = self._load(svc, t)
        rps = (5 + 45 * unit(seed, svc, 31)) * load
        down = healthy == 0
        err = np.clip(0.002 + 0.25 * self.failing(svc, t) + 0.95 * down, 0, 0.98)
        if name == "HTTP_THROUGHPUT":
            shares = {"2xx": 1 - err - 0.07, "3xx": np.full(len(t), 0.03),
                      "4xx": np.full(len(t), 0.04), "5xx": err}
            return [({"code": code}, np.where(existed, (rps * shares[code]).round(3), np.nan))
                    for code in CODES]
        if name.startswith("HTTP_RESPONSE_TIME"):
            base = 20 + 80 * unit(seed, svc, 32)
            scale = {"50P": 1.0, "90P": 2.5, "99P": 5.0, "MAX": 12.0}[name.rsplit("_", 1)[1]]
            ms = base * scale * (1 + 1.5 * load ** 3) * (1 + 0.1 * _noise(t, svc * 5 + 3))
            ms = np.where(down, np.maximum(ms, 5000.0 * min(scale, 2.0)), ms)
            return [({}, np.where(existed, ms.round(1), np.nan))]
        size = 900 if name.endswith("_IN") else 14_000
        return [({}, np.where(existed, np.round(rps * (1 - down) * size * step_us / US), np.nan))]
