"""The API's listings as typed frames: instances, instance events, deployments,
activities, the names of apps and services, and what the system said (logs,
metrics, the instance catalog).

``_loaders`` validates arguments, reads every page and builds each frame once;
``_frames`` turns collected rows (or Arrow tables) into frames of the schema;
``_names`` lists app and service names for the ids instances carry; ``_changes`` loads
deployments and activities (what changed); ``_streams`` reads logs by time-window
cursors, metrics one call per metric, and the instance catalog; ``_builds`` keeps the
error lines of suspect deployments' build logs; ``_platform`` reads the platform's own
lines around events that never arrived.
"""

from __future__ import annotations

from ._builds import BUILD_ERROR_COLUMNS, build_errors
from ._changes import KNOWN_VERBS, get_deployment, load_activities, load_deployments
from ._loaders import get_instance, load_events, load_instances
from ._names import add_names, load_names
from ._platform import PLATFORM_COLUMNS, read_platform
from ._streams import load_instance_types, load_logs, load_metrics, tail_logs

__all__ = ["BUILD_ERROR_COLUMNS", "KNOWN_VERBS", "add_names", "build_errors",
           "get_deployment", "get_instance", "load_activities", "load_deployments",
           "load_events", "load_instance_types", "load_instances", "load_logs",
           "load_metrics", "load_names", "PLATFORM_COLUMNS", "read_platform", "tail_logs"]
