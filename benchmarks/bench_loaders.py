"""Loader benchmark: ``load_instances`` against the usual ways of listing instances.

Prints medians and ratios measured side by side in one run (contenders interleaved
round by round, so machine noise hits them alike):

* 100k instances through ``load_instances`` versus (a) the Koyeb CLI's algorithm (a
  sequential offset loop with requests, limit 100, DataFrame at the end), (b) the
  official ``koyeb-sdk`` (``InstancesApi.list_instances`` page by page, DataFrame from
  ``to_dict()``) and (c) the floor of this stack: bare requests + json +
  ``DataFrame.from_records`` at the same concurrency, and (d) a stronger in-order
  baseline than the CLI's, urllib3 on one connection doing the same work; at 0 ms and
  50 ms of latency. Every contender is warmed at every latency and must return the
  same rows in every round (one that skipped pages would look faster).
* A 1-hour window of ``load_events`` out of 30 days: pages read against the bound.
* Peak memory while loading every event, against the final frame's size.

Run: ``pip install -e ".[bench]" && python benchmarks/bench_loaders.py`` (about 10 min).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import requests
from _common import describe, ratio, simulator_process, timed

import koyeb_analytics as ka

LIMIT = 100


def cli_loop(url: str, token: str) -> pd.DataFrame:
    """The Koyeb CLI's paging: offset = page * 100 until offset >= count."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    rows: list[dict] = []
    page = 0
    while True:
        reply = session.get(f"{url}/v1/instances", headers=headers, timeout=60,
                            params={"limit": LIMIT, "offset": page * LIMIT}).json()
        rows.extend(reply["instances"])
        page += 1
        if page * LIMIT >= reply["count"]:
            break
    return pd.DataFrame(rows)


def sdk_loop(url: str, token: str) -> pd.DataFrame:
    """What a user writes with the official koyeb-sdk."""
    from koyeb.api import ApiClient, Configuration, InstancesApi

    cfg = Configuration(host=url)
    cfg.api_key["Bearer"] = token
    cfg.api_key_prefix["Bearer"] = "Bearer"
    api = InstancesApi(ApiClient(cfg))
    rows: list[dict] = []
    offset = 0
    while True:
        reply = api.list_instances(limit=str(LIMIT), offset=str(offset))
        rows.extend(i.to_dict() for i in reply.instances or [])
        offset += LIMIT
        if offset >= (reply.count or 0):
            break
    return pd.DataFrame(rows)


def floor_loop(url: str, token: str, concurrency: int) -> pd.DataFrame:
    """The floor: bare requests + json + from_records, pages fetched concurrently."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(concurrency, 10))
    session.mount("http://", adapter)
    headers = {"Authorization": f"Bearer {token}"}

    def fetch(offset: int) -> dict:
        return json.loads(session.get(f"{url}/v1/instances", headers=headers, timeout=60,
                                      params={"limit": LIMIT, "offset": offset}).content)

    first = fetch(0)
    rows = list(first["instances"])
    with ThreadPoolExecutor(concurrency) as pool:
        for reply in pool.map(fetch, range(LIMIT, first["count"], LIMIT)):
            rows.extend(reply["instances"])
    return pd.DataFrame.from_records(rows)


def urllib3_in_order(url: str, token: str) -> pd.DataFrame:
    """A stronger baseline than the CLI's: urllib3, one connection, pages in order, the
    same work (json + one DataFrame), nothing of requests' per-call overhead."""
    import urllib3

    pool = urllib3.PoolManager(maxsize=1)
    headers = {"Authorization": f"Bearer {token}"}
    rows: list[dict] = []
    offset = 0
    while True:
        reply = json.loads(pool.request(
            "GET", f"{url}/v1/instances?limit={LIMIT}&offset={offset}", headers=headers,
            timeout=60).data)
        rows.extend(reply["instances"])
        offset += LIMIT
        if offset >= reply["count"]:
            break
    return pd.DataFrame.from_records(rows)


def ours(url: str, token: str, concurrency: int, read_ahead: str) -> pd.DataFrame:
    client = ka.KoyebClient(token, base_url=url, concurrency=concurrency,
                            read_ahead=read_ahead)
    return ka.load_instances(client, progress=False)


MEMORY_CHILD = r"""
import json, sys, time
import koyeb_analytics as ka

def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

url, token = sys.argv[1], sys.argv[2]
client = ka.KoyebClient(token, base_url=url, concurrency=4)
ka.load_events(client, window="1h", progress=False)  # warm imports and pools
# ru_maxrss can carry the parent's size across fork and exec: reset the kernel's
# high-water mark (VmHWM) instead, and read it back.
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = status_kb("VmRSS")
started = time.perf_counter()
df = ka.load_events(client, progress=False)
seconds = time.perf_counter() - started
peak = status_kb("VmHWM")
print(json.dumps({"rows": len(df), "frame": int(df.memory_usage(deep=True).sum()),
                  "peak_delta": (peak - base) * 1024, "pages": df.attrs["pages"],
                  "seconds": seconds}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=900,
                        help="fleet size (900 services over 30 days: ~100k instances)")
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    c = args.concurrency

    print(f"Fleet: seed 1, {args.days:g} days, {args.services} services; "
          f"load_instances and the floor at concurrency {c}\n")
    results: dict[str, list[float]] = {}
    for latency in (0, 50):
        with simulator_process(seed=1, days=args.days, services=args.services,
                               latency_ms=latency) as (url, token):
            # The simulator is on loopback either way; at 50 ms it stands for a remote
            # API, so the client is told to read ahead as it would there.
            how = "pipelined" if latency == 0 else "threads"
            contenders = {"load_instances": lambda how=how: ours(url, token, c, how),
                          "floor": lambda: floor_loop(url, token, c),
                          "urllib3 in order": lambda: urllib3_in_order(url, token),
                          "cli loop": lambda: cli_loop(url, token)}
            if latency == 0:
                contenders["koyeb-sdk"] = lambda: sdk_loop(url, token)
            # Warm-up, every contender at every latency: imports (the SDK's take
            # seconds), connection pools, server caches.
            for fn in contenders.values():
                fn()
            runs: dict[str, list[float]] = {k: [] for k in contenders}
            rows: dict[str, set[int]] = {k: set() for k in contenders}
            for _ in range(args.rounds):
                for name, fn in contenders.items():
                    times, df = timed(fn, 1)
                    runs[name] += times
                    rows[name].add(len(df))  # type: ignore[arg-type]
            # A contender that skipped pages would look faster: every one must return
            # every row, every time.
            counts = {n for found in rows.values() for n in found}
            assert len(counts) == 1, f"contenders disagree on the rows: {rows}"
            n = counts.pop()
            print(f"-- {latency} ms latency, {n} instances (every contender, every round)")
            for name, times in runs.items():
                print(f"   {name:15s} {describe(times)}")
                results[f"{name}@{latency}"] = times

    def show(label: str, num: str, den: str, target: str) -> None:
        med, lo, hi = ratio(results[num], results[den])
        print(f"   {label:55s} {med:5.2f}x  (paired runs {lo:.2f}-{hi:.2f})  target {target}")

    print("\nRatios (median of each, and the spread over paired runs):")
    show("koyeb-sdk time / load_instances time, 0 ms", "koyeb-sdk@0", "load_instances@0",
         ">= 2")
    show("cli loop time / load_instances time, 50 ms", "cli loop@50", "load_instances@50",
         ">= 4")
    show("load_instances time / floor time, 0 ms", "load_instances@0", "floor@0", "<= 1.25")
    show("load_instances time / floor time, 50 ms", "load_instances@50", "floor@50", "<= 1.25")
    show("urllib3 in order time / load_instances time, 0 ms", "urllib3 in order@0",
         "load_instances@0", "(stronger baseline)")
    show("urllib3 in order time / load_instances time, 50 ms", "urllib3 in order@50",
         "load_instances@50", "(stronger baseline)")

    with simulator_process(seed=1, days=7, services=100, latency_ms=50) as (url, token):
        # A whole event history (no count in the API): pages in order (concurrency 1,
        # the console's loop) against overlapped pages 4 at a time.
        plain = ka.KoyebClient(token, base_url=url, concurrency=1)
        ahead = ka.KoyebClient(token, base_url=url, concurrency=4, read_ahead="threads")
        ev_runs: dict[str, list[float]] = {"in order": [], "4 ahead": []}
        ev = pd.DataFrame()
        ev_rows: set[int] = set()
        for client in (plain, ahead):
            ka.load_events(client, window="1h", progress=False)  # warm both
        for _ in range(args.rounds):
            for name, client in (("in order", plain), ("4 ahead", ahead)):
                times, ev = timed(lambda c=client: ka.load_events(c, progress=False), 1)
                ev_runs[name] += times
                ev_rows.add(len(ev))
        assert len(ev_rows) == 1, f"in order and ahead disagree on the events: {ev_rows}"
        print(f"\n-- load_events() of a 7-day, 100-service fleet at 50 ms: {len(ev)} events, "
              f"{ev.attrs['pages']} pages, {ev.attrs['pages_discarded']} discarded")
        for name, times in ev_runs.items():
            print(f"   {name:15s} {describe(times)}")
        med, lo, hi = ratio(ev_runs["in order"], ev_runs["4 ahead"])
        print(f"   in order / 4 ahead: {med:.2f}x (paired runs {lo:.2f}-{hi:.2f})")

    with simulator_process(seed=1, days=args.days, services=args.services) as (url, token):
        client = ka.KoyebClient(token, base_url=url, concurrency=4)
        ev = ka.load_events(client, window="1h", progress=False)
        bound = math.ceil(len(ev) / LIMIT) + 1
        # Requests, not only pages used: the page requested ahead and discarded counts.
        requests = ev.attrs["pages"] + ev.attrs["pages_discarded"]
        print(f"\nload_events(window='1h'): {len(ev)} events in the window, "
              f"{requests} pages requested ({ev.attrs['pages']} used, "
              f"{ev.attrs['pages_discarded']} requested ahead and discarded); bound "
              f"ceil(n/100)+1 = {bound} ({'ok' if requests <= bound else 'OVER'})")
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, url, token], check=True,
                             capture_output=True, text=True).stdout
        mem = json.loads(out.strip().splitlines()[-1])
        print(f"load_events(all): {mem['rows']} events, {mem['pages']} pages in "
              f"{mem['seconds']:.1f} s; frame "
              f"{mem['frame'] / 2**20:.0f} MiB (memory_usage deep), peak RSS growth while "
              f"loading {mem['peak_delta'] / 2**20:.0f} MiB = "
              f"{mem['peak_delta'] / mem['frame']:.2f}x the frame (target <= 3)")


if __name__ == "__main__":
    main()
