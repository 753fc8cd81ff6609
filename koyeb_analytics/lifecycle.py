"""Status intervals per instance, rebuilt from events or from instance timestamps.

A *span* is a stretch of time one instance spent in one status. Spans come from the
instance events when they announce status changes (``source="events"``), and from the
instance's own timestamps when an instance has no such event (``source="timestamps"``),
so the same code works on the real API, whose event vocabulary is not public.

A terminal status (STOPPED or ERROR) is a zero-length span at the moment the instance
ended; a span still running at ``until`` ends there and is flagged ``open_ended``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .schema import STATUSES, TERMINAL_STATUSES, TIME_DTYPE, status_dtype
from .timewindow import TimeLike, WindowLike, resolve_window, utcnow
from .vocabulary import DEFAULT_VOCABULARY

DEFAULT_EVENT_STATUS: dict[str, str] = DEFAULT_VOCABULARY.type_to_status()
"""Event type to the status it announces. These types are the simulator's **invented**
vocabulary (the real one is not public); pass ``mapping=`` for other data."""

ATTRIBUTE_COLUMNS = ("service_id", "app_id", "region", "datacenter", "replica_index", "type")
INTERVAL_COLUMNS = ("instance_id", *ATTRIBUTE_COLUMNS, "status", "start", "end", "duration",
                    "open_ended", "source")
FINDING_COLUMNS = ("instance_id", "kind", "detail")


def _span_frame(instance_id: Any, status: Any, start: Any, end: Any) -> pd.DataFrame:
    n = len(instance_id)
    if status is None or isinstance(status, str):
        status = [status] * n  # one status for every row
    return pd.DataFrame({"instance_id": pd.Series(instance_id, dtype="str"),
                         "status": pd.Series(status, dtype=object),
                         "start": pd.Series(start).astype(TIME_DTYPE),
                         "end": pd.Series(end).astype(TIME_DTYPE)})


def _from_events(ev: pd.DataFrame) -> pd.DataFrame:
    """Spans from status events sorted by instance and time: each lasts until the next."""
    iid = ev["instance_id"].to_numpy()
    when = ev["when"]
    same_next = np.r_[iid[1:] == iid[:-1], False]
    end = when.shift(-1).where(same_next)
    # The last event of an instance: a terminal status is a zero-length span.
    end = end.where(same_next | ~ev["status"].isin(TERMINAL_STATUSES).to_numpy(), when)
    return _span_frame(ev["instance_id"].to_numpy(), ev["status"].to_numpy(), when.array,
                       end.array)


def _from_timestamps(inst: pd.DataFrame) -> pd.DataFrame:
    """Spans from created_at/started_at/succeeded_at/terminated_at and the final status.

    Without the detail columns (``load_instances(details=False)``) only the final status
    and when it began (``updated_at``) are known; the time before is an unknown span.
    """
    status = inst["status"].astype(object)
    terminal = status.isin(TERMINAL_STATUSES)
    created, updated = inst["created_at"], inst["updated_at"]
    nat = pd.Series(pd.NaT, index=inst.index, dtype=TIME_DTYPE)
    if "started_at" in inst and "succeeded_at" in inst:
        started, ok = inst["started_at"], inst["succeeded_at"]
        ended = inst["terminated_at"].where(terminal) if "terminated_at" in inst else nat
        ended = ended.fillna(updated.where(terminal))
        final_at = ended.where(terminal, updated.where(status != "HEALTHY"))
        parts = [
            ("ALLOCATING", created, started.fillna(ok).fillna(final_at)),
            ("STARTING", started, ok.fillna(final_at)),
            ("HEALTHY", ok, final_at),
        ]
    else:
        final_at = updated
        parts = [(None, created, updated)]
    pieces = [_span_frame(inst["id"].to_numpy(), s, a.array, b.array)
              for s, a, b in parts]
    final_end = final_at.where(terminal)  # zero-length when terminal, open while alive
    last = _span_frame(inst["id"].to_numpy(), status.to_numpy(), final_at.array,
                       final_end.array)
    last = last[final_at.notna().to_numpy()]
    spans = pd.concat(pieces, ignore_index=True)
    # Keep real stretches only: a start, and an end after it (or open).
    ok_rows = spans["start"].notna() & (spans["end"].isna() | (spans["end"] > spans["start"]))
    spans = spans[ok_rows]
    # A status already covered by the final span (e.g. HEALTHY now) is not repeated.
    out = pd.concat([spans, last], ignore_index=True)
    out = out.sort_values(["instance_id", "start"], kind="stable").reset_index(drop=True)
    # Merge a span into the one before when both have the same status (the final
    # status often continues the last stretch the timestamps describe).
    same = (out["instance_id"].eq(out["instance_id"].shift())
            & out["status"].eq(out["status"].shift()) & out["status"].notna())
    starts = np.flatnonzero(~same.to_numpy())
    ends = np.r_[starts[1:] - 1, len(out) - 1].astype(int)
    merged = out.iloc[starts].reset_index(drop=True)
    merged["end"] = out["end"].array[ends]
    return merged


def lifecycles(
    instances: pd.DataFrame,
    events: pd.DataFrame | None = None,
    *,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    window: WindowLike | None = None,
    mapping: Mapping[str, str] | None = None,
    previous_key: str | None = DEFAULT_VOCABULARY.previous_key,
) -> pd.DataFrame:
    """Rebuild the status intervals of every instance, one row per span.

    Parameters
    ----------
    instances
        From :func:`~koyeb_analytics.load_instances` (``details=True`` improves the
        timestamps path).
    events
        From :func:`~koyeb_analytics.load_events`, or None to use timestamps only.
    since, until, window
        Clip spans to ``[since, until)``. ``until`` defaults to when the data was
        fetched (``attrs["fetched_at"]``), else now.
    mapping
        Event type to the status it announces; defaults to
        :data:`DEFAULT_EVENT_STATUS` (the simulator's invented vocabulary). Events of
        other types are ignored.
    previous_key
        Metadata key giving the status before an event; used for the stretch before
        the first event inside a window.

    Returns
    -------
    DataFrame
        Columns ``instance_id, service_id, app_id, region, datacenter, replica_index,
        type, status, start, end, duration, open_ended, source``, sorted by instance
        and start. Data-quality findings are in ``attrs["findings"]`` (see
        :func:`findings`).

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     c = sim.client()
    ...     iv = ka.lifecycles(ka.load_instances(c, progress=False),
    ...                        ka.load_events(c, progress=False))
    >>> bool((iv["end"] >= iv["start"]).all())
    True
    """
    if not isinstance(instances, pd.DataFrame) or "id" not in instances:
        raise TypeError("instances must be a DataFrame from load_instances (with an 'id' column)")
    if events is not None and (not isinstance(events, pd.DataFrame)
                               or not {"instance_id", "when", "type"} <= set(events.columns)):
        raise TypeError("events must be a DataFrame from load_events, or None")
    fetched = [df.attrs.get("fetched_at") for df in (instances, events) if df is not None]
    fetched = [pd.Timestamp(f) for f in fetched if f is not None]
    now = max(fetched) if fetched else utcnow()
    tw = resolve_window(since, until, window, now=now)
    until_ts = tw.until if tw.until is not None else now
    table = dict(DEFAULT_EVENT_STATUS if mapping is None else mapping)
    bad = {s for s in table.values() if s not in STATUSES}
    if bad:
        raise ValueError(f"mapping: unknown statuses {sorted(bad)}; expected {STATUSES}")

    inst = instances.drop_duplicates("id")
    known = set(inst["id"])
    findings: list[dict[str, Any]] = []
    parts = []
    with_events: set[str] = set()
    if events is not None and len(events):
        ev = events[events["type"].isin(table.keys()) & events["instance_id"].isin(known)]
        ev = ev.assign(status=ev["type"].map(table))
        ev = ev.sort_values(["instance_id", "when", "id"] if "id" in ev else
                            ["instance_id", "when"], kind="stable").reset_index(drop=True)
        findings += _event_findings(ev)
        spans = _from_events(ev)
        first = ev.drop_duplicates("instance_id")
        lead = _lead_in(first, inst, previous_key)
        parts += [spans.assign(source="events"), lead.assign(source="events")]
        with_events = set(first["instance_id"])
    rest = inst[~inst["id"].isin(with_events)]
    if len(rest):
        if events is not None:
            # An instance that changed inside the window should have events there.
            touched = rest[~(rest["created_at"] >= until_ts)]
            if tw.since is not None:
                touched = touched[~(touched["updated_at"] < tw.since)]
            findings += [{"instance_id": i, "kind": "no_events",
                          "detail": "no status events; spans rebuilt from timestamps"}
                         for i in touched["id"]]
        parts.append(_from_timestamps(rest).assign(source="timestamps"))
    spans = pd.concat(parts, ignore_index=True) if parts else _span_frame([], [], [], []).assign(
        source=pd.Series(dtype=object))
    findings += _terminal_findings(spans, inst)
    out = _clip(spans, tw.since, until_ts)
    out = _attach(out, inst)
    out.attrs = {"since": tw.since, "until": until_ts, "findings": findings,
                 "mapping": table}
    return out


def _lead_in(first: pd.DataFrame, inst: pd.DataFrame, previous_key: str | None) -> pd.DataFrame:
    """The stretch between an instance's creation and its first status event.

    When events were loaded for a window only, the first one is not the instance's
    creation: its metadata's previous status (if any) tells what came before.
    """
    created = first["instance_id"].map(inst.set_index("id")["created_at"])
    gap = first[(created < first["when"]).to_numpy()]
    if gap.empty:
        return _span_frame([], [], [], [])
    prev: pd.Series = pd.Series(None, index=gap.index, dtype=object)
    if previous_key is not None and "metadata" in gap:
        prev = gap["metadata"].map(lambda m: m.get(previous_key) if isinstance(m, dict) else None)
    return _span_frame(gap["instance_id"].to_numpy(), prev.to_numpy(),
                       created[gap.index].array, gap["when"].array)


def _event_findings(ev: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    same = ev["instance_id"].eq(ev["instance_id"].shift())
    after_terminal = same & ev["status"].shift().isin(TERMINAL_STATUSES)
    for iid in ev.loc[after_terminal, "instance_id"].unique():
        out.append({"instance_id": iid, "kind": "event_after_terminal",
                    "detail": "a status event follows STOPPED or ERROR"})
    tie = same & ev["when"].eq(ev["when"].shift())
    for iid in ev.loc[tie, "instance_id"].unique():
        out.append({"instance_id": iid, "kind": "simultaneous_events",
                    "detail": "two status events share a timestamp; their order is a guess"})
    return out


def _terminal_findings(spans: pd.DataFrame, inst: pd.DataFrame) -> list[dict[str, Any]]:
    terminal_ids = set(inst.loc[inst["status"].isin(TERMINAL_STATUSES), "id"])
    ended = set(spans.loc[spans["status"].isin(TERMINAL_STATUSES), "instance_id"])
    return [{"instance_id": i, "kind": "missing_terminal_event",
             "detail": "the instance is STOPPED/ERROR but no span records its end"}
            for i in sorted(terminal_ids - ended)]


def _clip(spans: pd.DataFrame, since: pd.Timestamp | None, until: pd.Timestamp) -> pd.DataFrame:
    start, end = spans["start"], spans["end"]
    open_ended = end.isna() | (end > until)
    zero = end.eq(start)
    keep = start < until
    if since is not None:
        keep &= (end > since) | end.isna() | (zero & (start >= since))
    spans = spans[keep.to_numpy()].copy()
    open_ended = open_ended[keep.to_numpy()]
    if since is not None:
        spans["start"] = spans["start"].clip(lower=since)
    spans["end"] = spans["end"].where(~open_ended, until)
    spans["open_ended"] = open_ended.to_numpy()
    return spans


def _attach(spans: pd.DataFrame, inst: pd.DataFrame) -> pd.DataFrame:
    attrs = inst.set_index("id")[[c for c in ATTRIBUTE_COLUMNS if c in inst]]
    spans = spans.sort_values(["instance_id", "start", "end"], kind="stable").reset_index(
        drop=True)
    out = {"instance_id": spans["instance_id"]}
    for col in ATTRIBUTE_COLUMNS:
        if col in attrs:
            out[col] = spans["instance_id"].map(attrs[col]).reset_index(drop=True)
        else:
            out[col] = pd.Series(None, index=spans.index, dtype=object)
    out["status"] = pd.Series(pd.Categorical(spans["status"], dtype=status_dtype()))
    out["start"] = spans["start"]
    out["end"] = spans["end"]
    out["duration"] = spans["end"] - spans["start"]
    out["open_ended"] = spans["open_ended"].astype(bool)
    out["source"] = spans["source"].astype("str")
    return pd.DataFrame(out)


def findings(intervals: pd.DataFrame) -> pd.DataFrame:
    """Return the data-quality findings of :func:`lifecycles` as a DataFrame.

    Kinds: ``no_events`` (spans rebuilt from timestamps), ``missing_terminal_event``,
    ``event_after_terminal``, ``simultaneous_events``, ``unknown_status`` (a stretch
    whose status nothing tells).
    """
    rows = list(intervals.attrs.get("findings", []))
    if len(intervals):
        unknown = intervals.loc[intervals["status"].isna(), "instance_id"].unique()
        rows += [{"instance_id": i, "kind": "unknown_status",
                  "detail": "a stretch before the first known status"} for i in unknown]
    return pd.DataFrame(rows, columns=list(FINDING_COLUMNS)).astype("str")
