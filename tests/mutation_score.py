"""Mutation score per core module, with mutmut: run by hand, outside CI (hours on 2 cores).

    python tests/mutation_score.py                 # every core module
    python tests/mutation_score.py pagination.py   # some of them
    python tests/mutation_score.py --report DIR... # print the scores of finished runs
    python tests/mutation_score.py --save ...      # also store them for the README

The repository is copied to a scratch directory per module (under ``--work``, default a
temporary one) and mutmut runs there with the tests that exercise the module (see
``CORE``; the whole suite for each of thousands of mutants would take days on 2 cores),
minus those that cannot see a mutant (see ``SKIPPED``). Prints, per
module, the mutants killed (a test failed or timed out) over all mutants, and the names
of those that survived (``mutmut show NAME`` in the work directory shows one).
With ``--save``, the scores are stored in ``benchmarks/results/mutation_score.json``
(merged per module, each with its date), from which ``tools/readme_numbers.py`` writes
the README's table.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE: dict[str, list[str]] = {
    # module: the tests that exercise it (running the whole suite for each of several
    # thousand mutants would take days on 2 cores)
    "analysis/_classify.py": ["test_classify.py", "test_lifecycle.py", "test_hostile_inputs.py"],
    "api/_paging.py": ["test_pagination_units.py", "test_pagination.py",
                       "test_hostile_listings.py", "test_pages.py"],
    "analysis/_metrics.py": ["test_analysis.py"],
    "execute/_codec.py": ["test_codec.py", "test_hostile_data.py"],
    "analysis/_lifecycle.py": ["test_lifecycle_exact.py", "test_lifecycle.py",
                               "test_hostile_inputs.py", "test_classify.py"],
    "load/_loaders.py": ["test_loaders_units.py", "test_loaders.py", "test_hostile_listings.py",
                         "test_hostile_data.py", "test_hostile_promises.py"],
    "execute/_run.py": ["test_exec_units.py", "test_execute.py", "test_hostile_data.py",
                        "test_hostile_promises.py"],
    "execute/_fanout.py": ["test_exec_units.py", "test_execute.py", "test_hostile_data.py",
                           "test_hostile_promises.py"],
    "execute/_stream.py": ["test_exec_units.py", "test_execute.py", "test_hostile_data.py",
                           "test_hostile_deadlines.py"],
    "api/_client.py": ["test_client_units.py", "test_client.py", "test_hostile_token.py",
                       "test_network.py", "test_hostile_deadlines.py"],
}
SKIPPED = ["tests/browser", "tests/test_notebooks.py", "tests/test_cli.py",
           "tests/test_package.py"]
"""Tests that cannot kill a mutant: they reach the package through subprocesses (which
import the installed package) or read its source text (which mutmut rewrites)."""
KILLED = {"killed", "timeout"}
FIRST_PASS, SECOND_PASS = 2.0, 8.0
"""mutmut's CPU-time limit per mutant, as a multiple of its tests' time. A mutant that
loops (a paging bound broken) is stopped after twice that time, not mutmut's default
of 15; then every mutant so stopped runs again with 8 times, so that tests merely slow
under load are not counted as a kill (mutmut reruns only the timeouts when the limit
changes)."""
LINE = re.compile(r"^\s*(koyeb_analytics\.[\w.]+?)\.x_?\w*__mutmut_\d+: (.+)$")


def config(module: str, tests: list[str]) -> str:
    ignore = ", ".join(f'"--{"deselect" if "::" in p else "ignore"}={p}"' for p in SKIPPED)
    selection = ", ".join(f'"tests/{t}"' for t in tests)
    return (f"\n[tool.mutmut]\nsource_paths = [\"koyeb_analytics/{module}\"]\n"
            f"pytest_add_cli_args_test_selection = [{selection}]\n"
            f'also_copy = ["koyeb_analytics", "tests", "notebooks"]\n'
            f"timeout_multiplier = {FIRST_PASS}\n"
            f'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-o", "addopts=", '
            f'"-m", "not browser", {ignore}]\n')


def prepare(work: Path, module: str, tests: list[str]) -> None:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(
        ".venv", ".git", "mutants", "__pycache__", ".coverage*", "test-artifacts"))
    pyproject = work / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().split("\n[tool.mutmut]")[0]
                         + config(module, tests))


def scores(work: Path, found: dict[str, dict[str, int]] | None = None) -> str:
    """The scores of a finished run as text; with ``found``, also kept there by module."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"],
                         cwd=work, capture_output=True, text=True, check=True).stdout
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for line in out.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        module, status = m.group(1), m.group(2).strip()
        by_module[module][status] += 1
        if status not in KILLED:
            survivors[module].append(f"{line.split(':')[0].strip()} ({status})")
    lines = [f"{'module':40} {'killed':>7} {'total':>6} {'score':>7}"]
    for module in sorted(by_module):
        counts = by_module[module]
        total = sum(counts.values())
        killed = sum(counts[s] for s in KILLED)
        if found is not None:
            found[module] = {"killed": killed, "total": total}
        lines.append(f"{module:40} {killed:7d} {total:6d} {killed / total:7.1%}")
    for module in sorted(survivors):
        lines.append(f"\nsurvived in {module}:")
        lines += [f"  {name}" for name in survivors[module]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=list(CORE),
                        help="paths under koyeb_analytics/ (default: the core modules)")
    parser.add_argument("--work", type=Path, help="scratch directory (default: temporary)")
    parser.add_argument("--children", type=int, default=2, help="mutmut --max-children")
    parser.add_argument("--report", type=Path, nargs="+",
                        help="only print the scores of finished runs (their directories)")
    parser.add_argument("--recheck", type=Path, nargs="+",
                        help="run the second pass (the timeouts again) in finished runs")
    parser.add_argument("--save", action="store_true",
                        help="store the scores in benchmarks/results/mutation_score.json")
    args = parser.parse_args()
    found: dict[str, dict[str, int]] = {}
    if args.report or args.recheck:
        for work in args.recheck or []:
            run(work, args.children)
        for work in args.report or args.recheck:
            print(scores(work, found))
        if args.save:
            save(found)
        return
    base = args.work or Path(tempfile.mkdtemp(prefix="koyeb-mutation-"))
    for module in args.modules:
        if module not in CORE:
            parser.error(f"{module}: not a core module ({', '.join(CORE)})")
        # One run per module, with the tests that exercise it, in its own directory.
        work = base / module.replace("/", "-").removesuffix(".py")
        prepare(work, module, CORE[module])
        print(f"mutmut in {work} on {module} with {', '.join(CORE[module])}", flush=True)
        run(work, args.children)
        print(scores(work, found), flush=True)
    if args.save:
        save(found)


def save(found: dict[str, dict[str, int]]) -> None:
    """Merge these modules' scores into the stored ones (the others keep theirs)."""
    import datetime
    import json

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import RESULTS, save_results

    path = RESULTS / "mutation_score.json"
    modules = json.loads(path.read_text())["figures"]["modules"] if path.exists() else {}
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    for module, counts in found.items():
        modules[module] = {**counts, "date": today}
    save_results("mutation_score", {"modules": modules})


def run(work: Path, children: int) -> None:
    """Both passes of mutmut in ``work`` (see :data:`FIRST_PASS`)."""
    for multiplier in (FIRST_PASS, SECOND_PASS):
        pyproject = work / "pyproject.toml"
        pyproject.write_text(re.sub(r"timeout_multiplier = [0-9.]+",
                                    f"timeout_multiplier = {multiplier}",
                                    pyproject.read_text()))
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children",
                        str(children)], cwd=work, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)


if __name__ == "__main__":
    main()
