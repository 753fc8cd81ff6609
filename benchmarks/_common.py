"""Shared helpers: a simulator in its own process, medians, and a table printer."""

from __future__ import annotations

import os
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
