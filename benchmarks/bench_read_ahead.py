"""Which read-ahead strategy for which server: pipelined, threads or none, side by side.

``KoyebClient(read_ahead=...)`` is a setting, never a timing rule; its default is
``"pipelined"`` on loopback and ``"threads"`` elsewhere. This measures the three at
0, 50 and 100 ms of simulated latency, for ``load_instances`` (a listing with a count)
and ``load_events`` of a whole history (has_next), so the defaults rest on numbers.
Every contender must return the same rows.

Run: ``python benchmarks/bench_read_ahead.py`` (about 5 minutes).
"""

from __future__ import annotations

import argparse

from _common import describe, ratio, simulator_process, timed

import koyeb_analytics as ka

STRATEGIES = ("pipelined", "threads", "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=60)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for latency in (0, 50, 100):
        with simulator_process(seed=1, days=args.days, services=args.services,
                               latency_ms=latency) as (url, token):
            clients = {s: ka.KoyebClient(token, base_url=url, concurrency=4, read_ahead=s)
                       for s in STRATEGIES}
            for what, load in (("load_instances", ka.load_instances),
                               ("load_events", ka.load_events)):
                runs: dict[str, list[float]] = {s: [] for s in STRATEGIES}
                rows: dict[str, int] = {}
                for s in STRATEGIES:  # warm every contender at every latency
                    load(clients[s], progress=False)
                for _ in range(args.rounds):
                    for s in STRATEGIES:
                        times, df = timed(lambda c=clients[s], f=load: f(c, progress=False), 1)
                        runs[s] += times
                        rows[s] = len(df)  # type: ignore[arg-type]
                assert len(set(rows.values())) == 1, rows
                print(f"-- {what} at {latency} ms: {rows['none']} rows")
                for s in STRATEGIES:
                    print(f"   {s:10s} {describe(runs[s])}")
                for s in ("pipelined", "threads"):
                    med, lo, hi = ratio(runs["none"], runs[s])
                    print(f"   none / {s}: {med:.2f}x (paired {lo:.2f}-{hi:.2f})")


if __name__ == "__main__":
    main()
