"""A month of a large fleet: loading, analysing and rendering, timed stage by stage.

For fleets of 30 and 300 services over 30 days (simulator in its own process, 0 ms),
a child process loads the window (``load_window(window="30d")``), analyses it
(``analyse``) and renders the report (``write_report``: the page and its side files),
timing each stage in one run, with the child's peak RSS and the size of the page and of
its side files. Each round is a fresh child. It prints each stage's median and spread
(min-max over the rounds), the ratios analyse/load, render/load and (analyse + render)
/load per round (median and spread), and how each stage grows from the smallest fleet
to the largest beside how the data grows. Targets of the fleet-scale issue: (analyse +
render)/load at most 1.5x for 300 services, analyse growing at most 15x from 30 to 300
services, peak RSS at most 1,000 MB, the page at most 2.5 MB.

``--window 7d --vocabulary opaque`` measures what a user asks of the real API's shape: a
week opening in the middle of the month, with the look-behind and the platform's lines
read around lost events (their log queries are printed).

Run: ``python benchmarks/bench_report.py [--services 30 300] [--rounds 3] [--window 7d]
[--vocabulary opaque]`` (minutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

from _common import simulator_process

CHILD = r"""
import json, sys, time
import koyeb_analytics as ka
from koyeb_analytics.report import write_report

def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

url, token, out, window = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
client = ka.KoyebClient(token, base_url=url)
t0 = time.perf_counter()
w = ka.load_window(client, window=window, progress=False)
t1 = time.perf_counter()
a = ka.analyse(w)
t2 = time.perf_counter()
path = write_report(a, out)
t3 = time.perf_counter()
side = sum(p.stat().st_size for p in path.parent.glob(path.stem + "-*.csv"))
print(json.dumps({"instances": len(w.instances), "events": len(w.events),
                  "load": t1 - t0, "analyse": t2 - t1, "render": t3 - t2,
                  "peak_mb": status_kb("VmHWM") / 1024, "html_mb": path.stat().st_size / 2**20,
                  "side_mb": side / 2**20,
                  "platform_queries": w.platform.attrs.get("requests", 0),
                  "event_requests": w.lookbehind["pages_total"] + w.lookbehind["requests"]}))
"""


def measure(services: int, rounds: int, window: str, vocabulary: str) -> list[dict[str, float]]:
    runs = []
    with simulator_process(seed=1, days=30, services=services, vocabulary=vocabulary) as (
            url, token), tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            out = subprocess.run([sys.executable, "-c", CHILD, url, token, f"{tmp}/r.html",
                                  window],
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in runs:
        r["a/load"] = r["analyse"] / r["load"]
        r["r/load"] = r["render"] / r["load"]
        r["(a+r)/load"] = (r["analyse"] + r["render"]) / r["load"]
    return runs


def spread(runs: list[dict[str, float]], key: str, fmt: str = ".2f") -> str:
    values = [r[key] for r in runs]
    text = format(statistics.median(values), fmt)
    return text if len(values) == 1 else \
        f"{text} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, nargs="+", default=[30, 300])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--window", default="30d", help="the report's window (default 30d)")
    parser.add_argument("--vocabulary", choices=["invented", "opaque"], default="invented")
    args = parser.parse_args()
    print(f"window {args.window} of 30-day histories, {args.vocabulary} vocabulary; "
          "median [min-max] over rounds; seconds, MB")
    print(f"{'services':>8s} {'instances':>9s} {'events':>8s} {'n':>2s} {'load':>17s} "
          f"{'analyse':>17s} {'render':>17s} {'analyse/load':>17s} {'render/load':>17s} "
          f"{'(a+r)/load':>17s} {'peak MB':>8s} {'page MB':>8s} {'CSV MB':>7s}")
    results = {}
    for n in args.services:
        runs = measure(n, args.rounds, args.window, args.vocabulary)
        results[n] = runs
        first = runs[0]
        print(f"{n:8d} {first['instances']:9.0f} {first['events']:8.0f} {len(runs):2d} "
              f"{spread(runs, 'load'):>17s} {spread(runs, 'analyse'):>17s} "
              f"{spread(runs, 'render'):>17s} {spread(runs, 'a/load'):>17s} "
              f"{spread(runs, 'r/load'):>17s} {spread(runs, '(a+r)/load'):>17s} "
              f"{statistics.median(r['peak_mb'] for r in runs):8.0f} "
              f"{statistics.median(r['html_mb'] for r in runs):8.2f} "
              f"{statistics.median(r['side_mb'] for r in runs):7.2f}", flush=True)
        print(f"{'':8s} requests: {first['event_requests']:.0f} for events (look-behind "
              f"included), {first['platform_queries']:.0f} log queries for the platform's "
              "lines", flush=True)
    if len(results) >= 2:
        small, large = min(results), max(results)

        def grows(key: str) -> float:
            return (statistics.median(r[key] for r in results[large])
                    / statistics.median(r[key] for r in results[small]))

        both = {n: [dict(r, both=r["analyse"] + r["render"]) for r in runs]
                for n, runs in results.items()}
        joint = (statistics.median(r["both"] for r in both[large])
                 / statistics.median(r["both"] for r in both[small]))
        print(f"from {small} to {large} services: events x{grows('events'):.1f}, "
              f"instances x{grows('instances'):.1f}; load x{grows('load'):.1f}, "
              f"analyse x{grows('analyse'):.1f} (target at most 15x), "
              f"render x{grows('render'):.1f}, analyse + render x{joint:.1f}, "
              f"page x{grows('html_mb'):.2f}")
        print(f"targets for {large}: (analyse + render)/load at most 1.5x, peak RSS at most "
              "1000 MB, page at most 2.5 MB")


if __name__ == "__main__":
    main()
