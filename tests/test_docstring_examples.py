"""Every public function shows an example, and the examples run as doctests in CI.

Public: a function named in the ``__all__`` of ``koyeb_analytics`` or of one of its
subpackages. The examples run through ``--doctest-modules`` (pyproject's ``addopts``,
so the README's test command and ``.ci/run`` include them) in the namespace the root
``conftest.py`` gives: ``ka``, ``pd``, a started simulator ``sim``, its ``client`` and a
running instance ``iid``. An example may be skipped only with its reason written on the
line, before the directive (``>>> x = f()  # needs a Koyeb account  # doctest: +SKIP``).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
import tomllib
from pathlib import Path

import koyeb_analytics as ka

ROOT = Path(__file__).resolve().parent.parent
SKIP = re.compile(r"#\s*doctest:.*\+SKIP")
REASON = re.compile(r"#\s*(\w+\W+){2,}.*?#\s*doctest:")


def public_functions() -> dict[str, object]:
    names = ["koyeb_analytics"] + [f"koyeb_analytics.{m.name}"
                                   for m in pkgutil.iter_modules(ka.__path__)
                                   if not m.name.startswith("_")]
    found: dict[str, object] = {}
    for name in names:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if inspect.isfunction(obj):
                found.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return found


def test_every_public_function_has_an_example() -> None:
    functions = public_functions()
    assert len(functions) >= 60
    missing = [name for name, fn in functions.items()
               if not doctest.DocTestParser().get_examples(inspect.getdoc(fn) or "")]
    assert missing == []


def test_an_example_is_skipped_only_with_its_reason() -> None:
    unexplained = []
    for path in sorted((ROOT / "koyeb_analytics").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if SKIP.search(line) and not REASON.search(line):
                unexplained.append(f"{path.relative_to(ROOT)}:{n}")
    assert unexplained == []


def test_the_skip_rule_tells_a_reason_from_none() -> None:
    assert REASON.search(">>> c = f()  # needs a Koyeb account  # doctest: +SKIP")
    assert not REASON.search(">>> c = f()        # doctest: +SKIP")


def test_doctests_are_part_of_the_test_command() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    options = config["ini_options"]
    assert "--doctest-modules" in options["addopts"]
    assert "koyeb_analytics" in options["testpaths"]
