"""Charts of intervals, capacity, uptime and events: static (matplotlib) and interactive.

``_static`` draws on a matplotlib ``Axes`` and is the engine of the HTML report;
``_interactive`` builds Plotly figures (``pip install "koyeb-analytics[interactive]"``)
with the same status colours. Both mark changes (``changes=``) the same way.
"""

from __future__ import annotations

from ._interactive import capacity_figure, lifecycles_figure
from ._static import STATUS_COLORS, plot_capacity, plot_events, plot_lifecycles, plot_uptime

__all__ = ["STATUS_COLORS", "capacity_figure", "lifecycles_figure", "plot_capacity",
           "plot_events", "plot_lifecycles", "plot_uptime"]
