"""The command prints what a hostile fleet sends as visible text, never as terminal
commands, and writes CSV a spreadsheet cannot run (unless asked for raw CSV)."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from .hostile import TOKEN, HostileServer, rest
from .test_cli import run

APP = "5b1f7f0e-aaaa-4222-8333-000000000001"
SVC = "5b1f7f0e-bbbb-4222-8333-000000000002"
IIDS = [f"5b1f7f0e-1111-4222-8333-{k:012d}" for k in range(3)]

CLEAR, HOME = "\x1b[2J", "\x1b[H"
OSC52 = "\x1b]52;c;ZWNobyBvd25lZA==\x07"
OSC8 = "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\"
TITLE = "\x1b]0;owned\x07"
C1 = "\x9b2J"
FORMULA = '=HYPERLINK("http://evil.example","x")'

APP_NAME = FORMULA
SERVICE_NAME = f"api{TITLE}{CLEAR}\rshop<script>{C1}"
MESSAGES = [f"{FORMULA}{OSC52}", f"+1{OSC8}", f"-2{HOME}\x08\x08", f"@SUM(A1){TITLE}",
            f"\tcrashed{C1}\r"]

RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters that must not reach the terminal (tab and newline may)."""
SHOWN = ("\\x1b]0;owned\\x07", "\\x1b[2J", "\\x9b2J", "\\r")


def iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fleet_route(start: pd.Timestamp):
    """Instances and events of one service whose names and messages are hostile; a
    further event (a crash) once ``srv.state["crash"]`` is set."""
    instances = [{"id": iid, "created_at": iso(start), "updated_at": iso(start),
                  "status": "HEALTHY", "replica_index": k, "region": "fra",
                  "app_id": APP, "service_id": SVC, "messages": [MESSAGES[k]],
                  "type": "nano"} for k, iid in enumerate(IIDS)]
    events = []
    for k, iid in enumerate(IIDS):
        for j, status in enumerate(("STARTING", "HEALTHY")):
            events.append({"id": f"e-{k}-{j}", "when": iso(start + pd.Timedelta(minutes=j)),
                           "instance_id": iid, "type": "instance.status",
                           "message": MESSAGES[(2 * k + j) % len(MESSAGES)],
                           "metadata": {"status": status}})

    def route(req, srv):
        if req.path == "/v1/apps":
            return 200, {"apps": [{"id": APP, "name": APP_NAME}], "count": 1,
                         "has_next": False}, {}
        if req.path == "/v1/services":
            return 200, {"services": [{"id": SVC, "name": SERVICE_NAME, "app_id": APP}],
                         "count": 1, "has_next": False}, {}
        if req.path == "/v1/instances":
            rows = instances if req.query.get("offset", "0") == "0" else []
            return 200, {"instances": rows, "count": len(instances)}, {}
        if req.path == "/v1/instance_events":
            rows = list(events)
            if srv.state.get("crash"):
                rows.append({"id": "e-crash", "when": srv.state["crash"],
                             "instance_id": IIDS[0], "type": "instance.status",
                             "message": f"crashed {OSC52}{TITLE}{C1}",
                             "metadata": {"status": "ERROR"}})
            return 200, {"events": rows if req.query.get("offset", "0") == "0" else [],
                         "has_next": False}, {}
        return 404, {"code": "not_found", "message": "no such path"}, {}
    return route


@pytest.fixture
def fleet():
    start = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=90)
    with HostileServer(rest(fleet_route(start))) as srv:
        yield srv


def env_for(srv, tmp_path):
    return {"KOYEB_TOKEN": TOKEN, "KOYEB_URL": srv.url, "HOME": str(tmp_path)}


def assert_visible(text: str, *shown: str) -> None:
    assert RAW.search(text) is None, RAW.findall(text)
    for s in shown:
        assert s in text, (s, text)


def test_the_report_summary_shows_hostile_names_as_text(fleet, tmp_path):
    proc = run(["report", "--window", "1d", "--out", "r.html", "--quiet"],
               env=env_for(fleet, tmp_path), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_visible(proc.stdout + proc.stderr, *SHOWN)
    assert "api\\x1b]0;owned\\x07\\x1b[2J\\rshop<script>\\x9b2J" in proc.stdout
    html = (tmp_path / "r.html").read_text()
    assert "<script>" not in html and "shop&lt;script&gt;" in html
    assert_visible(html.replace("\n", ""), "\\x1b]0;owned\\x07")
    assert TOKEN not in proc.stdout + proc.stderr


def read_cells(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_export_writes_inert_csv_and_raw_csv_on_request(fleet, tmp_path):
    env = env_for(fleet, tmp_path)
    for what in ("instances", "events"):
        proc = run(["export", what, "--window", "1d", "--quiet", "--out", f"{what}.csv"],
                   env=env, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert_visible(proc.stdout + proc.stderr)
    inst = read_cells(tmp_path / "instances.csv")
    assert {r["app_name"] for r in inst} == {"'" + FORMULA}
    # JSON columns stay exact JSON (they start with "[" or "{").
    assert sorted(json.loads(r["messages"])[0] for r in inst) == sorted(MESSAGES[:3])
    events = read_cells(tmp_path / "events.csv")
    messages = [r["message"] for r in events]
    assert "'" + MESSAGES[0] in messages and "'" + MESSAGES[2] in messages
    assert "'" + MESSAGES[4] in messages  # a leading tab
    for row in inst + events:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    proc = run(["export", "events", "--window", "1d", "--quiet", "--raw-csv",
                "--out", "raw.csv"], env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(MESSAGES) == {r["message"] for r in read_cells(tmp_path / "raw.csv")}
    proc = run(["export", "instances", "--window", "1d", "--quiet", "--format", "parquet",
                "--out", "i.parquet"], env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(pd.read_parquet(tmp_path / "i.parquet")["app_name"]) == {FORMULA}


def test_watch_prints_a_hostile_change_as_text(fleet, tmp_path):
    env = {**os.environ, **env_for(fleet, tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "koyeb_analytics", "watch", "--every",
                             "0.2s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    lines: list[str] = []
    try:
        lines.append(proc.stdout.readline())
        assert lines[0].startswith("Watching"), (lines, proc.stderr)
        fleet.state["crash"] = iso(pd.Timestamp.now(tz="UTC"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
            if "-> ERROR" in lines[-1]:
                break
        else:
            pytest.fail(f"no change printed: {lines}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    change = lines[-1]
    assert change.endswith("\n") and change.count("\n") == 1
    assert_visible(change.rstrip("\n"), "\\x1b]52;c;ZWNobyBvd25lZA==\\x07", "\\x9b2J",
                   "api\\x1b]0;owned\\x07")
    assert_visible("".join(lines) + out + err)


def test_an_error_that_quotes_the_server_is_one_visible_line(tmp_path):
    hostile = f"bad {TITLE}{CLEAR}\nkoyeb-analytics: all good{C1}"

    def route(req, srv):
        return 400, {"code": "invalid", "message": hostile,
                     "fields": [{"field": "limit", "description": OSC52}]}, {}

    with HostileServer(rest(route)) as srv:
        env = env_for(srv, tmp_path)
        proc = run(["export", "events", "--window", "1d", "--quiet", "--out", "e.csv"],
                   env=env, cwd=tmp_path, timeout=120)
        debug = run(["--debug", "export", "events", "--window", "1d", "--quiet",
                     "--out", "e.csv"], env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("koyeb-analytics: error:"), lines
    assert_visible(proc.stderr, "bad \\x1b]0;owned\\x07\\x1b[2J\\nkoyeb-analytics: all good",
                   "\\x1b]52;c;")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert_visible(debug.stderr, "\\x1b]0;owned\\x07")
