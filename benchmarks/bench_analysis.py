"""Analysis benchmark: ``plot_lifecycles`` and ``lifecycles`` against naive loops.

Prints medians and ratios measured side by side in one run:

* ``plot_lifecycles`` for 10k instances and about 50k spans versus a loop drawing one
  ``ax.barh`` per span; both timed up to a finished Agg draw.
* ``lifecycles`` over about 1M events versus a per-instance Python loop over the events.

Run: ``python benchmarks/bench_analysis.py`` (a few minutes).
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _common import describe, ratio  # noqa: E402

import koyeb_analytics as ka  # noqa: E402
from koyeb_analytics.analysis import _lifecycle as lifecycle  # noqa: E402
from koyeb_analytics.schema import STATUSES, TERMINAL_STATUSES, status_dtype  # noqa: E402
from koyeb_analytics.simulator._fleet import Fleet, FleetConfig, us_to_timestamps  # noqa: E402

NOW = pd.Timestamp("2026-11-20T12:00:00Z")


def synthetic_intervals(n_instances: int, spans_each: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_instances * spans_each
    inst = np.repeat(np.arange(n_instances), spans_each)
    lengths = rng.exponential(3600, n)
    starts = np.zeros(n)
    for k in range(1, spans_each):
        starts[k::spans_each] = starts[k - 1::spans_each] + lengths[k - 1::spans_each]
    starts += np.repeat(rng.uniform(0, 7 * 86400, n_instances), spans_each)
    t0 = NOW - pd.Timedelta(days=8)
    df = pd.DataFrame({
        "instance_id": [f"inst-{i:05d}" for i in inst],
        "service_id": [f"svc-{i % 200:03d}" for i in inst],
        "replica_index": inst % 3,
        "status": pd.Categorical(rng.choice(["HEALTHY", "UNHEALTHY", "SLEEPING", "STARTING"],
                                            n, p=[0.7, 0.1, 0.1, 0.1]), dtype=status_dtype()),
        "start": t0 + pd.to_timedelta(starts, unit="s"),
        "end": t0 + pd.to_timedelta(starts + lengths, unit="s"),
    })
    return df


def barh_loop(iv: pd.DataFrame, ax) -> None:
    lane = {iid: k for k, iid in enumerate(iv["instance_id"].unique())}
    from matplotlib import dates as mdates

    for r in iv.itertuples(index=False):
        x0 = mdates.date2num(r.start.tz_localize(None))
        x1 = mdates.date2num(r.end.tz_localize(None))
        ax.barh(lane[r.instance_id], x1 - x0, left=x0, height=0.8,
                color=ka.STATUS_COLORS.get(str(r.status), "#ccc"))


def draw(fn) -> float:
    fig, ax = plt.subplots(figsize=(11, 6))
    start = time.perf_counter()
    fn(ax)
    fig.canvas.draw()
    took = time.perf_counter() - start
    plt.close(fig)
    return took


def frames_from_fleet(fleet: Fleet) -> tuple[pd.DataFrame, pd.DataFrame]:
    f = fleet.inst
    inst = pd.DataFrame({
        "id": pd.Series(f["id"], dtype="str"),
        "created_at": us_to_timestamps(f["created"]),
        "updated_at": us_to_timestamps(f["updated"]),
        "service_id": pd.Series(f["service"], dtype="str"),
        "app_id": pd.Series(f["app"], dtype="str"),
        "region": pd.Series(f["region"], dtype="str"),
        "datacenter": pd.Series(f["datacenter"], dtype="str"),
        "replica_index": f["replica_index"],
        "type": pd.Series(f["type"], dtype="str"),
        "status": pd.Categorical.from_codes(f["status"].astype(int), dtype=status_dtype()),
    })
    ev = fleet.ev
    ids = inst["id"].to_numpy()
    events = pd.DataFrame({
        "id": np.arange(len(ev["when"])).astype(str),
        "when": us_to_timestamps(ev["when"]),
        "instance_id": pd.Series(ids[ev["instance"]], dtype="str"),
        "type": pd.Series(np.array(fleet.event_types, dtype=object)[ev["type"]], dtype="str"),
    })
    return inst, events


def lifecycles_loop(inst: pd.DataFrame, events: pd.DataFrame, until: pd.Timestamp,
                    mapping: dict[str, str]) -> pd.DataFrame:
    """The obvious way: group events per instance, walk each instance's list, and build
    the same columns ``lifecycles`` returns (instance attributes looked up per span)."""
    cols = list(lifecycle.ATTRIBUTE_COLUMNS)
    inst = inst.reindex(columns=["id", *cols])  # names absent from the listing stay None
    attrs = {r[0]: r[1:] for r in inst.itertuples(index=False, name=None)}
    per: dict[str, list] = {}
    for iid, when, etype in zip(events["instance_id"], events["when"], events["type"],
                                strict=True):
        status = mapping.get(etype)
        if status is not None and iid in attrs:
            per.setdefault(iid, []).append((when, status))
    rows = []
    for iid, evs in per.items():
        evs.sort()
        extra = attrs[iid]
        for k, (when, status) in enumerate(evs):
            if k + 1 < len(evs):
                end, open_ended = evs[k + 1][0], False
            elif status in TERMINAL_STATUSES:
                end, open_ended = when, False
            else:
                end, open_ended = until, True
            rows.append((iid, *extra, status, when, end, end - when, open_ended, "events"))
    df = pd.DataFrame(rows, columns=list(lifecycle.INTERVAL_COLUMNS))
    df["status"] = pd.Categorical(df["status"], dtype=status_dtype())
    return df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-plot", action="store_true")
    parser.add_argument("--services", type=int, default=900)
    args = parser.parse_args()

    if not args.skip_plot:
        iv = synthetic_intervals(10_000, 5)
        print(f"plot_lifecycles: {iv['instance_id'].nunique()} instances, {len(iv)} spans")
        ours, loop = [], []
        for _ in range(args.rounds):
            ours.append(draw(lambda ax: ka.plot_lifecycles(iv, ax=ax)))
            loop.append(draw(lambda ax: barh_loop(iv, ax)))
        print(f"   plot_lifecycles  {describe(ours)}")
        print(f"   barh per span    {describe(loop)}")
        med, lo, hi = ratio(loop, ours)
        print(f"   barh loop / plot_lifecycles: {med:.1f}x (paired {lo:.1f}-{hi:.1f}); "
              "target >= 20")

    fleet = Fleet(FleetConfig(seed=1, days=30, services=args.services, now=NOW))
    inst, events = frames_from_fleet(fleet)
    # The fleet's own vocabulary, given to both sides: the benchmark times the rebuild,
    # not the classification.
    mapping = {fleet.vocabulary.status_types[s]: s for s in STATUSES}
    print(f"\nlifecycles: {len(inst)} instances, {len(events)} events")
    ours, loop = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        a = ka.lifecycles(inst, events, until=NOW, mapping=mapping)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        b = lifecycles_loop(inst, events, NOW, mapping)
        loop.append(time.perf_counter() - start)
    # the same spans, whichever way they were computed (lifecycles also fills the few
    # gaps a lost event leaves, which the loop cannot see: those are counted, not compared)
    key = ["instance_id", "start"]
    filled = a[a["source"] == "gap"]
    a = a[a["source"] != "gap"]
    a_rows = a.sort_values(key)[["instance_id", "status", "start", "end", "open_ended"]]
    b_rows = b.sort_values(key)[["instance_id", "status", "start", "end", "open_ended"]]
    assert len(a_rows) == len(b_rows)
    same_end = a_rows["end"].to_numpy() == b_rows["end"].to_numpy()
    assert same_end.sum() >= len(a_rows) - 2 * len(filled)
    print(f"   lifecycles       {describe(ours)}")
    print(f"   python loop      {describe(loop)}")
    med, lo, hi = ratio(loop, ours)
    print(f"   loop / lifecycles: {med:.1f}x (paired {lo:.1f}-{hi:.1f}); target >= 10")
    print(f"   ({len(STATUSES)} statuses; {len(a)} spans; {len(filled)} filled gaps)")


if __name__ == "__main__":
    main()
