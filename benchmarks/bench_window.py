"""Right numbers for a window inside a longer history: accuracy, and what look-behind costs.

A report almost always opens in the middle of instances' lives. This measures windows of
24 hours and of 7 days that end at the simulator's present, inside 21-day histories,
for several seeds and three simulated shapes:

* ``invented``: the status in each event's metadata (exact by construction);
* ``opaque-mild``: opaque types, empty metadata, real message texts only;
* ``opaque``: the real API's shape as the simulator's defaults have it (5 % of status
  messages from no known family, 1 % of events never served, 30 % of services created
  long before the history opens).
* ``opaque-kept``: the same fleets with every event served (no lost event): what
  separates it from ``opaque`` is what lost events cost, which no rule can win back
  when the data holds no trace of when the lost change happened.

Part 1 compares what ``load_window`` + ``analyse`` rebuild (the default path:
``details=False``, default look-behind, ``platform="lost"``; ``--platform all`` or ``none``
for the others) with the simulator's ground truth, and counts the event requests and the
log queries for the platform's lines: the worst
relative error of total time per status (statuses with over an hour), availability
(across services, the headline's figure) in percentage points, incident counts, and the
share of instance-time whose status stays unknown. Part 2 sweeps the look-behind bound
on the opaque shape (unknown share, availability error, requests). Part 3 times the
look-behind at 0 and 100 ms of latency against a simulator in its own process, and
loading a 7-day window against reading the same pages in order, one at a time. Part 4
reads windows from a history store: the look-behind and the platform lines of lost
events cost no request (the worst status error with and without those lines).

Run: ``python benchmarks/bench_window.py [--seeds 3] [--first-seed 1]`` (about 5
minutes; ``--first-seed 4`` for seeds 4-6, ``--shape opaque`` for one shape).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
from _common import simulator_process

import koyeb_analytics as ka
from koyeb_analytics.simulator._vocabulary import OPAQUE_VOCABULARY
from koyeb_analytics.sources import DEFAULT_LOOKBEHIND

sys.path.insert(0, str(Path(__file__).parent.parent))
from tests.window_truth import compare, truth_intervals  # noqa: E402

NOW = pd.Timestamp("2026-11-20T12:00:00Z")
WINDOWS = ("24h", "7D")
SHAPES = {
    "invented": {"vocabulary": "invented"},
    "opaque-mild": {"vocabulary": dataclasses.replace(OPAQUE_VOCABULARY, unknown_share=0.0,
                                                      missing_share=0.0)},
    "opaque": {"vocabulary": "opaque"},
    # The same fleets with every event served: what is left is not the lost events' doing.
    "opaque-kept": {"vocabulary": dataclasses.replace(OPAQUE_VOCABULARY, missing_share=0.0),
                    "prehistory_share": 0.3},
}
BOUNDS = (0, "1h", "3h", "6h", "12h", "1D", "2D")


def requests(win: ka.Window) -> int:
    """Event requests a window's load made (its pages, look-behind included)."""
    return int(win.lookbehind["pages_total"]) + int(win.lookbehind["requests"])


def platform_requests(win: ka.Window) -> int:
    """Log queries a window's load made for the platform's lines around lost events."""
    return int((win.platform.attrs if win.platform is not None else {}).get("requests", 0))


def lost(sim: ka.Simulator, since: pd.Timestamp) -> int:
    """Status events inside the window the simulator never served (read from its truth,
    to say which rows lost events touch; the toolkit never sees this)."""
    ev = sim.fleet.ev
    at = since.value // 1000
    return int(((~ev["served"]) & (ev["status"] >= 0) & (ev["when"] >= at)
                & (ev["when"] >= sim.fleet.start_us)).sum())


def accuracy(seeds: range, services: int, shapes: list[str], platform: str) -> None:
    print(f"-- 1. against the truth: {services} services, 21-day histories, default "
          f"look-behind ({DEFAULT_LOOKBEHIND}), platform={platform!r}")
    print("   targets: per-status within 1 %, availability within 0.02 pp, incidents "
          "within 10 % (or 1), unknown at most 1 %; lost: status events inside the "
          "window never served")
    print(f"   {'shape':12s} {'seed':>4s} {'window':>6s} {'worst status error':>24s} "
          f"{'avail. pp':>9s} {'incidents':>11s} {'unknown':>8s} {'lost':>5s} "
          f"{'requests':>8s} {'platform':>8s}")
    for name in shapes:
        options = SHAPES[name]
        for seed in seeds:
            with ka.simulate(seed=seed, days=21, services=services, now=NOW,
                             **options) as sim:  # type: ignore[arg-type]
                client = sim.client()
                for length in WINDOWS:
                    since = NOW - pd.Timedelta(length)
                    win = ka.load_window(client, since=since, until=NOW, progress=False,
                                         platform=platform)
                    got = compare(ka.analyse(win).intervals,
                                  truth_intervals(sim, win.instances, since, NOW), since, NOW)
                    worst = f"{got['max_status_error']:.2%} ({got['worst_status'] or '-'})"
                    print(f"   {name:12s} {seed:4d} {length:>6s} {worst:>24s} "
                          f"{got['availability_pp']:9.4f} "
                          f"{got['incidents']:>4d} vs {got['incidents_truth']:<4d} "
                          f"{got['unknown_share']:8.2%} {lost(sim, since):5d} "
                          f"{requests(win):8d} {platform_requests(win):8d}")


def sweep(seeds: range, services: int) -> None:
    print(f"\n-- 2. the look-behind bound, opaque shape, {services} services "
          "(requests relative to lookbehind=0)")
    print(f"   {'window':>6s} {'bound':>6s} {'unknown (worst)':>16s} "
          f"{'avail. pp (worst)':>18s} {'requests x (worst)':>19s} {'per instance':>13s}")
    rows: dict[tuple[str, object], list[tuple[float, float, float, int]]] = {}
    for seed in seeds:
        with ka.simulate(seed=seed, days=21, services=services, now=NOW,
                         vocabulary="opaque") as sim:
            client = sim.client()
            for length in WINDOWS:
                since = NOW - pd.Timedelta(length)
                base = 0
                for bound in BOUNDS:
                    win = ka.load_window(client, since=since, until=NOW, progress=False,
                                         lookbehind=bound)
                    got = compare(ka.analyse(win).intervals,
                                  truth_intervals(sim, win.instances, since, NOW), since, NOW)
                    base = base or requests(win)
                    rows.setdefault((length, bound), []).append(
                        (got["unknown_share"], got["availability_pp"],
                         requests(win) / base, int(win.lookbehind["per_instance"])))
    for (length, bound), values in rows.items():
        unknown, pp, cost, per = zip(*values, strict=True)
        print(f"   {length:>6s} {str(bound):>6s} {max(unknown):16.2%} {max(pp):18.4f} "
              f"{max(cost):18.2f}x {max(per):13d}")


def timing(services: int, rounds: int) -> None:
    print(f"\n-- 3. time, opaque shape, {services} services, 21 days; simulator in its own "
          f"process; medians of {rounds} rounds")
    for latency in (0, 100):
        with simulator_process(seed=1, days=21, services=services, latency_ms=latency,
                               vocabulary="opaque") as (url, token):
            # Against latency, threads (the default away from loopback); on loopback, the
            # default (one pipelined connection).
            fast = ka.KoyebClient(token, base_url=url,
                                  read_ahead="threads" if latency else None)
            slow = ka.KoyebClient(token, base_url=url, concurrency=1, read_ahead="none")
            for length in WINDOWS:
                runs: dict[str, list[float]] = {}
                cost: dict[str, int] = {}
                lb = f"look-behind {DEFAULT_LOOKBEHIND}"
                plan = [("no look-behind", fast, 0), (lb, fast, DEFAULT_LOOKBEHIND),
                        ("in order", slow, DEFAULT_LOOKBEHIND)]
                if length != "7D" or latency == 0:
                    plan = plan[:2]
                for _ in range(rounds):
                    for label, client, bound in plan:
                        start = time.perf_counter()
                        win = ka.load_window(client, window=length, lookbehind=bound,
                                             progress=False)
                        runs.setdefault(label, []).append(time.perf_counter() - start)
                        cost[label] = requests(win)
                print(f"   {latency:3d} ms, {length:>3s} window: " + "; ".join(
                    f"{label} {statistics.median(t):.2f} s ({cost[label]} requests)"
                    for label, t in runs.items()))
                base, ahead = runs["no look-behind"], runs[lb]
                slower = statistics.median(ahead) / statistics.median(base)
                print(f"      look-behind costs {slower:.2f}x "
                      f"the time, {cost[lb] / cost['no look-behind']:.2f}x the requests")
                print(f"      platform lines around lost events: "
                      f"{platform_requests(win)} log queries in the last load")
                if "in order" in runs:
                    ratios = [a / b for a, b in zip(runs["in order"], ahead, strict=True)]
                    faster = statistics.median(runs["in order"]) / statistics.median(ahead)
                    print(f"      in order / concurrent: {faster:.2f}x "
                          f"(paired {min(ratios):.2f}-{max(ratios):.2f}; target >= 3x)")


def from_store(services: int) -> None:
    import tempfile

    print(f"\n-- 4. from a history store: opaque shape, {services} services, 21 days; the "
          "sync keeps the platform lines of lost events, the window reads them from the "
          "store")
    with ka.simulate(seed=1, days=21, services=services, now=NOW,
                     vocabulary="opaque") as sim, tempfile.TemporaryDirectory() as tmp:
        store = ka.HistoryStore(Path(tmp) / "h")
        start = time.perf_counter()
        synced = store.sync(sim.client(), until=sim.now)
        print(f"   sync: {time.perf_counter() - start:.2f} s, {synced.events_added} events, "
              f"platform lines of {synced.platform_gaps_read} gaps "
              f"({synced.platform_requests} requests, {synced.platform_lines_added} lines)")
        for length in WINDOWS:
            since = NOW - pd.Timedelta(length)
            truth = None
            for platform in ("lost", "none"):
                before = len(sim.requests)
                start = time.perf_counter()
                win = ka.load_window(store, since=since, until=NOW, progress=False,
                                     platform=platform)
                took = time.perf_counter() - start
                truth = truth if truth is not None else \
                    truth_intervals(sim, win.instances, since, NOW)
                got = compare(ka.analyse(win).intervals, truth, since, NOW)
                worst = f"{got['max_status_error']:.2%} ({got['worst_status'] or '-'})"
                lines = f"{len(win.platform)} lines of {win.platform.attrs['gaps']} gaps" \
                    if platform != "none" else "no platform lines"
                print(f"   {length:>3s} window, platform={platform!r:6s}: "
                      f"{len(sim.requests) - before} requests, {took:.2f} s; worst status "
                      f"error {worst}, availability off by {got['availability_pp']:.4f} pp, "
                      f"unknown {got['unknown_share']:.2%}; {lines}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=1,
                        help="the first seed (--first-seed 4 --seeds 3: seeds 4-6)")
    parser.add_argument("--shape", choices=list(SHAPES), action="append",
                        help="only these shapes in part 1 (repeatable; default all)")
    parser.add_argument("--services", type=int, default=12)
    parser.add_argument("--platform", choices=["lost", "all", "none"], default="lost",
                        help="load_window's platform= in part 1 (default: its default)")
    parser.add_argument("--timing-services", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", choices=["accuracy", "sweep", "timing", "store"],
                        action="append",
                        default=[])
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if "accuracy" not in args.skip:
        accuracy(seeds, args.services, args.shape or list(SHAPES), args.platform)
    if "sweep" not in args.skip:
        sweep(seeds, args.services)
    if "timing" not in args.skip:
        timing(args.timing_services, args.rounds)
    if "store" not in args.skip:
        from_store(args.services)


if __name__ == "__main__":
    main()
