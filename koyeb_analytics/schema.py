"""Column names and dtypes of every frame the loaders return.

Timestamps are tz-aware UTC at microsecond resolution, ``status`` is a categorical in
lifecycle order, ids are full strings. Fields the API adds later are kept as extra
columns after the known ones; known fields a reply lacks become NaN/NaT.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

STATUSES: tuple[str, ...] = (
    "ALLOCATING", "STARTING", "HEALTHY", "UNHEALTHY", "STOPPING", "STOPPED", "ERROR",
    "SLEEPING",
)
"""The API's eight instance statuses, in lifecycle order."""

EXEC_STATUSES: tuple[str, ...] = ("STARTING", "HEALTHY", "UNHEALTHY")
"""Statuses in which an instance has a container to exec into: the simulator accepts
exec only then, and the exec widget offers only these instances. (The console's web
terminal is stricter: HEALTHY only.)"""

TERMINAL_STATUSES: tuple[str, ...] = ("STOPPED", "ERROR")

_FULL_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{12}")


def is_full_id(value: object) -> bool:
    """True for a full Koyeb id (a UUID, nothing before or after it, no newline)."""
    return isinstance(value, str) and _FULL_ID.fullmatch(value) is not None

TIME_DTYPE = "datetime64[us, UTC]"
STRING_DTYPE = pd.StringDtype(na_value=np.nan)
"""What ``dtype="str"`` means under pandas 3: strings, NaN when missing."""

# kind of each column: "str", "time", "int", "status", "object"
INSTANCE_COLUMNS: dict[str, str] = {
    "id": "str",
    "created_at": "time",
    "updated_at": "time",
    "organization_id": "str",
    "app_id": "str",
    "service_id": "str",
    "regional_deployment_id": "str",
    "allocation_id": "str",
    "type": "str",
    "replica_index": "int",
    "region": "str",
    "datacenter": "str",
    "status": "status",
    "messages": "object",
    "xyz_deployment_id": "str",
}
INSTANCE_DETAIL_COLUMNS: dict[str, str] = {
    "hypervisor": "str",
    "started_at": "time",
    "succeeded_at": "time",
    "terminated_at": "time",
}
EVENT_COLUMNS: dict[str, str] = {
    "id": "str",
    "when": "time",
    "organization_id": "str",
    "instance_id": "str",
    "type": "str",
    "message": "str",
    "metadata": "object",
}


START_STATUS_COLUMNS: tuple[str, ...] = ("instance_id", "status", "source", "evidence_at")
"""Each instance's status at a window's start and the evidence for it (``Window.start_status``)."""


def status_dtype(extra: Iterable[str] = ()) -> pd.CategoricalDtype:
    """Return the ordered status categorical, with unknown statuses appended at the end."""
    return pd.CategoricalDtype(list(STATUSES) + sorted(set(extra) - set(STATUSES)),
                               ordered=True)


DEPLOYMENT_STATUSES: tuple[str, ...] = (
    "PENDING", "PROVISIONING", "SCHEDULED", "CANCELING", "CANCELED", "ALLOCATING",
    "STARTING", "HEALTHY", "DEGRADED", "UNHEALTHY", "STOPPING", "STOPPED", "ERRORING",
    "ERROR", "STASHED", "SLEEPING",
)
"""The API's sixteen deployment statuses (``STASHED``: saved, never deployed)."""

DEPLOYMENT_COLUMNS: dict[str, str] = {
    "id": "str",
    "created_at": "time",
    "updated_at": "time",
    "allocated_at": "time",
    "started_at": "time",
    "succeeded_at": "time",
    "terminated_at": "time",
    "organization_id": "str",
    "app_id": "str",
    "service_id": "str",
    "parent_id": "str",
    "child_id": "str",
    "status": "deployment_status",
    "trigger_type": "str",
    "trigger_actor": "str",
    "git_sha": "str",
    "git_message": "str",
    "image": "str",
    "created_by": "str",
    "version": "str",
    "messages": "object",
    "definition": "object",
    "in_window": "bool",
}
"""Deployments (``load_deployments``): the trigger and git fields flattened out of
``metadata``; ``definition`` kept as the API sent it; ``in_window`` False for the
deployments older than the window kept as context (in force at ``since``, parents)."""

ACTIVITY_COLUMNS: dict[str, str] = {
    "id": "str",
    "created_at": "time",
    "verb": "str",
    "verb_known": "bool",
    "object_type": "str",
    "object_id": "str",
    "object_name": "str",
    "app_id": "str",
    "service_id": "str",
    "actor_type": "str",
    "actor_name": "str",
    "count": "int",
    "previous_count": "int",
    "region": "str",
    "messages": "object",
    "metadata": "object",
}
"""Activities (``load_activities``): the object and actor flattened; ``count``,
``previous_count`` and ``region`` from scaling verbs' metadata; ``verb_known`` False
for verbs no known guard names (kept, never dropped)."""


def deployment_status_dtype(extra: Iterable[str] = ()) -> pd.CategoricalDtype:
    """Return the deployment status categorical, unknown statuses appended at the end."""
    return pd.CategoricalDtype(
        list(DEPLOYMENT_STATUSES) + sorted(set(extra) - set(DEPLOYMENT_STATUSES)))


# -- what the system said: logs and metrics (koyeb-api-beyond-instances.md §3, §4) --

LOG_COLUMNS: tuple[str, ...] = ("ts", "msg", "stream", "instance_id", "service_id", "app_id",
                                "type")
"""Columns of a logs frame. ``ts`` keeps the API's nanoseconds (``datetime64[ns, UTC]``),
the one exception to the microsecond rule; labels are categoricals."""
LOG_STREAMS: tuple[str, ...] = ("stdout", "stderr", "koyeb")
"""The log streams: the application's two, and ``koyeb`` (platform messages)."""
METRIC_COLUMNS: tuple[str, ...] = ("ts", "metric", "value", "unit", "instance_id", "code",
                                   "service_id")
"""Columns of a metrics frame (one row per sample; labels the series did not carry are NaN)."""
METRIC_UNITS: dict[str, str] = {
    "CPU_TOTAL_PERCENT": "percent",
    "MEM_RSS": "bytes",
    "HTTP_THROUGHPUT": "requests/s",
    "HTTP_RESPONSE_TIME_50P": "ms",
    "HTTP_RESPONSE_TIME_90P": "ms",
    "HTTP_RESPONSE_TIME_99P": "ms",
    "HTTP_RESPONSE_TIME_MAX": "ms",
    "PUBLIC_DATA_TRANSFER_IN": "bytes/step",
    "PUBLIC_DATA_TRANSFER_OUT": "bytes/step",
}
"""Each metric's unit as this toolkit reads it. The API does not state them: percent is of
the instance's CPU limit, throughput a rate averaged over the step, transfer bytes per
step (assumptions, see koyeb-api-beyond-instances.md §4)."""
METRIC_NAMES: tuple[str, ...] = tuple(METRIC_UNITS)
"""The metric names the API knows (its enum, without ``UNKNOWN``)."""
