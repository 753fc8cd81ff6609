"""A seeded fleet: one ground truth from which instance records and events derive.

The fleet is generated once from a seed and a fixed ``now``. For every replica slot of
every regional deployment it walks a small state machine (allocate, start, healthy,
health-check flaps, crashes, scale-to-zero sleep and wake, redeploys, autoscaling
episodes, service-wide outages with crash loops) and records each status change as a
*transition*. Segments (the ground truth), instance records and events are all views of
those transitions, so they can never disagree.

Times are integer microseconds since the Unix epoch; ``-1`` means unset.

Long because the fleet's behaviours (replicas, crashes, flaps, redeploys, autoscaling,
scale to zero, outages) all write the same segment tables, and stay readable side by
side.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from ._vocabulary import DEFAULT_VOCABULARY, STATUSES, TERMINAL_STATUSES, EventVocabulary

US = 1_000_000
MINUTE = 60 * US
HOUR = 60 * MINUTE
DAY = 24 * HOUR

S = {name: i for i, name in enumerate(STATUSES)}
TERMINAL_CODES = frozenset(S[s] for s in TERMINAL_STATUSES)

# Regions and datacenters seen in real API data (koyeb-api-facts.md §6).
REGIONS: dict[str, tuple[str, ...]] = {
    "fra": ("fra1", "fra2", "fsn1"),
    "par": ("par2",),
    "was": ("was1", "was2", "rdu1", "dal1"),
    "sfo": ("sjc1", "sjc2"),
    "sin": ("sin1",),
    "tyo": ("tyo2",),
}
INSTANCE_TYPES: tuple[str, ...] = (
    "nano", "micro", "small", "medium", "large", "xlarge", "free",
    "eco-nano", "eco-small", "eco-medium", "gpu-nvidia-l4", "gpu-nvidia-a100",
)
# Invented: the real `hypervisor` values are unknown (koyeb-api-facts.md §4).
HYPERVISORS: tuple[str, ...] = ("cloud-hypervisor", "firecracker")


@dataclass(frozen=True)
class FleetConfig:
    """Knobs of the generated fleet. Rates are means of exponential waits."""

    seed: int = 0
    days: float = 7.0
    services: int = 12
    now: datetime | None = None
    max_replicas: int = 3
    crash_mtbf_hours: float = 72.0
    flap_mtbf_hours: float = 12.0
    redeploys_per_day: float = 0.5
    autoscale_share: float = 0.3
    scale_to_zero_share: float = 0.25
    outages: int = 1
    prehistory_share: float = 0.0
    """Share of services whose instances were created long before the history's first
    day (1 to 60 days before, quiet since); their events before that day are never
    served, as an API's retention would have dropped them."""
    vocabulary: EventVocabulary = field(default_factory=lambda: DEFAULT_VOCABULARY)


APP_WORDS = ("storefront", "billing", "auth", "search", "notifications", "analytics",
             "payments", "media", "chat", "catalog", "inventory", "reports", "booking",
             "ledger", "gateway", "docs")
SERVICE_WORDS = ("api", "web", "worker", "cron", "frontend", "backend", "ingest", "queue",
                 "scheduler", "webhooks")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def to_us(value: datetime | pd.Timestamp) -> int:
    """Return integer microseconds since the epoch of a tz-aware or UTC-naive time."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value // 1000)


@dataclass
class _Service:
    service_id: str
    app_id: str
    type: str
    regions: list[tuple[str, str]]  # (region, datacenter)
    replicas: int
    scale_to_zero: bool
    autoscale: bool
    outages: list[tuple[int, int]] = field(default_factory=list)
    prehistoric: bool = False


class Fleet:
    """The generated fleet: services, instances, events and their ground truth.

    Column arrays are kept sorted (instances by creation, events by time), which is
    the ascending order of the REST listings; new rows are only ever appended later in
    time, so the arrays stay sorted.
    """

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.vocabulary = config.vocabulary
        self._rng = random.Random(config.seed)
        now = config.now or datetime.now(UTC).replace(microsecond=0)
        self.now_us = to_us(now)
        self.start_us = self.now_us - int(config.days * DAY)
        self.organization_id = _uuid(self._rng)
        self.event_types = list(self.vocabulary.status_types[s] for s in STATUSES) + list(
            self.vocabulary.info_types
        )
        # instance columns (lists while generating)
        self._i: dict[str, list[Any]] = {k: [] for k in (
            "id", "service", "app", "deployment", "regional_deployment", "allocation",
            "replica_index", "region", "datacenter", "type", "hypervisor",
        )}
        self._transitions: list[list[tuple[int, int]]] = []  # per instance: (time, status)
        self._info: list[tuple[int, int, int]] = []  # (instance, time, info type code)
        self.services: list[_Service] = []
        self._generate()
        self._freeze()
        self._name()

    # ------------------------------------------------------------------ names
    def _name(self) -> None:
        """Realistic app and service names, from a generator of their own (so that the
        fleet and its ground truth are the same as without names)."""
        rng = random.Random(self.config.seed * 7919 + 17)
        apps = list(dict.fromkeys(s.app_id for s in self.services))
        words = list(APP_WORDS)
        rng.shuffle(words)
        self.app_names: dict[str, str] = {}
        for k, app in enumerate(apps):
            base = words[k % len(words)]
            self.app_names[app] = base if k < len(words) else f"{base}-{k // len(words) + 1}"
        self.service_names: dict[str, str] = {}
        used: dict[str, set[str]] = {}
        for svc in self.services:
            taken = used.setdefault(svc.app_id, set())
            choices = [w for w in SERVICE_WORDS if w not in taken] or [
                f"svc-{len(taken) + 1}"]
            name = rng.choice(choices)
            taken.add(name)
            self.service_names[svc.service_id] = name

    # ------------------------------------------------------------------ generation
    def _generate(self) -> None:
        cfg, rng = self.config, self._rng
        apps = [_uuid(rng) for _ in range(max(1, (cfg.services + 2) // 3))]
        span = self.now_us - self.start_us
        for k in range(cfg.services):
            names = rng.sample(sorted(REGIONS), k=1 if rng.random() < 0.6 else 2)
            svc = _Service(
                service_id=_uuid(rng),
                app_id=apps[k % len(apps)],
                type=rng.choice(INSTANCE_TYPES),
                regions=[(r, rng.choice(REGIONS[r])) for r in names],
                replicas=rng.randint(1, cfg.max_replicas),
                scale_to_zero=rng.random() < cfg.scale_to_zero_share,
                autoscale=rng.random() < cfg.autoscale_share,
            )
            self.services.append(svc)
        for _ in range(cfg.outages if cfg.services else 0):
            svc = rng.choice(self.services)
            a = self.start_us + int(span * rng.uniform(0.3, 0.9))
            svc.outages.append((a, a + rng.randint(5 * MINUTE, 40 * MINUTE)))
        if cfg.prehistory_share > 0:
            for svc in self.services:
                svc.prehistoric = rng.random() < cfg.prehistory_share
        for svc in self.services:
            self._generate_service(svc)

    def _generate_service(self, svc: _Service) -> None:
        cfg, rng = self.config, self._rng
        span = self.now_us - self.start_us
        first = self.start_us + (
            rng.randint(0, 2 * HOUR) if rng.random() < 0.8 else rng.randint(0, span // 2)
        )
        if svc.prehistoric:
            first = self.start_us - rng.randint(DAY, 60 * DAY)
        deploys = [first]
        t = max(first, self.start_us)
        while cfg.redeploys_per_day > 0:
            t += int(rng.expovariate(cfg.redeploys_per_day) * DAY)
            if t >= self.now_us:
                break
            deploys.append(t)
        deployment_ids = [_uuid(rng) for _ in deploys]
        # Epoch i runs from its deploy until the next one plus a rolling overlap.
        epochs: list[tuple[int, int]] = []
        for i, d in enumerate(deploys):
            end = deploys[i + 1] + rng.randint(30 * US, 90 * US) if i + 1 < len(deploys) else -1
            epochs.append((d, end))
        episodes: list[tuple[int, int, int]] = []  # (start, end, extra slots)
        if svc.autoscale:
            t = max(first, self.start_us)
            while True:
                t += int(rng.expovariate(1.0) * DAY)
                if t >= self.now_us:
                    break
                episodes.append((t, t + int(rng.expovariate(1 / 3) * HOUR) + 10 * MINUTE,
                                 rng.randint(1, 2)))
        for region, dc in svc.regions:
            for i, (a, b) in enumerate(epochs):
                rd = _uuid(rng)
                ctx = (svc, deployment_ids[i], rd, region, dc)
                for slot in range(svc.replicas):
                    self._run_slot(ctx, slot, a, b)
                for ea, eb, extra in episodes:
                    lo = max(a, ea)
                    hi = eb if b < 0 else min(b, eb)
                    if lo < hi:
                        for j in range(extra):
                            self._run_slot(ctx, svc.replicas + j, lo, hi)

    def _new_instance(self, ctx: tuple[Any, ...], slot: int) -> int:
        svc, dep, rd, region, dc = ctx
        rng = self._rng
        i = self._i
        i["id"].append(_uuid(rng))
        i["service"].append(svc.service_id)
        i["app"].append(svc.app_id)
        i["deployment"].append(dep)
        i["regional_deployment"].append(rd)
        i["allocation"].append(_uuid(rng))
        i["replica_index"].append(slot)
        i["region"].append(region)
        i["datacenter"].append(dc)
        i["type"].append(svc.type)
        i["hypervisor"].append(HYPERVISORS[0] if rng.random() < 0.85 else HYPERVISORS[1])
        self._transitions.append([])
        return len(self._transitions) - 1

    def _run_slot(self, ctx: tuple[Any, ...], slot: int, a: int, b: int) -> None:
        """Walk one replica slot from ``a`` to ``b`` (``-1``: until now)."""
        cfg, rng = self.config, self._rng
        svc: _Service = ctx[0]
        now = self.now_us
        stop_at = now if b < 0 else min(b, now)
        t = a
        while t < stop_at:
            inst = self._new_instance(ctx, slot)
            tr = self._transitions[inst]

            def go(status: str, when: int, tr: list[Any] = tr) -> bool:
                if when >= now:
                    return False
                tr.append((when, S[status]))
                return True

            def in_outage(when: int) -> tuple[int, int] | None:
                for oa, ob in svc.outages:
                    if oa <= when < ob:
                        return oa, ob
                return None

            def stop(when: int) -> None:
                # Redeploy or scale-down: drain, then stop.
                if go("STOPPING", when):
                    go("STOPPED", when + rng.randint(5 * US, 30 * US))

            go("ALLOCATING", t)
            t += rng.randint(1 * US, 5 * US)
            if t >= stop_at:
                if b >= 0 and t < now:
                    stop(b)
                return
            go("STARTING", t)
            if len(tr) == 2 and rng.random() < 0.7:
                self._info.append((inst, t + rng.randint(1 * US, 4 * US), 0))
            outage = in_outage(t)
            if outage:
                # Crash loop: the start fails, the slot retries after a pause.
                t += rng.randint(20 * US, 60 * US)
                if b >= 0 and t >= b:
                    stop(b)
                    return
                if not go("ERROR", t):
                    return
                t += rng.randint(30 * US, 120 * US)
                continue
            t += rng.randint(5 * US, 60 * US)
            if b >= 0 and t >= b:
                stop(b)
                return
            if not go("HEALTHY", t):
                return
            status = "HEALTHY"
            ended = False
            if t < self.start_us:
                # Created long before the history: quiet until shortly before it opens.
                t = self.start_us - rng.randint(0, 6 * HOUR)
            while not ended:
                waits = {"crash": rng.expovariate(1 / cfg.crash_mtbf_hours) * HOUR}
                if status == "HEALTHY":
                    waits["flap"] = rng.expovariate(1 / cfg.flap_mtbf_hours) * HOUR
                    if svc.scale_to_zero:
                        waits["sleep"] = rng.expovariate(1 / 6) * HOUR
                elif status == "UNHEALTHY":
                    waits = {"recover": rng.uniform(30, 600) * US}
                elif status == "SLEEPING":
                    waits = {"wake": rng.expovariate(1 / 2) * HOUR}
                kind, wait = min(waits.items(), key=lambda kv: kv[1])
                nxt = t + int(wait)
                upcoming = [oa for oa, _ in svc.outages if t < oa <= nxt]
                if upcoming and status != "SLEEPING":
                    kind, nxt = "outage", upcoming[0]
                if b >= 0 and nxt >= b:
                    stop(b)
                    return
                if nxt >= now:
                    return
                t = nxt
                if kind == "crash":
                    go("ERROR", t)
                    ended = True
                elif kind == "flap":
                    go("UNHEALTHY", t)
                    status = "UNHEALTHY"
                elif kind == "recover":
                    if rng.random() < 0.8:
                        go("HEALTHY", t)
                        status = "HEALTHY"
                    else:
                        go("ERROR", t)
                        ended = True
                elif kind == "sleep":
                    go("SLEEPING", t)
                    status = "SLEEPING"
                elif kind == "wake":
                    go("STARTING", t)
                    t += rng.randint(US // 5, 5 * US)
                    if go("HEALTHY", t):
                        status = "HEALTHY"
                    else:
                        return
                elif kind == "outage":
                    t += rng.randint(0, 60 * US)
                    if status != "UNHEALTHY" and not go("UNHEALTHY", t):
                        return
                    t += rng.randint(60 * US, 300 * US)
                    if not go("ERROR", t):
                        return
                    ended = True
            t += rng.randint(5 * US, 60 * US)  # restart delay after a crash

    # ------------------------------------------------------------------ columns
    def _freeze(self) -> None:
        """Sort the generated instances by creation, then derive the columns."""
        n = len(self._transitions)
        created = np.fromiter((tr[0][0] for tr in self._transitions), np.int64, n)
        order = np.lexsort((np.arange(n), created))
        remap = np.empty(n, np.int64)
        remap[order] = np.arange(n)
        self._i = {k: [v[j] for j in order] for k, v in self._i.items()}
        self._transitions = [self._transitions[j] for j in order]
        self._info = [(int(remap[i]), t, c) for i, t, c in self._info]
        self._id_rng = np.random.default_rng(self.config.seed)
        self._event_uuids = np.empty((0, 16), np.uint8)
        self._rebuild()

    def _rebuild(self) -> None:
        """Derive the record columns, segments and events from the transitions."""
        trs = self._transitions
        n = len(trs)
        lens = np.fromiter((len(tr) for tr in trs), np.int64, n)
        m = int(lens.sum())
        flat_t = np.fromiter((t for tr in trs for t, _ in tr), np.int64, m)
        flat_s = np.fromiter((s for tr in trs for _, s in tr), np.int8, m)
        last = np.cumsum(lens) - 1
        first = last - lens + 1

        self.inst = {k: np.asarray(v, dtype=np.int64 if k == "replica_index" else object)
                     for k, v in self._i.items()}
        self.inst["created"] = flat_t[first]
        self.inst["updated"] = flat_t[last]
        self.inst["status"] = flat_s[last]
        terminal = np.isin(flat_s[last], list(TERMINAL_CODES))
        self.inst["terminated"] = np.where(terminal, flat_t[last], -1)
        big = np.iinfo(np.int64).max
        for col, status in (("started", "STARTING"), ("succeeded", "HEALTHY")):
            hit = np.where(flat_s == S[status], flat_t, big)
            firsts = np.minimum.reduceat(hit, first) if n else np.empty(0, np.int64)
            self.inst[col] = np.where(firsts == big, -1, firsts)

        # ground truth: each transition opens a span that the next one closes
        seg_end = np.empty(m, np.int64)
        seg_end[:-1] = flat_t[1:]
        seg_end[last] = np.where(terminal, flat_t[last], -1)
        self.seg: dict[str, np.ndarray] = {
            "instance": np.repeat(np.arange(n), lens), "status": flat_s,
            "start": flat_t, "end": seg_end}

        # events: one per transition, plus the informational ones
        prev = np.empty(m, np.int8)
        prev[1:] = flat_s[:-1]
        prev[first] = -1
        info = np.asarray(self._info, dtype=np.int64).reshape(-1, 3)
        k = len(info)
        ev_inst = np.concatenate([self.seg["instance"], info[:, 0]])
        when = np.concatenate([flat_t, info[:, 1]])
        order = np.lexsort((np.arange(m + k), when))
        # each transition's event row, so the platform's log line can say what it says
        rank = np.empty(m + k, np.int64)
        rank[order] = np.arange(m + k)
        self.seg["event"] = rank[:m]
        if len(self._event_uuids) < m + k:
            extra = self._id_rng.integers(0, 256, (m + k - len(self._event_uuids), 16), np.uint8)
            extra[:, 6] = (extra[:, 6] & 0x0F) | 0x40
            extra[:, 8] = (extra[:, 8] & 0x3F) | 0x80
            self._event_uuids = np.concatenate([self._event_uuids, extra])
        # Which events the API serves: none before the history's first day (retention),
        # and not the vocabulary's share of lost ones; which status events carry a
        # message of no known family. Both drawn from the event's id, so they are stable.
        uuid32 = self._event_uuids[: m + k, :4].astype(np.uint32)
        draw = ((uuid32[:, 0] << 24) | (uuid32[:, 1] << 16) | (uuid32[:, 2] << 8)
                | uuid32[:, 3]) / 2.0 ** 32
        uuid32 = self._event_uuids[: m + k, 4:8].astype(np.uint32)
        draw2 = ((uuid32[:, 0] << 24) | (uuid32[:, 1] << 16) | (uuid32[:, 2] << 8)
                 | uuid32[:, 3]) / 2.0 ** 32
        sorted_when = when[order]
        self.ev = {
            "served": (sorted_when >= self.start_us)
            & (draw >= self.vocabulary.missing_share),
            "unknown": draw2 < self.vocabulary.unknown_share,
            "uuid": self._event_uuids,
            "instance": ev_inst[order],
            "when": when[order],
            "type": np.concatenate([flat_s.astype(np.int16),
                                    len(STATUSES) + info[:, 2].astype(np.int16)])[order],
            "status": np.concatenate([flat_s, np.full(k, -1, np.int8)])[order],
            "previous": np.concatenate([prev, np.full(k, -1, np.int8)])[order],
        }

    def event_id(self, i: int) -> str:
        """Return the id of the ``i``-th event in time order."""
        return str(uuid.UUID(bytes=self.ev["uuid"][i].tobytes()))

    def event_ids(self) -> list[str]:
        """Return every event id, in time order."""
        return [self.event_id(i) for i in range(len(self.ev["when"]))]

    # ------------------------------------------------------------------ churn
    def add_instance(self, when_us: int) -> int:
        """Append a new ALLOCATING instance (and its event) at ``when_us``.

        ``when_us`` must not be earlier than any existing row, so that the columns
        stay sorted; the caller's clock guarantees it.
        """
        rng = self._rng
        svc = rng.choice(self.services)
        region, dc = svc.regions[0]
        ctx = (svc, _uuid(rng), _uuid(rng), region, dc)
        idx = self._new_instance(ctx, svc.replicas)
        self._transitions[idx].append((when_us, S["ALLOCATING"]))
        self.now_us = max(self.now_us, when_us + 1)
        self._rebuild()
        return idx

    def continue_slot(self, idx: int, when_us: int, status: str) -> int:
        """Append a new instance in the slot of instance ``idx``, first ``status`` at
        ``when_us`` (the replacement after a crash). The caller rebuilds."""
        i = self._i
        svc = next(s for s in self.services if s.service_id == i["service"][idx])
        ctx = (svc, i["deployment"][idx], i["regional_deployment"][idx], i["region"][idx],
               i["datacenter"][idx])
        new = self._new_instance(ctx, i["replica_index"][idx])
        when_us = max(when_us, self.now_us)  # after every recorded event: ids stay put
        self._transitions[new].append((when_us, S[status]))
        self.now_us = when_us + 1
        return new

    def status_of(self, idx: int) -> int:
        """The code (index in ``STATUSES``) of instance ``idx``'s latest status."""
        return int(self._transitions[idx][-1][1])

    def change(self, idx: int, when_us: int, status: str) -> None:
        """Append a status change of instance ``idx`` at ``when_us`` (not earlier than
        any event already recorded). The caller rebuilds."""
        when_us = max(when_us, self.now_us)  # after every recorded event: ids stay put
        self._transitions[idx].append((when_us, S[status]))
        self.now_us = when_us + 1

    def rebuild(self) -> None:
        """Derive the columns again after :meth:`change` or :meth:`continue_slot`."""
        self._rebuild()

    # ------------------------------------------------------------------ views
    def truth_intervals(self) -> pd.DataFrame:
        """Return the ground truth: one row per status span of every instance.

        A span's ``end`` is the next change, ``NaT`` while it is still current; the
        terminal status (STOPPED or ERROR) is a zero-length span at the moment the
        instance ended.
        """
        seg = self.seg
        df = pd.DataFrame({
            "instance_id": pd.Series(self.inst["id"][seg["instance"]], dtype="str"),
            "status": pd.Categorical.from_codes(seg["status"].astype(int),
                                                categories=list(STATUSES), ordered=True),
            "start": us_to_timestamps(seg["start"]),
            "end": us_to_timestamps(seg["end"]),
        })
        return df.sort_values(["instance_id", "start"], kind="stable").reset_index(drop=True)


def us_to_timestamps(a: np.ndarray) -> pd.Series:
    """Turn microsecond integers (``-1`` for unset) into a UTC datetime Series."""
    out = pd.Series(a.astype("datetime64[us]")).dt.tz_localize("UTC")
    return out.where(pd.Series(a >= 0), pd.NaT)
