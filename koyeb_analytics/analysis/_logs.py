"""Log lines grouped into patterns, and each incident's top new pattern.

A pattern is a line with its variable parts masked: times, UUIDs, addresses, long hex
and any token holding a digit become ``<*>``. Masking is a handful of regular
expressions run over the whole message column at once (Arrow's compute kernels), and
grouping is a hash aggregation, so a million lines take about as long as loading them.
The field's reference, Drain (He et al., ICWS 2017), learns templates line by line with
a parse tree; ``benchmarks/bench_logs.py`` measures both on the simulator's lines, for
speed and for one template per line family.

For an incident, a pattern is *new* when none of its lines was seen in the hour before
(the baseline). The top new pattern is ranked as a person reads a burst of logs:
application streams before the platform's (``koyeb`` lines repeat what the events
already say), errors before warnings before the rest, frequent before rare, earlier
before later.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..timewindow import DurationLike, TimeLike, parse_duration, parse_time

MASK = "<*>"
_RULES: tuple[str, ...] = (
    # times: ISO 8601 / RFC 3339, and the common log format's
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
    r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}",
    # UUIDs, IPv4 addresses with an optional port, hex words of seven characters or more
    # (even without a digit: a short git sha)
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?::\d+)?\b",
    r"\b(?:0x)?[0-9a-fA-F]{7,}\b",
    # any other token with a digit in it (numbers, durations, versions, ids)
    r"[A-Za-z_]*\d[\w.]*",
)
_ERROR = re.compile(r"\b(?:ERROR|FATAL|CRITICAL|SEVERE)\b|^panic:|Exception\b|Error\b|"
                    r"\berror\b", re.IGNORECASE)
_WARNING = re.compile(r"\b(?:WARN|WARNING)\b", re.IGNORECASE)
_INFO = re.compile(r"\b(?:INFO|DEBUG|TRACE|NOTICE)\b")
LEVELS: tuple[str, ...] = ("error", "warning", "unknown", "info")
"""Pattern levels, most severe first (``unknown``: no level word, not on stdout)."""
PATTERN_COLUMNS: tuple[str, ...] = ("pattern", "stream", "level", "count", "share",
                                    "first_seen", "last_seen", "new", "example")


def mask(messages: Any) -> pa.ChunkedArray:
    """Return the pattern of every message: variable parts replaced by ``<*>``.

    Parameters
    ----------
    messages
        Log messages (a Series, an Arrow array or a list of strings).

    Returns
    -------
    pyarrow.ChunkedArray
        One pattern per message, in order.

    Examples
    --------
    >>> mask(["GET /items/42 200 13ms", "GET /items/7 200 9ms"]).to_pylist()
    ['GET /items/<*> <*> <*>', 'GET /items/<*> <*> <*>']
    """
    if isinstance(messages, pd.Series):
        arr = pa.chunked_array([pa.array(messages.astype(object).where(messages.notna(), ""),
                                         type=pa.large_string())]) \
            if not hasattr(messages.array, "_pa_array") else messages.array._pa_array
    elif isinstance(messages, (pa.Array, pa.ChunkedArray)):
        arr = messages
    else:
        arr = pa.array(list(messages), type=pa.large_string())
    if not isinstance(arr, pa.ChunkedArray):
        arr = pa.chunked_array([arr])
    arr = pc.fill_null(arr.cast(pa.large_string()), "")
    for rule in _RULES:
        arr = pc.replace_substring_regex(arr, pattern=rule, replacement=MASK)
    return arr


def level_of(pattern: str, stream: str | None = None) -> str:
    """The level a pattern reads as: ``error``, ``warning``, ``info`` or ``unknown``.

    Examples
    --------
    >>> level_of("ERROR could not connect to database at <*>"), level_of("GET / <*>", "stdout")
    ('error', 'info')
    """
    if _ERROR.search(pattern):
        return "error"
    if _WARNING.search(pattern):
        return "warning"
    if _INFO.search(pattern) or stream == "stdout":
        return "info"
    return "unknown"


def _ns(values: pd.Series) -> np.ndarray:
    out: np.ndarray = values.astype("datetime64[ns, UTC]").array.asi8
    return out


def _check_logs(logs: pd.DataFrame) -> None:
    if not isinstance(logs, pd.DataFrame):
        raise TypeError(f"logs must be a DataFrame from load_logs, got {type(logs).__name__}")
    missing = [c for c in ("ts", "msg", "stream") if c not in logs]
    if missing:
        raise ValueError(f"logs lacks the column(s) {missing}: pass a frame from load_logs")


def _codes(logs: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Pattern codes per line (stream and pattern together), and each code's label
    (``stream + "\x1f" + pattern``)."""
    patterns = mask(logs["msg"]).combine_chunks()
    encoded = patterns.dictionary_encode()
    pcode = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    streams = pd.Categorical(logs["stream"].astype(object).where(logs["stream"].notna(), ""))
    scode = streams.codes.astype(np.int64)
    pair = pcode * max(len(streams.categories), 1) + scode
    uniq, codes = np.unique(pair, return_inverse=True)
    texts = encoded.dictionary.to_pylist()
    cats = [str(c) for c in streams.categories]
    width = max(len(cats), 1)
    labels = [f"{cats[int(u) % width] if cats else ''}\x1f{texts[int(u) // width]}"
              for u in uniq.tolist()]
    return codes.astype(np.int64), labels


def log_patterns(logs: pd.DataFrame, *, by: str | list[str] | None = None,
                 since: TimeLike | None = None, until: TimeLike | None = None,
                 before: DurationLike | None = "1h") -> pd.DataFrame:
    """Group log lines into patterns, with counts, first and last seen, and what is new.

    Parameters
    ----------
    logs
        Lines from :func:`~koyeb_analytics.load_logs` (``ts``, ``msg``, ``stream``).
    by
        Label column(s) to count patterns separately for (``"service_id"``,
        ``"instance_id"``); None for all lines together.
    since, until
        The stretch whose lines are counted; by default every line of ``logs``.
    before
        The baseline: a pattern is ``new`` when it has no line in the ``before`` that
        precedes ``since`` (the lines of ``logs`` there). None: no baseline, ``new`` is
        all False.

    Returns
    -------
    DataFrame
        One row per pattern (and group): ``pattern, stream, level, count, share,
        first_seen, last_seen, new, example`` (the first line of it), most frequent
        first. ``attrs["baseline"]`` says which stretch the baseline covered.

    Examples
    --------
    >>> logs = pd.DataFrame({
    ...     "ts": pd.to_datetime(["2026-01-01 10:00", "2026-01-01 10:01",
    ...                           "2026-01-01 10:02"], utc=True),
    ...     "msg": ["job 12 done in 40ms", "job 13 done in 7ms", "ERROR db 10.0.0.2 down"],
    ...     "stream": ["stdout", "stdout", "stderr"]})
    >>> log_patterns(logs)[["pattern", "count", "level"]].values.tolist()
    [['job <*> done in <*>', 2, 'info'], ['ERROR db <*> down', 1, 'error']]
    """
    _check_logs(logs)
    keys = [by] if isinstance(by, str) else list(by or [])
    for key in keys:
        if key not in logs:
            raise ValueError(f"by={key!r} is not a column of logs")
    ts = logs["ts"]
    lo = parse_time(since, "since") if since is not None else None
    hi = parse_time(until, "until") if until is not None else None
    if lo is not None and hi is not None and lo >= hi:
        raise ValueError(f"since ({lo.isoformat()}) must be earlier than until "
                         f"({hi.isoformat()})")
    codes, labels = _codes(logs)
    inside = np.ones(len(logs), bool)
    if lo is not None:
        inside &= (ts >= lo).to_numpy()
    if hi is not None:
        inside &= (ts < hi).to_numpy()
    baseline = np.zeros(len(logs), bool)
    covered: dict[str, Any] = {}
    if before is not None and lo is not None:
        start = lo - parse_duration(before, "before")
        baseline = ((ts >= start) & (ts < lo)).to_numpy()
        first = ts.min() if len(ts) else None
        covered = {"since": start.isoformat(), "until": lo.isoformat(),
                   "lines": int(baseline.sum()),
                   "whole": bool(first is not None and first <= start)}
    group = (logs[keys].astype(str).agg("\x1f".join, axis=1).to_numpy(dtype=object)
             if keys else np.zeros(len(logs), dtype=object))
    frame = pd.DataFrame({"g": group, "code": codes, "ts": _ns(ts),
                          "row": np.arange(len(logs))})
    seen = set(zip(frame["g"][baseline], frame["code"][baseline], strict=True))
    sub = frame[inside]
    agg = sub.groupby(["g", "code"], sort=False).agg(
        count=("row", "size"), first_seen=("ts", "min"), last_seen=("ts", "max"),
        first_row=("row", "min")).reset_index()
    totals = agg.groupby("g")["count"].transform("sum")
    stream_pattern = [labels[c].split("\x1f", 1) for c in agg["code"]]
    out = pd.DataFrame({
        **({k: [g.split("\x1f")[j] for g in agg["g"]] for j, k in enumerate(keys)}),
        "pattern": pd.Series([p for _, p in stream_pattern], dtype="str"),
        "stream": pd.Series([s for s, _ in stream_pattern], dtype="str"),
        "level": pd.Series([level_of(p, s) for s, p in stream_pattern], dtype="str"),
        "count": agg["count"].astype("int64"),
        "share": (agg["count"] / totals).astype("float64") if len(agg) else
        pd.Series([], dtype="float64"),
        "first_seen": pd.to_datetime(agg["first_seen"].to_numpy(), utc=True).astype(ts.dtype),
        "last_seen": pd.to_datetime(agg["last_seen"].to_numpy(), utc=True).astype(ts.dtype),
        "new": pd.Series([bool(covered) and (g, c) not in seen
                          for g, c in zip(agg["g"], agg["code"], strict=True)], dtype=bool),
        "example": pd.Series(logs["msg"].to_numpy()[agg["first_row"].to_numpy()]
                             if len(agg) else [], dtype="str"),
    })
    out = out.sort_values([*keys, "count", "first_seen"],
                          ascending=[True] * len(keys) + [False, True],
                          kind="stable").reset_index(drop=True)
    out.attrs = {"lines": int(inside.sum()), "baseline": covered}
    return out


def rank_new(patterns: pd.DataFrame) -> pd.DataFrame:
    """Order patterns as the top new pattern is chosen: new first, then application
    streams, then level, count and first seen (see the module's docstring)."""
    platform = patterns["stream"].eq("koyeb").to_numpy()
    level = patterns["level"].map({lv: i for i, lv in enumerate(LEVELS)}).to_numpy()
    order = np.lexsort((patterns["first_seen"].to_numpy(), -patterns["count"].to_numpy(),
                        level, platform, ~patterns["new"].to_numpy()))
    return patterns.iloc[order].reset_index(drop=True)


def incident_patterns(logs: pd.DataFrame, incidents: pd.DataFrame, *,
                      by: str = "service_id", lead: DurationLike = "10min",
                      before: DurationLike = "1h") -> pd.DataFrame:
    """Name each incident's top new log pattern: what the system said when it broke.

    Parameters
    ----------
    logs
        Lines from :func:`~koyeb_analytics.load_logs` covering the incidents and the
        hour before each.
    incidents
        From :func:`~koyeb_analytics.incidents` (``start``, ``end`` and the ``by`` column).
    by
        The column naming an incident's group, in both frames.
    lead
        How long before an incident's start its lines count (an error comes before the
        failed health check it causes).
    before
        The baseline before ``start - lead``: a pattern seen there is not new.

    Returns
    -------
    DataFrame
        ``incidents`` with ``top_pattern, top_stream, top_level, top_count,
        top_example, new_patterns, lines`` (NaN and 0 where the incident had no new
        pattern or no line).

    Examples
    --------
    >>> logs = pd.DataFrame({
    ...     "ts": pd.to_datetime(["2026-01-01 09:30:00", "2026-01-01 10:00:30",
    ...                           "2026-01-01 10:01:00"], utc=True),
    ...     "msg": ["GET / 200", "GET / 200", "ERROR KeyError: 'id' in 7"],
    ...     "stream": ["stdout", "stdout", "stderr"], "service_id": ["s"] * 3})
    >>> inc = pd.DataFrame({"service_id": ["s"],
    ...     "start": pd.to_datetime(["2026-01-01 10:01"], utc=True),
    ...     "end": pd.to_datetime(["2026-01-01 10:05"], utc=True)})
    >>> incident_patterns(logs, inc)["top_pattern"].tolist()
    ["ERROR KeyError: 'id' in <*>"]
    """
    _check_logs(logs)
    for col in (by, "start", "end"):
        if col not in incidents:
            raise ValueError(f"incidents lacks the column {col!r}")
    if by not in logs:
        raise ValueError(f"logs lacks the column {by!r}")
    lead_d, before_d = parse_duration(lead, "lead"), parse_duration(before, "before")
    out = incidents.copy()
    cols: dict[str, list[Any]] = {k: [] for k in (
        "top_pattern", "top_stream", "top_level", "top_count", "top_example",
        "new_patterns", "lines")}
    logs = logs.sort_values("ts", kind="stable") if not logs["ts"].is_monotonic_increasing \
        else logs
    codes, labels = _codes(logs)
    ts = _ns(logs["ts"])
    group = logs[by].astype(str).to_numpy(dtype=object)
    msgs = logs["msg"].to_numpy()
    for _, inc in incidents.iterrows():
        a = (inc["start"] - lead_d).value
        z = inc["end"].value if pd.notna(inc["end"]) else ts[-1] if len(ts) else a
        b = a - before_d.value
        i0, i1 = np.searchsorted(ts, [b, a], side="left")
        i3 = np.searchsorted(ts, z, side="right")
        mine = group[i0:i3] == str(inc[by])
        base = set(codes[i0:i1][mine[: i1 - i0]].tolist())
        win_rows = np.arange(i1, i3)[mine[i1 - i0:]]
        win = codes[win_rows]
        uniq, first_idx, counts = np.unique(win, return_index=True, return_counts=True)
        fresh = np.array([u not in base for u in uniq.tolist()], bool)
        cols["lines"].append(int(len(win)))
        cols["new_patterns"].append(int(fresh.sum()))
        if not fresh.any():
            for k in ("top_pattern", "top_stream", "top_level", "top_example"):
                cols[k].append(None)
            cols["top_count"].append(0)
            continue
        sp = [labels[u].split("\x1f", 1) for u in uniq[fresh].tolist()]
        table = pd.DataFrame({
            "stream": [s for s, _ in sp], "pattern": [p for _, p in sp],
            "count": counts[fresh], "first_seen": ts[win_rows[first_idx[fresh]]],
            "row": win_rows[first_idx[fresh]], "new": True})
        table["level"] = [level_of(p, s) for s, p in sp]
        top = rank_new(table).iloc[0]
        cols["top_pattern"].append(top["pattern"])
        cols["top_stream"].append(top["stream"])
        cols["top_level"].append(top["level"])
        cols["top_count"].append(int(top["count"]))
        cols["top_example"].append(msgs[int(top["row"])])
    for k, v in cols.items():
        out[k] = pd.Series(v, index=out.index,
                           dtype="int64" if k in ("top_count", "new_patterns", "lines")
                           else "str")
    out.attrs = {**incidents.attrs, "lead": str(lead_d), "before": str(before_d),
                 "ranking": "new; application streams before koyeb; error, warning, "
                            "unknown, info; count; first seen"}
    return out
