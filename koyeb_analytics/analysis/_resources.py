"""Capacity from metrics: how much CPU and memory services used, and how they answered.

Per service and instance type: CPU and memory percentiles over every sample of every
instance, memory as a share of the type's memory (from the instance catalog), and the
service's share of 5xx replies and its latency percentiles *as served*: the API's
percentiles are estimates over 5 minutes, so they are summarised over time (median and
highest value of the served p99, …), never averaged into a new percentile.

Given the deployments, each service's *headroom* against the scaling of its active
deployment (the one in force when the metrics end): its ``average_cpu`` and
``average_mem`` targets against the service's average over its instances (what an
autoscaler compares to a target), and its most instances at once against the scaling's
``max``. A service without such a target gets NaN and the reason, never a guess.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

CAPACITY_COLUMNS: tuple[str, ...] = (
    "service_id", "type", "instances", "cpu_p50", "cpu_p95", "cpu_max", "mem_p50", "mem_p95",
    "mem_max", "mem_share_p50", "mem_share_p95", "mem_share_max", "http_5xx_share",
    "latency_p50_ms", "latency_p99_ms", "latency_p99_max_ms", "latency_max_ms",
    "cpu_target", "cpu_headroom", "cpu_above_target", "mem_target", "mem_headroom",
    "mem_above_target", "max_instances", "instances_peak", "instances_headroom",
    "headroom_note")
HEADROOM_COLUMNS: tuple[str, ...] = CAPACITY_COLUMNS[CAPACITY_COLUMNS.index("cpu_target"):]
"""The headroom columns of :func:`resource_usage` (NaN, with ``headroom_note`` saying
why, where there is no target to compare with)."""
_RUNNING = ("HEALTHY", "DEGRADED", "UNHEALTHY", "STARTING", "ERRORING", "STOPPING")


def _check(metrics: pd.DataFrame) -> None:
    if not isinstance(metrics, pd.DataFrame):
        raise TypeError(f"metrics must be a DataFrame from load_metrics, got "
                        f"{type(metrics).__name__}")
    missing = [c for c in ("ts", "metric", "value", "instance_id", "code") if c not in metrics]
    if missing:
        raise ValueError(f"metrics lacks the column(s) {missing}: pass a frame from "
                         "load_metrics")


def resource_usage(metrics: pd.DataFrame, *, instances: pd.DataFrame | None = None,
                   instance_types: pd.DataFrame | None = None,
                   deployments: pd.DataFrame | None = None) -> pd.DataFrame:
    """Summarise CPU, memory, errors and latency per service and instance type.

    Parameters
    ----------
    metrics
        From :func:`~koyeb_analytics.load_metrics` (one or more services).
    instances
        From :func:`~koyeb_analytics.load_instances`: gives each instance its type and
        service. Without it, every instance is of an unknown type.
    instance_types
        From :func:`~koyeb_analytics.load_instance_types`: the memory of each type, for
        the memory shares (NaN without it).
    deployments
        From :func:`~koyeb_analytics.load_deployments`: the scaling of each service's
        active deployment, for the headroom columns (NaN without it).

    Returns
    -------
    DataFrame
        One row per service and instance type: ``instances``, ``cpu_p50/p95/max``
        (percent), ``mem_p50/p95/max`` (bytes), ``mem_share_p50/p95/max`` (of the
        type's memory), and per service ``http_5xx_share`` (5xx replies over all
        replies), ``latency_p50_ms`` and ``latency_p99_ms`` (the median over time of
        the served p50 and p99), ``latency_p99_max_ms`` (the highest served p99) and
        ``latency_max_ms`` (the highest served maximum). Samples without a value are
        left out of every figure.

        Headroom, per service, against its active deployment's scaling:
        ``cpu_target`` (the ``average_cpu`` target, percent), ``cpu_headroom``
        (target minus the p95 over time of the service's average CPU, in percentage
        points: negative when the average sat above the target that often),
        ``cpu_above_target`` (the share of sample times the average was above it), the
        same three for memory (``average_mem``, in percent of the type's memory: needs
        ``instances`` and ``instance_types``), ``max_instances`` (the scaling's
        ``max`` times the regions it covers), ``instances_peak`` (the most instances
        reporting at one time) and ``instances_headroom`` (their difference).
        ``headroom_note`` says why a headroom figure is NaN (empty when none is).
        With ``instances`` carrying ``xyz_deployment_id``, only the active
        deployment's instances count.

    Examples
    --------
    >>> m = pd.DataFrame({
    ...     "ts": pd.to_datetime(["2026-01-01 10:00", "2026-01-01 10:05"] * 2, utc=True),
    ...     "metric": ["CPU_TOTAL_PERCENT"] * 2 + ["MEM_RSS"] * 2,
    ...     "value": [20.0, 60.0, 2.0 ** 28, 2.0 ** 29], "instance_id": ["i"] * 4,
    ...     "code": [None] * 4, "service_id": ["s"] * 4})
    >>> inst = pd.DataFrame({"id": ["i"], "service_id": ["s"], "type": ["small"]})
    >>> types = pd.DataFrame({"type": ["small"], "memory_bytes": [2.0 ** 30]})
    >>> row = resource_usage(m, instances=inst, instance_types=types).iloc[0]
    >>> float(row["cpu_max"]), float(row["mem_share_max"])
    (60.0, 0.5)
    """
    _check(metrics)
    m = metrics[metrics["value"].notna()]
    metric = m["metric"].astype(str)
    per = m[metric.isin(["CPU_TOTAL_PERCENT", "MEM_RSS"])][
        ["ts", "metric", "value", "instance_id", "service_id"]].copy()
    per["metric"] = per["metric"].astype(str)
    per["instance_id"] = per["instance_id"].astype(object)
    if instances is not None:
        for col in ("id", "service_id", "type"):
            if col not in instances:
                raise ValueError(f"instances lacks the column {col!r}")
        info = instances.drop_duplicates("id").set_index(
            instances.drop_duplicates("id")["id"].astype(object))
        per["type"] = per["instance_id"].map(info["type"].astype(object))
        per["service_id"] = per["service_id"].astype(object).fillna(
            per["instance_id"].map(info["service_id"].astype(object)))
    else:
        per["type"] = None
    per["service_id"] = per["service_id"].astype(object)
    per["type"] = per["type"].astype(object).fillna("unknown")
    memory: dict[str, float] = {}
    if instance_types is not None:
        for col in ("type", "memory_bytes"):
            if col not in instance_types:
                raise ValueError(f"instance_types lacks the column {col!r}")
        memory = dict(zip(instance_types["type"].astype(str),
                          instance_types["memory_bytes"].astype(float), strict=True))
    rows: list[dict[str, Any]] = []
    for (sid, kind), g in per.groupby(["service_id", "type"], sort=True, dropna=False):
        cpu = g.loc[g["metric"] == "CPU_TOTAL_PERCENT", "value"].to_numpy()
        mem = g.loc[g["metric"] == "MEM_RSS", "value"].to_numpy()
        limit = memory.get(str(kind), np.nan)
        row: dict[str, Any] = {"service_id": sid, "type": kind,
                               "instances": int(g["instance_id"].nunique())}
        for name, values in (("cpu", cpu), ("mem", mem), ("mem_share", mem / limit)):
            for stat, q in (("p50", 50), ("p95", 95), ("max", 100)):
                row[f"{name}_{stat}"] = float(np.percentile(values, q)) if len(values) \
                    else np.nan
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(CAPACITY_COLUMNS[:12]))
    http = _http(m, metric)
    if len(http):
        if out.empty:
            out = http.assign(type="unknown", instances=0)
        else:
            out = out.merge(http, on="service_id", how="left")
    head = _headroom(per, out["service_id"].astype(object).unique().tolist(), deployments,
                     instances, memory)
    out = out.drop(columns=[c for c in HEADROOM_COLUMNS if c in out]).merge(
        head, on="service_id", how="left")
    for col in CAPACITY_COLUMNS:
        if col not in out:
            out[col] = np.nan
    out = out[list(CAPACITY_COLUMNS)]
    out["headroom_note"] = out["headroom_note"].astype(object).fillna("").astype(str)
    out.attrs = {"units": {"cpu": "percent of the instance's CPU limit", "mem": "bytes",
                           "mem_share": "of the instance type's memory",
                           "latency": "ms, as served (5-minute estimates)",
                           "headroom": "percentage points below the target (cpu, mem); "
                                       "instances below the scaling's max"},
                 "headroom": "against the scaling of each service's active deployment "
                             "(in force when the metrics end): targets against the p95 "
                             "over time of the service's average over its instances"
                             if deployments is not None else
                             "not computed: pass deployments= (ka.load_deployments)"}
    return out


def _active(deployments: pd.DataFrame, sid: Any, end: pd.Timestamp | None) -> Any:
    """The service's deployment in force at ``end``: the last to become healthy by then
    and not ended before; without times, the newest running one."""
    dep = deployments[deployments["service_id"].astype(object) == sid]
    if "status" in dep:
        dep = dep[dep["status"].astype(str) != "STASHED"]
    if not len(dep):
        return None
    if end is not None and "succeeded_at" in dep:
        ok = pd.to_datetime(dep["succeeded_at"], utc=True)
        live = ok.notna() & (ok <= end)
        if "terminated_at" in dep:
            gone = pd.to_datetime(dep["terminated_at"], utc=True)
            live &= gone.isna() | (gone > end)
        if live.any():
            return dep.loc[ok[live].sort_values(kind="stable").index[-1]]
    if "status" in dep:
        running = dep[dep["status"].astype(str).isin(_RUNNING)]
        if len(running):
            key = "created_at" if "created_at" in running else None
            return (running.sort_values(key, kind="stable") if key else running).iloc[-1]
    return None


def _scaling(definition: Any) -> tuple[list[float], list[float], float, str]:
    """The ``average_cpu`` and ``average_mem`` targets, the instances' max over every
    region, and what the scaling does instead when it has no such target."""
    if not isinstance(definition, dict):
        return [], [], np.nan, "the active deployment's definition is unreadable"
    scalings = [s for s in definition.get("scalings") or [] if isinstance(s, dict)]
    if not scalings:
        return [], [], np.nan, "the active deployment has no scaling"
    regions = definition.get("regions") or []
    cpu: list[float] = []
    mem: list[float] = []
    others: list[str] = []
    most = 0.0
    for sc in scalings:
        scopes = [x for x in sc.get("scopes") or [] if str(x).startswith("region:")]
        top = sc.get("max")
        if isinstance(top, (int, float)) and not isinstance(top, bool):
            most += float(top) * (len(scopes) or len(regions) or 1)
        else:
            most = np.nan
        for target in sc.get("targets") or []:
            for name, value in (target.items() if isinstance(target, dict) else []):
                v = value.get("value") if isinstance(value, dict) else None
                if name == "average_cpu" and isinstance(v, (int, float)):
                    cpu.append(float(v))
                elif name == "average_mem" and isinstance(v, (int, float)):
                    mem.append(float(v))
                elif name not in ("average_cpu", "average_mem"):
                    others.append(name)
    lo, hi = scalings[0].get("min"), scalings[0].get("max")
    instead = (f"scales on {', '.join(dict.fromkeys(others))}" if others else
               f"fixed at {hi} instance(s)" if lo == hi and hi is not None else
               "no target")
    return cpu, mem, most, instead


def _headroom(per: pd.DataFrame, services: list[Any], deployments: pd.DataFrame | None,
              instances: pd.DataFrame | None, memory: dict[str, float]) -> pd.DataFrame:
    """The headroom columns, one row per service."""
    rows: list[dict[str, Any]] = []
    if deployments is not None:
        missing = [c for c in ("service_id", "definition") if c not in deployments]
        if missing:
            raise ValueError(f"deployments lacks the column(s) {missing}: pass a frame "
                             "from load_deployments")
    owner: pd.Series | None = None
    if instances is not None and "xyz_deployment_id" in instances:
        first = instances.drop_duplicates("id")
        owner = pd.Series(first["xyz_deployment_id"].astype(object).to_numpy(),
                          index=first["id"].astype(object).to_numpy())
    ts = pd.to_datetime(per["ts"], utc=True) if len(per) else pd.Series(dtype=object)
    end = ts.max() if len(per) else None
    for sid in services:
        row: dict[str, Any] = {"service_id": sid}
        rows.append(row)
        if deployments is None:
            row["headroom_note"] = "no deployments given (deployments=)"
            continue
        active = _active(deployments, sid, end)
        if active is None:
            row["headroom_note"] = "no deployment of the service in force in the frame"
            continue
        cpu_t, mem_t, most, instead = _scaling(active.get("definition"))
        notes: list[str] = []
        mine = per[per["service_id"] == sid]
        if owner is not None and "id" in active:
            mine = mine[mine["instance_id"].map(owner) == active["id"]]
        if not len(mine):
            notes.append("no sample from the active deployment's instances")
        if not cpu_t and not mem_t:
            notes.append(f"no average_cpu or average_mem target ({instead})")
        for name, metric, targets in (("cpu", "CPU_TOTAL_PERCENT", cpu_t),
                                      ("mem", "MEM_RSS", mem_t)):
            kind = "average_cpu" if name == "cpu" else "average_mem"
            if not targets:
                if cpu_t or mem_t:
                    notes.append(f"no {kind} target")
                continue
            if len(set(targets)) > 1:
                notes.append(f"{kind} targets differ by region: the lowest is used")
            row[f"{name}_target"] = target = min(targets)
            g = mine[mine["metric"] == metric]
            values = g["value"].to_numpy(float)
            if name == "mem":
                limit = g["type"].astype(str).map(memory).to_numpy(float)
                if not len(g) or np.isnan(limit).any():
                    notes.append("memory share unknown (instances= and instance_types=)")
                    continue
                values = values / limit * 100
            if not len(values):
                continue
            mean = pd.Series(values).groupby(g["ts"].to_numpy()).mean().to_numpy()
            row[f"{name}_headroom"] = target - float(np.percentile(mean, 95))
            row[f"{name}_above_target"] = float((mean > target).mean())
        row["max_instances"] = most
        if np.isnan(most):
            notes.append("no max in the active deployment's scaling")
        if len(mine):
            row["instances_peak"] = int(mine.groupby("ts")["instance_id"].nunique().max())
            row["instances_headroom"] = most - row["instances_peak"]
        row["headroom_note"] = "; ".join(dict.fromkeys(notes))
    frame = pd.DataFrame(rows, columns=["service_id", *HEADROOM_COLUMNS])
    return frame.astype({c: float for c in HEADROOM_COLUMNS if c != "headroom_note"})


def _http(m: pd.DataFrame, metric: pd.Series) -> pd.DataFrame:
    """Per service: the 5xx share and the served latency percentiles."""
    if "service_id" not in m:
        return pd.DataFrame()
    sid = m["service_id"].astype(object)
    out: dict[Any, dict[str, float]] = {}
    thr = m[metric == "HTTP_THROUGHPUT"]
    for s, g in thr.groupby(sid[thr.index]):
        total = g["value"].sum()
        five = g.loc[g["code"].astype(str) == "5xx", "value"].sum()
        out.setdefault(s, {})["http_5xx_share"] = float(five / total) if total > 0 else np.nan
    for name, col, how in (("HTTP_RESPONSE_TIME_50P", "latency_p50_ms", "median"),
                           ("HTTP_RESPONSE_TIME_99P", "latency_p99_ms", "median"),
                           ("HTTP_RESPONSE_TIME_99P", "latency_p99_max_ms", "max"),
                           ("HTTP_RESPONSE_TIME_MAX", "latency_max_ms", "max")):
        sub = m[metric == name]
        for s, g in sub.groupby(sid[sub.index]):
            out.setdefault(s, {})[col] = float(getattr(g["value"], how)())
    if not out:
        return pd.DataFrame()
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "service_id"
    return frame.reset_index()
