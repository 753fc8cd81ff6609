"""The text report: an analysis as the lines a terminal shows (``koyeb-analytics report``).

Names, messages and error texts come from the API: every one goes through
:func:`~koyeb_analytics.textsafe.visible`, so their control characters are shown
(``\\x1b``), never sent to the terminal as escape sequences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis._summary import Analysis, headline
from ..labels import service_labels
from ..textsafe import visible

__all__ = ["format_duration", "text_summary"]


def format_duration(value: Any) -> str:
    """A duration as a person reads it (``–`` when missing).

    Examples
    --------
    >>> ka.report.format_duration(pd.Timedelta(hours=2, minutes=16))
    '2h 16m 00s'
    """
    if value is None or pd.isna(value):
        return "–"
    value = pd.Timedelta(value)
    seconds = int(value.total_seconds())
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _name(text: object) -> str:
    """Show a name or a message from the API as one line of text."""
    return visible(text, newlines=False)


def text_summary(a: Analysis, report: Path) -> str:
    """Return the terminal summary: the report's first screen, then the report's path.

    Parameters
    ----------
    a
        From :func:`~koyeb_analytics.analyse`.
    report
        Where the HTML report was written.

    Returns
    -------
    str
        Lines for a terminal; names and messages from the API as one line of text each.

    Examples
    --------
    >>> from pathlib import Path
    >>> a = ka.analyse(ka.load_window(client, window="1d"))
    >>> print(ka.report.text_summary(a, Path("/tmp/report.html")).splitlines()[-1])
    Report: /tmp/report.html
    """
    h = headline(a)
    pct = "{:.3%}".format
    lines = []
    if h.simulated:
        lines += ["SIMULATED DATA (the embedded simulator, not a Koyeb account)", ""]
    lines += [f"Window {a.since:%Y-%m-%d %H:%M} to {a.until:%Y-%m-%d %H:%M} UTC, from "
              f"{_name(h.source)}: {h.services} services, {h.instances} instances, "
              f"{len(a.events)} events.", "",
              f"Availability ({a.policy.describe()})",
              *([f"  NOTE: {h.coverage_note}"] if h.coverage_note else []),
              f"  overall {pct(h.availability)} against a target of {pct(h.target)}: "
              + ("met" if h.availability >= h.target else "MISSED")
              + ("" if h.coverage >= 1 else
                 f"; over {h.coverage:.1%} of service-time, {1 - h.coverage:.1%} unknown"),
              f"  error budget: {format_duration(h.budget_used)} used of "
              f"{format_duration(h.budget_allowed)}"
              + ("" if h.budget_used_share != h.budget_used_share
                 else f" ({h.budget_used_share:.0%})")]
    if h.worst_service is not None:
        lines.append(f"  worst service: {_name(h.worst_service)} at "
                     f"{pct(h.worst_availability)}")
    by = a.uptime.attrs.get("by") or "service_id"
    labels = service_labels(a.instances)
    for _, r in a.uptime.sort_values("availability").iterrows():
        lines.append(f"    {_name(labels.get(r[by], str(r[by])[:8])):28s} "
                     f"{r['availability']:9.4%}"
                     f"  {int(r['incidents'])} incident(s)")
    lines += ["", f"Incidents: {h.incidents}"
              + (f", MTTR median {format_duration(h.mttr_median)}; the longest "
                 f"{format_duration(h.longest_duration)} from "
                 f"{pd.Timestamp(h.longest_start):%Y-%m-%d %H:%M} UTC on "
                 f"{', '.join(map(_name, h.longest_services))}" if h.incidents else "")]
    if a.suspects is not None and a.changes is not None:
        first = a.suspects[a.suspects["rank"] == 1]
        lines.append(f"Changes: {len(a.changes)} change event(s); {len(first)} of "
                     f"{h.incidents} incident(s) follow a change of their service within "
                     f"{format_duration(pd.Timedelta(a.suspects.attrs.get('lookback', '1h')))}")
    if h.peak_instances:
        lines.append(f"Peak capacity: {h.peak_instances} concurrent instances at "
                     f"{pd.Timestamp(h.peak_at):%Y-%m-%d %H:%M} UTC")
    if h.findings:
        lines.append(f"Data-quality findings: {h.findings} (see the report)")
    lines += ["", f"Report: {report.resolve()}"]
    return "\n".join(lines)
