"""Break each promise the README makes, one at a time, and check that a test fails.

    python tests/breakage_check.py              # every promise (several minutes)
    python tests/breakage_check.py scrub        # some of them
    python tests/breakage_check.py --save       # and store the tally for the README
    python tests/breakage_check.py --jobs 1     # one at a time (default: one per core)

The promises are the rows of ``tests/promises.toml``: the promise, its anchor in
README.md, the breakage (a small edit of the package that removes the promise) and the
tests that guard it. Each breakage is applied to a copy of the repository; the tests
run there (subprocesses they start import that copy too) and must fail. Promises are
checked side by side, one per core, each job on a copy of its own. Prints one line per
promise, in the table's order: caught (and by which test) or MISSED, and exits non-zero
when one is missed or its text to break is no longer in its file. CI runs it as a step of its own
(``.ci/run``). ``--save`` writes the tally to ``benchmarks/results/breakages.json``, from
which ``tools/readme_numbers.py`` writes the README's line.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "tests" / "promises.toml"


def promises() -> dict[str, dict[str, Any]]:
    """The rows of ``tests/promises.toml`` by name."""
    rows = tomllib.loads(TABLE.read_text())["promise"]
    return {row["name"]: row for row in rows}


def check(row: dict[str, Any], work: Path) -> tuple[str, bool]:
    """Apply one breakage in ``work``, run its tests, restore; the line and whether caught."""
    name, path = row["name"], row["file"]
    source = work / "koyeb_analytics" / path
    text = (ROOT / "koyeb_analytics" / path).read_text()
    if text.count(row["find"]) != 1:
        return f"{name:28} the text to break is not in {path} exactly once: update it", False
    source.write_text(text.replace(row["find"], row["replace"]))
    env = {**os.environ, "PYTHONPATH": str(work)}
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o",
             "addopts=", *row["tests"]],
            cwd=work, capture_output=True, text=True, timeout=900, env=env)
    finally:
        source.write_text(text)
    failed = re.findall(r"^FAILED (\S+)", run.stdout, re.M)
    if run.returncode == 0:
        return f"{name:28} MISSED: {' '.join(row['tests'])} stayed green", False
    if run.returncode in (4, 5):   # usage error, or no test collected: nothing was checked
        return f"{name:28} MISSED: the tests did not run ({run.stdout[-200:]!r})", False
    return f"{name:28} caught by {failed[0] if failed else 'an error: ' + run.stdout[-200:]}", \
        True


def main() -> None:
    table = promises()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(table))
    parser.add_argument("--save", action="store_true",
                        help="store the tally in benchmarks/results/breakages.json")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                        help="promises checked at once, each on its own copy (default: "
                             "one per core)")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in table]
    if unknown:
        parser.error(f"no such promise: {', '.join(unknown)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, not {args.jobs}")
    jobs = min(args.jobs, len(args.names))
    caught: list[str] = []
    with tempfile.TemporaryDirectory(prefix="koyeb-breakage-") as tmp:
        # One copy per job: a breakage is written into its copy while its tests run.
        copies: queue.Queue[Path] = queue.Queue()
        for k in range(jobs):
            work = Path(tmp) / f"repo{k}"
            shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(
                ".venv", ".git", "mutants", "__pycache__", ".coverage*", "test-artifacts"))
            copies.put(work)

        def one(name: str) -> tuple[str, bool]:
            work = copies.get()
            try:
                return check(table[name], work)
            finally:
                copies.put(work)

        with ThreadPoolExecutor(jobs) as pool:
            for name, (line, ok) in zip(args.names, pool.map(one, args.names), strict=True):
                caught += [name] if ok else []
                print(line, flush=True)
    print(f"{len(caught)} of {len(args.names)} breakages caught")
    if args.save:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _common import save_results

        save_results("breakages", {"promises": len(table), "run": len(args.names),
                                   "caught": len(caught),
                                   "missed": [n for n in args.names if n not in caught]})
    sys.exit(0 if len(caught) == len(args.names) else 1)


if __name__ == "__main__":
    main()
