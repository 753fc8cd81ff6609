"""Notebook widgets: exec on instances (:class:`ExecWidget`) and the fleet as it changes
(:class:`LiveView`, :func:`follow`). Both need ipywidgets; nothing else imports it."""

from __future__ import annotations

from ._exec import ExecWidget
from ._liveview import LiveView, follow

__all__ = ["ExecWidget", "LiveView", "follow"]
