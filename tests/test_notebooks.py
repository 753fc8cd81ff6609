"""The three notebooks run top to bottom in a real kernel, against the simulator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


VOCABULARIES = pytest.mark.parametrize("vocabulary", ["invented", "opaque"])


def execute(name: str, vocabulary: str = "invented") -> dict:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "notebooks are stored without outputs"
    env_token = os.environ.pop("KOYEB_TOKEN", None)
    os.environ["KOYEB_SIM_VOCABULARY"] = vocabulary
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    finally:
        del os.environ["KOYEB_SIM_VOCABULARY"]
        if env_token is not None:
            os.environ["KOYEB_TOKEN"] = env_token
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    return json.loads(text.strip().splitlines()[-1])


@VOCABULARIES
def test_explore(vocabulary):
    out = execute("01-explore.ipynb", vocabulary)
    assert out["instances"] > 0 and out["events"] > 0 and out["spans"] >= out["instances"]
    assert out["exec_ok"] and out["exec_rows"] == 3


@VOCABULARIES
def test_incident_postmortem(vocabulary):
    out = execute("02-incident-postmortem.ipynb", vocabulary)
    assert out["incidents"] >= 1 and out["worst_minutes"] > 1
    assert out["snapshot_same"] is True and out["captures"] >= 1


@VOCABULARIES
def test_capacity_uptime_report(vocabulary):
    out = execute("03-capacity-uptime-report.ipynb", vocabulary)
    assert 0.9 < out["overall"] <= 1 and out["services"] == 12 and out["peak"] > 0
    assert out["report_bytes"] > 50_000


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebooks_validate(name):
    nbformat.validate(nbformat.read(NOTEBOOKS / name, as_version=4))
