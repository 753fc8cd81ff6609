"""History store and long windows: what a sync costs, what a store saves, how a window
is read over a slow network. Ratios are measured side by side in one run.

1. Incremental sync after N new events: requests to the events listing, against the
   bound ceil(N/100) + 2 (and the instance listing's requests, printed apart).
2. A 30-day window of about a million events: ``store.events`` against ``load_events``
   live at 0 ms latency (target >= 10x), and the store's peak memory against the frame
   (target <= 2x), measured in a child process.
3. A 7-day window from a server 100 ms away: read ahead on threads against in order, at
   the default concurrency of 4 (target >= 3x), with the pages discarded.

The simulator runs in its own process. Usage: ``python benchmarks/bench_history.py``
(``--services 220 --days 30`` gives about a million events; smaller for a quick look;
``--parts 3`` runs only the slow window). The figures of the parts run are stored in
``benchmarks/results/bench_history.json`` (each part with its date), from which
``tools/readme_numbers.py`` writes the README's.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

import koyeb_analytics as ka

sys.path.insert(0, str(Path(__file__).parent))
from _common import describe, ratio, save_results, simulator_process, timed  # noqa: E402

MEMORY_CHILD = r"""
import json, sys, time
import pandas as pd
import koyeb_analytics as ka

def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

store = ka.HistoryStore(sys.argv[1])
since = pd.Timestamp(sys.argv[2])
store.events(since=since, until=since + pd.Timedelta("1h"))  # warm imports
# ru_maxrss can carry the parent's size across fork and exec: reset the kernel's
# high-water mark (VmHWM) instead, and read it back.
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = status_kb("VmRSS")
started = time.perf_counter()
df = store.events(since=since)
seconds = time.perf_counter() - started
peak = status_kb("VmHWM")
print(json.dumps({"rows": len(df), "frame": int(df.memory_usage(deep=True).sum()),
                  "peak_delta": (peak - base) * 1024, "seconds": seconds}))
"""


def incremental(n_values: list[int]) -> None:
    print("1. Incremental sync after N new events (simulator in process, 0 ms)")
    for n in n_values:
        with ka.simulate(seed=3, days=3, services=20) as sim, \
                tempfile.TemporaryDirectory() as tmp:
            store = ka.HistoryStore(tmp)
            store.sync(sim.client())
            sim.add_instances(n)  # each new instance brings one event
            before = len(sim.requests)
            result = store.sync(sim.client())
            paths = [r.path for r in sim.requests[before:]]
            events = paths.count("/v1/instance_events")
            bound = math.ceil(n / 100) + 2
            print(f"   N={n:5d}: {result.events_added} added; events listing {events} "
                  f"request(s), bound {bound}: {'ok' if events <= bound else 'OVER'}; "
                  f"instance listing {paths.count('/v1/instances')} page(s) of "
                  f"{result.instances_listed} instances, names "
                  f"{paths.count('/v1/apps') + paths.count('/v1/services')}")
    print()


def long_window(services: int, days: float, rounds: int) -> dict[str, object]:
    print(f"2. A {days:g}-day window from a store vs live (seed 1, {services} services, "
          "0 ms)")
    with simulator_process(seed=1, days=days, services=services) as (url, token), \
            tempfile.TemporaryDirectory() as tmp:
        client = ka.KoyebClient(token, base_url=url)
        store = ka.HistoryStore(tmp)
        sync_times, result = timed(lambda: store.sync(client), 1)
        print(f"   first sync (the whole history): {result.events_added} events, "
              f"{result.instances_listed} instances in {sync_times[0]:.1f} s")
        since = pd.Timestamp(store.manifest()["high_water"]["events"]) - \
            pd.Timedelta(days=days)
        live_t: list[float] = []
        store_t: list[float] = []
        rows = set()
        for _ in range(rounds):  # interleaved, each warmed by the previous round
            t, live = timed(lambda: ka.load_events(client, since=since, progress=False), 1)
            live_t += t
            t, kept = timed(lambda: store.events(since=since), 1)
            store_t += t
            rows.add((len(live), len(kept)))
            assert live["id"].equals(kept["id"]), "the store and the API disagree"
        print(f"   rows (live, store): {sorted(rows)}")
        print(f"   load_events live   {describe(live_t)}")
        print(f"   store.events       {describe(store_t)}")
        mid, low, high = ratio(live_t, store_t)
        print(f"   live / store: {mid:.1f}x ({low:.1f}-{high:.1f}) (target >= 10)")
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, tmp, since.isoformat()],
                             capture_output=True, text=True, check=True)
        mem = json.loads(out.stdout)
        print(f"   memory: frame {mem['frame'] / 2**20:.0f} MiB, peak RSS growth "
              f"{mem['peak_delta'] / 2**20:.0f} MiB = {mem['peak_delta'] / mem['frame']:.2f}x "
              f"the frame (target <= 2), {mem['rows']} rows in {mem['seconds']:.2f} s")
    print()
    return {"services": services, "days": days, "rounds": rounds, "rows": len(live),
            "live_s": statistics.median(live_t), "store_s": statistics.median(store_t),
            "live_over_store": mid, "low": low, "high": high,
            "memory_over_frame": mem["peak_delta"] / mem["frame"]}


def slow_window(services: int, rounds: int) -> dict[str, object]:
    print(f"3. A 7-day window at 100 ms latency (seed 2, 14 days, {services} services), "
          "concurrency 4")
    with simulator_process(seed=2, days=14, services=services, latency_ms=100) as (url, tok):
        results: dict[str, list[float]] = {"threads": [], "none": []}
        seen: dict[str, set] = {"threads": set(), "none": set()}
        for _ in range(rounds):
            for mode in ("none", "threads"):
                client = ka.KoyebClient(tok, base_url=url, read_ahead=mode, concurrency=4)
                ka.load_events(client, window="1h", progress=False)  # warm the pool
                t, ev = timed(lambda c=client: ka.load_events(c, window="7d",
                                                              progress=False), 1)
                results[mode] += t
                seen[mode].add((len(ev), ev.attrs["pages"], ev.attrs["pages_discarded"]))
        rows = {r[0] for s in seen.values() for r in s}
        print(f"   rows, pages, discarded: in order {sorted(seen['none'])}, "
              f"ahead {sorted(seen['threads'])}")
        print(f"   in order     {describe(results['none'])}")
        print(f"   4 ahead      {describe(results['threads'])}")
        mid, low, high = ratio(results["none"], results["threads"])
        print(f"   in order / ahead: {mid:.2f}x ({low:.2f}-{high:.2f}) (target >= 3); "
              f"same rows: {len(rows) == 1}")
    print()
    return {"services": services, "rounds": rounds, "latency_ms": 100, "concurrency": 4,
            "in_order_s": statistics.median(results["none"]),
            "ahead_s": statistics.median(results["threads"]),
            "in_order_over_ahead": mid, "low": low, "high": high, "same_rows": len(rows) == 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=220)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--slow-services", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 3")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    figures: dict[str, object] = {}
    if "1" in parts:
        incremental([0, 250, 1000])
    if "2" in parts:
        figures["long_window"] = long_window(args.services, args.days, args.rounds)
    if "3" in parts:
        figures["slow_window"] = slow_window(args.slow_services, args.rounds)
    if figures:
        save_results("bench_history", figures, merge=True)


if __name__ == "__main__":
    main()
