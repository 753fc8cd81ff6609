"""What a deployment's build said: the error lines of the suspect deployments' build logs.

One function, over :func:`~koyeb_analytics.load_logs` with ``type="build"``: a
deploy-caused incident's suspects name deployments, and their build logs (the build,
then the deploy step) often say in one line why the new version never ran. It lives
here rather than in the analysis because it reads the API; what counts as an error
line is the analysis's :func:`~koyeb_analytics.analysis._logs.level_of`, plus the
platform's failure words (``failed``, ``crashed``, a non-zero exit code) and the head
of a Python traceback, which carry no level.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from ..analysis._logs import level_of
from ..api._checks import check_client
from ..api._client import KoyebClient
from ..schema import STRING_DTYPE
from ..timewindow import DurationLike, parse_duration
from ._streams import DEFAULT_RETENTION, load_logs

BUILD_ERROR_COLUMNS: tuple[str, ...] = ("incident", "deployment_id", "service_id", "ts",
                                        "stream", "msg")
"""Columns of :func:`build_errors`, in order."""
_FAILURE = re.compile(r"\b(?:failed|crashed)\b|exit code [1-9]|^Traceback \(most recent",
                      re.IGNORECASE)


def is_error_line(msg: str) -> bool:
    """Whether a build log line says something went wrong: an error level, the
    platform's ``failed``/``crashed``/non-zero exit code, or a traceback's head.

    Examples
    --------
    >>> is_error_line("ModuleNotFoundError: No module named 'distutils'")
    True
    >>> is_error_line("npm WARN deprecated glob@7.2.3"), is_error_line("Image pushed")
    (False, False)
    """
    return level_of(msg) == "error" or _FAILURE.search(msg) is not None


def _empty() -> pd.DataFrame:
    return pd.DataFrame({
        "incident": pd.Series(dtype="Int64"),
        "deployment_id": pd.Series(dtype=STRING_DTYPE),
        "service_id": pd.Series(dtype=STRING_DTYPE),
        "ts": pd.Series(dtype="datetime64[ns, UTC]"),
        "stream": pd.Series(dtype=STRING_DTYPE),
        "msg": pd.Series(dtype=STRING_DTYPE)})


def build_errors(client: KoyebClient, suspects: pd.DataFrame, *,
                 around: DurationLike = "2h",
                 retention: DurationLike = DEFAULT_RETENTION) -> pd.DataFrame:
    """Load the build logs of the deployments in ``suspects`` and keep their error lines.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    suspects
        From :func:`~koyeb_analytics.suspects` (one incident's rows, or all), or any
        frame of changes with ``deployment_id`` and ``changed_at``
        (:func:`~koyeb_analytics.changes`). Rows without a deployment (scaling,
        pauses) are skipped.
    around
        How far before a deployment's change, and after the incident's start (or the
        change, without one), its build log is read.
    retention
        As for :func:`~koyeb_analytics.load_logs` (build logs are said to be kept 30
        days).

    Returns
    -------
    DataFrame
        :data:`BUILD_ERROR_COLUMNS`: one row per error line (see
        :func:`is_error_line`), with the incident's row
        number when ``suspects`` has one; ordered by incident, then time.
        ``attrs["deployments"]`` lists the deployments read, ``attrs["lines"]`` counts
        every build line read, ``attrs["notes"]`` what could not be read. A deployment
        that skipped its build keeps its logs under the service's last provisioned
        deployment (not followed here).

    Examples
    --------
    The suspects usually come from ``ka.suspects(incidents, ka.load_changes(...))``;
    here one row names a deployment the simulator broke with a bad image:

    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=7, days=7, services=12, now="2026-11-20T12:00:00Z") as sim:
    ...     bad = sim.streams.build_truth().query("carries_cause").iloc[0]
    ...     errors = ka.build_errors(sim.client(), pd.DataFrame({
    ...         "deployment_id": [bad["deployment_id"]], "changed_at": [bad["created"]]}))
    >>> errors["msg"].tolist()[1]
    "ModuleNotFoundError: No module named 'distutils'"
    """
    check_client(client)
    if not isinstance(suspects, pd.DataFrame):
        raise TypeError(f"suspects must be a DataFrame from ka.suspects or ka.changes, got "
                        f"{type(suspects).__name__}")
    missing = [c for c in ("deployment_id", "changed_at") if c not in suspects]
    if missing:
        raise ValueError(f"suspects lacks the column(s) {missing}: pass a frame from "
                         "ka.suspects or ka.changes")
    margin = parse_duration(around, "around")
    parse_duration(retention, "retention")
    rows = suspects[suspects["deployment_id"].notna() & suspects["changed_at"].notna()]
    at = pd.to_datetime(rows["changed_at"], utc=True)
    until = pd.to_datetime(rows["incident_start"], utc=True).fillna(at) \
        if "incident_start" in rows else at
    incident = rows["incident"] if "incident" in rows else pd.Series(pd.NA, index=rows.index)
    spans: dict[str, list[Any]] = {}
    for dep, t0, t1, inc in zip(rows["deployment_id"].astype(str), at, until, incident,
                                strict=True):
        span = spans.setdefault(dep, [t0, t1, []])
        span[0], span[1] = min(span[0], t0), max(span[1], t1)
        span[2].append(inc)
    parts: list[pd.DataFrame] = []
    notes: list[str] = []
    lines = 0
    for dep, (t0, t1, incs) in spans.items():
        logs = load_logs(client, deployment_id=dep, type="build", since=t0 - margin,
                         until=t1 + margin, retention=retention, slices=1, progress=False)
        lines += len(logs)
        notes += [f"{dep[:8]}: {n}" for n in logs.attrs.get("notes", [])]
        if not len(logs):
            notes.append(f"{dep[:8]}: no build line in the window read")
            continue
        msg = logs["msg"].astype(object).fillna("")
        hit = np.fromiter((is_error_line(m) for m in msg), bool, len(msg))
        found = logs[hit]
        for inc in dict.fromkeys(incs):
            parts.append(pd.DataFrame({
                "incident": pd.array([inc] * len(found), dtype="Int64"),
                "deployment_id": pd.Series([dep] * len(found), dtype=STRING_DTYPE),
                "service_id": found["service_id"].astype(STRING_DTYPE).to_numpy()
                if "service_id" in found else pd.NA,
                "ts": found["ts"].to_numpy(),
                "stream": found["stream"].astype(STRING_DTYPE).to_numpy(),
                "msg": found["msg"].astype(STRING_DTYPE).to_numpy()}))
    out = pd.concat([_empty(), *parts], ignore_index=True) if parts else _empty()
    out["ts"] = pd.to_datetime(out["ts"], utc=True).astype("datetime64[ns, UTC]")
    for col in ("deployment_id", "service_id", "stream", "msg"):
        out[col] = out[col].astype(STRING_DTYPE)
    out = out.sort_values(["incident", "ts", "deployment_id"], kind="stable",
                          na_position="last").reset_index(drop=True)
    out.attrs = {"deployments": list(spans), "lines": lines, "notes": notes}
    return out
