"""The three notebooks run top to bottom in a real kernel, against the simulator.

The stored notebooks hold no test scaffolding: the test appends one cell at run time that
reads the values it checks from the kernel. The notebooks' own outputs must read like a
document: no error, no raw dict printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
VOCABULARIES = pytest.mark.parametrize("vocabulary", ["invented", "opaque"])


def execute(name: str, probe: str, tmp_path: Path, vocabulary: str = "invented",
            env: dict[str, str] | None = None) -> dict:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "notebooks are stored without outputs"
    own = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(f"import json\nprint(json.dumps({probe}))"))
    env_token = os.environ.pop("KOYEB_TOKEN", None)
    os.environ["KOYEB_SIM_VOCABULARY"] = vocabulary
    os.environ.update(env or {})
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        del os.environ["KOYEB_SIM_VOCABULARY"]
        for key in env or {}:
            del os.environ[key]
        if env_token is not None:
            os.environ["KOYEB_TOKEN"] = env_token
    for cell in nb.cells[:own]:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", out
            text = out.get("text", "") or out.get("data", {}).get("text/plain", "")
            assert not str(text).lstrip().startswith(("{", "({", "Series([]")), text
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    return json.loads(text.strip().splitlines()[-1])


@VOCABULARIES
def test_explore(vocabulary, tmp_path):
    out = execute("01-explore.ipynb", '{"instances": len(inst), "events": len(ev), '
                  '"spans": len(iv), "exec_ok": bool((w.transcript["exit_code"] == 0).all()),'
                  ' "exec_rows": len(w.transcript), "unnamed": int((inst["service_name"] '
                  '== inst["service_id"].str[:8]).sum())}', tmp_path, vocabulary)
    assert out["instances"] > 0 and out["events"] > 0 and out["spans"] >= out["instances"]
    assert out["exec_ok"] and out["exec_rows"] == 3
    assert out["unnamed"] == 0  # every service by name


@VOCABULARIES
def test_incident_postmortem(vocabulary, tmp_path):
    out = execute("02-incident-postmortem.ipynb",
                  '{"incidents": len(inc), "worst_minutes": worst["duration"]'
                  '.total_seconds() / 60, "snapshot_same": bool(same), '
                  '"captures": len(captures), "outputs": str(outputs), '
                  '"changes": len(ch), "suspects": len(sus), "followed": int(followed), '
                  '"nearest": None if first is None else first["kind"], '
                  '"build_errors": errors["msg"].tolist()}', tmp_path, vocabulary)
    assert out["incidents"] >= 1 and out["worst_minutes"] > 1
    # what changed: the week's changes, and the worst incident's nearest one
    assert out["changes"] > 10 and 1 <= out["followed"] <= out["incidents"]
    assert out["suspects"] >= 1 and out["nearest"] == "deploy"
    # what the system said: the suspect deployment's build log names the crash
    assert any("ModuleNotFoundError" in m or "ERR_REQUIRE_ESM" in m
               for m in out["build_errors"]), out["build_errors"]
    assert out["snapshot_same"] is True and out["captures"] >= 1
    assert (tmp_path / out["outputs"] / "manifest.json").is_file()  # beside the notebook


@VOCABULARIES
def test_capacity_uptime_report(vocabulary, tmp_path):
    out = execute("03-capacity-uptime-report.ipynb",
                  '{"overall": up.attrs["overall"], "services": len(up), '
                  '"peak": peak.instances, "report": str(report)}', tmp_path, vocabulary)
    assert 0.9 < out["overall"] <= 1 and out["services"] == 12 and out["peak"] > 0
    assert (tmp_path / out["report"]).stat().st_size > 50_000


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebooks_validate(name):
    nbformat.validate(nbformat.read(NOTEBOOKS / name, as_version=4))


def test_a_notebook_runs_offline_from_a_history_store(tmp_path):
    import koyeb_analytics as ka

    path = tmp_path / "history"
    store = ka.HistoryStore(path)
    with ka.simulate(seed=7, days=7, services=12, outages=2) as sim:
        store.sync(sim.client())
    out = execute("03-capacity-uptime-report.ipynb",
                  '{"store": w.instances.attrs.get("store"), "instances": len(inst), '
                  '"events": len(ev), "since": str(w.since), "services": len(up)}',
                  tmp_path, env={"KOYEB_ANALYTICS_STORE": str(path)})
    window = ka.load_window(store, window="7d")
    assert out["store"] == str(path) and out["services"] == 12
    assert out["instances"] == len(window.instances) and out["events"] == len(window.events)
    assert out["since"] == str(window.since)
