"""A window's analysis as a document: the HTML report, and the text a terminal shows.

``_html`` renders a self-contained HTML file (tables and PNG charts); ``_text`` writes
the summary ``koyeb-analytics report`` prints. Both only render: what they show is
computed by :func:`~koyeb_analytics.analyse`.
"""

from __future__ import annotations

from ._html import render_report, write_report
from ._text import format_duration, text_summary

__all__ = ["format_duration", "render_report", "text_summary", "write_report"]
