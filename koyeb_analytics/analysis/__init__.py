"""Frames in, figures out: status intervals, uptime, incidents, capacity, a report's answers.

Bottom up: ``_classify`` (what status each event announces), ``_lifecycle`` (status
intervals per instance), ``_startstatus`` (each instance's status at a window's start),
``_metrics`` (uptime, incidents, capacity, crash loops, and the headline numbers as
values), ``_summary`` (:func:`analyse` and :func:`headline`), ``_changes`` (change
events from deployments and activities, and the suspects of each incident),
``_logs`` (log patterns, each incident's top new one) and ``_resources`` (CPU,
memory, errors and latency from metrics). Nothing here reads the API, a store or
the simulator: it gets frames and a :class:`~koyeb_analytics.Window`.
"""

from __future__ import annotations

from ._changes import CHANGE_COLUMNS, SUSPECT_EVENTS, changes, diff_definitions, suspects
from ._classify import TRANSITIONS, classify_events, event_vocabulary
from ._lifecycle import findings, lifecycles
from ._logs import incident_patterns, log_patterns
from ._metrics import (
    Availability,
    ErrorBudget,
    Peak,
    Recovery,
    UptimePolicy,
    capacity,
    crash_loops,
    error_budget,
    incident_summary,
    incidents,
    overall_availability,
    peak_capacity,
    recovery,
    timeline,
    uptime,
)
from ._resources import resource_usage
from ._startstatus import alive_at, start_status
from ._summary import Analysis, Headline, analyse, headline

__all__ = [
    "CHANGE_COLUMNS", "SUSPECT_EVENTS", "TRANSITIONS", "Analysis", "Availability",
    "ErrorBudget", "Headline", "Peak", "Recovery", "UptimePolicy", "alive_at", "analyse",
    "capacity", "changes", "classify_events", "crash_loops", "diff_definitions",
    "error_budget", "event_vocabulary", "findings", "headline", "incident_patterns",
    "incident_summary", "incidents", "lifecycles", "log_patterns", "overall_availability",
    "peak_capacity", "recovery", "resource_usage", "start_status", "suspects", "timeline",
    "uptime",
]
