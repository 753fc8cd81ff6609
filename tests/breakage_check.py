"""Break each promise the README makes, one at a time, and check that a test fails.

    python tests/breakage_check.py            # every breakage (a few minutes)
    python tests/breakage_check.py scrub      # some of them

Each breakage is a small edit of the package (the promise removed), applied to a copy of
the repository; the tests that guard the promise run there and must fail. Prints one
line per breakage: caught (and by which test) or MISSED. Run by hand, outside CI, like
``mutation_score.py``: it measures the suite rather than the package.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name: (file, text to find, replacement, tests to run)
BREAKAGES: dict[str, tuple[str, str, str, list[str]]] = {
    "scrub": (
        "api/_client.py", 'return text.replace(self._token, "<hidden>") if self._token else text',
        "return text", ["test_hostile_token.py", "test_client_units.py", "test_client.py"]),
    "head-and-middle": (
        "execute/_run.py", "        self.tail.append(data)\n",
        "        if self.tail_size + len(data) > self.cap - self.cap // 2:\n"
        "            self.dropped += len(data)\n            return\n"
        "        self.tail.append(data)\n",
        ["test_hostile_promises.py", "test_exec_units.py", "test_execute.py"]),
    "capture-screen": (
        "execute/_run.py",
        "    if capture.clean:  # no chunk held a byte any rule needs: nothing to redact\n",
        "    if True:\n", ["test_exec_capture.py", "test_redact_forms.py"]),
    "exec-many-isolation": (
        "execute/_fanout.py", "except Exception as exc:  # noqa: BLE001",
        "except ZeroDivisionError as exc:  # noqa: BLE001",
        ["test_hostile_promises.py", "test_exec_units.py", "test_hostile_data.py"]),
    "window-filter-events": (
        "load/_loaders.py",
        "        if tw.since is None and tw.until is None:\n            return None\n"
        "        when = cols[\"when\"]", "        return None\n        when = cols[\"when\"]",
        ["test_hostile_promises.py", "test_loaders_units.py"]),
    "window-filter-instances": (
        "load/_loaders.py", '    if tw.since is None and tw.until is None:\n        return None\n'
        '    keep = pd.Series(True, index=cols["created_at"].index)',
        '    return None\n    keep = pd.Series(True, index=cols["created_at"].index)',
        ["test_hostile_promises.py", "test_loaders_units.py"]),
    "rows-grown-while-paging": (
        "api/_paging.py", "        if latest > end or last_full:", "        if False:",
        ["test_pagination_units.py", "test_pagination.py", "test_hostile_listings.py"]),
    "no-count": (
        "api/_paging.py", "            yield from _sequential(fetch, key, len(page), limit, stats, "
        "bar, desc, seen)\n            return", "            return",
        ["test_pagination_units.py", "test_pagination.py", "test_hostile_listings.py"]),
    "resend-failed-read-ahead": (
        "api/_client.py", "else self.get(path, item))", 'else {"instances": [], "events": []})',
        ["test_client.py", "test_hostile_promises.py", "test_loaders.py"]),
    "details-404": (
        "load/_loaders.py", "        except NotFoundError:\n            return iid, None",
        "        except ZeroDivisionError:\n            return iid, None",
        ["test_hostile_promises.py", "test_loaders_units.py"]),
    "details-missing-recorded": (
        "load/_loaders.py", '        out.attrs["details_missing"] = missing', "        pass",
        ["test_hostile_promises.py", "test_loaders_units.py"]),
    "non-list-accepted": (
        "api/_paging.py", "        raise MalformedResponseError(f\"{what}: '{key}' is {kind}, "
        "not a list\")", "        return []",
        ["test_pagination_units.py", "test_hostile_listings.py", "test_pagination.py"]),
    "incidents-capped": (
        "analysis/_metrics.py", '    inc["duration"] = inc["end"] - inc["start"]\n',
        '    inc = inc.groupby("group").head(1)\n    inc["duration"] = inc["end"] - inc["start"]\n',
        ["test_analysis.py"]),
    "unknown-event-types": (
        "analysis/_lifecycle.py",
        "keep = np.flatnonzero((code >= 0) & (status >= 0) & (when != _NAT))",
        "keep = np.flatnonzero((code >= 0) & (when != _NAT))",
        ["test_lifecycle_exact.py", "test_hostile_inputs.py", "test_lifecycle.py"]),
}


def check(name: str, work: Path) -> str:
    path, old, new, tests = BREAKAGES[name]
    source = work / "koyeb_analytics" / path
    text = (ROOT / "koyeb_analytics" / path).read_text()
    if text.count(old) != 1:
        return f"{name:28} the text to break is not in {path} exactly once: update it"
    source.write_text(text.replace(old, new))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o",
             "addopts=", *(f"tests/{t}" for t in tests)],
            cwd=work, capture_output=True, text=True, timeout=900)
    finally:
        source.write_text(text)
    failed = re.findall(r"^FAILED (\S+)", run.stdout, re.M)
    if run.returncode == 0:
        return f"{name:28} MISSED: {' '.join(tests)} stayed green"
    return f"{name:28} caught by {failed[0] if failed else 'an error: ' + run.stdout[-200:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(BREAKAGES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="koyeb-breakage-") as tmp:
        work = Path(tmp) / "repo"
        shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(
            ".venv", ".git", "mutants", "__pycache__", ".coverage*", "test-artifacts"))
        missed = 0
        for name in args.names:
            line = check(name, work)
            missed += "MISSED" in line or "update it" in line
            print(line, flush=True)
    print(f"{len(args.names) - missed} of {len(args.names)} breakages caught")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
