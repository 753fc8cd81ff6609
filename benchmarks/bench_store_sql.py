"""``store.sql`` closed to the store's tables: what the closing costs, and what the
alternative would have cost. Ratios are measured side by side in one run.

Three ways to answer the same query over the same store, interleaved round by round:

- ``open``: the views over the Parquet files, nothing closed (how ``sql`` used to run);
- ``closed``: ``store.sql`` as shipped: the statement classified by DuckDB's parser, the
  same lazy views, the listed files as DuckDB's ``allowed_paths``, external access off
  and the configuration locked (needs DuckDB >= 1.2);
- ``loaded``: what DuckDB 1.1 would need instead (it has no ``allowed_paths``, and a
  view binds its files when queried): every table read into the connection first, then
  external access off.

The simulator runs in its own process. Usage: ``python benchmarks/bench_store_sql.py``
(``--services 220 --days 30`` gives about 250,000 events).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import koyeb_analytics as ka
from koyeb_analytics.store import _history as store_module

sys.path.insert(0, str(Path(__file__).parent))
from _common import describe, ratio, simulator_process, timed  # noqa: E402

QUERIES = {
    "group by": "select type, count(*) as n from events group by type order by n desc",
    "one instance": "select * from events where instance_id = '{iid}' order by \"when\"",
    "latest": "select status, count(*) as n from instances group by status",
}


def _views(store: ka.HistoryStore, con: Any, kind: str) -> None:
    manifest = store.manifest()
    for table, view in (("events", "events"), ("instances", "instance_records")):
        names = sorted(manifest[table]["files"])
        con.execute(f"CREATE {kind} {view} AS SELECT * FROM read_parquet("
                    f"{store._paths_sql(names)}, union_by_name=true, "
                    "hive_partitioning=false)")
    con.execute(f"CREATE {kind} instances AS SELECT * EXCLUDE (rn) FROM (SELECT *, "
                "row_number() OVER (PARTITION BY id ORDER BY observed_at DESC) AS rn "
                "FROM instance_records) WHERE rn = 1")


def open_sql(store: ka.HistoryStore, query: str) -> Any:
    con = store._connect()
    try:
        _views(store, con, "VIEW")
        return con.sql(query).df()
    finally:
        con.close()


def loaded_sql(store: ka.HistoryStore, query: str) -> Any:
    con = store._connect()
    try:
        _views(store, con, "TABLE")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con.sql(query).df()
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=60)
    parser.add_argument("--days", type=float, default=14)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with simulator_process(seed=1, days=args.days, services=args.services) as (url, token), \
            tempfile.TemporaryDirectory() as tmp:
        store = ka.HistoryStore(tmp)
        result = store.sync(ka.KoyebClient(token, base_url=url))
        files = sum(len(store.manifest()[t]["files"]) for t in ("events", "instances"))
        print(f"store.sql: {result.events_added} events, {result.instances_listed} "
              f"instances, {files} files (seed 1, {args.services} services, "
              f"{args.days:g} days)")
        iid = store.sql("select instance_id from events group by instance_id "
                        "order by count(*) desc limit 1")["instance_id"][0]
        for label, template in QUERIES.items():
            query = template.format(iid=iid)
            times: dict[str, list[float]] = {"open": [], "closed": [], "loaded": []}
            shapes = set()
            for _ in range(args.rounds):
                for mode, run in (("open", open_sql), ("closed", ka.HistoryStore.sql),
                                  ("loaded", loaded_sql)):
                    t, df = timed(lambda r=run, q=query: r(store, q), 1)
                    times[mode] += t
                    shapes.add((mode, df.shape))
            same = len({shape for _, shape in shapes}) == 1
            print(f"\n  {label}: {query[:70]}")
            for mode, t in times.items():
                print(f"    {mode:7s} {describe(t)}")
            mid, low, high = ratio(times["closed"], times["open"])
            print(f"    closed / open:   {mid:.2f}x ({low:.2f}-{high:.2f})")
            mid, low, high = ratio(times["loaded"], times["closed"])
            print(f"    loaded / closed: {mid:.2f}x ({low:.2f}-{high:.2f}); "
                  f"same answers: {same}")
        checks = []
        for _ in range(2000):
            start = time.perf_counter()
            store_module._read_only_statement(QUERIES["group by"])
            checks.append(time.perf_counter() - start)
        print(f"\n  classifying a statement: median {statistics.median(checks) * 1e6:.0f} us "
              f"(min {min(checks) * 1e6:.0f}, max {max(checks) * 1e6:.0f}, n={len(checks)})")


if __name__ == "__main__":
    main()
