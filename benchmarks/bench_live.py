"""Live view: what a poll costs when nothing happened, and how long a redraw takes.

1. Requests per poll at steady state (no new event), against the target of one.
2. The view's redraw (board, feed and the lifecycle chart of a 2-hour window) for a
   fleet of about 300 instances, against the default polling interval of 15 s.
3. The CPU time one refresh costs this process (``poll_once``: the poll, the board, the
   feed, the chart when events came) for 300 services, the simulator in its own process
   so that its work is not counted: target under a tenth of the polling interval.

Usage: ``python benchmarks/bench_live.py`` (a minute or two).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import koyeb_analytics as ka
from koyeb_analytics.poller import Poller

sys.path.insert(0, str(Path(__file__).parent))
from _common import describe, simulator_process  # noqa: E402


def steady_polls(polls: int) -> None:
    with ka.simulate(seed=2, days=2, services=12) as sim:
        poller = Poller(sim.client(), window="2h", every="15s")
        poller.poll()  # the first poll lists everything
        counts = []
        for _ in range(polls):
            before = len(sim.requests)
            result = poller.poll()
            assert result.error is None and result.new_events == 0
            counts.append(len(sim.requests) - before)
        print(f"1. steady state: requests per poll over {polls} polls: min {min(counts)}, "
              f"max {max(counts)} (target 1)")


def redraw(services: int, rounds: int) -> None:
    with ka.simulate(seed=3, days=1, services=services) as sim:
        view = ka.follow(sim.client(), window="2h", every="15s", start=False)
        view.poll_once()
        n = len(view.instances)
        spans = len(view.intervals)
        times = {"board": [], "feed": [], "chart": [], "all": []}
        for _ in range(rounds):
            for name, fn in (("board", view._render_board), ("feed", view._render_feed),
                             ("chart", view._render_chart)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
            times["all"].append(times["board"][-1] + times["feed"][-1] + times["chart"][-1])
        print(f"2. redraw of a 2-hour window: {n} instances, {spans} spans "
              f"({services} services)")
        for name, t in times.items():
            print(f"   {name:6s} {describe(t)}")
        share = statistics.median(times["all"]) / 15
        print(f"   redraw / polling interval (15 s): {share:.3f} "
              f"({statistics.median(times['all']):.2f} s of 15 s)")


def cpu_per_poll(services: int, polls: int) -> None:
    with simulator_process(seed=4, days=1, services=services) as (url, token):
        client = ka.KoyebClient(token, base_url=url)
        view = ka.follow(client, window="2h", every="15s", start=False)
        first = time.process_time()
        view.poll_once()  # the first refresh lists and draws everything
        first = time.process_time() - first
        cpu, news = [], 0
        for _ in range(polls):
            time.sleep(1)  # the fleet lives on: events arrive between polls
            start = time.process_time()
            result = view.poll_once()
            cpu.append(time.process_time() - start)
            news += result.new_events > 0
        n = len(view.instances)
    med = statistics.median(cpu)
    print(f"3. CPU per refresh, {services} services ({n} instances in a 2-hour window), "
          f"client process only; {news} of {polls} polls brought events (the chart is "
          f"redrawn then): first {first:.2f} s")
    print(f"   poll_once CPU        {describe(cpu)}")
    print(f"   CPU / polling interval (15 s): median {med / 15:.3f}, worst "
          f"{max(cpu) / 15:.3f} (target < 0.1: {'met' if med / 15 < 0.1 else 'MISSED'}); "
          f"the first: {first / 15:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=110,
                        help="about 300 instances in a 2-hour window at 110")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--poll-services", type=int, default=300,
                        help="the fleet of part 3 (CPU per refresh)")
    args = parser.parse_args()
    steady_polls(20)
    redraw(args.services, args.rounds)
    cpu_per_poll(args.poll_services, 10)


if __name__ == "__main__":
    main()
