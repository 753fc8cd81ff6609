"""The simulator's build logs: what each deployment's build and deploy step printed.

Served by ``GET /v1/streams/logs/query?type=build`` (and the tail), in the shape of the
runtime lines but labelled ``type: build`` and with no ``instance_id`` (a build belongs
to a deployment, not to an instance). A deployment's log is a function of the
deployment alone (its id seeds every draw), generated when a query first asks for it:

* a deployment built from git clones its repository, runs its build steps (a
  Dockerfile for a Python service, npm for a Node one, with the ordinary warnings on
  ``stderr``) and pushes the image, all between its creation and its allocation;
  one deployed from an image pulls it (koyeb-api-beyond-instances.md §3 says where a
  skipped build's logs live, not what they hold: the pull is our choice);
* then the deploy step, on the ``koyeb`` stream: the image deployed to the regions,
  the first instance started, and the deployment healthy, or failed.

The failures follow the change story: a **bad image** (the runtime upgraded under an
application that still needs what it dropped) builds and pushes cleanly, then crashes
on start: the deploy step shows the application's traceback and the platform's "exit
code 1" line, the same words as the deployment's ``messages`` and its ``ERROR``
status in the listing. An **env change** that breaks health checks shows the failed
checks. Every text is invented; :func:`build_truth` says which logs carry the cause.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._fleet import US, us_to_timestamps

STREAM_NAMES: tuple[str, ...] = ("stdout", "stderr", "koyeb")
_OUT, _ERR, _KOYEB = 0, 1, 2
SECOND_NS = 10 ** 9

CRASHES: dict[str, tuple[tuple[str, ...], str]] = {
    "python": (('Traceback (most recent call last):',
                '  File "/app/server.py", line 4, in <module>',
                "    from distutils.util import strtobool",
                "ModuleNotFoundError: No module named 'distutils'"),
               "ModuleNotFoundError: No module named 'distutils'"),
    "node": (("node:internal/modules/cjs/loader:1228",
              "Error [ERR_REQUIRE_ESM]: require() of ES Module "
              "/app/node_modules/node-fetch/src/index.js from /app/server.js not supported.",
              "    at Object.<anonymous> (/app/server.js:3:15)"),
             "Error [ERR_REQUIRE_ESM]: require() of ES Module"),
}
"""Per runtime: what a bad image prints when it crashes on start (its stderr lines),
and the constant part of the line that names the cause."""
CRASH_EXIT = "Instance stopped with exit code 1: the application crashed on start"
"""The platform's line for the crash (the deployment's ``messages`` say the same)."""
HEALTH_FAILED = "TCP health check failed on port 8000"


def _rng(*parts: Any) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


def runtime_of(service_id: str) -> str:
    """The language a service is written in (``python`` or ``node``), from its id."""
    return "python" if hashlib.sha1(service_id.encode()).digest()[0] % 2 else "node"


@dataclass
class BuildLines:
    """Build log lines as columns: times (ns since the epoch), stream codes, texts, and
    the app and service each line belongs to."""

    t: np.ndarray
    stream_code: np.ndarray
    msg: np.ndarray
    app: np.ndarray
    service: np.ndarray

    @staticmethod
    def empty() -> BuildLines:
        return BuildLines(np.empty(0, np.int64), np.empty(0, np.int8),
                          np.empty(0, object), np.empty(0, object), np.empty(0, object))

    def __len__(self) -> int:
        return len(self.t)

    def take(self, idx: Any) -> BuildLines:
        return BuildLines(self.t[idx], self.stream_code[idx], self.msg[idx], self.app[idx],
                          self.service[idx])

    @staticmethod
    def concat(parts: list[BuildLines]) -> BuildLines:
        parts = [p for p in parts if len(p)]
        if not parts:
            return BuildLines.empty()
        return BuildLines(*(np.concatenate([getattr(p, f) for p in parts])
                            for f in ("t", "stream_code", "msg", "app", "service")))


def _steps(d: Any, rng: random.Random) -> list[tuple[int, str]]:
    """The build's lines before the deploy step, as ``(stream, text)``."""
    definition = d.definition if isinstance(d.definition, dict) else {}
    git = definition.get("git") or {}
    docker = definition.get("docker") or {}
    if not git:
        image = docker.get("image") or d.image or "image"
        name, _, tag = image.rpartition(":")
        digest = hashlib.sha256(f"{d.id}:pull".encode()).hexdigest()
        return [(_OUT, f"Pulling image {image}"),
                (_OUT, f"{tag}: Pulling from {name.split('/', 1)[-1]}"),
                (_OUT, f"Digest: sha256:{digest}"),
                (_OUT, f"Status: Downloaded newer image for {image}")]
    sha = str(git.get("sha") or d.sha or "0" * 40)
    message = (d.trigger.get("git") or {}).get("message", "") if d.trigger else ""
    out = [(_OUT, f"Cloning https://{git.get('repository', 'github.com/acme/app')}.git "
                  f"(branch {git.get('branch', 'main')})"),
           (_OUT, f"HEAD is now at {sha[:7]} {message}".rstrip())]
    if runtime_of(d.service_id) == "python":
        # A bad image is the runtime's upgrade: the base image changes with it.
        base = "python:3.12-slim" if d.cause == "bad_image" else "python:3.11-slim"
        out += [(_OUT, "Detected Dockerfile: building with BuildKit"),
                (_OUT, f"#1 [1/5] FROM docker.io/library/{base}"),
                (_OUT, "#2 [2/5] COPY requirements.txt ."),
                (_OUT, "#3 [3/5] RUN pip install --no-cache-dir -r requirements.txt"),
                (_OUT, f"#3 Successfully installed {rng.randint(18, 60)} packages"),
                (_ERR, "WARNING: Running pip as the 'root' user can result in broken "
                       "permissions and conflicting behaviour with the system package "
                       "manager."),
                (_OUT, "#4 [4/5] COPY . ."),
                (_OUT, "#5 [5/5] RUN python -m compileall -q /app"),
                (_OUT, "#6 exporting to image")]
    else:
        engine = "22" if d.cause == "bad_image" else "20"
        out += [(_OUT, f"Detected Node.js buildpack (engines.node: {engine}.x)"),
                (_OUT, "Installing dependencies: npm ci"),
                (_ERR, "npm WARN deprecated inflight@1.0.6: This module is not supported, "
                       "and leaks memory."),
                (_ERR, "npm WARN deprecated glob@7.2.3: Glob versions prior to v9 are no "
                       "longer supported"),
                (_OUT, f"added {rng.randint(300, 1200)} packages in {rng.randint(6, 40)}s"),
                (_OUT, "Running build: npm run build"),
                (_OUT, f"build finished in {rng.randint(2, 30)}.{rng.randint(0, 9)}s")]
    out += [(_OUT, f"Pushing image {d.image}"),
            (_OUT, f"Image pushed: sha256:{hashlib.sha256(d.id.encode()).hexdigest()}")]
    return out


def build_log(d: Any, seed: int) -> BuildLines:
    """The build and deploy lines of deployment ``d`` (a simulator ``Deployment``).

    Parameters
    ----------
    d
        The deployment (times in microseconds, ``-1`` unset).
    seed
        The simulator's seed.

    Returns
    -------
    BuildLines
        Sorted by time; lines after the present are cut by the server, not here.
    """
    if d.status == "STASHED":  # saved, never deployed: nothing was built
        return BuildLines.empty()
    rng = _rng(seed, "build", d.id)
    steps = _steps(d, rng)
    t0 = d.created + rng.randint(2 * US, 8 * US)
    allocated = d.allocated if d.allocated > t0 else t0 + 60 * US
    # The build fits between the deployment's creation and its allocation.
    span = max(allocated - t0 - 2 * US, len(steps))
    cuts = sorted(rng.random() for _ in range(len(steps) - 1))
    times = [t0] + [t0 + int(c * span) for c in cuts]
    lines: list[tuple[int, int, str]] = [(t * 1000, s, m) for t, (s, m)
                                         in zip(times, steps, strict=True)]
    regions = ", ".join((d.definition or {}).get("regions") or []) or "fra"
    lines.append((allocated * 1000, _KOYEB, f"Deploying {d.image} to {regions}"))
    started = d.started if d.started >= 0 else -1
    if started >= 0:
        lines.append((started * 1000, _KOYEB, "Instance created: starting the application"))
    if d.status == "ERROR" or d.cause in ("bad_image", "env_change"):
        at = (started if started >= 0 else allocated) * 1000
        if d.cause == "env_change":
            for k in range(3):
                lines.append((at + (10 + 10 * k) * SECOND_NS, _KOYEB, HEALTH_FAILED))
            lines.append((at + 35 * SECOND_NS, _KOYEB,
                          f"Deployment failed: Health checks failed: {HEALTH_FAILED}"))
        else:
            crash, _ = CRASHES[runtime_of(d.service_id)]
            # The traceback's lines share a moment; a nanosecond apart keeps their order.
            for k, text in enumerate(crash):
                lines.append((at + 2 * SECOND_NS + k, _ERR, text))
            lines.append((at + 3 * SECOND_NS, _KOYEB, CRASH_EXIT))
            lines.append((at + 30 * SECOND_NS, _KOYEB,
                          "Deployment failed: the application crashed on start 3 times"))
    elif d.succeeded >= 0:
        lines.append((d.succeeded * 1000, _KOYEB,
                      "Deployment is healthy: every instance passed its health checks"))
    lines.sort(key=lambda x: x[0])
    n = len(lines)
    return BuildLines(np.fromiter((x[0] for x in lines), np.int64, n),
                      np.fromiter((x[1] for x in lines), np.int8, n),
                      np.array([x[2] for x in lines], dtype=object),
                      np.full(n, d.app_id, dtype=object), np.full(n, d.service_id, dtype=object))


def select(deployments: list[Any], seed: int, filters: dict[str, str], lo: int, hi: int,
           cache: dict[tuple[Any, ...], BuildLines]) -> BuildLines:
    """The build lines of ``[lo, hi)`` (ns) of the deployments ``filters`` name.

    ``filters`` holds the query's ``deployment_id``, ``service_id``, ``app_id`` and
    ``regional_deployment_id`` (builds belong to no regional deployment: none match);
    each deployment's log is generated once and kept in ``cache`` (bounded).
    """
    if filters.get("regional_deployment_id"):
        return BuildLines.empty()
    parts = []
    for d in deployments:
        if (filters.get("deployment_id", d.id) != d.id
                or filters.get("service_id", d.service_id) != d.service_id
                or filters.get("app_id", d.app_id) != d.app_id or d.created * 1000 >= hi):
            continue
        key = (d.id, d.status, d.allocated, d.started, d.succeeded)
        log = cache.get(key)
        if log is None:
            if len(cache) > 4096:
                cache.clear()
            log = cache[key] = build_log(d, seed)
        parts.append(log)
    lines = BuildLines.concat(parts)
    lines = lines.take((lines.t >= lo) & (lines.t < hi))
    return lines.take(np.argsort(lines.t, kind="stable"))


def build_entries(lines: BuildLines, times: list[str], organization_id: str) -> list[str]:
    """Each line as the JSON of a ``LogEntry`` labelled ``type: build`` (``times``: the
    lines' RFC 3339 times)."""
    return ['{"msg":' + json.dumps(m, ensure_ascii=False) + ',"created_at":"' + t
            + '","labels":' + json.dumps({"type": "build", "stream": STREAM_NAMES[int(s)],
                                          "organization_id": organization_id,
                                          "app_id": a, "service_id": v}) + "}"
            for m, t, s, a, v in zip(lines.msg.tolist(), times, lines.stream_code.tolist(),
                                     lines.app.tolist(), lines.service.tolist(), strict=True)]


def error_line(d: Any) -> str:
    """The constant part of the line in ``d``'s build log that says what went wrong
    (empty when its build and deploy went well)."""
    if d.status == "STASHED":
        return ""
    if d.cause == "bad_image" or (d.status == "ERROR" and d.cause != "env_change"):
        return CRASHES[runtime_of(d.service_id)][1]
    if d.cause == "env_change":
        return HEALTH_FAILED
    return ""


def build_truth(deployments: list[Any]) -> pd.DataFrame:
    """Which deployments' build logs show an error, and which carry the incident's cause.

    Parameters
    ----------
    deployments
        The change story's deployments.

    Returns
    -------
    DataFrame
        One row per deployment that was deployed (``STASHED`` ones built nothing):
        ``deployment_id, service_id, status, kind`` (the cause kind, None for an
        ordinary deployment), ``created``, ``error_line`` (see :func:`error_line`) and
        ``carries_cause``: True when the log names the cause itself (a bad image's
        crash), not only its symptom (failed health checks after an env change).
    """
    rows = [d for d in deployments if d.status != "STASHED"]
    return pd.DataFrame({
        "deployment_id": pd.Series([d.id for d in rows], dtype="str"),
        "service_id": pd.Series([d.service_id for d in rows], dtype="str"),
        "status": pd.Series([d.status for d in rows], dtype="str"),
        "kind": pd.Series([d.cause for d in rows], dtype=object),
        "created": us_to_timestamps(np.asarray([d.created for d in rows], np.int64)),
        "error_line": pd.Series([error_line(d) for d in rows], dtype="str"),
        "carries_cause": np.array([d.cause == "bad_image" for d in rows], bool),
    })
