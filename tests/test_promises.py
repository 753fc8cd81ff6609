"""The promise table (tests/promises.toml) is whole and still matches README.md and the code.

``tests/breakage_check.py`` applies each row's breakage and runs its tests (minutes, a
CI step of its own); these checks are fast and run with the suite: every anchor is in
the README, every breakage's text is in its file exactly once (so no row rots
silently), every named test exists, and every README sentence that says "never" or
"always" is covered by a row or named under ``[unchecked]`` with its reason.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TABLE = tomllib.loads((ROOT / "tests" / "promises.toml").read_text())
ROWS = TABLE["promise"]
FIELDS = {"name", "promise", "anchor", "file", "find", "replace", "tests"}


def _flat(text: str) -> str:
    return " ".join(text.split())


def _readme_prose() -> str:
    text = (ROOT / "README.md").read_text()
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return _flat(re.sub(r"<!--.*?-->", "", text, flags=re.S))


def test_the_table_has_at_least_thirty_promises_each_whole():
    assert len(ROWS) >= 30
    assert len({r["name"] for r in ROWS}) == len(ROWS)
    for row in ROWS:
        assert set(row) == FIELDS, row["name"]
        assert row["find"] != row["replace"] and row["tests"], row["name"]


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_each_promise_is_in_the_readme_and_its_breakage_in_the_code(row):
    assert _flat(row["anchor"]) in _flat((ROOT / "README.md").read_text()), row["anchor"]
    source = (ROOT / "koyeb_analytics" / row["file"]).read_text()
    assert source.count(row["find"]) == 1, f"{row['file']}: update the text to break"


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.name.startswith("test")}


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_each_named_test_exists(row):
    for node in row["tests"]:
        file, _, name = node.partition("::")
        path = ROOT / file
        assert path.is_file(), node
        assert not name or name.split("[")[0] in _test_names(path), node


def test_every_never_or_always_sentence_has_a_row_or_a_reason():
    prose = _readme_prose()
    anchors = [_flat(r["anchor"]) for r in ROWS]
    unchecked = {_flat(k): v for k, v in TABLE["unchecked"].items()}
    for phrase, reason in unchecked.items():
        assert phrase in prose, f"[unchecked] names a phrase the README lost: {phrase!r}"
        assert len(reason.split()) >= 4, phrase
    sentences = re.split(r"(?<=[.;:!?])\s+(?=[A-Z`*(-])", prose)
    bare = [s for s in sentences if re.search(r"\b(never|always)\b", s)
            and not any(a in s or s in a for a in anchors)
            and not any(p in s for p in unchecked)]
    assert bare == [], "a promise with neither a row in tests/promises.toml nor a reason"
