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

from .analysis import (
    UptimePolicy,
    capacity,
    crash_loops,
    incident_summary,
    incidents,
    timeline,
    uptime,
)
from .classify import classify_events, event_vocabulary
from .client import KoyebClient
from .diagnostics import diagnostics, exec_table
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
    exec_command,
    exec_many,
    exec_stream,
    group_outputs,
)
from .figures import error_budget, overall_availability, peak_capacity, recovery
from .lifecycle import findings, lifecycles
from .loaders import get_instance, load_events, load_instances
from .network import Network
from .pipeline import Analysis, Headline, Window, analyse, headline, load_window
from .plotting import STATUS_COLORS, plot_capacity, plot_events, plot_lifecycles, plot_uptime
from .redact import Redactor
from .schema import STATUSES
from .snapshot import load_snapshot, read_manifest, save_snapshot
from .store import HistoryStore, SyncResult
from .transcript import load_transcript, save_transcript

__version__ = "0.1.0"

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
    "capacity",
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
    "get_instance",
    "group_outputs",
    "headline",
    "incident_summary",
    "incidents",
    "lifecycles",
    "load_events",
    "load_instances",
    "load_snapshot",
    "load_transcript",
    "load_window",
    "overall_availability",
    "peak_capacity",
    "plot_capacity",
    "plot_events",
    "plot_lifecycles",
    "plot_uptime",
    "read_manifest",
    "recovery",
    "save_snapshot",
    "save_transcript",
    "simulate",
    "timeline",
    "uptime",
]


def __getattr__(name: str) -> Any:
    # The simulator pulls in aiohttp: import it only when asked for.
    if name in ("simulate", "Simulator"):
        from . import simulator

        return getattr(simulator, name)
    if name in ("follow", "LiveView"):
        from . import liveview

        return getattr(liveview, name)
    if name == "ExecWidget":
        # ipywidgets is imported by the widget module only.
        from . import widget

        return getattr(widget, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
