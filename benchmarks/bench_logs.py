"""Logs benchmark: one hour of a 300-instance service holding a million lines.

Prints medians and ratios measured side by side in one run, the simulator in its own
process (as a remote API would be):

* at 50 ms of latency, ``load_logs`` (time slices read at once) against the Koyeb CLI's
  algorithm (one cursor, oldest first, ``limit=1000``, the same as the loader, so the
  ratio measures concurrency, not page size; a DataFrame at the end), both checked to
  return the same lines; target: at least 3x;
* peak memory of ``load_logs`` (a fresh process: its peak RSS above what it held before
  loading) against the frame's own size; target: at most 2x;
* on loopback, ``log_patterns`` over the million lines against the time to load them
  (target: at most 2x), and Drain (``drain3``, the field's reference) on a sample, for
  speed and for quality: how many templates each line family gets, and how many
  families share a template (1 and 1 are right).

Run: ``pip install -e ".[bench]" && python benchmarks/bench_logs.py`` (about 4 min;
``--lines 200000`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import requests
from _common import describe, ratio
from _streams_server import NOW, big_service

import koyeb_analytics as ka

LIMIT = 1000
HERE = Path(__file__).resolve().parent


def cli_loop(url: str, token: str, service_id: str, start: str, end: str) -> pd.DataFrame:
    """The Koyeb CLI's ``queryLogs``: one cursor, following next_start/next_end."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    rows: list[tuple[str, str, str | None, str]] = []
    params = {"service_id": service_id, "start": start, "end": end, "order": "asc",
              "limit": LIMIT}
    while True:
        reply = session.get(f"{url}/v1/streams/logs/query", headers=headers, params=params,
                            timeout=60).json()
        for e in reply["data"]:
            labels = e["labels"]
            rows.append((e["created_at"], e["msg"], labels.get("instance_id"),
                         labels["stream"]))
        page = reply["pagination"]
        if not page["has_more"]:
            break
        params = {**params, "start": page["next_start"], "end": page["next_end"]}
    df = pd.DataFrame(rows, columns=["created_at", "msg", "instance_id", "stream"])
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True, format="ISO8601")
    return df


def loader(url: str, token: str, service_id: str, start: str, end: str,
           concurrency: int) -> pd.DataFrame:
    client = ka.KoyebClient(token, base_url=url, concurrency=concurrency,
                            read_ahead="threads")
    return ka.load_logs(client, service_id=service_id, since=start, until=end,
                        progress=False)


def memory_child(url: str, token: str, service_id: str, start: str, end: str) -> None:
    """In a fresh process: load, then print the peak RSS growth (sampled every 20 ms)
    and the frame's size."""
    import threading

    import psutil

    # Everything the load needs is imported and warmed first, so the growth is the load's.
    loader(url, token, service_id, start, (pd.Timestamp(start) + pd.Timedelta("1s"))
           .isoformat(), 8)
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], proc.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    df = loader(url, token, service_id, start, end, 8)
    done.set()
    peak[0] = max(peak[0], proc.memory_info().rss)
    print(json.dumps({"lines": len(df), "frame": int(df.memory_usage(deep=True).sum()),
                      "peak_growth": peak[0] - before}))


def families(msgs: pd.Series) -> pd.Series:
    from koyeb_analytics.simulator._story import FAMILIES

    fam = pd.Series(-1, index=msgs.index)
    for k, f in enumerate(FAMILIES):
        fam[msgs.str.contains(f.signature, regex=False)] = k
    return fam


def quality(templates: pd.Series, fam: pd.Series) -> tuple[int, float, int]:
    """Most templates of one family, mean templates per family, most families of one
    template."""
    per_family = templates.groupby(fam).nunique()
    per_template = fam.groupby(templates).nunique()
    return int(per_family.max()), float(per_family.mean()), int(per_template.max())


def drain(msgs: list[str]) -> list[str]:
    from drain3 import TemplateMiner

    miner = TemplateMiner()
    ids = [miner.add_log_message(m)["cluster_id"] for m in msgs]
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return [templates[i] for i in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--drain-sample", type=int, default=200_000)
    parser.add_argument("--memory-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    end = pd.Timestamp(NOW)
    start = end - pd.Timedelta("1h")
    s, e = start.isoformat().replace("+00:00", "Z"), end.isoformat().replace("+00:00", "Z")
    with big_service(days=0.1, lines_per_hour=args.lines) as (info, set_latency):
        url, token, sid, instances, rate, seed = info
        print(f"service: {instances} instances (seed {seed}), {rate:.3f} lines/s each; "
              f"window {s} .. {e}; limit {LIMIT}")

        # -- 1. at latency: the loader against the CLI's loop, interleaved
        set_latency(args.latency)
        cli_t, ka_t = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            ref = cli_loop(url, token, sid, s, e)
            cli_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            df = loader(url, token, sid, s, e, args.concurrency)
            ka_t.append(time.perf_counter() - t)
        same = len(ref.drop_duplicates()) == len(df)
        print(f"\n== load one hour at {args.latency * 1000:.0f} ms latency "
              f"({len(df):,} lines, {df.attrs['pages']} pages, {df.attrs['slices']} slices, "
              f"same lines as the CLI loop: {same})")
        print(f"  CLI cursor loop      {describe(cli_t)}")
        print(f"  ka.load_logs (x{args.concurrency})  {describe(ka_t)}")
        r, lo, hi = ratio(cli_t, ka_t)
        print(f"  speed-up {r:.1f}x (pairs {lo:.1f}..{hi:.1f})   target >= 3x: "
              f"{'met' if r >= 3 else 'MISSED'}")
        del ref

        # -- 2. memory, in a fresh process (loopback: memory does not depend on latency)
        set_latency(0.0)
        out = subprocess.run([sys.executable, str(HERE / "bench_logs.py"), "--memory-child",
                              url, token, sid, s, e], capture_output=True, text=True,
                             check=True).stdout
        mem = json.loads(out.strip().splitlines()[-1])
        share = mem["peak_growth"] / mem["frame"]
        print(f"\n== memory ({mem['lines']:,} lines)")
        print(f"  frame {mem['frame'] / 2**20:.0f} MiB, peak RSS growth while loading "
              f"{mem['peak_growth'] / 2**20:.0f} MiB: {share:.2f}x the frame   "
              f"target <= 2x: {'met' if share <= 2 else 'MISSED'}")

        # -- 3. loopback: patterns against loading
        load_t, pat_t = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            df = loader(url, token, sid, s, e, args.concurrency)
            load_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            patterns = ka.log_patterns(df)
            pat_t.append(time.perf_counter() - t)
    print(f"\n== patterns over {len(df):,} lines, loopback")
    print(f"  ka.load_logs         {describe(load_t)}")
    print(f"  ka.log_patterns      {describe(pat_t)}   ({len(patterns)} patterns)")
    r, lo, hi = ratio(pat_t, load_t)
    print(f"  patterns / load {r:.2f}x (pairs {lo:.2f}..{hi:.2f})   target <= 2x: "
          f"{'met' if r <= 2 else 'MISSED'}")
    fam = families(df["msg"])
    from koyeb_analytics.analysis._logs import mask

    ours = pd.Series(mask(df["msg"]).to_pylist(), index=df.index)
    n = min(args.drain_sample, len(df))
    sample = df["msg"].iloc[:n].tolist()
    t = time.perf_counter()
    mask(df["msg"].iloc[:n])
    mask_t = time.perf_counter() - t
    t = time.perf_counter()
    drained = pd.Series(drain(sample), index=df.index[:n])
    drain_t = time.perf_counter() - t
    print(f"\n== masking against Drain (drain3) on the first {n:,} lines")
    print(f"  mask-and-group {mask_t:6.2f} s ({n / mask_t:,.0f} lines/s)   "
          f"Drain {drain_t:6.2f} s ({n / drain_t:,.0f} lines/s): "
          f"{drain_t / mask_t:.0f}x slower; at this rate 1M lines take "
          f"{drain_t * 1_000_000 / n:.0f} s")
    for name, templates, idx in (("mask-and-group", ours, df.index),
                                 ("mask-and-group (sample)", ours.iloc[:n], df.index[:n]),
                                 ("Drain (sample)", drained, df.index[:n])):
        worst, mean, shared = quality(templates, fam.loc[idx])
        print(f"  {name:24s} templates per family: max {worst}, mean {mean:.2f}; "
              f"families per template: max {shared}")
    print(f"  line families present: {fam.nunique()} (unmatched lines: "
          f"{int((fam < 0).sum())})")


if __name__ == "__main__":
    main()
