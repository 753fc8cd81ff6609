"""Claims of the README that are about the package's shape, checked against the code."""

from __future__ import annotations

import http.client
import inspect
import re
from pathlib import Path
from urllib.parse import urlsplit

import matplotlib
import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.cli import build_parser

matplotlib.use("Agg")
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
T0 = pd.Timestamp("2026-01-01", tz="UTC")


def _iv(rows):
    return pd.DataFrame({
        "instance_id": [r[0] for r in rows], "service_id": "s1",
        "status": pd.Categorical([r[1] for r in rows], categories=ka.STATUSES, ordered=True),
        "start": [T0 + pd.Timedelta(minutes=r[2]) for r in rows],
        "end": [T0 + pd.Timedelta(minutes=r[3]) for r in rows]})


@pytest.mark.parametrize("by, columns", [("status", list(ka.STATUSES)),
                                         (None, ["instances"])])
def test_an_empty_capacity_keeps_the_columns_a_full_one_has(by, columns):
    full = ka.capacity(_iv([("a", "HEALTHY", 0, 60), ("b", "STARTING", 0, 10)]), by=by)
    empty = ka.capacity(_iv([("a", "HEALTHY", 0, 0)]), by=by)   # no span with a length
    assert len(full) and not len(empty)
    assert list(empty.columns) == columns and set(full.columns) <= set(columns)
    assert empty.columns.name == full.columns.name == by
    assert (empty.dtypes == "float64").all() and empty.index.dtype == full.index.dtype
    # What a reader does with a full one works on the empty one.
    assert empty.sum(axis=1).empty and ka.plot_capacity(empty) is not None


def _readme_keywords() -> dict[str, set[str]]:
    table = README.split("| function | keywords |", 1)[1].split("\n\n", 1)[0]
    found: dict[str, set[str]] = {}
    for line in table.splitlines()[2:]:
        names, keywords = line.strip("|").split("|")
        for name in re.findall(r"`(\w+)`", names):
            found[name] = set(re.findall(r"`(\w+)`", keywords))
    return found


def test_the_readme_lists_exactly_the_keywords_of_each_analysis_function():
    listed = _readme_keywords()
    assert len(listed) >= 9
    analysis = {name for name in ka.analysis.__all__
                if inspect.isfunction(getattr(ka, name, None))
                and next(iter(inspect.signature(getattr(ka, name)).parameters)) == "intervals"}
    assert analysis - {"findings"} <= set(listed)   # findings takes nothing else
    for name, keywords in listed.items():
        params = inspect.signature(getattr(ka, name)).parameters.values()
        assert list(params)[0].name == "intervals"
        assert {p.name for p in params if p.kind is p.KEYWORD_ONLY} == keywords, name
        assert [p.name for p in params if p.kind is not p.KEYWORD_ONLY] == ["intervals"]


def test_the_readme_names_every_command():
    sentence = README.split("The command line: ", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`(\w+)`", sentence))
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001
    assert {"sync", "watch"} <= commands
    assert commands <= named


@pytest.mark.parametrize("name, words", [
    ("uptime", ["per service", "the fleet as one group"]),
    ("timeline", ["service", "the fleet as one group"]),
    ("incidents", ["service", "None"]),
    ("recovery", ["per service", "the fleet as one group"]),
    ("overall_availability", ["the fleet as one group", "across services"]),
    ("error_budget", ["the fleet as one group", "across services"]),
    ("headline", ["across services"]),
])
def test_every_availability_like_function_says_which_figure_it_is(name, words):
    doc = " ".join(inspect.getdoc(getattr(ka, name)).split())
    for word in words:
        assert word in doc, f"{name}: {word!r}"


def _a_429(sim) -> http.client.HTTPResponse:
    sim.inject("429")
    url = urlsplit(sim.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", "/v1/instances?limit=1",
                 headers={"Authorization": f"Bearer {sim.token}"})
    reply = conn.getresponse()
    reply.read()
    conn.close()
    return reply


def test_the_simulator_sends_retry_after_only_when_told(fresh_sim):
    plain = _a_429(fresh_sim)
    assert plain.status == 429 and plain.getheader("Retry-After") is None
    fresh_sim.faults = ka.simulator.Faults(retry_after=2)
    told = _a_429(fresh_sim)
    assert told.status == 429 and told.getheader("Retry-After") == "2"
