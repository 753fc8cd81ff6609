"""The report says what the system said: each incident's top new log pattern, and a
metrics section in the capacity report, when the caller adds them."""

from __future__ import annotations

from html import escape

import pandas as pd

import koyeb_analytics as ka
from koyeb_analytics.report import render_report


def html_escape(text: str) -> str:
    return escape(text).replace("&#x27;", "&#39;")

NOW = "2026-11-20T12:00:00Z"


def test_incidents_list_their_top_new_pattern_and_capacity_has_the_metrics():
    with ka.simulate(seed=2, days=1, services=4, now=NOW, max_replicas=1) as sim:
        c = sim.client()
        w = ka.load_window(c, since=sim.now - pd.Timedelta("1D"), until=sim.now,
                           progress=False)
        a = ka.analyse(w)
        assert len(a.incidents)
        plain = render_report(a)
        first = a.incidents.sort_values("start").iloc[0]
        logs = ka.load_logs(c, service_id=first["service_id"],
                            since=first["start"] - pd.Timedelta("75min"),
                            until=first["end"], progress=False)
        a.extra["incident_patterns"] = ka.incident_patterns(
            logs, a.incidents[a.incidents["service_id"] == first["service_id"]])
        metrics = ka.load_metrics(c, service_id=first["service_id"],
                                  since=sim.now - pd.Timedelta("6h"), until=sim.now)
        a.extra["resource_usage"] = ka.resource_usage(
            metrics, instances=w.instances, instance_types=ka.load_instance_types(c))
        html = render_report(a)
    assert "top new log pattern" not in plain and "resources-table" not in plain
    top = a.extra["incident_patterns"].sort_values("start")["top_pattern"].iloc[0]
    assert "top new log pattern" in html
    assert isinstance(top, str) and html_escape(top) in html  # escaped: log text is data
    assert 'id="resources-table"' in html and "p99 highest" in html
