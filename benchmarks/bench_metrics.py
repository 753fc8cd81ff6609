"""Metrics benchmark: all nine metrics of a 300-instance service over 7 days at step=5m.

Prints medians and ratios measured side by side in one run, the simulator in its own
process: ``load_metrics`` (one request per metric, all at once, one long frame) against
the Koyeb CLI's ``metrics get`` (one call after another; it flattens the series, here
kept long with their labels so that both return the same samples), at 50 ms of latency.
Target: at least 3x.

Run: ``python benchmarks/bench_metrics.py`` (about 3 min; ``--days 1`` for a quick look).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import requests
from _common import describe, ratio
from _streams_server import NOW, big_service

import koyeb_analytics as ka
from koyeb_analytics.schema import METRIC_NAMES


def sequential(url: str, token: str, service_id: str, start: str, end: str) -> pd.DataFrame:
    """One call per metric, one after another, rows flattened as the CLI does."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    rows = []
    for name in METRIC_NAMES:
        reply = session.get(f"{url}/v1/streams/metrics", headers=headers, timeout=120, params={
            "service_id": service_id, "name": name, "start": start, "end": end,
            "step": "5m"}).json()
        for series in reply["metrics"]:
            labels = series["labels"]
            for s in series["samples"]:
                rows.append((name, s["timestamp"], s["value"], labels.get("instance_id"),
                             labels.get("code")))
    df = pd.DataFrame(rows, columns=["metric", "ts", "value", "instance_id", "code"])
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    return df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    end = pd.Timestamp(NOW)
    start = end - pd.Timedelta(days=args.days)
    s, e = start.isoformat().replace("+00:00", "Z"), end.isoformat().replace("+00:00", "Z")
    with big_service(days=args.days) as (info, set_latency):
        url, token, sid, instances, _, seed = info
        set_latency(args.latency)
        client = ka.KoyebClient(token, base_url=url, concurrency=len(METRIC_NAMES),
                                read_ahead="threads", timeout=120)
        seq_t, ka_t = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            ref = sequential(url, token, sid, s, e)
            seq_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            df = ka.load_metrics(client, service_id=sid, since=s, until=e, step="5m")
            ka_t.append(time.perf_counter() - t)
    print(f"service: {instances} instances alive at the end (seed {seed}), {args.days:g} days "
          f"at step=5m, {args.latency * 1000:.0f} ms latency")
    per = df.groupby("metric", observed=True).agg(series=("instance_id", "nunique"),
                                                  samples=("value", "size"))
    print(per.to_string())
    print(f"samples: {len(df):,} (the sequential calls: {len(ref):,}; same: "
          f"{len(df) == len(ref)})")
    print(f"  one call after another   {describe(seq_t)}")
    print(f"  ka.load_metrics (x9)     {describe(ka_t)}")
    r, lo, hi = ratio(seq_t, ka_t)
    print(f"  speed-up {r:.1f}x (pairs {lo:.1f}..{hi:.1f})   target >= 3x: "
          f"{'met' if r >= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
