"""ExecWidget driven without a kernel, against the simulator; and in a real kernel."""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.execute._transcript import TRANSCRIPT_COLUMNS
from koyeb_analytics.widgets._exec import clean_terminal_text

from .conftest import fast_client


@pytest.fixture
def wsim(exec_sim):
    exec_sim.exec_faults = ka.simulator.ExecFaults()
    return exec_sim


@pytest.fixture
def widget(wsim):
    client = fast_client(wsim)
    return ka.ExecWidget(client, instances=ka.load_instances(client, progress=False),
                         confirm_above=3)


def runnable(w, n):
    return [value for _, value in w._picker.options][:n]


def cell_parts(w, k):
    header, out, footer = w._cells.children[k].children
    return header.value, out.outputs, footer.value


def test_only_running_instances_are_selectable(widget):
    statuses = widget.instances.set_index("instance_id")["status"]
    options = [value for _, value in widget._picker.options]
    assert options and set(statuses[options]) <= {"STARTING", "HEALTHY", "UNHEALTHY"}
    assert len(options) < len(widget.instances)
    assert "not running" in widget._note.value
    label = widget._picker.options[0][0]
    assert label.startswith(options[0][:8]) and "·" in label


def test_button_run_appends_cells_in_order_with_badges(widget):
    ids = runnable(widget, 2)
    widget._picker.value = tuple(ids)
    widget._command.value = "echo out; echo err >&2; exit 3"
    assert not widget._run.disabled
    widget._run.click()
    assert widget._run.disabled and not widget._stop.disabled  # disabled during the run
    widget.wait(20)
    assert not widget._run.disabled and widget._stop.disabled
    header0, outputs0, footer0 = cell_parts(widget, 0)
    header1, _, _ = cell_parts(widget, 1)
    assert "Run 1" in header0 and ids[0][:8] in header0 and ids[1][:8] in header1
    assert "echo out; echo err &gt;&amp;2; exit 3" in header0  # the command, escaped
    assert [o["name"] for o in outputs0] == ["stdout", "stderr"]  # stderr is its own stream
    assert outputs0[0]["text"] == "out\n" and outputs0[1]["text"] == "err\n"
    assert "ka-exit" in footer0 and "exit 3" in footer0
    assert "summary" in widget._cells.children[2].children[0].value  # several instances
    widget._command.value = "true"
    widget._picker.value = (ids[0],)
    widget._run.click()
    widget.wait(20)
    assert "Run 2" in cell_parts(widget, 3)[0] and "ka-ok" in cell_parts(widget, 3)[2]
    assert widget._command.options[:2] == ("true", "echo out; echo err >&2; exit 3")


def test_html_and_script_in_output_stay_text(widget):
    iid = runnable(widget, 1)[0]
    widget.run("printf '<script>alert(1)</script>\\n<b>bold</b>\\n'", instances=[iid])
    _, outputs, _ = cell_parts(widget, 0)
    assert outputs[0]["output_type"] == "stream"  # text, never an HTML display
    assert outputs[0]["text"] == "<script>alert(1)</script>\n<b>bold</b>\n"
    assert all("text/html" not in o.get("data", {}) for o in outputs)


def test_ansi_colours_kept_control_sequences_stripped():
    assert clean_terminal_text("\x1b[31mred\x1b[0m\x1b[2J\x1b]0;title\x07!") == \
        "\x1b[31mred\x1b[0m!"


def test_huge_output_shows_head_and_tail_but_keeps_everything(wsim):
    client = fast_client(wsim)
    w = ka.ExecWidget(client, instances=ka.load_instances(client, progress=False), head_lines=10,
                      tail_lines=5)
    w.run("seq 1 1000", instances=runnable(w, 1))
    shown = "".join(o["text"] for o in cell_parts(w, 0)[1])
    lines = shown.splitlines()
    assert lines[:10] == [str(i) for i in range(1, 11)]
    assert lines[10] == "… 985 lines hidden …"
    assert lines[11:] == [str(i) for i in range(996, 1001)]
    assert w.transcript["stdout"].iloc[0] == "".join(f"{i}\n" for i in range(1, 1001))


def test_stop_ends_a_long_run_promptly(widget):
    widget._picker.value = tuple(runnable(widget, 1))
    widget._command.value = "echo started; exec sleep 60"
    widget._timeout.value = 120
    widget._run.click()
    time.sleep(0.5)
    start = time.monotonic()
    widget._stop.click()
    widget.wait(10)
    assert time.monotonic() - start < 3 and not widget.running
    row = widget.transcript.iloc[0]
    assert row["error"] == "cancelled" and not row["exited"] and pd.isna(row["exit_code"])
    assert row["stdout"] == "started\n"
    assert "cancelled" in cell_parts(widget, 0)[2]
    assert not widget._run.disabled


def test_timeout_badge(widget):
    widget.run("sleep 5", instances=runnable(widget, 1), timeout=0.5)
    assert "timed out" in cell_parts(widget, 0)[2]
    assert bool(widget.transcript["timed_out"].iloc[0])


def test_transcript_matches_what_ran(widget, tmp_path):
    ids = runnable(widget, 2)
    widget.run(["sh", "-c", "echo $KOYEB_INSTANCE_ID"], instances=ids)
    widget.run("exit 7", instances=ids[:1])
    t = widget.transcript
    assert list(t.columns) == list(TRANSCRIPT_COLUMNS)
    assert t["run_id"].tolist() == [1, 1, 2]
    first = t[t["run_id"] == 1].set_index("instance_id")
    assert all(first.loc[i, "stdout"] == i + "\n" for i in ids)
    assert t["exit_code"].tolist() == [0, 0, 7]
    assert str(t["started_at"].dtype) == "datetime64[us, UTC]"
    assert (t["service_id"].notna()).all()
    path = widget.save_transcript(tmp_path / "incident-42.parquet")
    back = ka.load_transcript(path)
    pd.testing.assert_frame_equal(back, t)
    md = widget.to_markdown()
    assert "exit 7" in md and ids[0] in md


def test_notebook_cells_validate(widget):
    widget.run("echo hello; echo oops >&2", instances=runnable(widget, 2))
    cells = widget.to_notebook_cells()
    nb = nbformat.v4.new_notebook(cells=cells)
    nbformat.validate(nb)
    assert [c.cell_type for c in cells] == ["markdown", "code", "code"]
    assert cells[1].outputs[0].text == "hello\n" and cells[1].outputs[1].name == "stderr"
    assert "Run 1" in cells[0].source


def test_confirmation_and_allowlist_block(wsim):
    client = fast_client(wsim)
    inst = ka.load_instances(client, progress=False)
    w = ka.ExecWidget(client, instances=inst, confirm_above=2,
                      allowlist=["uptime", re.compile(r"echo [a-z]+")])
    w._picker.value = tuple(runnable(w, 3))
    w._command.value = "echo many"
    w._run.click()
    assert w._confirm.layout.display == "flex" and not w.running and not w._cells.children
    w._no.click()
    assert w._confirm.layout.display == "none" and not w._cells.children
    w._run.click()
    w._yes.click()
    w.wait(20)
    assert len(w.transcript) == 3
    w._command.value = "rm -rf /tmp/x"
    w._picker.value = tuple(runnable(w, 1))
    w._run.click()
    assert "Blocked" in w._status.value and len(w.transcript) == 3
    with pytest.raises(PermissionError, match="allowlist"):
        w.run("cat /etc/passwd", instances=runnable(w, 1))
    with pytest.raises(ValueError, match="confirm=True"):
        w.run("echo many", instances=runnable(w, 3))
    assert len(w.run("echo many", instances=runnable(w, 3), confirm=True)) == 3
    stopped = inst.loc[inst["status"] == "STOPPED", "id"].iloc[0]
    with pytest.raises(ValueError, match="not running"):
        w.run("uptime", instances=[stopped])


def test_widget_in_a_real_kernel(wsim):
    from nbclient import NotebookClient

    nb = nbformat.read(Path(__file__).parent / "notebooks" / "exec_widget.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    last = nb.cells[-1].outputs
    text = "".join(o.get("text", "") for o in last)
    assert "transcript ok" in text, last


def test_the_picker_names_services(exec_sim):
    client = exec_sim.client()
    inst = ka.load_instances(client, statuses="HEALTHY", progress=False).head(3)
    w = ka.ExecWidget(client, instances=inst)
    labels = [label for label, _ in w._picker.options]
    assert all(f"{r.app_name}/{r.service_name}" in label
               for label, r in zip(labels, inst.itertuples(), strict=True))
