"""ExecWidget: a notebook workbench that keeps every run as a cell and a transcript row.

Long because a widget's layout, handlers, background runs and cell output belong
together, as in ipywidgets' own ``interactive``; transcripts (data) are in
:mod:`koyeb_analytics.execute`.

Built from standard ipywidgets. Runs execute in a background thread; output reaches the
display only through ``Output.append_stdout``/``append_stderr`` and widget value
updates (never ``with out:`` from a thread). Remote output is text: it is shown escaped
(stream outputs), never rendered as HTML.
"""

from __future__ import annotations

import html
import io
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ..api._checks import check_client
from ..api._client import KoyebClient
from ..execute._diagnostics import Diagnostic, parse_output, parser_for, whole_lines
from ..execute._fanout import group_outputs, instance_targets, output_text
from ..execute._run import DEFAULT_MAX_OUTPUT, CancelToken, ExecResult, as_redactor, exec_command
from ..execute._stream import normalize_command
from ..execute._transcript import (
    save_transcript,
    transcript_cells,
    transcript_frame,
    transcript_markdown,
)
from ..load._loaders import load_instances
from ..redact import DEFAULT_REDACTOR, LineRedactor, Redactor
from ..schema import EXEC_STATUSES

# Terminal control sequences other than colours (SGR, ending in "m") are stripped; the
# notebook front end renders colours in stream output safely.
_CONTROL = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-ln-~]"  # CSI, except SGR (ends in "m")
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC strings
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"  # DCS, SOS, PM, APC
    r"|\x1b[ -/]+[0-~]"  # nF: character sets (ESC ( 0) and the like
    r"|\x1b[0-Z\\`-~]"  # the other two-byte escapes (ESC c, ESC 7, ESC =)
    r"|[\x80-\x9a\x9c-\x9f]"  # remaining C1 controls
)
BADGE_STYLE = {
    "ok": "background:#31a354;color:white",
    "exit": "background:#de2d26;color:white",
    "timed out": "background:#fd8d3c;color:black",
    "cancelled": "background:#636363;color:white",
    "unknown": "background:#bdbdbd;color:black",
}


def clean_terminal_text(text: str) -> str:
    """Strip terminal control sequences except colours (SGR).

    Removed: CSI sequences (``ESC [`` or the one-byte C1 ``\\x9b``) other than SGR,
    OSC strings, character-set selections (``ESC ( 0``), the other two-byte escapes
    (``ESC c``, ``ESC 7``...), and the remaining C1 controls.
    """
    return _CONTROL.sub("", text)


def badge(result: ExecResult) -> tuple[str, str]:
    """(label, kind) of a run's exit badge, from :attr:`ExecResult.status`."""
    status = result.status
    if result.exited:
        return (f"exit {result.exit_code}", "ok" if status == "ok" else "exit")
    if status == "timed out":
        return (status, status)
    if result.error == "cancelled":
        return ("cancelled", "cancelled")
    return ("exit unknown", "unknown")


class _CellOutput:
    """Shows a stream in an Output widget: head and tail lines, throttled updates.

    Work is linear in the output's size: a line is assembled from its pieces once,
    and at most ``line_bytes`` of it is kept. What the cell shows is bounded in lines
    and in bytes (``head_bytes`` for the head, ``tail_lines`` lines of at most
    ``line_bytes`` for the tail); the whole output stays in the run's result.
    """

    def __init__(self, out: widgets.Output, head_lines: int, tail_lines: int,
                 interval: float = 0.1, *, head_bytes: int = 256 * 1024,
                 line_bytes: int = 16 * 1024, redactor: Redactor | None = None) -> None:
        self.out = out
        self.redact = {s: LineRedactor(redactor or DEFAULT_REDACTOR)
                       for s in ("stdout", "stderr")}
        self.head_lines = head_lines
        self.head_bytes = head_bytes
        self.line_bytes = line_bytes
        self.tail: deque[tuple[str, str]] = deque(maxlen=tail_lines)
        self.shown = 0
        self.shown_bytes = 0
        self.hidden = 0
        self.pending: list[tuple[str, str]] = []
        self.partial: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        self.partial_size = {"stdout": 0, "stderr": 0}
        self.interval = interval
        self.last = 0.0
        self.lock = threading.Lock()

    def _keep(self, stream: str, piece: bytes) -> None:
        room = self.line_bytes - self.partial_size[stream]
        if room > 0:
            self.partial[stream].append(piece[:room])
        self.partial_size[stream] += len(piece)

    def _end_line(self, stream: str, newline: str) -> None:
        size = self.partial_size[stream]
        text = b"".join(self.partial[stream]).decode("utf-8", "replace")
        if size > self.line_bytes:
            text += f" … ({size - self.line_bytes} more bytes of this line not shown)"
        self.partial[stream], self.partial_size[stream] = [], 0
        self._line(stream, text + newline)

    def feed(self, stream: str, data: bytes) -> None:
        with self.lock:
            start = 0
            while True:
                end = data.find(b"\n", start)
                if end < 0:
                    if start < len(data):
                        self._keep(stream, data[start:])
                    break
                self._keep(stream, data[start:end])
                self._end_line(stream, "\n")
                start = end + 1
            if time.monotonic() - self.last >= self.interval:
                self._flush()

    def _line(self, stream: str, text: str) -> None:
        text = clean_terminal_text(self.redact[stream].line(text))
        if not text:
            return
        if self.shown < self.head_lines and self.shown_bytes < self.head_bytes:
            self.pending.append((stream, text))
            self.shown += 1
            self.shown_bytes += len(text)
        else:
            if len(self.tail) == self.tail.maxlen:
                self.hidden += 1
            self.tail.append((stream, text))

    def _flush(self) -> None:
        self.last = time.monotonic()
        pending, self.pending = self.pending, []
        for stream, text in _merge(pending):
            (self.out.append_stdout if stream == "stdout" else self.out.append_stderr)(text)

    def close(self) -> None:
        with self.lock:
            for stream in ("stdout", "stderr"):
                if self.partial_size[stream]:
                    self._end_line(stream, "")
            if self.hidden:
                self.pending.append(("stdout", f"… {self.hidden} lines hidden …\n"))
            self.pending.extend(self.tail)
            redacted = sum(r.count for r in self.redact.values())
            if redacted:
                self.pending.append(("stdout", f"[{redacted} value(s) redacted]\n"))
            self.tail.clear()
            self._flush()


def _merge(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Join consecutive lines of one stream into one update."""
    out: list[tuple[str, str]] = []
    for stream, text in items:
        if out and out[-1][0] == stream:
            out[-1] = (stream, out[-1][1] + text)
        else:
            out.append((stream, text))
    return out


class ExecWidget(widgets.VBox):
    """Run commands on instances from a notebook; every run becomes a cell and rows.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    instances
        A DataFrame from :func:`~koyeb_analytics.load_instances`, or a list of ids.
    service_id
        Instead of ``instances``: load the instances of this service.
    timeout
        Default timeout of a run, in seconds.
    confirm_above
        Ask for confirmation when one run targets more instances than this.
    allowlist
        Read-only mode: only these commands may run (exact strings, or compiled regular
        expressions that must match the whole command).
    head_lines, tail_lines
        How much of a long output a cell shows; the transcript keeps all of it (up to
        ``max_output`` bytes per stream).

    Examples
    --------
    >>> w = ka.ExecWidget(client, instances=ka.load_instances(client))
    >>> runs = w.run("uptime", instances=[iid])
    >>> len(w.transcript), bool(w.transcript.exit_code[0] == 0)
    (1, True)
    """

    def __init__(self, client: KoyebClient, *,
                 instances: pd.DataFrame | Iterable[str] | None = None,
                 service_id: str | None = None, timeout: float = 30, confirm_above: int = 5,
                 allowlist: Sequence[str | re.Pattern[str]] | None = None,
                 head_lines: int = 200, tail_lines: int = 50, concurrency: int = 8,
                 max_output: int = DEFAULT_MAX_OUTPUT,
                 redact: Redactor | bool = True) -> None:
        self.client = check_client(client)
        if instances is None and service_id is None:
            raise ValueError("pass instances= (a DataFrame or ids) or service_id=")
        if instances is None:
            instances = load_instances(client, service_id=service_id, progress=False)
        self.redactor = as_redactor(redact)
        self.instances = self._table(instances)
        self.confirm_above = confirm_above
        self.allowlist = list(allowlist) if allowlist is not None else None
        self.head_lines, self.tail_lines = head_lines, tail_lines
        self.concurrency = concurrency
        self.max_output = max_output
        self._rows: list[dict[str, Any]] = []
        self._runs = 0
        self._thread: threading.Thread | None = None
        self._cancel: CancelToken | None = None
        self._pending: tuple[Any, list[str], float] | None = None

        runnable = self.instances[self.instances["status"].isin(EXEC_STATUSES)]
        self._picker = widgets.SelectMultiple(
            options=[(self._label(r), r["instance_id"]) for _, r in runnable.iterrows()],
            rows=min(8, max(2, len(runnable))), description="instances",
            layout=widgets.Layout(width="95%"))
        skipped = len(self.instances) - len(runnable)
        self._note = widgets.HTML(f"<small>{skipped} instance(s) not running, not "
                                  "selectable</small>" if skipped else "")
        self._command = widgets.Combobox(placeholder="command (run through sh -c)",
                                         options=[], ensure_option=False,
                                         description="command",
                                         layout=widgets.Layout(width="70%"))
        self._timeout = widgets.BoundedFloatText(value=timeout, min=0.1, max=24 * 3600,
                                                 description="timeout (s)",
                                                 layout=widgets.Layout(width="200px"))
        self._as_table = widgets.Checkbox(value=False, description="as table", indent=False,
                                          layout=widgets.Layout(width="90px"))
        self._run = widgets.Button(description="Run", button_style="primary", icon="play")
        self._stop = widgets.Button(description="Stop", button_style="danger", icon="stop",
                                    disabled=True)
        self._yes = widgets.Button(description="Run anyway", button_style="warning")
        self._no = widgets.Button(description="Cancel")
        self._confirm_text = widgets.HTML()
        self._confirm = widgets.HBox([self._confirm_text, self._yes, self._no],
                                     layout=widgets.Layout(display="none"))
        self._status = widgets.HTML()
        self._cells = widgets.VBox()
        self._run.on_click(self._on_run)
        self._stop.on_click(self._on_stop)
        self._yes.on_click(self._on_confirm)
        self._no.on_click(self._on_cancel_confirm)
        super().__init__([self._picker, self._note,
                          widgets.HBox([self._command, self._timeout, self._as_table,
                                        self._run, self._stop]),
                          self._confirm, self._status, self._cells])

    # ------------------------------------------------------------------ data
    @staticmethod
    def _table(instances: pd.DataFrame | Iterable[str]) -> pd.DataFrame:
        named = isinstance(instances, pd.DataFrame) and \
            {"app_name", "service_name"} <= set(instances.columns)
        df = instance_targets(instances, columns=("service_id", "region", "status",
                                                  *(("app_name", "service_name")
                                                    if named else ())),
                              defaults={"status": "HEALTHY"})
        return df.assign(status=df["status"].astype(object))

    @staticmethod
    def _label(row: pd.Series) -> str:
        svc = str(row["service_id"])[:8] if isinstance(row["service_id"], str) else "-"
        if isinstance(row.get("service_name"), str):
            svc = f"{row.get('app_name')}/{row['service_name']}"
        return f"{row['instance_id'][:8]} · {svc} · {row['region'] or '-'} · {row['status']}"

    @property
    def transcript(self) -> pd.DataFrame:
        """One row per run and instance (all of the output, up to the exec cap)."""
        return transcript_frame(self._rows)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ checks
    def _allowed(self, command: str) -> bool:
        if self.allowlist is None:
            return True
        for rule in self.allowlist:
            if isinstance(rule, re.Pattern):
                if rule.fullmatch(command):
                    return True
            elif command == rule:
                return True
        return False

    def _targets(self, instances: Iterable[str] | None) -> list[str]:
        ids = list(self._picker.value) if instances is None else list(instances)
        if not ids:
            raise ValueError("no instance selected")
        runnable = set(self.instances.loc[self.instances["status"].isin(EXEC_STATUSES),
                                          "instance_id"])
        bad = [i for i in ids if i not in runnable]
        if bad:
            raise ValueError(f"not runnable here (unknown or not running): {bad[0]}")
        return ids

    # ------------------------------------------------------------------ running
    def run(self, command: str | Sequence[str], *, instances: Iterable[str] | None = None,
            timeout: float | None = None, confirm: bool = False,
            wait: bool = True, as_table: bool | None = None) -> list[ExecResult] | None:
        """Run ``command`` on ``instances`` (default: the picked ones), as the Run button.

        A run on more than ``confirm_above`` instances needs ``confirm=True``; in
        read-only mode a command outside the allowlist raises ``PermissionError``.
        With ``as_table`` (default: the "as table" box), a command with a known parser
        (see :func:`~koyeb_analytics.diagnostics`) is also shown as one table across
        the instances, and the transcript keeps the parsed rows beside the raw text.
        Returns the results (``wait=True``) or None while it runs in the background.
        """
        if as_table is not None:
            self._as_table.value = bool(as_table)
        text = command if isinstance(command, str) else " ".join(command)
        if not self._allowed(text):
            raise PermissionError(f"read-only mode: {text!r} is not in the allowlist")
        ids = self._targets(instances)
        if len(ids) > self.confirm_above and not confirm:
            raise ValueError(f"this run targets {len(ids)} instances (more than "
                             f"{self.confirm_above}); pass confirm=True")
        if self.running:
            raise RuntimeError("a run is in progress; stop it or wait for it")
        return self._start(command, ids, timeout or self._timeout.value, wait)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run has finished."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        """Cancel the current run: its sockets close, the rows say ``cancelled``."""
        if self._cancel is not None:
            self._cancel.cancel()

    def _start(self, command: str | Sequence[str], ids: list[str], timeout: float,
               wait: bool) -> list[ExecResult] | None:
        argv = normalize_command(command)
        text = command if isinstance(command, str) else " ".join(command)
        if text not in self._command.options:
            self._command.options = (text, *self._command.options)[:30]
        self._runs += 1
        run_id = self._runs
        self._cancel = CancelToken()
        self._run.disabled = True
        self._stop.disabled = False
        self._status.value = ""
        results: list[ExecResult] = []
        table = parser_for(command) if self._as_table.value else None
        if self._as_table.value and table is None:
            self._status.value = (f"<i>no parser known for {html.escape(text[:80])}: "
                                  "shown as text</i>")
        cells = [self._new_cell(run_id, text, iid) for iid in ids]

        def work() -> None:
            try:
                with ThreadPoolExecutor(max_workers=min(self.concurrency, len(ids))) as pool:
                    futures = [pool.submit(self._one, run_id, text, argv, iid, timeout, cell,
                                           table)
                               for iid, cell in zip(ids, cells, strict=True)]
                    results.extend(f.result() for f in futures)
                if table is not None:
                    self._table_view(run_id, table)
                if len(ids) > 1:
                    self._summary(run_id, results)
            except Exception as exc:  # noqa: BLE001 - shown to the user, never lost
                self._status.value = f"<b>run {run_id} failed:</b> {html.escape(str(exc))}"
            finally:
                self._run.disabled = False
                self._stop.disabled = True

        self._thread = threading.Thread(target=work, name=f"exec-widget-run-{run_id}",
                                        daemon=True)
        self._thread.start()
        if wait:
            self._thread.join()
            return results
        return None

    def _new_cell(self, run_id: int, text: str, iid: str) -> dict[str, Any]:
        started = pd.Timestamp.now(tz="UTC")
        header = widgets.HTML(
            f"<b>Run {run_id}</b> · <code>{html.escape(text)}</code> · "
            f"{html.escape(iid[:8])} · {started:%Y-%m-%d %H:%M:%S} UTC")
        out = widgets.Output(layout=widgets.Layout(max_height="400px", overflow="auto",
                                                   border="1px solid #ddd"))
        footer = widgets.HTML("<i>running…</i>")
        box = widgets.VBox([header, out, footer])
        self._cells.children = (*self._cells.children, box)
        return {"box": box, "out": out, "footer": footer,
                "view": _CellOutput(out, self.head_lines, self.tail_lines,
                                    redactor=self.redactor)}

    def _one(self, run_id: int, text: str, argv: tuple[str, ...], iid: str, timeout: float,
             cell: dict[str, Any], table: Diagnostic | None = None) -> ExecResult:
        view: _CellOutput = cell["view"]
        started = pd.Timestamp.now(tz="UTC")
        try:
            result = exec_command(self.client, argv, instance_id=iid, timeout=timeout,
                                  max_output=self.max_output, cancel=self._cancel,
                                  redact=self.redactor,
                                  on_stdout=lambda b: view.feed("stdout", b),
                                  on_stderr=lambda b: view.feed("stderr", b))
        except Exception as exc:  # noqa: BLE001 - a failed instance is a row, not a crash
            result = ExecResult(instance_id=iid, command=argv, error=str(exc),
                                started_at=started, ended_at=pd.Timestamp.now(tz="UTC"))
        view.close()
        label, kind = badge(result)
        seconds = result.duration.total_seconds() if result.duration is not None else 0.0
        extra = f" · {html.escape(result.error)}" if result.error and kind == "unknown" else ""
        if result.truncated:
            # The cell saw every line as it came; what the run and its transcript row
            # keep is the head and tail, so say what is missing there.
            dropped = result.stdout_dropped + result.stderr_dropped
            extra += (f' · <span class="ka-truncated" style="{BADGE_STYLE["timed out"]};'
                      f'padding:1px 6px;border-radius:3px">output past max_output='
                      f"{self.max_output}: {dropped} bytes dropped from the middle of what "
                      "the transcript keeps (a line marks where); raise max_output= to "
                      "keep them</span>")
        cell["footer"].value = (f'<span class="ka-badge ka-{kind.replace(" ", "-")}" '
                                f'style="{BADGE_STYLE[kind]};padding:1px 6px;'
                                f'border-radius:3px">{html.escape(label)}</span> '
                                f"· {seconds:.2f} s{extra}")
        row = self.instances.set_index("instance_id")
        self._rows.append({
            "run_id": run_id, "started_at": result.started_at or started,
            "ended_at": result.ended_at, "instance_id": iid,
            "service_id": row["service_id"].get(iid) if iid in row.index else None,
            "command": text, "exit_code": result.exit_code, "exited": result.exited,
            "timed_out": result.timed_out, "stdout": output_text(result, "stdout"),
            "stderr": output_text(result, "stderr"), "error": result.error,
            "redacted": result.redacted,
            "parsed": self._parsed(result, table),
        })
        return result

    @staticmethod
    def _parsed(result: ExecResult, table: Diagnostic | None) -> str:
        """The parsed rows as JSON (``""``: not asked, or the output did not parse)."""
        if table is None or not result.ok:
            return ""
        try:
            return str(parse_output(whole_lines(result), table).to_json(orient="records"))
        except ValueError:
            return ""

    def _table_view(self, run_id: int, table: Diagnostic) -> None:
        """One table across the run's instances, rendered escaped."""
        rows = [r for r in self._rows if r["run_id"] == run_id and r["parsed"]]
        frames = [pd.read_json(io.StringIO(r["parsed"]), orient="records").assign(
            instance_id=r["instance_id"]) for r in rows]
        view = widgets.HTML()
        if frames:
            df = pd.concat(frames, ignore_index=True)
            df = df[["instance_id", *[c for c in df.columns if c != "instance_id"]]]
            view.value = df.to_html(escape=True, max_rows=200, index=False,
                                    classes="ka-table")
        else:
            view.value = "<i>no output parsed</i>"
        self._cells.children = (*self._cells.children, widgets.VBox([
            widgets.HTML(f"<b>Run {run_id} as a table ({html.escape(table.parser)})</b>"),
            view]))

    def _summary(self, run_id: int, results: list[ExecResult]) -> None:
        runs = pd.DataFrame({"instance_id": [r.instance_id for r in results],
                             "exit_code": pd.array([r.exit_code for r in results],
                                                   dtype="Int64"),
                             "stdout": [output_text(r, "stdout") for r in results],
                             "stderr": [output_text(r, "stderr") for r in results],
                             "error": [r.error for r in results]})
        grouped = group_outputs(runs)
        out = widgets.Output()
        out.append_stdout(f"Run {run_id}: {grouped.attrs['summary']}\n")
        for _, g in grouped.iloc[1:].iterrows():
            out.append_stdout(g["diff_vs_majority"] or f"(differs: exit {g['exit_code']})\n")
        self._cells.children = (*self._cells.children,
                                widgets.VBox([widgets.HTML(f"<b>Run {run_id} summary</b>"),
                                              out]))

    # ------------------------------------------------------------------ handlers
    def _on_run(self, _: Any = None) -> None:
        text = self._command.value.strip()
        if not text:
            self._status.value = "Type a command first."
            return
        if not self._allowed(text):
            self._status.value = (f"<b>Blocked</b>: <code>{html.escape(text)}</code> is not "
                                  "in the allowlist (read-only mode).")
            return
        try:
            ids = self._targets(None)
        except ValueError as exc:
            self._status.value = html.escape(str(exc))
            return
        if len(ids) > self.confirm_above:
            self._pending = (text, ids, self._timeout.value)
            self._confirm_text.value = (f"Run <code>{html.escape(text)}</code> on "
                                        f"<b>{len(ids)}</b> instances?")
            self._confirm.layout.display = "flex"
            return
        self._start(text, ids, self._timeout.value, wait=False)

    def _on_confirm(self, _: Any = None) -> None:
        self._confirm.layout.display = "none"
        if self._pending is not None:
            text, ids, timeout = self._pending
            self._pending = None
            self._start(text, ids, timeout, wait=False)

    def _on_cancel_confirm(self, _: Any = None) -> None:
        self._confirm.layout.display = "none"
        self._pending = None
        self._status.value = "Run cancelled before it started."

    def _on_stop(self, _: Any = None) -> None:
        self.stop()

    # ------------------------------------------------------------------ exports
    def to_notebook_cells(self) -> list[Any]:
        """nbformat v4 cells: a markdown cell per run, a code cell per instance output."""
        return transcript_cells(self.transcript)

    def to_markdown(self) -> str:
        """The transcript as Markdown, for a post-mortem report."""
        return transcript_markdown(self.transcript)

    def save_transcript(self, path: str | Path) -> Path:
        """Write the transcript to Parquet (``.parquet``) or CSV (``.csv``)."""
        return save_transcript(self.transcript, path)
