"""Does ``ka.suspects`` name the change behind an incident, and only then?

For several seeds, a simulated fleet (12 services, a week; the window is its last six
days, after every service was born) is loaded, its incidents found, and each one's
nearest suspect compared with the simulator's truth: the share of change-caused
incidents that name the right change first, the share of incidents with no change
behind them that name one within the default look-back (1 h), and the baseline: the
share of randomly timed incidents that name one (what chance gives at the simulator's
change rate, also printed, in rolled-out deployments per service per day). Then the
pages a 7-day window of deployments reads, on a fleet whose history spans many pages,
against the pages that hold the window.

Run: ``python benchmarks/bench_changes.py [--seeds 6] [--opaque]`` (about a minute).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

import koyeb_analytics as ka

sys.path.insert(0, str(Path(__file__).parent.parent))
from tests.test_changes_attribution import NOW, grade  # noqa: E402


def pages(days: int, services: int, per_day: float) -> tuple[int, int, int]:
    """Pages read by a 7-day ``load_deployments``, pages holding the window, and pages
    of the whole listing."""
    with ka.simulate(seed=1, days=days, services=services, now=NOW,
                     redeploys_per_day=per_day) as sim:
        client = sim.client()
        rows, offset = [], 0
        while True:
            page = client.get("/v1/deployments", [("limit", "100"), ("offset", str(offset))])
            rows += page["deployments"]
            offset += 100
            if not page["has_next"]:
                break
        since = pd.Timestamp(NOW) - pd.Timedelta("7D")
        last = max(i for i, d in enumerate(rows) if pd.Timestamp(d["created_at"]) >= since)
        sim.requests.clear()
        ka.load_deployments(client, since=since, until=NOW, progress=False)
        read = sum(1 for r in sim.requests if r.path == "/v1/deployments")
    return read, last // 100 + 1, (len(rows) + 99) // 100


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--opaque", action="store_true",
                        help="also grade on the opaque vocabulary")
    args = parser.parse_args()
    worlds = ["invented"] + (["opaque"] if args.opaque else [])
    for vocabulary in worlds:
        print(f"\nattribution, {vocabulary} vocabulary, look-back 1h")
        print(f"{'seed':>4} {'caused':>6} {'right':>6} {'no-change':>9} {'named':>6} "
              f"{'baseline':>8} {'deploys/svc/day':>15}")
        total = [0, 0, 0, 0]
        bases, rates = [], []
        for seed in range(args.seeds):
            g = grade(seed, vocabulary=vocabulary)
            total = [total[0] + g.caused, total[1] + g.named_right, total[2] + g.clean,
                     total[3] + g.named_wrongly]
            bases.append(g.baseline)
            rates.append(g.deployments_per_service_day)
            print(f"{seed:>4} {g.caused:>6} {g.hit_rate:>6.1%} {g.clean:>9} "
                  f"{g.false_rate:>6.1%} {g.baseline:>8.1%} {g.deployments_per_service_day:>15.2f}")
        print(f" all {total[0]:>6} {total[1] / total[0]:>6.1%} {total[2]:>9} "
              f"{total[3] / total[2]:>6.1%} {sum(bases) / len(bases):>8.1%} "
              f"{sum(rates) / len(rates):>15.2f}")
    read, holding, whole = pages(days=30, services=20, per_day=2.0)
    print(f"\n7-day window of deployments: {read} page(s) read, {holding} hold the window, "
          f"{whole} in the whole listing (at most one beyond: "
          f"{'yes' if read <= holding + 1 else 'NO'})")


if __name__ == "__main__":
    main()
