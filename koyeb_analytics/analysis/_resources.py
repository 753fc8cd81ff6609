"""Capacity from metrics: how much CPU and memory services used, and how they answered.

Per service and instance type: CPU and memory percentiles over every sample of every
instance, memory as a share of the type's memory (from the instance catalog), and the
service's share of 5xx replies and its latency percentiles *as served*: the API's
percentiles are estimates over 5 minutes, so they are summarised over time (median and
highest value of the served p99, …), never averaged into a new percentile.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

CAPACITY_COLUMNS: tuple[str, ...] = (
    "service_id", "type", "instances", "cpu_p50", "cpu_p95", "cpu_max", "mem_p50", "mem_p95",
    "mem_max", "mem_share_p50", "mem_share_p95", "mem_share_max", "http_5xx_share",
    "latency_p50_ms", "latency_p99_ms", "latency_p99_max_ms", "latency_max_ms")


def _check(metrics: pd.DataFrame) -> None:
    if not isinstance(metrics, pd.DataFrame):
        raise TypeError(f"metrics must be a DataFrame from load_metrics, got "
                        f"{type(metrics).__name__}")
    missing = [c for c in ("ts", "metric", "value", "instance_id", "code") if c not in metrics]
    if missing:
        raise ValueError(f"metrics lacks the column(s) {missing}: pass a frame from "
                         "load_metrics")


def resource_usage(metrics: pd.DataFrame, *, instances: pd.DataFrame | None = None,
                   instance_types: pd.DataFrame | None = None) -> pd.DataFrame:
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
        ["metric", "value", "instance_id", "service_id"]].copy()
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
    for col in CAPACITY_COLUMNS:
        if col not in out:
            out[col] = np.nan
    out = out[list(CAPACITY_COLUMNS)]
    out.attrs = {"units": {"cpu": "percent of the instance's CPU limit", "mem": "bytes",
                           "mem_share": "of the instance type's memory",
                           "latency": "ms, as served (5-minute estimates)"},
                 "headroom": "against scaling targets: needs the active deployment's "
                             "definition (not yet read)"}
    return out


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
