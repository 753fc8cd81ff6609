"""The simulator's change story: deployments and activities, and which change caused
which incident.

Derived from the fleet, never the other way round, so the instance and event story
(and every figure built on it) stays exactly as generated:

* every distinct ``deployment_id`` the instances carry is one deployment, created a
  few minutes before its first instance was allocated; a service's deployments chain
  by ``parent_id``/``child_id`` in creation order;
* autoscaling episodes (instances in replica slots above the service's replicas)
  become ``autoscaled`` activities with ``count`` and ``previous_count``;
* the fleet's incidents (stretches when no instance of a service was up, merged over
  5 minutes, at least a minute long) are found from its transitions; every outage and
  a share (``CAUSE_SHARE``) of the other incidents, at most one a day per service,
  get a cause placed 3 to 15 minutes before them: a deployment of a bad image (its
  instances crash-loop), a deployment whose env change fails health checks, or a
  manual scale-down that overloads the replicas left. A service's first start that
  takes over a minute to become healthy is caused by its first deployment. The rest
  have no change behind them.

Change rate: the fleet redeploys each service ``redeploys_per_day`` times a day on
average (0.5 by default, so about one deployment every two days per service), plus
one deployment per deployment-caused incident; an autoscaling service adds about two
``autoscaled`` activities a day; the whole organisation a few unrelated ones (secrets,
domains, members).

Shapes follow ``koyeb-sdk``'s models (``DeploymentListItem``, ``Deployment``,
``Activity``); the values (images, env keys, commit messages, actor types) are
invented. Deterministic: every draw comes from a generator seeded by the fleet's seed
and the id or time it concerns, so the story is the same after the fleet grows.

Long because the story (deployments, their definitions and chain, autoscaling, causes)
and the three endpoints that serve it read the same derived lists, side by side.
"""

from __future__ import annotations

import copy
import hashlib
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from aiohttp import web

from ._fleet import MINUTE, US, Fleet, S, us_to_timestamps

DEPLOYMENT_STATUSES: tuple[str, ...] = (
    "PENDING", "PROVISIONING", "SCHEDULED", "CANCELING", "CANCELED", "ALLOCATING",
    "STARTING", "HEALTHY", "DEGRADED", "UNHEALTHY", "STOPPING", "STOPPED", "ERRORING",
    "ERROR", "STASHED", "SLEEPING",
)
"""The API's sixteen deployment statuses (``DeploymentStatus`` in koyeb-sdk)."""

CAUSE_SHARE = 0.3
"""Share of the incidents that are not outages which get a change placed before them."""
CAUSE_SPACING = 24 * 60 * MINUTE
"""A service gets at most one cause a day (outages aside): a team that breaks a
service with every deploy would be a different story."""
CAUSE_KINDS = ("bad_image", "env_change", "scale_down")
MERGE_GAP = 5 * MINUTE
MIN_DURATION = MINUTE
_UP = (S["HEALTHY"], S["SLEEPING"])
_BASE_ENV = ("PORT", "DATABASE_URL", "LOG_LEVEL", "SENTRY_DSN")
_NEW_ENV = ("FEATURE_FLAGS", "CACHE_TTL", "REDIS_URL", "OTEL_EXPORTER_ENDPOINT",
            "MAX_WORKERS", "API_TIMEOUT")
_MESSAGES = ("Fix pagination of the orders page", "Bump dependencies", "Add retry on "
             "upstream timeouts", "Refactor session handling", "Update translations",
             "Speed up the search index", "Log request ids", "Tidy configuration")
_USERS = ("alice", "bob", "chen", "dana", "emeka")
_NOISE = (("secret", "created"), ("secret", "updated"), ("domain", "attached"),
          ("organization_member", "created"), ("subscription", "payment_succeeded"))
"""Activities on other objects; ``payment_succeeded`` is a verb no guard knows."""


def _rng(*parts: Any) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _sha(rng: random.Random) -> str:
    return hashlib.sha1(str(rng.random()).encode()).hexdigest()


@dataclass
class Deployment:
    """One deployment of the story (times in microseconds, ``-1`` unset)."""

    id: str
    service_id: str
    app_id: str
    created: int
    allocated: int = -1
    started: int = -1
    succeeded: int = -1
    terminated: int = -1
    status: str = "HEALTHY"
    definition: dict[str, Any] = field(default_factory=dict)
    trigger: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    sha: str = ""
    image: str = ""
    created_by: str | None = None
    parent: str | None = None
    child: str | None = None
    version: int = 1
    cause: str | None = None
    """The cause kind when this deployment was placed before an incident."""


@dataclass
class Activity:
    """One activity of the story."""

    id: str
    created: int
    verb: str
    object: dict[str, Any]
    actor: dict[str, Any]
    metadata: dict[str, Any]


class ChangeStory:
    """Deployments, activities and causes derived from a simulator's fleet.

    Built on first use and again whenever the fleet gained instances (a live fleet, or
    churn), always holding the simulator's lock. ``sim`` is the
    :class:`~koyeb_analytics.simulator.Simulator` (its fleet, lock, paging and error
    replies), typed loosely: the server imports this module, not the reverse.
    """

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self._built_for = -1
        self.deployments: list[Deployment] = []
        self.activities: list[Activity] = []
        self.causes: list[dict[str, Any]] = []
        self._by_id: dict[str, Deployment] = {}

    # ------------------------------------------------------------------ building
    def _ensure(self) -> None:
        fleet = self.sim.fleet
        n = len(fleet.inst["id"])
        if n != self._built_for:
            self._build(fleet)
            self._built_for = n

    def _build(self, fleet: Fleet) -> None:
        seed = fleet.config.seed
        inst = fleet.inst
        services = {s.service_id: s for s in fleet.services}
        users = [_uid(_rng(seed, "user", u)) for u in _USERS]
        deployments: list[Deployment] = []
        activities: list[Activity] = []
        causes: list[dict[str, Any]] = []
        ends = self._instance_ends(fleet)
        for sid, svc in services.items():
            mine = np.flatnonzero(inst["service"] == sid)
            if not len(mine):
                continue
            chain: list[Deployment] = []
            deps = pd.unique(inst["deployment"][mine])
            for dep in deps:
                rows = mine[inst["deployment"][mine] == dep]
                rng = _rng(seed, "deployment", dep)
                first = int(inst["created"][rows].min())
                started = inst["started"][rows]
                succeeded = inst["succeeded"][rows]
                alive = (ends[rows] < 0).any()
                d = Deployment(
                    id=str(dep), service_id=sid, app_id=svc.app_id,
                    created=first - rng.randint(60 * US, 300 * US), allocated=first,
                    started=int(started[started >= 0].min()) if (started >= 0).any() else -1,
                    succeeded=int(succeeded[succeeded >= 0].min())
                    if (succeeded >= 0).any() else -1,
                    terminated=-1 if alive else int(ends[rows].max()),
                    status="HEALTHY" if alive else "STOPPED")
                chain.append(d)
            incidents = self._incidents(fleet, mine, svc)
            life = int(inst["created"][mine].min())
            last_cause = -CAUSE_SPACING
            for a, b, outage in incidents:
                rng = _rng(seed, "cause", sid, a)
                if a == life:
                    # The service's first start, slow to become healthy: its first
                    # deployment is the change behind it.
                    causes.append({"service_id": sid, "start": a, "end": b,
                                   "cause_id": chain[0].id, "kind": "first_deploy"})
                    continue
                if not outage and (rng.random() >= CAUSE_SHARE
                                   or a - last_cause < CAUSE_SPACING):
                    causes.append({"service_id": sid, "start": a, "end": b,
                                   "cause_id": None, "kind": None})
                    continue
                at = a - rng.randint(3 * MINUTE, 15 * MINUTE)
                if at <= min(d.created for d in chain):
                    causes.append({"service_id": sid, "start": a, "end": b,
                                   "cause_id": None, "kind": None})
                    continue
                kind = "bad_image" if outage else rng.choice(
                    CAUSE_KINDS if svc.replicas > 1 else CAUSE_KINDS[:2])
                if kind == "scale_down":
                    act = Activity(
                        id=_uid(rng), created=at, verb="manually-scaled",
                        object=self._service_object(fleet, sid, svc.app_id),
                        actor=self._user(rng, users), metadata={
                            "count": svc.replicas - 1, "region": svc.regions[0][0]})
                    activities.append(act)
                    cause_id = act.id
                else:
                    d = Deployment(id=_uid(rng), service_id=sid, app_id=svc.app_id,
                                   created=at, allocated=at + rng.randint(60 * US, 180 * US),
                                   terminated=b, status="ERROR", cause=kind)
                    d.started = d.allocated + rng.randint(1 * US, 5 * US)
                    d.messages = ["Instance stopped with exit code 1: the application "
                                  "crashed on start"] if kind == "bad_image" else [
                        "Health checks failed: TCP health check failed on port 8000"]
                    chain.append(d)
                    cause_id = d.id
                causes.append({"service_id": sid, "start": a, "end": b,
                               "cause_id": cause_id, "kind": kind})
                last_cause = a
            chain.sort(key=lambda d: (d.created, d.id))
            self._definitions(fleet, svc, chain, users)
            deployments += chain
            activities += self._autoscaling(fleet, svc, mine, ends)
            stash = _rng(seed, "stash", sid)
            if stash.random() < 0.2 and chain:
                latest = chain[-1]
                created = max(latest.created + MINUTE,
                              fleet.now_us - stash.randint(MINUTE, 48 * 60 * MINUTE))
                if created < fleet.now_us:
                    s = Deployment(id=_uid(stash), service_id=sid, app_id=svc.app_id,
                                   created=created, status="STASHED", parent=latest.id,
                                   definition=copy.deepcopy(latest.definition),
                                   trigger=dict(latest.trigger, type="UNKNOWN_TYPE"),
                                   sha=latest.sha, image=latest.image,
                                   created_by=latest.created_by,
                                   version=latest.version + 1)
                    s.definition["env"].append(self._env(stash, "MAINTENANCE_MODE", svc))
                    deployments.append(s)
        for d in deployments:
            if d.status != "STASHED":
                activities += self._deployment_activities(fleet, d, users)
        activities += self._noise(fleet, users)
        now = fleet.now_us
        self.deployments = sorted((d for d in deployments if d.created < now),
                                  key=lambda d: (d.created, d.id), reverse=True)
        self.activities = sorted((a for a in activities if a.created < now),
                                 key=lambda a: (a.created, a.id), reverse=True)
        self.causes = sorted(causes, key=lambda c: (c["start"], c["service_id"]))
        self._by_id = {d.id: d for d in self.deployments}

    @staticmethod
    def _instance_ends(fleet: Fleet) -> np.ndarray:
        """When each instance ended (``-1``: still alive)."""
        return np.asarray(fleet.inst["terminated"], dtype=np.int64)

    @staticmethod
    def _incidents(fleet: Fleet, rows: np.ndarray, svc: Any) -> list[tuple[int, int, bool]]:
        """The service's stretches with no instance up: ``(start, end, is_outage)``.

        The same definition as the toolkit's default (any replica up; time with no
        instance between the first and the last is down), computed here from the
        transitions, not by the toolkit.
        """
        seg = fleet.seg
        now = fleet.now_us
        pick = np.isin(seg["instance"], rows)
        start, end, status = seg["start"][pick], seg["end"][pick], seg["status"][pick]
        end = np.where(end < 0, now, end)
        life_a, life_b = int(start.min()), int(end.max())
        up = np.isin(status, _UP) & (end > start)
        a, b = np.sort(start[up]), end[up][np.argsort(start[up], kind="stable")]
        gaps: list[tuple[int, int]] = []
        reach = life_a
        for s, e in zip(a.tolist(), b.tolist(), strict=True):
            if s > reach:
                gaps.append((reach, s))
            reach = max(reach, e)
        if reach < life_b:
            gaps.append((reach, life_b))
        merged: list[list[int]] = []
        for s, e in gaps:
            if merged and s - merged[-1][1] <= MERGE_GAP:
                merged[-1][1] = e
            else:
                merged.append([s, e])
        out = []
        for s, e in merged:
            if e - s >= MIN_DURATION:
                outage = any(s <= oa + 5 * MINUTE and oa <= e for oa, _ in svc.outages)
                out.append((s, e, outage))
        return out

    # ------------------------------------------------------------------ contents
    @staticmethod
    def _service_object(fleet: Fleet, sid: str, app_id: str) -> dict[str, Any]:
        return {"id": sid, "name": fleet.service_names.get(sid, sid[:8]), "type": "service",
                "metadata": {"app_id": app_id, "app_name": fleet.app_names.get(app_id, ""),
                             "service_id": sid}, "deleted": False}

    @staticmethod
    def _user(rng: random.Random, users: list[str]) -> dict[str, Any]:
        k = rng.randrange(len(users))
        return {"id": users[k], "name": _USERS[k], "type": "user", "metadata": {},
                "deleted": False}

    @staticmethod
    def _env(rng: random.Random, key: str, svc: Any) -> dict[str, Any]:
        secret = key in ("DATABASE_URL", "SENTRY_DSN", "REDIS_URL")
        return {"scopes": [f"region:{r}" for r, _ in svc.regions], "key": key,
                "value": None if secret else f"{key.lower()}-{rng.randint(1, 999)}",
                "secret": f"{key.lower().replace('_', '-')}-{rng.randint(1, 9)}"
                if secret else None}

    def _definitions(self, fleet: Fleet, svc: Any, chain: list[Deployment],
                     users: list[str]) -> None:
        """Give each deployment its definition, trigger and parent, in chain order."""
        seed = fleet.config.seed
        base_rng = _rng(seed, "service", svc.service_id)
        app = fleet.app_names.get(svc.app_id, "app")
        name = fleet.service_names.get(svc.service_id, "svc")
        from_git = base_rng.random() < 0.6
        scopes = [f"region:{r}" for r, _ in svc.regions]
        scaling: dict[str, Any] = {"scopes": scopes, "min": 0 if svc.scale_to_zero else
                                   svc.replicas, "max": svc.replicas + (2 if svc.autoscale else 0)}
        if svc.autoscale:
            scaling["targets"] = [{"average_cpu": {"value": 80}}]
        elif svc.scale_to_zero:
            scaling["targets"] = [{"sleep_idle_delay": {"deep_sleep_value": 3900,
                                                        "light_sleep_value": 300}}]
        definition: dict[str, Any] = {
            "name": name, "type": "WEB",
            "strategy": {"type": "DEPLOYMENT_STRATEGY_TYPE_DEFAULT"},
            "routes": [{"port": 8000, "path": "/"}], "ports": [{"port": 8000,
                                                               "protocol": "http"}],
            "env": [self._env(base_rng, k, svc) for k in _BASE_ENV],
            "regions": [r for r, _ in svc.regions],
            "scalings": [scaling],
            "instance_types": [{"scopes": scopes, "type": svc.type}],
            "health_checks": [{"grace_period": 5, "interval": 30, "restart_limit": 3,
                               "timeout": 5, "tcp": {"port": 8000}}],
            "skip_cache": False, "mesh": "DEPLOYMENT_MESH_AUTO",
        }
        repository = f"github.com/acme/{app}-{name}"
        org_token = base_rng.random() < 0.3
        parent: Deployment | None = None
        for k, d in enumerate(chain):
            rng = _rng(seed, "definition", d.id)
            d.definition = copy.deepcopy(definition)
            d.sha = _sha(rng)
            tag = f"v1.{k}.{rng.randint(0, 9)}"
            if from_git:
                d.definition["git"] = {"repository": repository, "branch": "main",
                                       "sha": d.sha, "build_command": "", "run_command": ""}
                d.image = f"registry01.prod.koyeb.com/k-{svc.app_id[:8]}/{d.id[:8]}:{d.sha[:7]}"
            else:
                d.definition["docker"] = {"image": f"ghcr.io/acme/{name}:{tag}",
                                          "command": "", "args": []}
                d.image = d.definition["docker"]["image"]
            env = d.definition["env"]
            if d.cause == "env_change":
                keyed = [e for e in env if e["key"] in ("DATABASE_URL", "PORT",
                                                        "REDIS_URL")] or env
                if not keyed:  # earlier changes removed every variable: add one back
                    env.append(self._env(rng, rng.choice(_NEW_ENV), svc))
                else:
                    target = rng.choice(keyed)
                    if rng.random() < 0.5:
                        env.remove(target)
                    else:
                        target.update(self._env(rng, target["key"], svc))
                        target["value"] = target["value"] and target["value"] + "-new"
                if from_git:  # a configuration change deploys the same commit again
                    prev_git = parent.definition.get("git") if parent else None
                    if prev_git:
                        d.sha = prev_git["sha"]
                        d.definition["git"]["sha"] = d.sha
                elif parent is not None and "docker" in parent.definition:
                    d.definition["docker"] = copy.deepcopy(parent.definition["docker"])
                    d.image = d.definition["docker"]["image"]
            elif d.cause is None and k and rng.random() < 0.2:
                env.append(self._env(rng, rng.choice(_NEW_ENV), svc))
            if d.cause is None and k and svc.autoscale and rng.random() < 0.15:
                d.definition["scalings"][0]["max"] += 1
            definition = d.definition
            message = rng.choice(_MESSAGES) if d.cause != "bad_image" else \
                "Upgrade the runtime to the new major version"
            user = rng.randrange(len(users))
            d.created_by = None if org_token else users[user]
            d.trigger = {"type": "GIT" if from_git else "UNKNOWN_TYPE", "actor": "USER",
                         "git": {"provider": "GITHUB", "repository": repository,
                                 "branch": "main", "sha": d.sha, "message": message,
                                 "sender_username": _USERS[user],
                                 "sender_avatar_url": "", "sender_profile_url": ""}
                         if from_git else None}
            d.version = k + 1
            if parent is not None:
                d.parent, parent.child = parent.id, d.id
            parent = d

    def _autoscaling(self, fleet: Fleet, svc: Any, rows: np.ndarray,
                     ends: np.ndarray) -> list[Activity]:
        """``autoscaled`` activities from the instances in slots above the replicas."""
        inst = fleet.inst
        out: list[Activity] = []
        extra = rows[inst["replica_index"][rows] >= svc.replicas]
        now = fleet.now_us
        for region, _ in svc.regions:
            mine = extra[inst["region"][extra] == region]
            lives: dict[int, list[list[int]]] = {}
            for i in sorted(mine.tolist(), key=lambda i: int(inst["created"][i])):
                slot = int(inst["replica_index"][i])
                a = int(inst["created"][i])
                b = int(ends[i]) if ends[i] >= 0 else now
                spans = lives.setdefault(slot, [])
                if spans and a - spans[-1][1] <= 5 * MINUTE:
                    spans[-1][1] = max(spans[-1][1], b)
                else:
                    spans.append([a, b])
            steps: dict[int, int] = {}
            for spans in lives.values():
                for a, b in spans:
                    steps[a] = steps.get(a, 0) + 1
                    if b < now:
                        steps[b] = steps.get(b, 0) - 1
            count = svc.replicas
            for t in sorted(steps):
                if not steps[t]:
                    continue
                rng = _rng(fleet.config.seed, "autoscaled", svc.service_id, region, t)
                out.append(Activity(
                    id=_uid(rng), created=t, verb="autoscaled",
                    object=self._service_object(fleet, svc.service_id, svc.app_id),
                    actor={"id": "", "name": "autoscaler", "type": "system", "metadata": {},
                           "deleted": False},
                    metadata={"count": count + steps[t], "previous_count": count,
                              "region": region}))
                count += steps[t]
        return out

    def _deployment_activities(self, fleet: Fleet, d: Deployment,
                               users: list[str]) -> list[Activity]:
        rng = _rng(fleet.config.seed, "activity", d.id)
        obj = {"id": d.id, "name": d.id[:8], "type": "deployment", "deleted": False,
               "metadata": {"app_id": d.app_id, "app_name": fleet.app_names.get(d.app_id, ""),
                            "service_id": d.service_id,
                            "service_name": fleet.service_names.get(d.service_id, ""),
                            "definition": {"type": "WEB"}}}
        actor = self._user(rng, users) if d.created_by else {
            "id": "", "name": "api token", "type": "token", "metadata": {}, "deleted": False}
        out = [Activity(_uid(rng), d.created, "created", obj, actor, {})]
        system = {"id": "", "name": "koyeb", "type": "system", "metadata": {},
                  "deleted": False}
        if d.succeeded >= 0:
            out.append(Activity(_uid(rng), d.succeeded, "succeeded", obj, system, {}))
        if d.status == "ERROR" and d.started >= 0:
            out.append(Activity(_uid(rng), d.started + rng.randint(30 * US, 90 * US),
                                "failed", obj, system, {"messages": list(d.messages)}))
        return out

    def _noise(self, fleet: Fleet, users: list[str]) -> list[Activity]:
        rng = _rng(fleet.config.seed, "noise")
        out: list[Activity] = []
        t = fleet.start_us
        while True:
            t += int(rng.expovariate(3.0) * 24 * 60 * MINUTE)  # about three a day
            if t >= fleet.now_us:
                return out
            kind, verb = rng.choice(_NOISE)
            out.append(Activity(_uid(rng), t, verb, {
                "id": _uid(rng), "name": f"{kind}-{rng.randint(1, 99)}", "type": kind,
                "metadata": {}, "deleted": False}, self._user(rng, users), {}))

    def listing(self) -> list[Deployment]:
        """The deployments, newest first, built from the fleet as it is now.

        Call with the simulator's lock held (the logs endpoints read it for builds).
        """
        self._ensure()
        return self.deployments

    # ------------------------------------------------------------------ truth
    def truth(self) -> pd.DataFrame:
        """Every incident of the fleet and the change that caused it (None: no change).

        Returns
        -------
        DataFrame
            ``service_id, start, end, cause_id, kind`` (``kind``: ``"bad_image"``,
            ``"env_change"``, ``"scale_down"``, ``"first_deploy"`` or None), one row per
            incident.
        """
        with self.sim._lock:
            self._ensure()
            rows = list(self.causes)
        df = pd.DataFrame({
            "service_id": pd.Series([r["service_id"] for r in rows], dtype="str"),
            "start": us_to_timestamps(np.asarray([r["start"] for r in rows], np.int64)),
            "end": us_to_timestamps(np.asarray([r["end"] for r in rows], np.int64)),
            "cause_id": pd.Series([r["cause_id"] for r in rows], dtype=object),
            "kind": pd.Series([r["kind"] for r in rows], dtype=object),
        })
        return df

    # ------------------------------------------------------------------ serving
    def add_routes(self, app: web.Application) -> None:
        """Serve ``/v1/deployments``, ``/v1/deployments/{id}`` and ``/v1/activities``."""
        app.router.add_get("/v1/deployments", self._list_deployments)
        app.router.add_get("/v1/deployments/{id}", self._get_deployment)
        app.router.add_get("/v1/activities", self._list_activities)

    def _time(self, d: dict[str, Any], key: str, us: int) -> None:
        self.sim._nullable(d, key, us)

    def _deployment_json(self, d: Deployment, full: bool) -> dict[str, Any]:
        sim = self.sim
        fleet = sim.fleet
        out: dict[str, Any] = {"id": d.id}
        self._time(out, "created_at", d.created)
        ended = max(d.created, d.succeeded, d.terminated, d.started)
        self._time(out, "updated_at", ended)
        for key, us in (("allocated_at", d.allocated), ("started_at", d.started),
                        ("succeeded_at", d.succeeded), ("terminated_at", d.terminated)):
            self._time(out, key, us)
        out.update({
            "organization_id": fleet.organization_id,
            "project_id": "",
            "app_id": d.app_id, "service_id": d.service_id,
            "parent_id": d.parent or "", "child_id": d.child or "",
            "status": d.status,
            "metadata": {"trigger": d.trigger, "git": {
                "last_provisioned_deployment_id": d.id,
                "git_env": {"sha": d.sha, "commit_author": d.trigger["git"]["sender_username"],
                            "commit_message": d.trigger["git"]["message"]}}
                if d.trigger.get("git") else None},
            "definition": d.definition,
            "messages": list(d.messages),
            "provisioning_info": {"sha": d.sha if d.trigger.get("git") else "",
                                  "image": d.image, "stages": [{
                                      "name": "build", "status": "COMPLETED",
                                      "messages": [], "started_at": None,
                                      "finished_at": None, "build_attempts": []}]
                                  if d.status != "STASHED" and d.trigger.get("git") else []},
            "database_info": None,
            "instance_snapshot_id": "",
            "version": str(d.version),
            "deployment_group": "prod",
        })
        if d.created_by:  # absent when an organisation token made the change
            out["created_by"] = d.created_by
        if full:
            out["skip_build"] = not d.trigger.get("git")
            out["role"] = "ACTIVE" if d.status == "HEALTHY" else "INVALID"
        return out

    async def _list_deployments(self, request: web.Request) -> web.Response:
        q = request.query
        limit, offset, _ = self.sim._paging(q)
        statuses = q.getall("statuses", [])
        bad = [s for s in statuses if s not in DEPLOYMENT_STATUSES]
        if bad:
            error: web.Response = self.sim._error(
                400, "invalid_argument", "Invalid argument",
                fields=[{"field": "statuses", "description": f"unknown status {bad[0]!r}"}])
            return error
        ids = set(q.getall("ids", []))
        with self.sim._lock:
            self._ensure()
            rows = [d for d in self.deployments
                    if (not q.get("app_id") or d.app_id == q["app_id"])
                    and (not q.get("service_id") or d.service_id == q["service_id"])
                    and (not statuses or d.status in statuses)
                    and (not ids or d.id in ids)]
            page = [self._deployment_json(d, False) for d in rows[offset: offset + limit]]
        return web.json_response({"deployments": page, "limit": limit, "offset": offset,
                                  "count": len(rows),
                                  "has_next": offset + len(page) < len(rows)})

    async def _get_deployment(self, request: web.Request) -> web.Response:
        with self.sim._lock:
            self._ensure()
            d = self._by_id.get(request.match_info["id"])
            if d is None:
                missing: web.Response = self.sim._error(404, self.sim.not_found_code,
                                                        "Deployment not found")
                return missing
            return web.json_response({"deployment": self._deployment_json(d, True)})

    async def _list_activities(self, request: web.Request) -> web.Response:
        q = request.query
        limit, offset, _ = self.sim._paging(q)
        types = set(q.getall("types", []))
        with self.sim._lock:
            self._ensure()
            rows = [a for a in self.activities if not types or a.object["type"] in types]
            page = []
            for a in rows[offset: offset + limit]:
                item = {"id": a.id, "actor": a.actor, "object": a.object, "verb": a.verb,
                        "metadata": a.metadata}
                self._time(item, "created_at", a.created)
                page.append(item)
        # No count: the API's ActivityList has none.
        return web.json_response({"activities": page, "limit": limit, "offset": offset,
                                  "has_next": offset + len(page) < len(rows)})
