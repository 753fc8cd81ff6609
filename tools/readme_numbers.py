"""Write the README's measured figures from the stored results, never by hand.

    python tools/readme_numbers.py           # rewrite the marked regions of README.md
    python tools/readme_numbers.py --check   # exit 1 when README.md differs from them

A region is ``<!-- numbers:NAME -->`` ... ``<!-- /numbers -->`` (on one line, or around
lines); its text is what :data:`RENDER` ``[NAME]`` makes of the stored results in
``benchmarks/results/*.json``, which the benchmarks, ``tests/breakage_check.py --save``
and ``tests/mutation_score.py --save`` write, each with its date and machine. To
refresh a figure: run what stores it, then this script. ``tests/test_readme_numbers.py``
fails when README.md and the stored results disagree.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
REGION = re.compile(r"(<!-- numbers:(?P<name>[\w.]+) -->)(?P<body>.*?)(<!-- /numbers -->)",
                    re.S)
MODULES = {  # the README's column: the module mutmut reports
    "client": "koyeb_analytics.api._client", "pagination": "koyeb_analytics.api._paging",
    "loaders": "koyeb_analytics.load._loaders",
    "lifecycle": "koyeb_analytics.analysis._lifecycle",
    "classify": "koyeb_analytics.analysis._classify",
    "analysis": "koyeb_analytics.analysis._metrics",
    "exec codec": "koyeb_analytics.execute._codec", "stream": "koyeb_analytics.execute._stream",
    "run": "koyeb_analytics.execute._run", "fanout": "koyeb_analytics.execute._fanout",
}


def stored(name: str) -> dict[str, Any]:
    """The stored results of ``name`` (``benchmarks/results/<name>.json``)."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"{path.relative_to(ROOT)} is missing: run what stores it first")
    return dict(json.loads(path.read_text()))


def _day(stamp: str) -> str:
    return stamp[:10]


def _machine(m: dict[str, Any]) -> str:
    cpus = m.get("cpus")
    return f"{cpus} CPUs" + (f", Python {m['python']}" if m.get("python") else "")


def mutation_score() -> str:
    r = stored("mutation_score")
    modules = r["figures"]["modules"]

    def score(label: str) -> str:
        m = modules.get(MODULES[label])
        if m is None:
            return "–"
        value = m["killed"] / m["total"] if m.get("total") else m["score"]
        return f"{value:.1%}"

    dates = sorted({_day(m["date"]) for m in modules.values()})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    return ("\n| " + " | ".join(MODULES) + " |\n|" + "---|" * len(MODULES) + "\n| "
            + " | ".join(score(label) for label in MODULES) + " |\n\n"
            + f"Measured {when} on {_machine(r['machine'])} "
            "(`benchmarks/results/mutation_score.json`).\n")


def breakages() -> str:
    r = stored("breakages")
    f = r["figures"]
    missed = f" Missed: {', '.join(f['missed'])}." if f["missed"] else ""
    of = "" if f["run"] == f["promises"] else f" (a selection of the {f['promises']} promises)"
    return f"Breakages caught: {f['caught']} of {f['run']}{of}, {_day(r['date'])}.{missed}"


def slow_window_ratio() -> str:
    f = stored("bench_history")["figures"]["slow_window"]
    return (f"about {f['in_order_over_ahead']:.1f}x faster than in order "
            f"({f['low']:.1f}-{f['high']:.1f}x over {f['rounds']} runs)")


def benchmarks() -> str:
    rows = ["", "| benchmark | figure | measured |", "|---|---|---|"]
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        for key, text in HEADLINES.get(r["name"], {}).items():
            group = r["figures"].get(key)
            if group is None:
                continue
            rows.append(f"| `{r['name']}` | {text(group)} | {_day(group.get('date', r['date']))}"
                        f", {_machine(group.get('machine', r['machine']))} |")
    return "\n".join(rows) + "\n"


HEADLINES: dict[str, dict[str, Callable[[dict[str, Any]], str]]] = {
    # benchmark: {group of its figures: the sentence the README prints}
    "bench_history": {
        "slow_window": lambda f: (
            f"a 7-day window at {f['latency_ms']} ms, {f['concurrency']} pages ahead: "
            f"{f['in_order_over_ahead']:.2f}x faster than in order "
            f"({f['low']:.2f}-{f['high']:.2f}, {f['rounds']} runs)"),
        "long_window": lambda f: (
            f"a {f['days']:g}-day window of {f['rows']:,} events from the store: "
            f"{f['live_over_store']:.1f}x faster than live; peak memory "
            f"{f['memory_over_frame']:.2f}x the frame"),
    },
}

RENDER: dict[str, Callable[[], str]] = {
    "mutation_score": mutation_score,
    "breakages": breakages,
    "bench_history.slow_window": slow_window_ratio,
    "benchmarks": benchmarks,
}


def render(text: str) -> str:
    """``text`` with every region's body written from the stored results."""
    def one(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in RENDER:
            raise SystemExit(f"README.md: no renderer for region {name!r}")
        return m.group(1) + RENDER[name]() + m.group(4)

    return REGION.sub(one, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only say whether README.md matches the stored results")
    args = parser.parse_args()
    text = README.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("README.md differs from the stored results: run tools/readme_numbers.py")
            sys.exit(1)
        print("README.md matches the stored results")
        return
    README.write_text(new)
    print("README.md " + ("rewritten" if new != text else "already matches"))


if __name__ == "__main__":
    main()
