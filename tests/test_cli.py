"""The koyeb-analytics command, run as a subprocess."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import koyeb_analytics as ka

from .conftest import NOW

SECTIONS = ("uptime-table", "uptime-chart", "heatmap-chart", "incident-table",
            "lifecycle-chart", "capacity-chart", "hours-table", "findings-table", "query-table")


def run(args, *, env=None, cwd=None, timeout=300):
    base = {k: v for k, v in os.environ.items()
            if k not in ("KOYEB_TOKEN", "KOYEB_API_TOKEN", "KOYEB_URL", "KOYEB_CONFIG")}
    return subprocess.run([sys.executable, "-m", "koyeb_analytics", *args], env={**base,
                          **(env or {})}, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def check_report(path: Path) -> str:
    html = path.read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 4
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Method: Time-weighted" in html
    return html


@pytest.mark.parametrize("vocabulary", ["invented", "opaque"])
def test_demo_end_to_end(tmp_path, vocabulary):
    proc = run(["demo", "--vocabulary", vocabulary], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = check_report(tmp_path / "koyeb-report.html")
    out = proc.stdout
    assert "Availability (Time-weighted" in out and "overall" in out
    assert re.search(r"Incidents: [1-9]\d*, MTTR median", out)  # a real-looking incident
    assert "Peak capacity:" in out and str(tmp_path / "koyeb-report.html") in out
    assert "[4/4]" in proc.stderr  # progress
    assert "\r" not in proc.stderr and "page/s" not in proc.stderr  # no bars off a terminal
    assert "<script" not in html


@pytest.fixture(scope="module")
def simulated_report(tmp_path_factory):
    """``report --simulate --window 2d``, run once for the tests that read what it wrote."""
    cwd = tmp_path_factory.mktemp("simulated-report")
    proc = run(["report", "--simulate", "--window", "2d", "--out", "r.html", "--quiet"],
               cwd=cwd)
    return proc, cwd / "r.html"


def test_report_and_export_on_the_simulator(simulated_report, tmp_path):
    proc, page = simulated_report
    assert proc.returncode == 0, proc.stderr
    check_report(page)
    for fmt in ("csv", "parquet"):
        proc = run(["export", "instances", "--simulate", "--window", "2d", "--format", fmt,
                    "--out", f"i.{fmt}", "--quiet"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        df = pd.read_csv(tmp_path / "i.csv") if fmt == "csv" else pd.read_parquet(
            tmp_path / "i.parquet")
        assert len(df) > 0 and {"id", "status", "created_at"} <= set(df.columns)
    proc = run(["export", "events", "--simulate", "--window", "1d", "--format", "csv",
                "--out", "e.csv", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0 and len(pd.read_csv(tmp_path / "e.csv")) > 0


def test_report_against_a_server_like_the_real_api(tmp_path):
    with ka.simulate(seed=2, days=3, services=3, now=NOW) as sim:
        env = {"KOYEB_TOKEN": sim.token, "KOYEB_URL": sim.url}
        proc = run(["report", "--window", "10d", "--out", "real.html", "--quiet"], env=env,
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sim.token not in proc.stdout + proc.stderr
    check_report(tmp_path / "real.html")


@pytest.mark.parametrize("args, env, words", [
    (["report", "--window", "3 fortnights"], {}, "window="),
    (["report"], {"HOME": "/nonexistent-home"}, "no Koyeb API token"),
    (["export", "events", "--window=-1h"], {}, "window="),
])
def test_errors_are_one_line_and_exit_2(args, env, words, tmp_path):
    proc = run(args, env={"HOME": str(tmp_path), **env}, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("koyeb-analytics: error:") and words in lines[0]
    assert "Traceback" not in proc.stderr


def test_runtime_failures_exit_1_lead_with_what_to_do_and_announce_retries(tmp_path):
    env = {"KOYEB_TOKEN": "t" * 64, "KOYEB_URL": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    proc = run(["report", "--window", "1d"], env=env, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and lines[-1].startswith("koyeb-analytics: error: cannot "
                                                         "reach the API")
    assert "HTTPS_PROXY" in lines[-1] and ".partial" not in proc.stderr
    # Never silent: each retry of the listing (and of the names beside it) is announced.
    assert sum("retrying in" in line for line in lines) >= 4
    with ka.simulate(seed=1, days=1, services=1, now=NOW) as sim:
        env = {"KOYEB_TOKEN": "w" * 64, "KOYEB_URL": sim.url, "HOME": str(tmp_path)}
        proc = run(["report", "--window", "1d"], env=env, cwd=tmp_path)
        debug = run(["--debug", "report", "--window", "1d"], env=env, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "koyeb-analytics: error: the token was rejected (401): set KOYEB_TOKEN, or log in "
        "with the Koyeb CLI")
    assert debug.returncode == 1  # the same code with --debug, and a traceback
    assert "Traceback" in debug.stderr and "w" * 64 not in debug.stderr


def test_usage_errors_exit_2_before_any_loading(tmp_path):
    proc = run(["report", "--simulate", "--window", "3 days"], cwd=tmp_path)
    assert proc.returncode == 2 and "window" in proc.stderr
    proc = run(["report", "--simulate", "--out", str(tmp_path / "no" / "such" / "r.html")],
               cwd=tmp_path)
    assert proc.returncode == 2 and "cannot write" in proc.stderr
    assert "[1/" not in proc.stderr and "Loading" not in proc.stderr
    proc = run(["demo", "--out", str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 2 and "is a directory" in proc.stderr
    version = run(["--version"])
    assert version.returncode == 0 and version.stdout.startswith("koyeb-analytics 0.")


def test_export_takes_a_service(tmp_path):
    with ka.simulate(seed=1, days=1, services=3) as sim:  # "now" is now: --window holds
        svc = sim.fleet.inst["service"][0]
        env = {"KOYEB_TOKEN": sim.token, "KOYEB_URL": sim.url, "HOME": str(tmp_path)}
        for what in ("instances", "events"):
            proc = run(["export", what, "--window", "2d", "--service", svc, "--quiet",
                        "--out", f"{what}.csv"], env=env, cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr
        inst = pd.read_csv(tmp_path / "instances.csv")
        ev = pd.read_csv(tmp_path / "events.csv")
    assert set(inst["service_id"]) == {svc} and len(ev)
    assert set(ev["instance_id"]) <= set(inst["id"])


@pytest.mark.parametrize("command", [[], ["demo"], ["report"], ["export"], ["simulate"]])
def test_help_everywhere(command):
    proc = run([*command, "--help"])
    assert proc.returncode == 0 and "usage: koyeb-analytics" in proc.stdout


def test_simulate_serves_with_a_slow_path(tmp_path):
    token_file = tmp_path / "token"
    proc = subprocess.Popen(
        [sys.executable, "-m", "koyeb_analytics", "simulate", "--days", "1", "--services",
         "1", "--path-latency", "/v1/instance_events=300", "--token-file", str(token_file)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        client = ka.KoyebClient(token_file.read_text(), base_url=url)
        took = {}
        for path in ("/v1/instances", "/v1/instance_events"):
            start = time.perf_counter()
            assert client.get(path, {"limit": 1})
            took[path] = time.perf_counter() - start
        assert took["/v1/instance_events"] >= 0.3 and took["/v1/instances"] < took[
            "/v1/instance_events"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = run(["simulate", "--path-latency", "events=fast"])
    assert bad.returncode == 2 and "PATH=MILLISECONDS" in bad.stderr


def test_longest_matching_path_prefix_sets_the_delay():
    from koyeb_analytics.simulator import Faults

    f = Faults(latency=0.01, path_latency={"/v1/instance": 1.0, "/v1/instance_events": 2.0})
    assert f.delay("/v1/instance_events") == 2.01
    assert f.delay("/v1/instances/abc") == 1.01 and f.delay("/v1/other") == 0.01


def test_the_report_answers_first_and_says_it_is_simulated(simulated_report):
    proc, page = simulated_report
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("SIMULATED DATA")
    assert re.search(r"overall \d+\.\d{3}% against a target of 99\.900%: (met|MISSED)",
                     proc.stdout)
    assert "error budget:" in proc.stdout and "worst service:" in proc.stdout
    html = page.read_text()
    assert 'id="simulated-label"' in html and 'id="summary-table"' in html
    assert html.index('id="summary"') < html.index('id="uptime"')
    assert "(simulator)" in html


def test_a_service_that_matches_nothing_is_an_error(tmp_path):
    proc = run(["report", "--simulate", "--window", "1d", "--service",
                "5b1f7f0e-1111-4222-8333-444455556666", "--out", "r.html", "--quiet"],
               cwd=tmp_path)
    assert proc.returncode != 0 and "matches no instance" in proc.stderr
    assert not (tmp_path / "r.html").exists()
