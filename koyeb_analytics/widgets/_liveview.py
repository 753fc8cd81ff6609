"""LiveView: the incident in progress, in the notebook, updating in place.

A board of services (instances per status now, time since the last change), the
lifecycle chart of the window (redrawn into an image widget, so it changes without
flicker), a feed of the latest status changes (escaped text, newest first) and the
times of the last and next poll. A daemon thread polls through
:class:`~koyeb_analytics.poller.Poller`; it holds the view only weakly, so it ends with
the view, with :meth:`LiveView.stop`, or with the kernel.
"""

from __future__ import annotations

import html
import io
import threading
import time
import weakref
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ..analysis._metrics import overall_availability
from ..api._client import KoyebClient
from ..errors import KoyebError
from ..load._streams import tail_logs
from ..plots._static import plot_lifecycles
from ..poller import Poller, PollResult, format_change
from ..schema import STATUSES
from ..sources import load_changes
from ..timewindow import DurationLike, parse_duration, utcnow

FEED_LINES = 50


class LiveView(widgets.VBox):
    """A live view of a fleet: board, lifecycle chart, change feed (see :func:`follow`).

    Parameters
    ----------
    poller
        The :class:`~koyeb_analytics.poller.Poller` that reads the API.
    start
        Start polling at once.
    changes_every
        How often the chart's change markers are read again (see :func:`follow`).

    Examples
    --------
    >>> view = ka.follow(client, window="2h", every="15s")
    >>> view.stop()
    """

    def __init__(self, poller: Poller, *, start: bool = True,
                 changes_every: DurationLike | None = "5min") -> None:
        self.poller = poller
        self.changes_every = None if changes_every is None else \
            parse_duration(changes_every, "changes_every").total_seconds()
        self.change_events: pd.DataFrame | None = None
        self.changes_error: str | None = None
        self._changes_read: float | None = None
        self.status = widgets.HTML()
        self.board_html = widgets.HTML()
        self.chart = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.feed = widgets.HTML()
        self.start_button = widgets.Button(description="Start", icon="play")
        self.pause_button = widgets.Button(description="Pause", icon="pause")
        self.stop_button = widgets.Button(description="Stop", icon="stop")
        self.start_button.on_click(self._on_start)
        self.pause_button.on_click(self._on_pause)
        self.stop_button.on_click(self._on_stop)
        super().__init__([
            widgets.HBox([self.start_button, self.pause_button, self.stop_button,
                          self.status]),
            self.board_html, self.chart, self.feed])
        self.add_class("koyeb-live-view")
        self._paused = threading.Event()
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn_events = -1
        self.last: PollResult | None = None
        self._render_status("not started")
        if start:
            self.start()

    # -- the frames, as the loaders return them -----------------------------------

    @property
    def instances(self) -> pd.DataFrame:
        """The window's instances (as :func:`~koyeb_analytics.load_instances`)."""
        return self.poller.instances

    @property
    def events(self) -> pd.DataFrame:
        """The window's events (as :func:`~koyeb_analytics.load_events`)."""
        return self.poller.events

    @property
    def intervals(self) -> pd.DataFrame:
        """The window's status intervals (as :func:`~koyeb_analytics.lifecycles`)."""
        return self.poller.intervals()

    @property
    def changes(self) -> pd.DataFrame:
        """Every status change seen since the view started, oldest first."""
        return self.poller.changes

    def affected(self) -> list[str]:
        """Ids of the instances that are neither healthy nor asleep now."""
        inst = self.poller.instances
        if inst.empty:
            return []
        bad = ~inst["status"].astype(str).isin(["HEALTHY", "SLEEPING", "STOPPED"])
        return sorted(inst.loc[bad, "id"].astype(str))

    def tail(self, *, instance_ids: list[str] | None = None, duration: DurationLike = "30s",
             max_lines: int = 500, since: Any = None) -> pd.DataFrame:
        """Follow the logs of the affected instances (or of ``instance_ids``) for a while.

        Returns the lines (``ts, msg, stream, instance_id, service_id, app_id``) read
        within ``duration``, at most ``max_lines``: the backlog from ``since`` (by
        default the last five minutes) and what they write meanwhile.
        """
        ids = instance_ids if instance_ids is not None else self.affected()
        columns = ["ts", "msg", "stream", "instance_id", "service_id", "app_id"]
        if not ids:
            return pd.DataFrame(columns=columns)
        start = since if since is not None else utcnow() - pd.Timedelta("5min")
        lines = list(tail_logs(self.poller.client, instance_ids=ids, duration=duration,
                               max_lines=max_lines, since=start))
        return pd.DataFrame(lines, columns=columns)

    @property
    def running(self) -> bool:
        """True while the polling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # -- control -------------------------------------------------------------------

    def start(self) -> None:
        """Start polling (or resume after :meth:`pause`)."""
        self._paused.clear()
        if self._stopped.is_set() or self.running:
            self._wake.set()
            return
        thread = threading.Thread(target=_loop, args=(weakref.ref(self),),
                                  name="koyeb-live-view", daemon=True)
        self._thread = thread
        thread.start()

    def pause(self) -> None:
        """Stop polling for now; :meth:`start` resumes."""
        self._paused.set()
        self._render_status("paused")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling for good and wait (up to ``timeout`` s) for the thread to end."""
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        try:
            self._render_status("stopped")
        except Exception:  # noqa: BLE001 - the interpreter may be shutting down
            pass

    def close(self) -> None:
        """Stop polling, then close the widget."""
        self.stop()
        super().close()

    def _on_start(self, _: Any = None) -> None:
        self.start()

    def _on_pause(self, _: Any = None) -> None:
        self.pause()

    def _on_stop(self, _: Any = None) -> None:
        self.stop()

    # -- one step, called by the thread --------------------------------------------

    def poll_once(self) -> PollResult:
        """Poll now and redraw what changed (the thread does this every interval)."""
        result = self.poller.poll()
        self.last = result
        self._render_board()
        self._render_feed()
        if len(self.poller.events) != self._drawn_events or result.new_events:
            self._render_chart()
        self._render_status()
        return result

    def _render_status(self, state: str | None = None) -> None:
        p = self.poller
        if state is None:
            state = (f"backing off after {p.failures} failed poll(s): "
                     f"{html.escape(p.last_error or '')}" if p.backing_off else "live")
        last = "never" if p.last_success is None else f"{p.last_success:%H:%M:%S} UTC"
        nxt = (utcnow() + pd.Timedelta(seconds=p.delay)).strftime("%H:%M:%S")
        colour = "#b30000" if p.backing_off else "#555"
        self.status.value = (f"<span style='color:{colour}'><b>{html.escape(state)}</b>"
                             f" · last poll {last} · next {nxt} UTC · every "
                             f"{p.every:g} s</span>")

    def _render_board(self) -> None:
        board = self.poller.board()
        if board.empty:
            self.board_html.value = "<i>No instance in the window.</i>"
            return
        now = utcnow()
        shown = [s for s in STATUSES if s in board and board[s].sum() > 0]
        head = "".join(f"<th>{s}</th>" for s in ["service", *shown, "last change"])
        rows = []
        for _, r in board.iterrows():
            since = "—" if pd.isna(r["last_change"]) else _ago(now - r["last_change"])
            cells = [html.escape(str(r["service"]))] + [str(int(r[s])) for s in shown] + [
                since]
            bad = any(r[s] for s in ("ERROR", "UNHEALTHY") if s in board)
            style = " style='background:#fde0dd'" if bad else ""
            rows.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        self.board_html.value = (f"<table class='koyeb-live-board'><tr>{head}</tr>"
                                 + "".join(rows) + "</table>")

    def _render_feed(self) -> None:
        changes = self.poller.changes.tail(FEED_LINES).iloc[::-1]
        if changes.empty:
            self.feed.value = "<i>No status change since the view started.</i>"
            return
        lines = [html.escape(format_change(r)) for _, r in changes.iterrows()]
        self.feed.value = ("<pre class='koyeb-live-feed' style='max-height:16em;"
                           "overflow:auto'>" + "\n".join(lines) + "</pre>")

    def _render_chart(self) -> None:
        from matplotlib.figure import Figure

        iv = self.poller.intervals()
        self._drawn_events = len(self.poller.events)
        fig = Figure(figsize=(11, 4.5), dpi=80)
        ax = fig.add_subplot()
        if len(iv):
            plot_lifecycles(iv, ax=ax, changes=self._what_changed())
            now = utcnow()
            ax.set_xlim(now - self.poller.window, now)  # the newest edge at the right
        ax.set_title(f"Last {_ago(self.poller.window)} (updated {utcnow():%H:%M:%S} UTC): "
                     + availability_line(iv))
        # Fixed margins, not bbox_inches="tight": a tight box draws the figure twice,
        # and this redraw runs at every poll that brought events.
        fig.subplots_adjust(left=0.2, right=0.98, top=0.9, bottom=0.14)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        self.chart.value = buf.getvalue()


    def _what_changed(self) -> pd.DataFrame | None:
        """The window's deployments and activities as changes, read again at most every
        ``changes_every`` (a failed read keeps the last ones and says why)."""
        if self.changes_every is None:
            return None
        now = time.monotonic()
        if self._changes_read is None or now - self._changes_read >= self.changes_every:
            self._changes_read = now
            try:
                self.change_events = load_changes(
                    self.poller.client, since=utcnow() - self.poller.window,
                    service_id=self.poller.service_id)
                self.changes_error = None
            except KoyebError as exc:
                self.changes_error = str(exc)
        return self.change_events


def availability_line(iv: pd.DataFrame) -> str:
    """``"availability 99.930 % over 98.7 % of service-time; 1.3 % unknown"``: across
    services, time-weighted, as the report's headline."""
    fleet = overall_availability(iv, by="service_id") if len(iv) else None
    if fleet is None or fleet.observed_time <= pd.Timedelta(0):
        return "availability: nothing observed yet"
    return "availability " + fleet.text()


def _ago(delta: pd.Timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _loop(ref: weakref.ref[LiveView]) -> None:
    """The polling thread: holds the view only between polls."""
    while True:
        view = ref()
        if view is None or view._stopped.is_set():
            return
        if not view._paused.is_set():
            try:
                result = view.poll_once()
                delay = result.delay
            except Exception as exc:  # never die silently: show it and keep going
                view.poller.failed(f"{type(exc).__name__}: {exc}")
                view._render_status()
                delay = view.poller.delay
        else:
            delay = 0.5
        wake = view._wake
        stopped = view._stopped
        del view  # let the view go while we wait
        wake.wait(delay)
        wake.clear()
        if stopped.is_set():
            return


def follow(client: KoyebClient, *, window: DurationLike = "2h", every: DurationLike = "15s",
           service_id: str | None = None, app_id: str | None = None, store: Any = None,
           start: bool = True, changes_every: DurationLike | None = "5min") -> LiveView:
    """Follow the fleet live in the notebook: board, lifecycle chart, change feed.

    Each poll reads only the events newer than the last seen (one request when nothing
    happened) and lists the instances only when events show a change; failures back off
    from ``every`` up to 30 s, shown on the view. ``view.instances``, ``view.events``
    and ``view.intervals`` are the loaders' frames: pause, and analyse them.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    window
        How much history the view shows (``"2h"``).
    every
        The polling interval (``"15s"``).
    service_id, app_id
        Only this service or app.
    store
        A :class:`~koyeb_analytics.HistoryStore` that every poll also appends to.
    start
        Start polling at once (else press Start, or call ``view.start()``).
    changes_every
        How often the chart's change markers (deployments, scaling, pauses: see
        :func:`~koyeb_analytics.load_changes`) are read again (``"5min"``); None: no
        markers, no such request.

    Returns
    -------
    LiveView

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     view = ka.follow(sim.client(), window="6h", every="1s", start=False)
    ...     result = view.poll_once()
    >>> result.error is None and len(view.instances) > 0
    True
    """
    return LiveView(Poller(client, window=window, every=every, service_id=service_id,
                           app_id=app_id, store=store), start=start,
                    changes_every=changes_every)
