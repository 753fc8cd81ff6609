"""The report's Changes section and each incident's nearest change, and the CLI's
post-mortem window (--since/--until beside --window) and --target."""

from __future__ import annotations

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.report import render_report

from .conftest import NOW, fast_client
from .test_cli import check_report, run


def test_each_incident_row_names_its_nearest_change():
    with ka.simulate(seed=4, days=4, services=8, now=NOW, outages=2) as sim:
        client = fast_client(sim)
        w = ka.load_window(client, window="3D", until=NOW, progress=False)
        ch = ka.load_changes(client, since=w.since, until=w.until)
        truth = sim.changes.truth()
    a = ka.analyse(w, changes=ch)
    html = render_report(a)
    assert 'id="changes-table"' in html and "nearest change before" in html
    first = a.suspects[a.suspects["rank"] == 1]
    caused = truth[truth["cause_id"].notna() & (truth["start"] >= w.since)]
    assert len(caused) >= 2
    for row in caused.itertuples():
        named = first[first["change_id"] == row.cause_id]
        assert len(named) == 1
        assert f"created {ka.report.format_duration(named['before'].iloc[0])} before" in html
    # an incident with nothing before it says so
    assert len(first) < len(a.incidents) and "none within 1h" in html
    assert "DATABASE_URL=" not in html and "postgres://" not in html


def test_without_changes_the_report_says_they_were_not_loaded(sim):
    w = ka.load_window(fast_client(sim), window="1D", until=NOW, progress=False)
    html = render_report(ka.analyse(w))
    assert 'id="changes-missing"' in html and 'id="changes-table"' not in html


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%MZ")


def test_report_takes_a_post_mortems_own_window_and_target(tmp_path):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    since, until = now - pd.Timedelta("2D"), now - pd.Timedelta("1D")
    proc = run(["report", "--simulate", "--since", _iso(since), "--until", _iso(until),
                "--target", "99.5", "--out", "pm.html", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = check_report(tmp_path / "pm.html")
    assert f"Window {since:%Y-%m-%d %H:%M}:00 to {until:%Y-%m-%d %H:%M}:00" in html
    assert "target 99.500%" in html and 'id="changes-table"' in html
    assert f"Window {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC" in proc.stdout
    assert "Changes:" in proc.stdout and "against a target of 99.500%" in proc.stdout
    # --until alone: the --window before it
    proc = run(["report", "--simulate", "--window", "6h", "--until", _iso(until),
                "--out", "w.html", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    start = until - pd.Timedelta("6h")
    assert f"Window {start:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC" in proc.stdout


@pytest.mark.parametrize("args, words", [
    (["--since", "2026-11-01", "--window", "2d"], "ambiguous"),
    (["--since", "2026-11-02", "--until", "2026-11-01"], "must be earlier than until"),
    (["--since", "yesterday-ish"], "since"),
    (["--target", "100"], "--target='100'"),
    (["--target", "0.5x"], "--target"),
])
def test_bad_report_windows_and_targets_exit_2_before_anything_starts(args, words, tmp_path):
    proc = run(["report", "--simulate", *args], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines
