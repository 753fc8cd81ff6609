"""The HTML report keeps a page of bounded size: the first screen, the 20 worst services
and the 20 longest incidents, charts in summary form; every service and every incident
go to CSV files beside it, linked from it."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.labels import service_labels
from koyeb_analytics.report._html import PAGE_ROWS, render_report, side_files, write_report
from koyeb_analytics.textsafe import csv_unescape

from .conftest import NOW, fast_client
from .test_analysis import T0, make_iv


def table(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [re.findall(r"<td[^>]*>(?:<code>)?(.*?)(?:</code>)?</td>", r, re.S) for r in rows
            if "<td" in r]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    with ka.simulate(seed=2, days=2, services=30, now=NOW, outages=40) as sim:
        name = next(iter(sim.fleet.service_names))
        sim.fleet.service_names[name] = "=HYPERLINK(1)"  # a formula, as a name
        w = ka.load_window(fast_client(sim), since=pd.Timestamp(NOW) - pd.Timedelta("1D"),
                           until=NOW, progress=False)
    a = ka.analyse(w)
    path = write_report(a, tmp_path_factory.mktemp("r") / "fleet.html")
    return a, path


def test_the_full_tables_are_written_beside_the_page_and_linked(report):
    a, path = report
    files = side_files(path)
    assert files == {"services": path.parent / "fleet-services.csv",
                     "incidents": path.parent / "fleet-incidents.csv",
                     "changes": path.parent / "fleet-changes.csv"}
    html = path.read_text()
    for file in files.values():
        assert file.exists()
        assert f'<a href="{file.name}">' in html  # relative: the page and files move together
    services = csv_unescape(pd.read_csv(files["services"]))
    assert len(services) == len(a.uptime) > PAGE_ROWS
    labels = service_labels(a.instances)
    worst = a.uptime.sort_values("availability", kind="stable")
    assert services["service_id"].tolist() == worst["service_id"].tolist()
    assert services["service"].tolist() == [labels[s] for s in worst["service_id"]]
    assert "=HYPERLINK(1)" in set(services["service"].str.split("/").str[1])
    raw = files["services"].read_text()
    assert "/=HYPERLINK(1)" in raw and not re.search(r'^"=', raw, re.M)  # never a formula
    assert services["availability"].tolist() == pytest.approx(worst["availability"].tolist())
    assert (services["down_time_s"] == worst["down_time"].dt.total_seconds().to_numpy()).all()
    incidents = pd.read_csv(files["incidents"])
    assert len(incidents) == len(a.incidents) > PAGE_ROWS
    ordered = a.incidents.sort_values("start", kind="stable")
    assert incidents["instance_ids"].str.split(" ").tolist() == ordered["instances"].tolist()
    assert (incidents["duration_s"] == ordered["duration"].dt.total_seconds().to_numpy()).all()
    assert pd.to_datetime(incidents["start"]).tolist() == ordered["start"].tolist()


def test_the_page_tables_hold_the_worst_services_and_the_longest_incidents(report):
    a, path = report
    html = path.read_text()
    labels = service_labels(a.instances)
    rows = table(html, "uptime-table")
    worst = a.uptime.sort_values("availability", kind="stable").head(PAGE_ROWS)
    assert [r[0] for r in rows] == [labels[s] for s in worst["service_id"]]
    assert f"The {PAGE_ROWS} services with the lowest availability, of {len(a.uptime)}" \
        in html
    rows = table(html, "incident-table")
    longest = a.incidents.sort_values(["duration", "start"], ascending=[False, True],
                                      kind="stable").head(PAGE_ROWS)
    assert len(rows) == PAGE_ROWS
    assert [r[1] for r in rows] == [f"{t:%Y-%m-%d %H:%M:%S}" for t in longest["start"]]
    assert [int(r[4]) for r in rows] == longest["instances"].map(len).tolist()
    assert f"The {PAGE_ROWS} longest of {len(a.incidents)} incidents" in html


def fleet_analysis(services: int) -> ka.Analysis:
    """A fleet of ``services`` one-instance services (each with an incident) analysed."""
    rows = []
    for k in range(services):
        down = 5 + k % 50
        rows += [(f"i{k:03d}", f"svc-{k:03d}", 0, "HEALTHY", 0, 120),
                 (f"i{k:03d}", f"svc-{k:03d}", 0, "ERROR", 120, 120 + down),
                 (f"i{k:03d}", f"svc-{k:03d}", 0, "HEALTHY", 120 + down, None)]
    iv = make_iv(rows, until=T0 + pd.Timedelta("2D"))
    inst = pd.DataFrame({"id": [f"i{k:03d}" for k in range(services)],
                         "service_id": [f"svc-{k:03d}" for k in range(services)],
                         "app_name": "shop", "service_name": [f"s{k}" for k in range(services)]})
    policy = ka.UptimePolicy()
    return ka.Analysis(
        instances=inst, events=pd.DataFrame({"type": pd.Series(dtype=object),
                                             "message": pd.Series(dtype=object)}),
        intervals=iv, uptime=ka.uptime(iv), daily=ka.uptime(iv, freq="1D"),
        incidents=ka.incidents(iv), capacity=ka.capacity(iv, freq="1h"),
        findings=ka.findings(iv), policy=policy, since=T0, until=T0 + pd.Timedelta("2D"))


def png_sizes(html: str) -> list[tuple[int, int]]:
    import base64

    out = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html):
        head = base64.b64decode(data[:64])
        out.append(struct.unpack(">II", head[16:24]))
    return out


def test_the_page_does_not_grow_with_the_fleet():
    small, large = (render_report(fleet_analysis(n)) for n in (50, 100))
    for html in (small, large):
        assert len(table(html, "uptime-table")) == len(table(html, "incident-table")) == \
            PAGE_ROWS
    # past 40 services the availability charts show the 40 worst, at the same size;
    # no chart is taller than 14 inches at 180 dpi (with its title and axis)
    assert png_sizes(small)[:2] == png_sizes(large)[:2]
    assert "Past 40 services the charts show the 40 worst" in large
    assert all(w < 2400 and h < 14 * 180 + 300 for w, h in png_sizes(large))

    def text(html: str) -> int:
        return len(re.sub(r'base64,[^"]+"', "", html))

    assert text(large) - text(small) < 200  # only counts differ
    assert len(large) < 1.15 * len(small)  # the fleet doubled


def test_render_report_links_the_side_files_by_stem(report):
    a, _ = report
    html = render_report(a, stem="monthly")
    assert '<a href="monthly-services.csv">' in html
    assert '<a href="monthly-incidents.csv">' in html
    assert not Path("monthly-services.csv").exists()  # rendering writes nothing


def test_the_reports_lifecycle_runs_are_the_notebooks(report):
    from koyeb_analytics.plots._static import state_runs

    a, _ = report
    # the report draws the runs analyse kept; a notebook computing them gets the same
    pd.testing.assert_frame_equal(a.states, state_runs(a.intervals, policy=a.policy))
    assert set(a.states["state"]) <= {"up", "degraded", "down", "unknown"}
