"""Shared helpers: a simulator in its own process, medians, a table printer, and the
stored results the README's figures are written from (``save_results``)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def simulator_process(*, seed: int, days: float, services: int, latency_ms: float = 0.0,
                      vocabulary: str = "invented"):
    """Run ``koyeb-analytics simulate`` in a child process; yield ``(url, token)``.

    A separate process keeps the server off the measuring process's GIL, as a real API
    would be.
    """
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        proc = subprocess.Popen(
            [sys.executable, "-m", "koyeb_analytics", "simulate", "--seed", str(seed),
             "--days", str(days), "--services", str(services), "--latency", str(latency_ms),
             "--token-file", str(token_file), "--vocabulary", vocabulary],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            if "http://" not in line:
                raise RuntimeError(f"simulator did not start: {line!r}")
            url = line.split(" on ", 1)[1].split(" ", 1)[0]
            yield url, token_file.read_text()
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def timed(fn: Callable[[], object], repeat: int) -> tuple[list[float], object]:
    """Run ``fn`` ``repeat`` times; return the wall times and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def describe(times: list[float]) -> str:
    return (f"median {statistics.median(times):7.2f} s  (min {min(times):.2f}, "
            f"max {max(times):.2f}, n={len(times)})")


def ratio(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """Median ratio, and the lowest and highest ratio over paired runs."""
    pairs = [a / b for a, b in zip(numerator, denominator, strict=False)]
    return statistics.median(numerator) / statistics.median(denominator), min(pairs), max(pairs)


RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, object]:
    """What the figures were measured on (no host name: it says nothing about speed)."""
    return {"system": platform.platform(terse=True), "machine": platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version()}


def save_results(name: str, figures: dict[str, object], *, merge: bool = False) -> Path:
    """Store a run's figures as ``benchmarks/results/<name>.json``, with date and machine.

    ``tools/readme_numbers.py`` writes the README's figures from these files (never by
    hand); run the benchmark again and then that script to refresh them. With
    ``merge``, ``figures`` holds groups (the parts of a benchmark) that replace the
    stored groups of the same name, each stamped with its own date and machine; the
    other groups keep theirs.
    """
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if merge:
        old = json.loads(path.read_text())["figures"] if path.exists() else {}
        figures = {**old, **{k: {**v, "date": now, "machine": machine()}  # type: ignore[dict-item]
                             for k, v in figures.items()}}
    record = {"name": name, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "date": now, "machine": machine(), "figures": figures}
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    print(f"results stored in {path.relative_to(RESULTS.parent.parent)}")
    return path
