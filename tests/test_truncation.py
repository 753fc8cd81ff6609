"""Issue 27, class 6: truncation is never silent.

An exec result keeps the head and the tail of a stream within ``max_output`` and drops
the middle. Every consumer says so, and none glues the line before the cut to the line
after it: exec_table keeps only whole rows, exec_many flags the runs and marks the cut,
the widget shows a notice and keeps the mark in its transcript. The commands run as real
local processes in the simulator.
"""

from __future__ import annotations

import json
import re
import warnings

import pandas as pd
import pytest

import koyeb_analytics as ka

from .conftest import fast_client

N = 20000
ROWS = {
    # parser, command, the true output, and how a parsed row names its line
    "ps": ("ps",
           f"echo 'PID TTY TIME CMD'; seq 1 {N} | sed 's|.*|& pts/0 00:00:00 cmd&|'",
           "PID TTY TIME CMD\n" + "".join(f"{i} pts/0 00:00:00 cmd{i}\n"
                                          for i in range(1, N + 1))),
    "env": ("env", f"seq 1 {N} | sed 's/.*/V&=&/'",
            "".join(f"V{i}={i}\n" for i in range(1, N + 1))),
}
MARKER = re.compile(r"^\[… (\d+) bytes dropped here: raise max_output= to keep them …\]$")


@pytest.fixture(scope="module")
def fleet(exec_sim):
    exec_sim.exec_faults = ka.simulator.ExecFaults()
    client = fast_client(exec_sim)
    running = ka.load_instances(client, statuses="HEALTHY", progress=False)
    return client, running


def cut_of(text: str, max_output: int) -> tuple[str, str]:
    """The head and the tail a run keeps of ``text`` (ASCII) under ``max_output``."""
    head = max_output // 2
    return text[:head], text[len(text) - (max_output - head):]


def whole_lines(head: str, tail: str) -> tuple[list[str], list[str]]:
    """The lines that lie whole in the head and in the tail (both cut mid-line)."""
    assert not head.endswith("\n") and "\n" in tail  # the test is about a mid-line cut
    return head.split("\n")[:-1], tail.split("\n")[1:-1]


def marked(head: str, tail: str, dropped: int) -> str:
    """The text of a cut stream: head, the cut's own line, tail."""
    line = f"[… {dropped} bytes dropped here: raise max_output= to keep them …]"
    assert MARKER.match(line)
    return head + ("" if head.endswith("\n") else "\n") + line + "\n" + tail


def one_warning(caught: list[warnings.WarningMessage]) -> str:
    ours = [w for w in caught if issubclass(w.category, UserWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    assert ours[0].filename == __file__  # it names the caller's line
    return str(ours[0].message)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_exec_table_keeps_whole_rows_on_both_sides_of_the_cut(fleet, name):
    client, running = fleet
    parser, command, truth = ROWS[name]
    max_output = 6001  # an odd cap: head and tail differ by a byte
    head, tail = cut_of(truth, max_output)
    head_lines, tail_lines = whole_lines(head, tail)
    dropped = len(truth) - max_output
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = ka.exec_table(client, command, instances=running.head(2), parser=parser,
                           max_output=max_output)
    message = one_warning(caught)

    if name == "ps":
        assert head_lines[0] == "PID TTY TIME CMD"
        head_lines = head_lines[1:]
    numbers = [int(re.split(r"[ =]", line.removeprefix("V"))[0])
               for line in head_lines + tail_lines]
    # Exactly a prefix and a suffix of the true rows: the rows around the cut left out.
    k = len(head_lines)
    assert numbers == list(range(1, k + 1)) + list(range(N - len(tail_lines) + 1, N + 1))
    got = df[df["instance_id"] == running["id"].iloc[0]]
    if name == "ps":
        assert got["pid"].tolist() == numbers
        assert (got["cmd"] == "cmd" + got["pid"].astype(str)).all()  # no row glued
    else:
        assert got["value"].astype(int).tolist() == numbers
        assert (got["name"] == "V" + got["value"].astype(str)).all()
    assert len(df) == 2 * len(numbers) and set(df["instance_id"]) == set(running["id"].head(2))

    assert df.attrs["truncated"] is True
    assert df.attrs["bytes_dropped"] == 2 * dropped
    assert df.attrs["truncated_runs"] == 2
    assert df.attrs["failed"] == []
    assert f"{2 * dropped} bytes" in message
    assert "2 of 2 instance(s)" in message
    assert "max_output=6001" in message and "pass a larger max_output=" in message


def test_exec_table_without_truncation_says_so_and_stays_quiet(fleet):
    client, running = fleet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = ka.exec_table(client, "seq 1 50 | sed 's/.*/V&=&/'", instances=running.head(1),
                           parser="env", max_output=4096)
    assert df["value"].astype(int).tolist() == list(range(1, 51))
    assert df.attrs["truncated"] is False
    assert df.attrs["bytes_dropped"] == 0 and df.attrs["truncated_runs"] == 0


def test_exec_many_flags_truncated_runs_and_marks_the_cut(fleet):
    client, running = fleet
    first, second = running["id"].iloc[0], running["id"].iloc[1]
    truth = "".join(f"{i}\n" for i in range(1, N + 1))
    command = (f'if [ "$KOYEB_INSTANCE_ID" = "{first}" ]; then seq 1 {N}; '
               f"else echo small; fi")
    max_output = 4001
    head, tail = cut_of(truth, max_output)
    dropped = len(truth) - max_output
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = ka.exec_many(client, command, instances=[first, second], max_output=max_output)
    message = one_warning(caught)

    assert list(runs.columns) == list(ka.execute.MANY_COLUMNS)
    assert runs["truncated"].tolist() == [True, False]
    assert runs["bytes_dropped"].tolist() == [dropped, 0]
    assert runs["stdout"].iloc[1] == "small\n"
    # The kept bytes are exact; the cut is a line of its own between them.
    assert runs["stdout"].iloc[0] == marked(head, tail, dropped)
    assert "1 of 2 run(s)" in message and f"{dropped} bytes" in message
    assert "max_output=4001" in message and "pass a larger max_output=" in message

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = ka.exec_many(client, "seq 1 10", instances=[first], max_output=max_output)
    assert quiet["truncated"].tolist() == [False]
    assert quiet["bytes_dropped"].tolist() == [0]
    assert quiet["stdout"].iloc[0] == "".join(f"{i}\n" for i in range(1, 11))


def test_exec_command_result_says_where_it_was_cut(fleet):
    client, running = fleet
    truth = "".join(f"{i}\n" for i in range(1, N + 1)).encode()
    res = ka.exec_command(client, ["seq", "1", str(N)], instance_id=running["id"].iloc[0],
                          max_output=1000)
    assert res.truncated and res.stdout_dropped == len(truth) - 1000
    assert res.stdout_cut == 500
    assert res.stdout[:res.stdout_cut] == truth[:500]
    assert res.stdout[res.stdout_cut:] == truth[-500:]
    small = ka.exec_command(client, ["echo", "hi"], instance_id=running["id"].iloc[0])
    assert not small.truncated and small.stdout_cut is None


def test_a_secret_cut_at_the_seam_stays_redacted_and_its_line_counts_as_the_tail(fleet):
    client, running = fleet
    # The head ends inside a secret's value; the value's redaction reaches across the
    # cut, as if nothing had been dropped. The cut then falls before the secret's line:
    # the head keeps only its whole lines, and the redacted line opens the tail.
    script = "printf 'A=1\\nAPI_TOKEN=%0200d\\n' 0; seq 1 2000"
    res = ka.exec_command(client, script, instance_id=running["id"].iloc[0],
                          max_output=100)
    seq = "".join(f"{i}\n" for i in range(1, 2001)).encode()
    assert res.truncated and res.redacted == 1 and b"0000" not in res.stdout
    assert res.stdout[:res.stdout_cut] == b"A=1\n"
    tail = seq[-50:]
    assert res.stdout[res.stdout_cut:] == b"API_TOKEN=[redacted]\n" + tail[tail.index(b"\n") + 1:]


def test_a_secret_redacted_before_the_cut_moves_the_cut_with_it(fleet):
    client, running = fleet
    script = "printf 'API_TOKEN=abcdefghijklmnop\\n'; seq 1 2000"
    res = ka.exec_command(client, script, instance_id=running["id"].iloc[0],
                          max_output=100)
    raw = b"API_TOKEN=abcdefghijklmnop\n" + "".join(f"{i}\n" for i in range(1, 2001)).encode()
    assert res.redacted == 1 and res.stdout_cut == 50 - len(b"abcdefghijklmnop") + 10
    assert res.stdout[:res.stdout_cut] == b"API_TOKEN=[redacted]\n" + raw[27:50]
    assert res.stdout[res.stdout_cut:] == raw[-50:]


def test_the_widget_shows_a_notice_and_the_transcript_keeps_the_mark(fleet):
    client, running = fleet
    iid = running["id"].iloc[0]
    truth = "".join(f"{i}\n" for i in range(1, N + 1))
    max_output = 3001
    head, tail = cut_of(truth, max_output)
    dropped = len(truth) - max_output
    w = ka.ExecWidget(client, instances=running, max_output=max_output)
    w.run(f"seq 1 {N}", instances=[iid])
    footer = w._cells.children[0].children[2].value
    assert "ka-truncated" in footer
    assert f"{dropped} bytes" in footer and "max_output=3001" in footer
    assert w.transcript.iloc[0]["stdout"] == marked(head, tail, dropped)
    assert any(MARKER.match(line) for line in w.to_markdown().splitlines())

    # A small run has no notice.
    w.run("echo hi", instances=[iid])
    assert "ka-truncated" not in w._cells.children[1].children[2].value
    assert "[…" not in w.transcript.iloc[1]["stdout"]


def test_the_widget_table_of_a_truncated_run_has_only_whole_rows(fleet):
    client, running = fleet
    iid = running["id"].iloc[0]
    _, command, truth = ROWS["ps"]
    # A "./ps" in the instance's directory prints the table; its name picks the parser.
    ka.exec_command(client, "cat > ps && chmod +x ps", instance_id=iid,
                    stdin=f"#!/bin/sh\n{command}\n", check=True)
    max_output = 5001
    head_lines, tail_lines = whole_lines(*cut_of(truth, max_output))
    want = [int(line.split()[0]) for line in head_lines[1:] + tail_lines]
    w = ka.ExecWidget(client, instances=running, max_output=max_output)
    w.run("./ps", instances=[iid], as_table=True)
    row = w.transcript.iloc[0]
    assert row["exit_code"] == 0 and sum(bool(MARKER.match(x))
                                         for x in row["stdout"].split("\n")) == 1
    rows = pd.DataFrame(json.loads(row["parsed"]))
    assert rows["pid"].tolist() == want
    assert (rows["cmd"] == "cmd" + rows["pid"].astype(str)).all()
