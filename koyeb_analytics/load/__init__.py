"""The API's listings as typed frames: instances, instance events, and the names of apps
and services.

``_loaders`` validates arguments, reads every page and builds each frame once;
``_frames`` turns collected rows (or Arrow tables) into frames of the schema;
``_names`` lists app and service names for the ids instances carry.
"""

from __future__ import annotations

from ._loaders import get_instance, load_events, load_instances
from ._names import add_names, load_names

__all__ = ["add_names", "get_instance", "load_events", "load_instances", "load_names"]
