"""How right are lifecycles when event types are opaque (only the real message texts)?

For several seeds, the simulator serves the same fleet with ``vocabulary="opaque"``
(types the toolkit has never seen, empty metadata, real message families); the
intervals rebuilt by ``lifecycles`` are compared with the simulator's ground truth:
the relative error of total time per status (statuses with over an hour), the share
of instances whose status sequence is exactly right, the largest uptime difference
per service (percentage points) and the incident counts. The same is printed for the
invented vocabulary (exact by construction) as a check of the method.

Run: ``python benchmarks/bench_vocabulary.py [--seeds 5]`` (about a minute).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

import koyeb_analytics as ka

sys.path.insert(0, str(Path(__file__).parent.parent))
from tests.test_classify import per_status, sequences  # noqa: E402
from tests.test_lifecycle import clip_truth  # noqa: E402

NOW = "2026-11-20T12:00:00Z"


def measure(seed: int, vocabulary: str, days: float, services: int) -> dict[str, float]:
    with ka.simulate(seed=seed, days=days, services=services, now=NOW,
                     vocabulary=vocabulary) as sim:
        client = sim.client()
        inst = ka.load_instances(client, details=True, progress=False)
        ev = ka.load_events(client, progress=False)
        truth = sim.truth_intervals()
    iv = ka.lifecycles(inst, ev)
    since, until = iv["start"].min(), iv.attrs["until"]
    want = clip_truth(truth, since, until)
    got_t, want_t = per_status(iv), per_status(want)
    errors = {s: abs(got_t.get(s, pd.Timedelta(0)) - t) / t
              for s, t in want_t.items() if t > pd.Timedelta(hours=1)}
    got_s, want_s = sequences(iv), sequences(want)
    exact = sum(got_s.get(i) == s for i, s in want_s.items()) / len(want_s)
    attrs = inst.set_index("id")[["service_id", "app_id", "region", "datacenter",
                                  "replica_index", "type", "app_name", "service_name"]]
    truth_iv = want.join(attrs, on="instance_id").assign(
        status=lambda d: pd.Categorical(d["status"], categories=list(ka.STATUSES),
                                        ordered=True),
        duration=lambda d: d["end"] - d["start"], source="events")[list(iv.columns)]
    truth_iv.attrs = {"since": since, "until": until, "findings": []}
    up = ka.uptime(iv).set_index("service_id")["availability"]
    up_truth = ka.uptime(truth_iv).set_index("service_id")["availability"]
    voc = ka.event_vocabulary(ev)
    return {"max_status_error": max(errors.values()), "exact_sequences": exact,
            "max_uptime_pp": float((up - up_truth).abs().max() * 100),
            "incidents": len(ka.incidents(iv)), "incidents_truth": len(ka.incidents(truth_iv)),
            "unclassified": voc.attrs["unclassified_share"], "instances": len(inst),
            "events": len(ev)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--services", type=int, default=12)
    args = parser.parse_args()
    print(f"{args.days:g} days, {args.services} services per fleet; targets: per-status "
          "error < 1%, exact sequences >= 99%, uptime within 0.05 pp, incidents within 5%")
    for vocabulary in ("opaque", "invented"):
        print(f"\n-- vocabulary={vocabulary}")
        for seed in range(1, args.seeds + 1):
            m = measure(seed, vocabulary, args.days, args.services)
            print(f"   seed {seed}: {m['instances']} instances, {m['events']} events; "
                  f"worst per-status error {m['max_status_error']:.4%}, exact sequences "
                  f"{m['exact_sequences']:.2%}, worst uptime difference "
                  f"{m['max_uptime_pp']:.4f} pp, incidents {m['incidents']} vs "
                  f"{m['incidents_truth']}, unclassified events {m['unclassified']:.2%}")


if __name__ == "__main__":
    main()
