"""Transcripts of exec runs as data: the frame, saved and loaded, as cells and Markdown.

Kept apart from the widget, so that reading a transcript needs no ipywidgets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from ..schema import TIME_DTYPE
from ..textsafe import csv_unescape, write_csv

TRANSCRIPT_COLUMNS = ("run_id", "started_at", "ended_at", "instance_id", "service_id",
                      "command", "exit_code", "exited", "timed_out", "stdout", "stderr",
                      "error", "redacted", "parsed")
"""The columns of a transcript, one row per instance and run."""
_TEXT = ("instance_id", "service_id", "command", "stdout", "stderr", "error", "parsed")

__all__ = ["TRANSCRIPT_COLUMNS", "load_transcript", "markdown_fence", "save_transcript",
           "transcript_cells", "transcript_frame", "transcript_markdown"]


def markdown_fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``, so it cannot be closed
    from inside."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def transcript_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (dicts) as a transcript frame with its dtypes, in run order.

    Examples
    --------
    >>> ka.execute.transcript_frame([]).columns[:4].tolist()
    ['run_id', 'started_at', 'ended_at', 'instance_id']
    """
    df = pd.DataFrame(rows, columns=list(TRANSCRIPT_COLUMNS))
    for col in ("started_at", "ended_at"):
        df[col] = pd.to_datetime(df[col], utc=True).astype(TIME_DTYPE)
    df["run_id"] = df["run_id"].astype("int64")
    df["exit_code"] = pd.array(df["exit_code"], dtype="Int64")
    # How many secrets were redacted from the row's output; missing: redaction was off.
    df["redacted"] = pd.array(pd.to_numeric(df["redacted"]), dtype="Int64")
    for col in ("exited", "timed_out"):
        df[col] = df[col].astype(bool)
    # The parsed rows as JSON, when asked for ("" otherwise; an all-missing column is
    # float, so the text goes in as objects).
    df["parsed"] = df["parsed"].astype(object).where(df["parsed"].notna(), "")
    for col in _TEXT:
        df[col] = df[col].astype("str")
    return df.sort_values(["run_id", "started_at", "instance_id"], kind="stable").reset_index(
        drop=True)


def transcript_cells(transcript: pd.DataFrame) -> list[Any]:
    """nbformat v4 cells for a transcript: markdown per run, code cell per instance."""
    import nbformat.v4 as nbf

    cells = []
    for run_id, rows in transcript.groupby("run_id", sort=True):
        command = rows["command"].iloc[0]
        lines = [f"### Run {run_id}: `{command.replace('`', '´')}`", "",
                 "| instance | exit | duration |", "|---|---|---|"]
        for r in rows.itertuples():
            code = ("unknown" if pd.isna(r.exit_code) else str(r.exit_code)) + \
                (" (timed out)" if r.timed_out else "")
            lines.append(f"| `{r.instance_id}` | {code} | "
                         f"{(r.ended_at - r.started_at).total_seconds():.2f} s |")
        cells.append(nbf.new_markdown_cell("\n".join(lines)))
        for r in rows.itertuples():
            outputs = []
            if r.stdout:
                outputs.append(nbf.new_output("stream", name="stdout", text=r.stdout))
            if r.stderr:
                outputs.append(nbf.new_output("stream", name="stderr", text=r.stderr))
            cells.append(nbf.new_code_cell(
                source=f"# koyeb exec on {r.instance_id}\n# $ {command}",
                outputs=outputs))
    return cells


def transcript_markdown(transcript: pd.DataFrame) -> str:
    """Render a transcript as Markdown (fenced output blocks).

    Examples
    --------
    >>> t = ka.execute.transcript_frame([{
    ...     "run_id": 1, "instance_id": "0b1c2d3e", "command": "uptime", "stdout": "up 3 days\\n",
    ...     "stderr": "", "exit_code": 0, "exited": True, "timed_out": False,
    ...     "started_at": sim.now, "ended_at": sim.now}])
    >>> print(ka.execute.transcript_markdown(t))
    #### Run 1 on `0b1c2d3e`: `uptime` (exit 0)
    ```text
    up 3 days
    ```
    <BLANKLINE>
    """
    parts = []
    for r in transcript.itertuples():
        code = "unknown" if pd.isna(r.exit_code) else str(r.exit_code)
        fence = markdown_fence(r.stdout + r.stderr)
        parts.append(f"#### Run {r.run_id} on `{r.instance_id}`: `{r.command}` (exit {code})\n"
                     f"{fence}text\n{r.stdout}{r.stderr}{fence}\n")
    return "\n".join(parts)


def save_transcript(transcript: pd.DataFrame, path: str | Path, *, safe: bool = True) -> Path:
    """Write a transcript to ``.parquet`` or ``.csv``.

    Parameters
    ----------
    transcript
        From ``ExecWidget.transcript`` (or :func:`transcript_frame`).
    path
        A file name ending in ``.parquet`` or ``.csv``.
    safe
        CSV only: prefix with ``'`` every text cell a spreadsheet would run as a formula
        (one starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) and
        every one that starts with ``'`` already, so that opening the file runs nothing
        and :func:`load_transcript` can take the prefix off again exactly
        (:func:`~koyeb_analytics.textsafe.csv_escape`). ``False`` writes the text as it
        is, for programs that read the CSV; read such a file with ``safe=False`` too.
        Parquet is always written exactly.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> t = transcript_frame([{"run_id": 1, "started_at": "2026-01-01T00:00:00Z",
    ...     "ended_at": "2026-01-01T00:00:01Z", "instance_id": "i", "service_id": "s",
    ...     "command": "uptime", "exit_code": 0, "exited": True, "timed_out": False,
    ...     "stdout": "up 3 days\\n", "stderr": "", "error": ""}])
    >>> path = save_transcript(t, pathlib.Path(tempfile.mkdtemp()) / "t.parquet")
    >>> load_transcript(path).equals(t)
    True
    """
    path = Path(path)
    if path.suffix == ".parquet":
        transcript.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        write_csv(transcript, path, safe=safe)
    else:
        raise ValueError(f"{path}: use a .parquet or .csv file name")
    return path


def load_transcript(path: str | Path, *, safe: bool = True) -> pd.DataFrame:
    """Read a transcript written by :func:`save_transcript`, with its dtypes.

    Parameters
    ----------
    path
        A ``.parquet`` or ``.csv`` file.
    safe
        CSV only: the file was written with ``safe=True`` (the default), so one leading
        ``'`` is taken off every text cell that has one. ``False`` for a CSV written with
        ``safe=False``.

    Returns
    -------
    DataFrame
        The columns of :data:`TRANSCRIPT_COLUMNS`.

    Examples
    --------
    >>> load_transcript("missing.parquet")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no transcript at missing.parquet
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no transcript at {path}")
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        # Text columns read as text: output such as "007" or "1e3" is not a number.
        df = pd.read_csv(path, keep_default_na=False, dtype=dict.fromkeys(_TEXT, str),
                         na_values={"exit_code": [""], "redacted": [""]})
        if safe:
            df = csv_unescape(df)
    return transcript_frame(df.to_dict("records"))
