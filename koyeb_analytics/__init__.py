"""koyeb_analytics: the Koyeb instance API in pandas and Jupyter.

Load instances and instance events as typed DataFrames, with a local simulator of the
API for demos, notebooks and tests.

Examples
--------
>>> import koyeb_analytics as ka
>>> with ka.simulate(seed=7, days=2, services=3) as sim:
...     inst = ka.load_instances(sim.client(), window="24h", progress=False)
>>> "status" in inst
True
"""

from __future__ import annotations

from typing import Any

from . import plots as plots
from . import report as report
from ._version import __version__ as __version__
from .analysis import (
    Analysis,
    Headline,
    UptimePolicy,
    analyse,
    capacity,
    changes,
    classify_events,
    crash_loops,
    error_budget,
    event_vocabulary,
    findings,
    headline,
    incident_patterns,
    incident_summary,
    incidents,
    lifecycles,
    log_patterns,
    overall_availability,
    peak_capacity,
    recovery,
    resource_usage,
    suspects,
    timeline,
    uptime,
)
from .api import KoyebClient, Network
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DeadlineExceeded,
    ExecFailedError,
    ExecInterrupted,
    IncompleteListingError,
    InstanceNotRunningError,
    KoyebError,
    MalformedListingError,
    MalformedResponseError,
    NotFoundError,
    PaginationWarning,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SnapshotError,
    StoreError,
    StoreLockedError,
    TransportError,
)
from .execute import (
    ExecResult,
    ExecStream,
    diagnostics,
    exec_command,
    exec_many,
    exec_stream,
    exec_table,
    group_outputs,
    load_transcript,
    save_transcript,
)
from .load import (
    build_errors,
    get_deployment,
    get_instance,
    load_activities,
    load_deployments,
    load_events,
    load_instance_types,
    load_instances,
    load_logs,
    load_metrics,
    tail_logs,
)
from .plots import STATUS_COLORS, plot_capacity, plot_events, plot_lifecycles, plot_uptime
from .redact import Redactor
from .schema import STATUSES
from .sources import Window, load_changes, load_window
from .store import HistoryStore, SyncResult, load_snapshot, read_manifest, save_snapshot

__all__ = [
    "APIError",
    "Analysis",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "DeadlineExceeded",
    "ExecFailedError",
    "ExecInterrupted",
    "ExecResult",
    "ExecStream",
    "ExecWidget",
    "Headline",
    "HistoryStore",
    "IncompleteListingError",
    "InstanceNotRunningError",
    "KoyebClient",
    "KoyebError",
    "LiveView",
    "MalformedListingError",
    "MalformedResponseError",
    "Network",
    "NotFoundError",
    "PaginationWarning",
    "PermissionDeniedError",
    "RateLimitError",
    "Redactor",
    "STATUSES",
    "STATUS_COLORS",
    "ServerError",
    "Simulator",
    "SnapshotError",
    "StoreError",
    "StoreLockedError",
    "SyncResult",
    "TransportError",
    "UptimePolicy",
    "Window",
    "analyse",
    "build_errors",
    "capacity",
    "changes",
    "classify_events",
    "crash_loops",
    "diagnostics",
    "error_budget",
    "event_vocabulary",
    "exec_command",
    "exec_many",
    "exec_stream",
    "exec_table",
    "findings",
    "follow",
    "get_deployment",
    "get_instance",
    "group_outputs",
    "headline",
    "incident_patterns",
    "incident_summary",
    "incidents",
    "lifecycles",
    "load_activities",
    "load_changes",
    "load_deployments",
    "load_events",
    "load_instance_types",
    "load_instances",
    "load_logs",
    "load_metrics",
    "load_snapshot",
    "load_transcript",
    "load_window",
    "log_patterns",
    "overall_availability",
    "peak_capacity",
    "plot_capacity",
    "plot_events",
    "plot_lifecycles",
    "plot_uptime",
    "read_manifest",
    "recovery",
    "resource_usage",
    "save_snapshot",
    "save_transcript",
    "simulate",
    "suspects",
    "tail_logs",
    "timeline",
    "uptime",
]


def __getattr__(name: str) -> Any:
    # The simulator pulls in aiohttp, the widgets ipywidgets: import them only when asked.
    if name in ("simulate", "Simulator"):
        from . import simulator

        return getattr(simulator, name)
    if name in ("follow", "LiveView", "ExecWidget"):
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
