"""The README's measured figures are what tools/readme_numbers.py writes from the stored
results (benchmarks/results/*.json), not numbers typed by hand."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("readme_numbers",
                                               ROOT / "tools" / "readme_numbers.py")
assert _spec is not None and _spec.loader is not None
numbers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(numbers)
README = (ROOT / "README.md").read_text()
REGIONS = [m.group("name") for m in numbers.REGION.finditer(README)]


def test_the_readme_is_what_the_stored_results_say():
    assert numbers.render(README) == README, "run python tools/readme_numbers.py"


def test_every_region_has_a_renderer_and_every_renderer_a_region():
    assert sorted(REGIONS) == sorted(numbers.RENDER)
    assert README.count("<!-- numbers:") == README.count("<!-- /numbers -->") == len(REGIONS)


def _outside_regions() -> str:
    return numbers.REGION.sub("", README)


def test_no_measured_figure_sits_outside_a_region():
    outside = _outside_regions()
    assert "Breakages caught" not in outside
    assert not re.search(r"\| \d+\.\d%", outside)          # a score table typed by hand
    assert not re.search(r"\d(\.\d+)?x (faster|slower)", outside)


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks" / "results").glob("*.json")),
                         ids=lambda p: p.stem)
def test_each_stored_result_says_when_and_where(path):
    record = json.loads(path.read_text())
    assert record["name"] == path.stem
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", record["date"])
    assert record["machine"].get("cpus") and record["figures"]


def test_a_changed_result_changes_the_readme(monkeypatch):
    real = numbers.stored

    def doctored(name):
        record = json.loads(json.dumps(real(name)))
        if name == "breakages":
            record["figures"]["caught"] -= 1
        return record

    monkeypatch.setattr(numbers, "stored", doctored)
    assert numbers.render(README) != README
