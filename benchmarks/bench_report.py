"""A month of a large fleet: loading, analysing and rendering, timed stage by stage.

For fleets of 30 and 300 services over 30 days (simulator in its own process, 0 ms),
a child process loads the window (``load_window(window="30d")``), analyses it
(``analyse``) and renders the report (``write_report``), timing each stage in one run,
with the child's peak RSS and the size of the HTML. It prints the ratios the fleet-scale
issue sets targets for: ``analyse`` + render against the load (target at most 1.5x for
300 services), the growth of ``analyse`` from 30 to 300 services (at most 15x), peak RSS
(at most 1,000 MB) and the HTML (at most 2.5 MB).

Run: ``python benchmarks/bench_report.py [--services 30 300] [--rounds 1]`` (minutes:
the 300-service analysis is the slow part).
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

url, token, out = sys.argv[1], sys.argv[2], sys.argv[3]
client = ka.KoyebClient(token, base_url=url)
t0 = time.perf_counter()
w = ka.load_window(client, window="30d", progress=False)
t1 = time.perf_counter()
a = ka.analyse(w)
t2 = time.perf_counter()
path = write_report(a, out)
t3 = time.perf_counter()
print(json.dumps({"instances": len(w.instances), "events": len(w.events),
                  "load": t1 - t0, "analyse": t2 - t1, "render": t3 - t2,
                  "peak_mb": status_kb("VmHWM") / 1024, "html_mb": path.stat().st_size / 2**20}))
"""


def measure(services: int, rounds: int) -> dict[str, float]:
    runs = []
    with simulator_process(seed=1, days=30, services=services) as (url, token), \
            tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            out = subprocess.run([sys.executable, "-c", CHILD, url, token, f"{tmp}/r.html"],
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, nargs="+", default=[30, 300])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"{'services':>8s} {'instances':>9s} {'events':>8s} {'load s':>7s} "
          f"{'analyse s':>9s} {'render s':>8s} {'(a+r)/load':>10s} {'peak MB':>8s} "
          f"{'HTML MB':>8s}")
    results = {}
    for n in args.services:
        m = measure(n, args.rounds)
        results[n] = m
        print(f"{n:8d} {m['instances']:9.0f} {m['events']:8.0f} {m['load']:7.2f} "
              f"{m['analyse']:9.2f} {m['render']:8.2f} "
              f"{(m['analyse'] + m['render']) / m['load']:9.1f}x {m['peak_mb']:8.0f} "
              f"{m['html_mb']:8.2f}")
    if len(results) >= 2:
        small, large = min(results), max(results)
        print(f"analyse grows {results[large]['analyse'] / results[small]['analyse']:.1f}x "
              f"from {small} to {large} services (target at most 15x); targets for "
              f"{large}: (analyse + render) / load at most 1.5x, peak RSS at most 1000 MB, "
              "HTML at most 2.5 MB")


if __name__ == "__main__":
    main()
