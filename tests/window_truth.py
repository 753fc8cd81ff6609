"""The simulator's ground truth for a window, and how far an analysis is from it.

Shared by the window tests and ``benchmarks/bench_window.py``: the truth is clipped to
``[since, until)`` as plainly as possible and analysed with the same functions, so the
comparison measures the reconstruction, not the arithmetic.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

import koyeb_analytics as ka

ATTRS = ["service_id", "app_id", "region", "datacenter", "replica_index", "type",
         "app_name", "service_name"]


def clip(truth: pd.DataFrame, since: pd.Timestamp, until: pd.Timestamp) -> pd.DataFrame:
    """Truth spans clipped to ``[since, until)``; zero-length (terminal) spans kept when
    they fall inside."""
    t = truth
    end = t["end"].fillna(until)
    zero = t["end"].notna() & (t["end"] == t["start"])
    keep = (t["start"] < until) & ((zero & (t["start"] >= since)) | (~zero & (end > since)))
    t = t[keep]
    out = pd.DataFrame({
        "instance_id": t["instance_id"].to_numpy(),
        "status": t["status"].astype(str).to_numpy(),
        "start": t["start"].clip(lower=since).to_numpy(),
        "end": end[keep].clip(upper=until).to_numpy(),
        "open_ended": (t["end"].isna() | (t["end"] > until)).to_numpy(),
    })
    return out


def truth_intervals(sim: Any, instances: pd.DataFrame, since: pd.Timestamp,
                    until: pd.Timestamp) -> pd.DataFrame:
    """The truth as an intervals frame (the columns of :func:`ka.lifecycles`)."""
    want = clip(sim.truth_intervals(), since, until)
    attrs = instances.drop_duplicates("id").set_index("id")[
        [c for c in ATTRS if c in instances]]
    iv = want.join(attrs, on="instance_id", how="inner")
    iv = iv.assign(status=pd.Categorical(iv["status"], categories=list(ka.STATUSES),
                                         ordered=True),
                   duration=iv["end"] - iv["start"], source="events")
    iv = iv.sort_values(["instance_id", "start", "end"]).reset_index(drop=True)
    iv.attrs = {"since": since, "until": until, "findings": []}
    return iv


def per_status(iv: pd.DataFrame) -> dict[str, pd.Timedelta]:
    """Total time per known status."""
    iv = iv[iv["status"].notna()]
    d = (iv["end"] - iv["start"]).groupby(iv["status"].astype(str)).sum()
    return {str(k): v for k, v in d.items()}


def availability(iv: pd.DataFrame, since: pd.Timestamp, until: pd.Timestamp,
                 policy: ka.UptimePolicy | None = None) -> float:
    """Across services, time-weighted (the headline's figure)."""
    up = ka.uptime(iv, policy=policy, since=since, until=until)
    observed = up["observed_time"].sum()
    return float((observed - up["down_time"].sum()) / observed)


def compare(iv: pd.DataFrame, truth_iv: pd.DataFrame, since: pd.Timestamp,
            until: pd.Timestamp) -> dict[str, Any]:
    """How far rebuilt intervals are from the truth over the window."""
    got, want = per_status(iv), per_status(truth_iv)
    errors = {s: abs(got.get(s, pd.Timedelta(0)) - t) / t
              for s, t in want.items() if t > pd.Timedelta(hours=1)}
    total = (iv["end"] - iv["start"]).sum()
    unknown = (iv.loc[iv["status"].isna(), "end"] - iv.loc[iv["status"].isna(), "start"]).sum()
    a_got = availability(iv, since, until)
    a_want = availability(truth_iv, since, until)
    inc_got = len(ka.incidents(iv, since=since, until=until))
    inc_want = len(ka.incidents(truth_iv, since=since, until=until))
    return {"status_errors": errors,
            "max_status_error": max(errors.values()) if errors else 0.0,
            "worst_status": max(errors, key=errors.get) if errors else "",
            "availability": a_got, "availability_truth": a_want,
            "availability_pp": abs(a_got - a_want) * 100,
            "incidents": inc_got, "incidents_truth": inc_want,
            "unknown_share": float(unknown / total) if total > pd.Timedelta(0) else 0.0}
