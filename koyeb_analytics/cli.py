"""The ``koyeb-analytics`` command."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import KoyebError


def _demo(args: argparse.Namespace) -> int:
    import pandas as pd

    from .loaders import load_events, load_instances
    from .simulator import simulate

    print(f"Starting the simulator (seed {args.seed}, {args.days} days, "
          f"{args.services} services) on 127.0.0.1 ...", file=sys.stderr)
    with simulate(seed=args.seed, days=args.days, services=args.services) as sim:
        client = sim.client()
        url = sim.url
        t0 = time.perf_counter()
        inst = load_instances(client, window=f"{args.days}d", progress=not args.quiet)
        ev = load_events(client, window=f"{args.days}d", progress=not args.quiet)
        took = time.perf_counter() - t0
    print(f"Loaded {len(inst)} instances ({inst.attrs['pages']} pages) and {len(ev)} events "
          f"({ev.attrs['pages']} pages) in {took:.1f} s from {url}")
    print()
    table = (inst.assign(service=inst["service_id"].str[:8])
             .pivot_table(index="service", columns="status", values="id", aggfunc="count",
                          observed=False, fill_value=0))
    table["total"] = table.sum(axis=1)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print("Instances per service (short id) and current status:")
        print(table.to_string())
        print()
        print("Events per type:")
        print(ev["type"].value_counts().to_string())
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from .simulator import Faults, Simulator

    sim = Simulator(seed=args.seed, days=args.days, services=args.services, port=args.port,
                    faults=Faults(latency=args.latency / 1000))
    token_file = Path(args.token_file)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(sim.token)
    sim.start()
    print(f"Simulated Koyeb API on {sim.url} ({len(sim.fleet.inst['id'])} instances, "
          f"{len(sim.fleet.ev['when'])} events); token in {token_file} (mode 0600).",
          flush=True)
    print(f"Use it with: KOYEB_URL={sim.url} KOYEB_TOKEN=$(cat {token_file})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="koyeb-analytics",
        description="Understand what happened to services on Koyeb, from the instance API.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the toolkit end to end on the simulator")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--days", type=int, default=7)
    demo.add_argument("--services", type=int, default=12)
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)

    sim = sub.add_parser("simulate", help="serve the simulated Koyeb API until Ctrl-C")
    sim.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--days", type=float, default=7)
    sim.add_argument("--services", type=int, default=12)
    sim.add_argument("--latency", type=float, default=0.0,
                     help="milliseconds added to every request")
    sim.add_argument("--token-file", default="koyeb-sim.token",
                     help="where to write the run's token (mode 0600)")
    sim.set_defaults(func=_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (KoyebError, ValueError, TypeError, OSError) as exc:
        if args.debug:
            raise
        print(f"koyeb-analytics: error: {exc}", file=sys.stderr)
        return 2
