"""An HTML report: one page of tables and PNG charts, and the full tables beside it.

Only renders: what it shows is computed by :func:`koyeb_analytics.analyse`.
Built with Jinja2 templates with autoescaping on, so every string that came from the
API is escaped. Charts are drawn with :mod:`koyeb_analytics.plots` on
``matplotlib.figure.Figure`` objects (no pyplot, no backend change) and embedded as
base64 PNG.

The page stays the same size however large the fleet: it holds the first screen, the
:data:`PAGE_ROWS` worst services and longest incidents, and charts in summary form
(the worst services past a bound). Every service and every incident go to CSV files
written beside the page (:data:`SIDE_TABLES`) and linked from it by relative links, so
the page and its files move together.

The page is a list of sections (:data:`SECTIONS`): a section is an id and a template
fragment, with an optional function of the analysis giving the names only it uses; a
new section is one more entry, and a new side file one more :class:`SideTable`.

Long because the page's templates (summary, uptime, incidents, changes, lifecycles,
capacity with what the metrics say, data quality, query) live beside the code that fills
them, so a section reads in one place.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .._version import __version__
from ..analysis._classify import event_vocabulary
from ..analysis._summary import Analysis, headline
from ..labels import service_labels
from ..plots._static import MAX_LANES, plot_capacity, plot_lifecycles, plot_uptime
from ..textsafe import visible, write_csv
from ._text import format_duration

__all__ = ["PAGE_ROWS", "SECTIONS", "SIDE_TABLES", "Section", "SideTable", "render_report",
           "side_files", "write_report"]

PAGE_ROWS = 20
"""Rows of the services and incidents tables on the page; all of them are in the side
files."""

HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.method { background: #f7f7f7; border-left: 3px solid #999; padding: 6px 10px; }
img { max-width: 100%; } .muted { color: #666; font-size: 0.85em; }
.simulated { background: #fff3cd; border: 1px solid #e0c46c; padding: 6px 10px; }
.headline { font-size: 1.05em; } .headline td { border: none; padding: 2px 12px 2px 0; }
.below { color: #b00020; font-weight: bold; } .met { color: #1b7a2f; font-weight: bold; }
</style></head><body>
<h1>{{ title }}</h1>
{% if h.simulated %}<p class="simulated" id="simulated-label"><b>Simulated data.</b> Every
figure below comes from the embedded simulator, not from a Koyeb account.</p>{% endif %}
<p class="muted">Window {{ since }} to {{ until }} (UTC) · data fetched {{ fetched_at }} from
{{ h.source }}{% if h.simulated %} (simulator){% endif %} · {{ n_instances }} instances,
{{ n_events }} events, {{ n_spans }} spans</p>
"""

SUMMARY = """
<h2 id="summary">Summary</h2>
<table class="headline" id="summary-table">
{% if h.coverage_note %}<tr id="coverage-note"><td colspan="2" class="below">
{{- h.coverage_note }}</td></tr>{% endif %}
<tr><td>Availability</td><td><span class="{{ 'met' if met else 'below' }}">{{ availability }}</span>
against a target of {{ target }} ({{ 'met' if met else 'missed' }}), across services,
time-weighted; <span id="coverage">{{ coverage }}</span></td></tr>
<tr><td>Error budget</td><td>{{ budget_used }} used of {{ budget_allowed }} ({{ budget_share }}),
{{ budget_left }}</td></tr>
<tr><td>Worst service</td><td>{{ worst }}</td></tr>
<tr><td>Incidents</td><td>{{ h.incidents }}{% if h.incidents %}, MTTR median {{ mttr_median }};
the longest {{ longest }}{% endif %}</td></tr>
<tr><td>Fleet</td><td>{{ h.services }} services, {{ h.instances }} instances; peak
{{ h.peak_instances }} at once{% if peak_at %} ({{ peak_at }}){% endif %}</td></tr>
<tr><td>Data quality</td><td>{{ h.findings }} finding(s) (see below)</td></tr>
<tr><td>Full tables</td><td id="side-files">{% for t in side %}<a href="{{ t.href }}">
{{- t.href }}</a> ({{ t.caption }}){{ "; " if not loop.last }}{% endfor %}</td></tr>
</table>
"""

UPTIME = """
<h2 id="uptime">Availability per service</h2>
<p class="method">Method: {{ method }}</p>
<p>Overall availability: <b>{{ overall }}</b></p>
<p class="muted" id="uptime-rows">{% if uptime_rows|length < n_groups %}The {{
uptime_rows|length }} services with the lowest availability, of {{ n_groups }}{% else %}Every
service, worst first{% endif %}; every service with all its figures:
<a href="{{ files.services }}">{{ files.services }}</a>.</p>
<table id="uptime-table"><tr><th>service</th><th>availability</th><th>downtime</th>
<th>observed</th><th>coverage</th><th>incidents</th></tr>
{% for r in uptime_rows %}<tr><td><code>{{ r.group }}</code></td>
<td class="num">{{ r.availability }}</td><td class="num">{{ r.down }}</td>
<td class="num">{{ r.observed }}</td><td class="num">{{ r.coverage }}</td>
<td class="num">{{ r.incidents }}</td></tr>
{% endfor %}</table>
<figure><img id="uptime-chart" alt="availability per service, in percent, against the
target of {{ target }}" src="data:image/png;base64,{{ charts.uptime }}">
<figcaption id="uptime-caption" class="muted">Dashed line: the target, {{ target }}. Green:
at or above the target; red: below it. The axis does not start at 0 when every service
is near the top: its first value is printed under the chart.{{ chart_rule }}</figcaption>
</figure>
"""

DAILY = """
<h2 id="daily">Availability per day</h2>
<img id="heatmap-chart" alt="availability per service and day"
     src="data:image/png;base64,{{ charts.heatmap }}">
"""

INCIDENTS = """
<h2 id="incidents">Incidents</h2>
<p>{{ incident_count }} incident(s). MTTR median {{ mttr.median }}, p90 {{ mttr.p90 }},
mean {{ mttr.mean }}. MTBF median {{ mtbf.median }}, p90 {{ mtbf.p90 }},
mean {{ mtbf.mean }}.</p>
<p class="muted">Severity: the incident's duration times the instances it affected, in
instance-minutes.</p>
<p class="muted" id="incident-rows">{% if incident_rows|length < incident_count %}The {{
incident_rows|length }} longest of {{ incident_count }} incidents{% else %}Every incident,
longest first{% endif %}; every incident in time order, with its instances:
<a href="{{ files.incidents }}">{{ files.incidents }}</a>.</p>
<table id="incident-table"><tr><th>service</th><th>start</th><th>end</th><th>duration</th>
<th>instances</th><th>severity</th><th>statuses</th><th>nearest change before</th>
{%- if patterns %}<th>top new log pattern</th>{% endif %}</tr>
{% for r in incident_rows %}<tr><td><code>{{ r.group }}</code></td><td>{{ r.start }}</td>
<td>{{ r.end }}</td><td class="num">{{ r.duration }}</td><td class="num">{{ r.instances }}</td>
<td class="num">{{ r.severity }}</td><td>{{ r.statuses }}</td><td>{{ r.change }}</td>
{%- if patterns %}<td><code>{{ r.pattern }}</code></td>{% endif %}</tr>
{% else %}<tr><td colspan="9">No incident under this policy.</td></tr>{% endfor %}</table>

"""

CHANGES = """
<h2 id="changes">Changes</h2>
{% if changes_loaded %}<p>{{ change_count }} change event(s) in the window: {{ change_kinds }}.
{{ followed }} of {{ incident_count }} incident(s) follow a change of their service within
{{ lookback }} (the nearest is named in the incident table).</p>
<p class="muted">A deployment's diff is against its parent; env variables are named by key,
never by value. Autoscaling is context, not a suspect.</p>
<table id="changes-table"><tr><th>time</th><th>service</th><th>what</th><th>change</th>
<th>commit</th><th>by</th></tr>
{% for r in change_rows %}<tr><td>{{ r.at }}</td><td><code>{{ r.group }}</code></td>
<td>{{ r.event }}</td><td>{{ r.summary }}</td><td>{{ r.commit }}</td><td>{{ r.actor }}</td></tr>
{% else %}<tr><td colspan="6">No change in the window.</td></tr>{% endfor %}</table>
{% if change_more %}<p class="muted">{{ change_more }} more change event(s) not shown; every
one: <a href="{{ files.changes }}">{{ files.changes }}</a>.</p>
{% endif %}{% else %}<p id="changes-missing">Deployments and activities were not loaded for
this report.</p>{% endif %}
"""

LIFECYCLES = """
<h2 id="lifecycles">Lifecycles</h2>
<img id="lifecycle-chart" alt="instance lifecycles"
     src="data:image/png;base64,{{ charts.lifecycles }}">
"""

CAPACITY = """
<h2 id="capacity">Capacity</h2>
<p>Peak: <b>{{ peak.instances }}</b> concurrent instances at {{ peak.at }}.</p>
<img id="capacity-chart" alt="concurrent instances"
     src="data:image/png;base64,{{ charts.capacity }}">
<table id="hours-table"><tr><th>instance type</th><th>instance-hours</th></tr>
{% for t, h in hours %}<tr><td>{{ t }}</td><td class="num">{{ h }}</td></tr>{% endfor %}</table>
{% if resources %}<h3 id="resources">What the metrics say</h3>
<p class="muted">Per service and instance type, over every sample: CPU in percent of the
limit, memory as a share of the type's memory, the share of 5xx replies, and p99 latency
as served (its median and highest 5-minute value; never averaged). Headroom is against
the scaling of the active deployment: the service's average CPU (its p95 over time)
under the <code>average_cpu</code> target, and the most instances at once of the
scaling's max; "–" where there is none (the cell's title says why).</p>
<table id="resources-table"><tr><th>service</th><th>type</th><th>CPU p95</th><th>CPU max</th>
<th>memory p95</th><th>memory max</th><th>5xx</th><th>p99 latency</th><th>p99 highest</th>
<th>CPU headroom</th><th>instances of max</th></tr>
{% for r in resources %}<tr><td><code>{{ r.group }}</code></td><td>{{ r.type }}</td>
<td class="num">{{ r.cpu_p95 }}</td><td class="num">{{ r.cpu_max }}</td>
<td class="num">{{ r.mem_p95 }}</td><td class="num">{{ r.mem_max }}</td>
<td class="num">{{ r.http_5xx }}</td><td class="num">{{ r.p99 }}</td>
<td class="num">{{ r.p99_max }}</td><td class="num" title="{{ r.note }}">{{ r.cpu_room }}</td>
<td class="num" title="{{ r.note }}">{{ r.instances_room }}</td></tr>{% endfor %}</table>
{% endif %}
"""

FINDINGS = """
<h2 id="findings">Data quality</h2>
<p>{{ finding_count }} finding(s).</p>
<table id="findings-table">
<tr><th>kind</th><th>count</th><th>example instance</th><th>detail</th></tr>
{% for r in finding_rows %}<tr><td>{{ r.kind }}</td><td class="num">{{ r.count }}</td>
<td><code>{{ r.example }}</code></td><td>{{ r.detail }}</td></tr>
{% else %}<tr><td colspan="4">No finding.</td></tr>{% endfor %}</table>

<h3 id="vocabulary">Is the event vocabulary understood?</h3>
<p>{{ unclassified }} of {{ event_count }} events ({{ unclassified_share }}) match no rule
that turns events into statuses; instances without usable events fall back to their
timestamps.</p>
<table id="vocabulary-table">
<tr><th>event type</th><th>example message</th><th>events</th><th>status</th><th>rule</th></tr>
{% for r in vocabulary %}<tr><td><code>{{ r.type }}</code></td><td>{{ r.example_message }}</td>
<td class="num">{{ r.count }}</td><td>{{ r.status }}</td><td>{{ r.rule }}</td></tr>
{% else %}<tr><td colspan="5">No event.</td></tr>{% endfor %}</table>
"""

QUERY = """
<h2 id="query">Query</h2>
<table id="query-table">
{% for k, v in query %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
"""

FOOT = """<p class="muted">Generated by koyeb-analytics {{ version }}.</p>
</body></html>
"""


@dataclass(frozen=True)
class Section:
    """One section of the page: its id (the anchor), its template fragment and,
    optionally, a function of the analysis returning the names only it uses (the
    names every section shares are those :func:`render_report` builds)."""

    id: str
    template: str
    context: Callable[[Analysis], dict[str, Any]] | None = None


SECTIONS: tuple[Section, ...] = (
    Section("summary", SUMMARY), Section("uptime", UPTIME), Section("daily", DAILY),
    Section("incidents", INCIDENTS), Section("changes", CHANGES, lambda a: _change_rows(
        a, _label_of(a))), Section("lifecycles", LIFECYCLES),
    Section("capacity", CAPACITY), Section("findings", FINDINGS), Section("query", QUERY))
"""The page's sections, in order."""


@dataclass(frozen=True)
class SideTable:
    """A full table written beside the page as ``<page stem>-<key>.csv``."""

    key: str
    caption: str
    build: Callable[[Analysis], pd.DataFrame]


def _label_of(a: Analysis) -> Callable[[Any], str]:
    by = a.uptime.attrs.get("by") or "service_id"
    labels = service_labels(a.instances) if by == "service_id" else {}
    return lambda value: labels.get(value) or str(value)


def _seconds(values: pd.Series) -> pd.Series:
    return values.dt.total_seconds()


def _worst_first(a: Analysis) -> pd.DataFrame:
    return a.uptime.sort_values("availability", na_position="last", kind="stable")


def services_table(a: Analysis) -> pd.DataFrame:
    """Every service (or group) of ``a.uptime``, worst first: the page's table, whole."""
    up = _worst_first(a)
    by = up.attrs.get("by") or "service_id"
    label = _label_of(a)
    return pd.DataFrame({
        "service": up[by].map(label).astype(object), by: up[by].astype(object),
        "availability": up["availability"], "down_time_s": _seconds(up["down_time"]),
        "up_time_s": _seconds(up["up_time"]), "observed_time_s": _seconds(up["observed_time"]),
        "unknown_time_s": _seconds(up["unknown_time"]),
        "excluded_time_s": _seconds(up["excluded_time"]), "coverage": up["coverage"],
        "incidents": up["incidents"]}).reset_index(drop=True)


def incidents_table(a: Analysis) -> pd.DataFrame:
    """Every incident, in time order, with its instances and statuses spelled out."""
    inc = a.incidents.sort_values("start", kind="stable")
    key = inc.columns[0] if len(inc.columns) else "group"
    label = _label_of(a)
    count = inc["instances"].map(len) if len(inc) else pd.Series(dtype="int64")
    return pd.DataFrame({
        "service": inc[key].map(label).astype(object), key: inc[key].astype(object),
        "start": inc["start"], "end": inc["end"], "duration_s": _seconds(inc["duration"]),
        "instances": count.astype("int64"),
        "severity_instance_minutes": _seconds(inc["duration"]) / 60 * count,
        "statuses": inc["statuses"].map(", ".join).astype(object),
        "instance_ids": inc["instances"].map(" ".join).astype(object),
    }).reset_index(drop=True)


def changes_table(a: Analysis) -> pd.DataFrame:
    """Every change event of the analysis (none when changes were not loaded)."""
    if a.changes is None:
        return pd.DataFrame(columns=["changed_at", "service_id", "kind", "event", "summary"])
    return a.changes.sort_values("changed_at", kind="stable").reset_index(drop=True)


SIDE_TABLES: tuple[SideTable, ...] = (
    SideTable("services", "every service, worst first", services_table),
    SideTable("incidents", "every incident, in time order", incidents_table),
    SideTable("changes", "every change event, in time order", changes_table))
"""The full tables written beside the page, and linked from it."""


def side_files(page: str | Path) -> dict[str, Path]:
    """Where :func:`write_report` writes each side table for the page at ``page``."""
    page = Path(page)
    return {t.key: page.with_name(f"{page.stem}-{t.key}.csv") for t in SIDE_TABLES}


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=180, bbox_inches="tight")  # 2x: sharp text
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _charts(a: Analysis) -> dict[str, str]:
    # Figures made directly, not through pyplot: the report neither changes the
    # backend (inline plots in a notebook keep showing) nor leaves figures open.
    from matplotlib.figure import Figure

    simulated = bool(a.instances.attrs.get("simulated", False))

    def axes(width: float, height: float) -> tuple[Figure, Any]:
        fig = Figure(figsize=(width, height))
        return fig, fig.subplots()

    def png(fig: Figure) -> str:
        if simulated and fig.axes:  # every chart says so, also copied out of the report
            main = fig.axes[0]  # (not the colour bar's axes)
            main.set_title(main.get_title() + " (simulated data)")
        return _png(fig)

    out = {}
    height = min(14, 3 + a.intervals["instance_id"].nunique() * 0.03) if len(a.intervals) else 3
    labels = service_labels(a.instances)
    # The same calls as in a notebook: at fleet scale the functions summarise (a lane
    # per service, the worst ones past a bound) and their titles say how.
    fig, ax = axes(12, height)
    plot_lifecycles(a.intervals, ax=ax, incidents=a.incidents, labels=labels,
                    changes=a.changes, policy=a.policy, runs=a.states)
    out["lifecycles"] = png(fig)
    fig, ax = axes(12, 4)
    plot_capacity(a.capacity, ax=ax, changes=a.changes)
    out["capacity"] = png(fig)
    rows = min(max(len(a.uptime), 1), MAX_LANES)
    fig, ax = axes(10, 1 + 0.3 * rows)
    plot_uptime(a.uptime, ax=ax, labels=labels, changes=a.changes)
    out["uptime"] = png(fig)
    fig, ax = axes(10, 1 + 0.3 * rows)
    plot_uptime(a.daily, ax=ax, labels=labels, changes=a.changes)
    out["heatmap"] = png(fig)
    return out


def _percent(value: float) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.3%}"


def _ts(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d %H:%M:%S}"


def render_report(a: Analysis, *, title: str = "Koyeb services report",
                  stem: str = "report") -> str:
    """Render the report's page.

    Parameters
    ----------
    a
        From :func:`~koyeb_analytics.analyse`.
    title
        The page's title.
    stem
        The page's file name without its suffix: the side files are linked as
        ``<stem>-services.csv`` and ``<stem>-incidents.csv`` (:func:`write_report`
        writes them).

    Returns
    -------
    str

    Examples
    --------
    >>> a = ka.analyse(ka.load_window(client, window="1d"))
    >>> html = ka.report.render_report(a, title="Last day")
    >>> html.startswith("<!DOCTYPE html>"), "<title>Last day</title>" in html
    (True, True)
    """
    import jinja2

    label = _label_of(a)
    worst_first = _worst_first(a)
    by = a.uptime.attrs.get("by") or "service_id"
    top = worst_first.head(PAGE_ROWS)
    uptime_rows = [{"group": label(g), "availability": "–" if pd.isna(v) else f"{v:.4%}",
                    "down": format_duration(d), "observed": format_duration(o),
                    "coverage": "–" if pd.isna(c) else f"{c:.1%}", "incidents": n}
                   for g, v, d, o, c, n in zip(
                       top[by], top["availability"], top["down_time"], top["observed_time"],
                       top["coverage"], top["incidents"], strict=True)]
    key = a.incidents.columns[0] if len(a.incidents.columns) else "group"
    nearest = _nearest_changes(a)
    # What the system said, when the caller added it: ka.incident_patterns and
    # ka.resource_usage frames in a.extra.
    said = a.extra.get("incident_patterns")
    patterns = {} if said is None else {
        (r[key], r["start"]): r["top_pattern"] for _, r in said.iterrows()
        if isinstance(r["top_pattern"], str)}
    longest = a.incidents.sort_values(["duration", "start"], ascending=[False, True],
                                      kind="stable").head(PAGE_ROWS)
    incident_rows = [{"group": label(g), "start": _ts(t0), "end": _ts(t1),
                      "duration": format_duration(d), "instances": len(members),
                      "severity": f"{d.total_seconds() / 60 * len(members):.0f}",
                      "statuses": ", ".join(statuses), "change": nearest.get(i, "–"),
                      "pattern": patterns.get((g, t0), "–")}
                     for i, g, t0, t1, d, members, statuses in zip(
                         longest.index, longest[key], longest["start"], longest["end"],
                         longest["duration"], longest["instances"], longest["statuses"],
                         strict=True)]
    usage = a.extra.get("resource_usage")
    resources = [] if usage is None else [
        {"group": label(r["service_id"]), "type": r["type"],
         **{k: "–" if pd.isna(r[c]) else f"{r[c]:.0f}%" for k, c in (
             ("cpu_p95", "cpu_p95"), ("cpu_max", "cpu_max"))},
         **{k: "–" if pd.isna(r[c]) else f"{r[c]:.0%}" for k, c in (
             ("mem_p95", "mem_share_p95"), ("mem_max", "mem_share_max"),
             ("http_5xx", "http_5xx_share"))},
         **{k: "–" if pd.isna(r[c]) else f"{r[c]:.0f} ms" for k, c in (
             ("p99", "latency_p99_ms"), ("p99_max", "latency_p99_max_ms"))},
         **_headroom_cells(r)}
        for _, r in usage.head(20).iterrows()]
    summary = a.incidents.attrs.get("summary", {})
    fmt = {k: {s: format_duration(v.get(s)) for s in ("median", "p90", "mean")}
           for k, v in summary.items()} if summary else {}
    finding_rows = []
    if len(a.findings):
        for kind, grp in a.findings.groupby("kind", sort=True):
            finding_rows.append({"kind": kind, "count": len(grp),
                                 "example": grp["instance_id"].iloc[0],
                                 "detail": grp["detail"].iloc[0]})
    vocab = event_vocabulary(a.events)
    vocabulary = [{"type": r.type, "example_message": str(r.example_message)[:120],
                   "count": r.count, "status": r.status or "(no change)", "rule": r.rule}
                  for r in vocab.head(30).itertuples()]
    unclassified = int(vocab.loc[vocab["rule"] == "unclassified", "count"].sum())
    query = a.instances.attrs.get("query", {})
    peak = a.capacity.attrs.get("peak", {"instances": 0, "at": None})
    h = headline(a)
    files = {t.key: f"{stem}-{t.key}.csv" for t in SIDE_TABLES}
    context = dict(
        h=h, met=bool(h.availability >= h.target), availability=_percent(h.availability),
        coverage=f"known for {h.coverage:.1%} of service-time" if h.coverage < 1 else
        "the state of all service-time is known",
        target=_percent(h.target), budget_used=format_duration(h.budget_used),
        budget_allowed=format_duration(h.budget_allowed),
        budget_left=f"{format_duration(h.budget_left)} left" if h.budget_left >= pd.Timedelta(0)
        else f"{format_duration(-h.budget_left)} over budget",
        budget_share="–" if pd.isna(h.budget_used_share) else f"{h.budget_used_share:.0%}",
        worst="–" if h.worst_service is None else
        f"{h.worst_service} at {_percent(h.worst_availability)}",
        mttr_median=format_duration(h.mttr_median),
        longest="" if h.longest_duration is None else
        f"{format_duration(h.longest_duration)} from {_ts(h.longest_start)} UTC on "
        f"{', '.join(h.longest_services)}",
        peak_at=_ts(h.peak_at) if h.peak_at is not None else "",
        title=title, since=_ts(a.since), until=_ts(a.until),
        fetched_at=_ts(a.instances.attrs.get("fetched_at")),
        n_instances=len(a.instances), n_events=len(a.events), n_spans=len(a.intervals),
        method=a.policy.describe(),
        overall="–" if pd.isna(a.uptime.attrs.get("overall", float("nan"))) else
        f"{a.uptime.attrs['overall']:.4%}",
        uptime_rows=uptime_rows, n_groups=len(a.uptime), incident_rows=incident_rows,
        patterns=bool(patterns), resources=resources,
        incident_count=len(a.incidents),
        chart_rule=f" Past {MAX_LANES} services the charts show the {MAX_LANES} worst, as "
        "their titles say." if len(a.uptime) > MAX_LANES else "",
        files=files, side=[{"href": files[t.key], "caption": t.caption} for t in SIDE_TABLES],
        mttr=fmt.get("mttr", {"median": "–", "p90": "–", "mean": "–"}),
        mtbf=fmt.get("mtbf", {"median": "–", "p90": "–", "mean": "–"}),
        peak={"instances": peak.get("instances", 0), "at": _ts(peak.get("at"))},
        hours=[(t, f"{h:.1f}") for t, h in
               sorted(a.capacity.attrs.get("instance_hours", {}).items())],
        finding_rows=finding_rows, finding_count=len(a.findings),
        vocabulary=vocabulary, unclassified=unclassified, event_count=len(a.events),
        unclassified_share=f"{vocab.attrs['unclassified_share']:.1%}",
        query=[(k, ", ".join(map(str, v)) if isinstance(v, list) else str(v))
               for k, v in query.items()],
        charts=_charts(a), version=__version__)
    # Control characters from the API are shown as text too (\x1b), as on a terminal:
    # the file stays plain text for a pager or a diff.
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             finalize=lambda v: visible(v) if isinstance(v, str) else v)
    parts = [env.from_string(HEAD).render(context)]
    for section in SECTIONS:
        extra = section.context(a) if section.context is not None else {}
        parts.append(env.from_string(section.template).render({**context, **extra}))
    parts.append(env.from_string(FOOT).render(context))
    return "".join(parts)



MAX_CHANGE_ROWS = PAGE_ROWS
"""The Changes table shows the newest this many events (all are in the changes CSV)."""


def _headroom_cells(r: pd.Series) -> dict[str, str]:
    """A usage row's headroom as two short cells, and the reason when there is none."""
    room, target = r.get("cpu_headroom", float("nan")), r.get("cpu_target", float("nan"))
    peak, most = r.get("instances_peak", float("nan")), r.get("max_instances", float("nan"))
    note = r.get("headroom_note")
    return {"cpu_room": "–" if pd.isna(room) else
            f"{room:.0f} pp under {target:.0f}%" if room >= 0 else
            f"{-room:.0f} pp over {target:.0f}%",
            "instances_room": "–" if pd.isna(peak) or pd.isna(most) else
            f"{peak:.0f} of {most:.0f}",
            "note": note if isinstance(note, str) else ""}


def _nearest_changes(a: Analysis) -> dict[Any, str]:
    """Per incident (its row label), the nearest change of its group before it."""
    if a.suspects is None:
        return {}
    out: dict[Any, str] = {}
    index = list(a.incidents.index)
    lookback = a.suspects.attrs.get("lookback", "")
    for r in a.suspects[a.suspects["rank"] == 1].itertuples():
        text = f"{r.event} {format_duration(r.before)} before: {r.summary}"
        out[index[int(r.incident)]] = text
    for i in index:
        out.setdefault(i, f"none within {format_duration(pd.Timedelta(lookback))}"
                       if lookback else "–")
    return out


def _change_rows(a: Analysis, label: Any) -> dict[str, Any]:
    if a.changes is None:
        return {"changes_loaded": False, "change_rows": [], "change_count": 0,
                "change_kinds": "", "change_more": 0, "followed": 0, "lookback": ""}
    ch = a.changes
    inside = ch[(ch["changed_at"] >= a.since) & (ch["changed_at"] < a.until)] \
        if a.since is not None else ch
    kinds = inside["kind"].astype(object).value_counts()
    names = {"deploy": "deployment", "scale": "scaling", "pause": "pause", "resume": "resume",
             "other": "other"}
    text = ", ".join(f"{n} {names.get(k, k)}" for k, n in kinds.items()) or "none"
    shown = inside.sort_values("changed_at", ascending=False).head(MAX_CHANGE_ROWS)
    rows = [{"at": _ts(r.changed_at), "group": label(r.service_id) if pd.notna(r.service_id)
             else "(organisation)", "event": f"{r.kind} {r.event}", "summary": r.summary,
             "commit": " ".join(str(v) for v in (
                 str(r.git_sha)[:7] if pd.notna(r.git_sha) else "",
                 r.git_message if pd.notna(r.git_message) else "") if v),
             "actor": r.actor if pd.notna(r.actor) else ""}
            for r in shown.itertuples()]
    sus = a.suspects
    lookback = sus.attrs.get("lookback") if sus is not None else None
    return {"changes_loaded": True, "change_rows": rows, "change_count": len(inside),
            "change_kinds": text, "change_more": max(0, len(inside) - len(rows)),
            "followed": int(sus["incident"].nunique()) if sus is not None else 0,
            "lookback": format_duration(pd.Timedelta(lookback)) if lookback else ""}


def write_report(a: Analysis, path: str | Path, **options: Any) -> Path:
    """Write the report's page to ``path`` and its full tables beside it.

    Each of :data:`SIDE_TABLES` goes to ``<stem>-<key>.csv`` in the page's folder (see
    :func:`side_files`), written as :func:`~koyeb_analytics.textsafe.write_csv` writes
    (text a spreadsheet would run is defused); the page links them relatively.

    Parameters
    ----------
    a
        From :func:`~koyeb_analytics.analyse`.
    path
        Where the page goes.
    options
        Passed to :func:`render_report` (``title``).

    Returns
    -------
    Path
        The page's path.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> a = ka.analyse(ka.load_window(client, window="1d"))
    >>> path = ka.report.write_report(a, Path(tempfile.mkdtemp()) / "report.html")
    >>> path.name, path.read_text().startswith("<!DOCTYPE html>")
    ('report.html', True)
    """
    path = Path(path)
    page = render_report(a, stem=path.stem, **options)
    for table in SIDE_TABLES:
        write_csv(table.build(a), side_files(path)[table.key])
    path.write_text(page, encoding="utf-8")
    return path
