"""Status intervals per instance, rebuilt from events or from instance timestamps.

A *span* is a stretch of time one instance spent in one status. Spans come from the
instance events when they announce status changes (``source="events"``; ``"both"``
where the instance record closes them), and from the instance's own timestamps when
an instance has no such event (``source="timestamps"``), so the same code works on
the real API, whose event vocabulary is not public. Which event announces which
status is decided in ``_classify``.

A terminal status (STOPPED or ERROR) is a zero-length span at the moment the instance
ended; a span still running at ``until`` ends there and is flagged ``open_ended``.

A window almost always opens in the middle of instances' lives. The status of each
instance from ``since`` to its first event in the window comes, in this order, from the
first event's own metadata (``events``), from ``start_status`` (what
:func:`~koyeb_analytics.load_window` found by reading events before ``since``,
``lookbehind``, or in the instance record, ``record``), from what the first event's
message implies about the status before it (``transition``,
:data:`~koyeb_analytics.analysis.TRANSITIONS`), and only then is it unknown. An event
whose text no rule reads still counts when its type announces one status everywhere else
in the data and the events around it allow that status (:func:`_read_by_type`). Two
consecutive events that cannot follow each other betray a lost event: the steady status
(HEALTHY, SLEEPING) the second one implies fills the gap after the first one's median
duration (``gap``), unless the platform's own lines between the two events (the ``koyeb``
log stream, ``platform``: :func:`~koyeb_analytics.load_window` reads them for each such
gap) say when the lost change happened (``platform``).

Long because the evidence is joined here in one place: events, lost events, the
instance record, the status at the window's start and the findings that say which was
used; ``_startstatus`` finds that status from a look-behind and the
records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..schema import STATUSES, TERMINAL_STATUSES, TIME_DTYPE, status_dtype
from ..timewindow import DurationLike, TimeLike, resolve_window, utcnow
from ._classify import (
    WAKE,
    Mapping_,
    check_mapping,
    classify_events,
    possible_previous,
    previous_from_message,
    previous_status,
    status_from_message,
)

ATTRIBUTE_COLUMNS = ("service_id", "app_id", "region", "datacenter", "replica_index", "type",
                     "app_name", "service_name")
INTERVAL_COLUMNS = ("instance_id", *ATTRIBUTE_COLUMNS, "status", "start", "end", "duration",
                    "open_ended", "source")
FINDING_COLUMNS = ("instance_id", "kind", "detail")
SOURCES = ("events", "timestamps", "both", "lookbehind", "record", "transition", "gap",
           "platform")
"""Where an interval's status comes from (see the module's docstring)."""
STEADY = ("HEALTHY", "SLEEPING")


_NAT = np.iinfo(np.int64).min
_CODE = {s: i for i, s in enumerate(STATUSES)}
_TERMINAL_CODES = np.array([_CODE[s] for s in TERMINAL_STATUSES])
_STEADY_CODES = np.array([_CODE[s] for s in STEADY])
HOUR_US = 3_600_000_000
# _MAY_PRECEDE[b, a]: status a may come just before status b (classify.TRANSITIONS);
# _STEADY_BEFORE[b]: a steady status may come just before b.
_MAY_PRECEDE = np.array([[x in possible_previous(b) for x in STATUSES] for b in STATUSES])
_STEADY_BEFORE = np.array([any(x in STEADY for x in possible_previous(b)) for b in STATUSES])
_WAKE_PAIR = (_CODE["SLEEPING"], _CODE["STARTING"])
# _MAY_HIDE[b, a]: a may come just before b, and so may a status between them (HEALTHY
# then ERROR may hide a lost UNHEALTHY): only the platform's lines can tell.
_MAY_HIDE = np.array([[_MAY_PRECEDE[b, a] and bool((_MAY_PRECEDE[:, a] & _MAY_PRECEDE[b, :]
                                                     ).any()) for a in range(len(STATUSES))]
                      for b in range(len(STATUSES))])


def _us(series: pd.Series) -> np.ndarray:
    """UTC times as int64 microseconds (NaT as the int64 minimum)."""
    values = pd.Series(series).astype(TIME_DTYPE)
    out: np.ndarray = values.array.asi8
    return out


def _times(us: np.ndarray) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(us.astype("datetime64[us]"), tz="UTC"))


@dataclass
class _Spans:
    """Spans as parallel arrays: instance position, status code (-1 unknown), times."""

    code: np.ndarray
    status: np.ndarray
    start: np.ndarray
    end: np.ndarray
    source: np.ndarray
    open_ended: np.ndarray | None = None

    @classmethod
    def concat(cls, parts: list[_Spans]) -> _Spans:
        if not parts:
            e = np.empty(0, np.int64)
            return cls(e, e.astype(np.int8), e, e, np.empty(0, object))
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("code", "status", "start", "end", "source")))

    def take(self, idx: np.ndarray) -> _Spans:
        return _Spans(self.code[idx], self.status[idx], self.start[idx], self.end[idx],
                      self.source[idx],
                      None if self.open_ended is None else self.open_ended[idx])


def _status_codes(values: Any) -> np.ndarray:
    return np.array([_CODE.get(v, -1) if isinstance(v, str) else -1 for v in values], np.int8)


def _from_events(code: np.ndarray, status: np.ndarray, when: np.ndarray) -> _Spans:
    """Spans from status events sorted by instance and time: each lasts until the next."""
    if not len(code):
        return _Spans.concat([])
    same_next = np.r_[code[1:] == code[:-1], False]
    end = np.where(same_next, np.r_[when[1:], _NAT], _NAT)
    # The last event of an instance: a terminal status is a zero-length span.
    end = np.where(~same_next & np.isin(status, _TERMINAL_CODES), when, end)
    return _Spans(code, status, when, end, np.full(len(code), "events", object))


def _from_timestamps(inst: pd.DataFrame, codes: np.ndarray) -> _Spans:
    """Spans from created_at/started_at/succeeded_at/terminated_at and the final status.

    Without the detail columns (``load_instances(details=False)``) only the final status
    and when it began (``updated_at``) are known; the time before is an unknown span.
    """
    status = inst["status"].astype(object)
    terminal = status.isin(TERMINAL_STATUSES).to_numpy()
    created, updated = _us(inst["created_at"]), _us(inst["updated_at"])
    final_code = _status_codes(status)
    if "started_at" in inst and "succeeded_at" in inst:
        started, ok = _us(inst["started_at"]), _us(inst["succeeded_at"])
        ended = _us(inst["terminated_at"]) if "terminated_at" in inst else \
            np.full(len(inst), _NAT)
        ended = np.where(terminal & (ended == _NAT), updated, ended)
        healthy_now = (status == "HEALTHY").to_numpy()
        final_at = np.where(terminal, ended, np.where(healthy_now, _NAT, updated))

        def first_set(*arrays: np.ndarray) -> np.ndarray:
            out = arrays[-1]
            for a in reversed(arrays[:-1]):
                out = np.where(a != _NAT, a, out)
            return out

        parts = [(_CODE["ALLOCATING"], created, first_set(started, ok, final_at)),
                 (_CODE["STARTING"], started, first_set(ok, final_at)),
                 (_CODE["HEALTHY"], ok, final_at)]
    else:
        final_at = updated
        parts = [(-1, created, updated)]
    pieces = []
    for st, a, b in parts:
        real = (a != _NAT) & ((b == _NAT) | (b > a))
        pieces.append(_Spans(codes[real], np.full(int(real.sum()), st, np.int8), a[real],
                             b[real], np.full(int(real.sum()), "timestamps", object)))
    has_final = final_at != _NAT
    final_end = np.where(terminal, final_at, _NAT)  # zero-length when terminal
    pieces.append(_Spans(codes[has_final], final_code[has_final], final_at[has_final],
                         final_end[has_final], np.full(int(has_final.sum()), "timestamps",
                                                       object)))
    spans = _Spans.concat(pieces)
    spans = spans.take(np.lexsort((spans.start, spans.code)))
    # The final status often continues the last stretch the timestamps describe: merge
    # consecutive spans of one instance with the same known status.
    same = np.r_[False, (spans.code[1:] == spans.code[:-1])
                 & (spans.status[1:] == spans.status[:-1]) & (spans.status[1:] >= 0)]
    starts = np.flatnonzero(~same)
    ends = np.r_[starts[1:] - 1, len(same) - 1].astype(int) if len(starts) else starts
    merged = spans.take(starts)
    merged.end = spans.end[ends]
    return merged


def lifecycles(
    instances: pd.DataFrame,
    events: pd.DataFrame | None = None,
    *,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    window: DurationLike | None = None,
    mapping: Mapping_ = None,
    previous_key: str | None = None,
    start_status: pd.DataFrame | None = None,
    platform: pd.DataFrame | None = None,
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
        Event type to the status it announces (or None: no change), or a callable
        taking the event row; tried before the other rules of
        :func:`~koyeb_analytics.classify_events` (metadata, messages).
    previous_key
        A metadata key giving the status before an event, besides those in
        :data:`~koyeb_analytics.analysis._classify.PREVIOUS_KEYS`; used for the stretch before
        the first event inside a window.
    start_status
        Each instance's status at ``since`` as evidence showed it: ``instance_id,
        status, source, evidence_at`` (``Window.start_status`` from
        :func:`~koyeb_analytics.load_window`). Without it, the stretch before an
        instance's first event in the window is known only from that event (its
        metadata, or what its message implies).
    platform
        The platform's log lines (``koyeb`` stream: ``ts``, ``instance_id``, ``msg``;
        ``Window.platform`` from :func:`~koyeb_analytics.load_window`). Where two events
        betray a lost one between them, the lines between the two that announce a
        status (read by the message rules) place the lost change at its own time
        (source ``platform``) instead of a median's guess, when the statuses they say
        can follow one another from the first event to the second.

    Returns
    -------
    DataFrame
        Columns ``instance_id, service_id, app_id, region, datacenter, replica_index,
        type, status, start, end, duration, open_ended, source``, sorted by instance
        (in the order of ``instances``) and start; ``source`` is one of
        :data:`SOURCES`. Data-quality findings are in ``attrs["findings"]`` (see
        :func:`findings`), among them ``start_status``: how the status at ``since``
        was found, instance by instance counted per source. ``attrs["lost_events"]``
        lists each pair of consecutive events that betrays a lost one (``betrayed``
        True) or may hide one (False: HEALTHY then ERROR may hide an UNHEALTHY):
        ``instance_id``, ``after``, ``before`` (the two events' times), ``betrayed`` and
        ``placed`` (platform lines placed a lost change there); what
        :func:`~koyeb_analytics.load_window` reads platform lines for.

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
    check_mapping(mapping)
    if start_status is not None and (not isinstance(start_status, pd.DataFrame) or not {
            "instance_id", "status", "source"} <= set(start_status.columns)):
        raise TypeError("start_status must be a DataFrame with instance_id, status and "
                        "source (Window.start_status), or None")
    if platform is not None and (not isinstance(platform, pd.DataFrame) or not {
            "ts", "instance_id", "msg"} <= set(platform.columns)):
        raise TypeError("platform must be a DataFrame with ts, instance_id and msg "
                        "(Window.platform, or load_logs(streams='koyeb')), or None")

    inst = instances.drop_duplicates("id").reset_index(drop=True)
    ids = pd.Index(inst["id"].astype(object))
    start_code, start_source, start_when = _start_codes(ids, start_status)
    created = _us(inst["created_at"]) if "created_at" in inst else np.full(len(inst), _NAT)
    findings: list[dict[str, Any]] = []
    lost_events = LostEvents()
    parts: list[_Spans] = []
    has_events = np.zeros(len(inst), bool)
    if events is not None and len(events):
        # Work on integer codes: instance positions and status numbers.
        decided = classify_events(events, mapping)
        status = decided["status"].cat.codes.to_numpy().astype(np.int8)
        code = ids.get_indexer(events["instance_id"].astype(object))
        when = _us(events["when"])
        meta = events["metadata"].to_numpy() if "metadata" in events else \
            np.full(len(events), None, object)
        messages = events["message"].astype(object).to_numpy() if "message" in events \
            else np.full(len(events), None, object)
        rule = decided["rule"].to_numpy().astype(object)
        _read_by_type(events["type"].astype(object).to_numpy(), status, rule, code, when,
                      messages, start_code)
        findings += _ignored_events(events, rule, code, when)
        # The look-behind's evidence joins the events as the status it saw, so that an
        # event lost across the window's start is seen like any other.
        seen = np.zeros(len(ids), bool)
        seen[code[(code >= 0) & (status >= 0)]] = True
        add = np.flatnonzero(seen & (start_code >= 0) & (start_source == "lookbehind")
                             & (start_when != _NAT))
        synthetic = np.r_[np.zeros(len(code), bool), np.ones(len(add), bool)]
        code, status, when = np.r_[code, add], np.r_[status, start_code[add]], \
            np.r_[when, start_when[add]]
        meta = np.r_[meta, np.full(len(add), None, object)]
        messages = np.r_[messages, np.full(len(add), None, object)]
        keep = np.flatnonzero((code >= 0) & (status >= 0) & (when != _NAT))
        # by instance, then time, then position in the input (stable for ties)
        order = keep[np.lexsort((keep, when[keep], code[keep]))]
        code, status, when = code[order], status[order], when[order]
        messages, meta = messages[order], meta[order]
        findings += _event_findings(ids, code, status, when)
        first = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if len(code) else code
        spans_ev = _from_events(code, status, when)
        spans_ev.source[synthetic[order]] = "lookbehind"
        pairs = _fill_gaps(spans_ev, messages, _platform_codes(platform, ids))
        spans_ev, lost = pairs.spans, int(pairs.betrayed.sum())
        lost_events = LostEvents(
            {"instance_id": i, "after": a, "before": b, "betrayed": x, "placed": p}
            for i, a, b, x, p in zip(ids[pairs.code].tolist(), _times(pairs.after).tolist(),
                                     _times(pairs.before).tolist(), pairs.betrayed.tolist(),
                                     pairs.placed.tolist(), strict=True))
        parts.append(spans_ev)
        first_span = np.flatnonzero(np.r_[True, spans_ev.code[1:] != spans_ev.code[:-1]]) \
            if len(spans_ev.code) else np.empty(0, np.int64)
        parts += _join_records(inst, ids, spans_ev, first_span, findings)
        found = int((pairs.placed & ~pairs.betrayed).sum())
        if found:
            findings.append({"instance_id": "", "kind": "hidden_events",
                             "detail": f"{found} times, the platform's lines show a status "
                                       "change between two events that could follow each "
                                       "other: an event never arrived there (source "
                                       "'platform')", "n_found": found})
        if lost:
            placed = int((pairs.placed & pairs.betrayed).sum())
            findings.append({"instance_id": "", "kind": "missing_events",
                             "detail": f"{lost} times, two consecutive status events cannot "
                                       "follow each other: an event between them never "
                                       "arrived (a steady status they imply fills the "
                                       "gap, source 'gap')" + (
                                           f"; {placed} of them placed by the platform's "
                                           "lines (source 'platform')" if placed else ""),
                             "n_lost": lost, "n_placed": placed})
        has_events[code[first]] = True
        parts.append(_lead_in(meta[first], code[first], when[first], created,
                              previous_key, status[first], messages[first], start_code,
                              start_source))
    rest = np.flatnonzero(~has_events)
    if len(rest):
        sub = inst.iloc[rest]
        if events is not None:
            # An instance that changed inside the window should have events there.
            touched = ~(sub["created_at"] >= until_ts)
            if tw.since is not None:
                touched &= ~(sub["updated_at"] < tw.since)
            findings += [{"instance_id": i, "kind": "no_events",
                          "detail": "no status events; spans rebuilt from timestamps"}
                         for i in sub.loc[touched, "id"]]
        stamped = _from_timestamps(sub, rest)
        # A stretch the listing cannot tell (no start or health timestamps) takes the
        # status found at the window's start, when there is one.
        fill = (stamped.status < 0) & (start_code[stamped.code] >= 0)
        stamped.status[fill] = start_code[stamped.code[fill]]
        stamped.source[fill] = start_source[stamped.code[fill]]
        parts.append(stamped)
    spans = _Spans.concat(parts)
    findings += _terminal_findings(inst, spans)
    out = _build(_clip(spans, tw.since, until_ts), inst)
    if tw.since is not None:
        findings.append(_start_finding(out, tw.since))
    out.attrs = {"since": tw.since, "until": until_ts, "findings": findings,
                 "lost_events": lost_events}
    return out


def _start_codes(ids: pd.Index, start_status: pd.DataFrame | None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per instance position: the status code at the window's start (-1: none), its
    source and the time of its evidence."""
    code = np.full(len(ids), -1, np.int8)
    source = np.full(len(ids), "events", object)
    at = np.full(len(ids), _NAT, np.int64)
    if start_status is None or not len(start_status):
        return code, source, at
    pos = ids.get_indexer(start_status["instance_id"].astype(object))
    st = _status_codes(start_status["status"].astype(object))
    ok = (pos >= 0) & (st >= 0)
    code[pos[ok]] = st[ok]
    source[pos[ok]] = start_status["source"].astype(object).to_numpy()[ok]
    if "evidence_at" in start_status:
        at[pos[ok]] = _us(start_status["evidence_at"])[ok]
    return code, source, at


def _start_finding(out: pd.DataFrame, since: pd.Timestamp) -> dict[str, Any]:
    """How the status at ``since`` was found: instances counted per source."""
    at = out[out["start"] == since].drop_duplicates("instance_id")
    known = at["status"].notna()
    counts = at.loc[known, "source"].astype(str).value_counts()
    names = {"events": "the first event's metadata", "timestamps": "timestamps",
             "both": "timestamps", "lookbehind": "look-behind", "record":
             "the instance record", "transition": "message transitions", "gap": "gaps"}
    parts = [f"{int(n)} from {names.get(k, k)}" for k, n in counts.items()]
    parts.append(f"{int((~known).sum())} unknown")
    return {"instance_id": "", "kind": "start_status",
            "detail": f"status at the window's start of {len(at)} instances: "
                      + ", ".join(parts),
            **{f"n_{k}": int(n) for k, n in counts.items()},
            "n_unknown": int((~known).sum())}


def _lead_in(first_meta: np.ndarray, code: np.ndarray, when: np.ndarray,
             created: np.ndarray, previous_key: str | None, first_status: np.ndarray,
             first_message: np.ndarray, start_code: np.ndarray,
             start_source: np.ndarray) -> _Spans:
    """The stretch between an instance's creation and its first status event.

    When events were loaded for a window only, the first one is not the instance's
    creation: its metadata's previous status tells what came before; else the status
    found at the window's start; else what the first message implies.
    """
    born = created[code]
    gap = np.flatnonzero((born != _NAT) & (born < when))
    status = np.full(len(gap), -1, np.int8)
    source = np.full(len(gap), "events", object)
    if len(gap):
        meta = first_meta[gap]
        status = _status_codes([
            (m.get(previous_key) if previous_key and isinstance(m, dict) else None)
            or previous_status(m) for m in meta])
    found = start_code[code[gap]]
    use = (status < 0) & (found >= 0)
    status[use], source[use] = found[use], start_source[code[gap]][use]
    todo = np.flatnonzero(status < 0)
    if len(todo):
        implied = _status_codes([
            previous_from_message(STATUSES[first_status[gap[i]]], first_message[gap[i]])
            for i in todo])
        hit = implied >= 0
        status[todo[hit]], source[todo[hit]] = implied[hit], "transition"
    return _Spans(code[gap], status, born[gap], when[gap], source)


def _read_by_type(types: np.ndarray, status: np.ndarray, rule: np.ndarray,
                  code: np.ndarray, when: np.ndarray, messages: np.ndarray,
                  start_code: np.ndarray) -> None:
    """Read an event no rule understood by its type, where the events around it agree.

    Real fleets print texts nobody has catalogued, but the event still arrives with its
    time and its ``type``. A type that, in the same data, announces one status and
    nothing else (every event of it a rule decided says that status; none
    informational) is taken to announce it here too, when the instance's status events
    just before and just after allow it (:data:`~koyeb_analytics.analysis.TRANSITIONS`;
    the status at the window's start stands in for a missing one before). The type's
    other events and the sequence are two pieces of evidence, so no count of them is
    needed (the sequence-free ``learned`` rule of ``classify_events`` needs
    ``LEARN_MIN``). Changes ``status`` and ``rule`` in place (rule ``learned``).
    """
    unread = np.flatnonzero((rule == "unclassified") & (code >= 0) & (when != _NAT))
    if not len(unread):
        return
    said = (rule != "unclassified") & (rule != "mapping")
    told = pd.DataFrame({"type": pd.Series(types[said], dtype=object),
                         "status": status[said].astype(np.int64)})
    span = told.groupby("type", dropna=True)["status"].agg(["min", "max"])
    pure = span.loc[(span["min"] == span["max"]) & (span["min"] >= 0), "min"]
    if pure.empty:
        return
    guess = pd.Series(types[unread], dtype=object).map(pure).to_numpy()
    unread, guess = unread[pd.notna(guess)], guess[pd.notna(guess)].astype(np.int64)
    if not len(unread):
        return
    known = np.flatnonzero((status >= 0) & (code >= 0) & (when != _NAT))
    known = known[np.lexsort((known, when[known], code[known]))]
    k_code, k_when = code[known], when[known]
    for j, st in zip(unread.tolist(), guess.tolist(), strict=True):
        lo, hi = np.searchsorted(k_code, code[j], "left"), np.searchsorted(k_code, code[j],
                                                                           "right")
        at = lo + int(np.searchsorted(k_when[lo:hi], when[j], "left"))
        after = lo + int(np.searchsorted(k_when[lo:hi], when[j], "right"))
        before = int(status[known[at - 1]]) if at > lo else int(start_code[code[j]])
        # An uncatalogued text cannot say whether a start wakes from sleep.
        if before >= 0 and not (_MAY_PRECEDE[st, before] or (
                st == _CODE["STARTING"] and before == _CODE["SLEEPING"])):
            continue
        if after < hi:
            nxt = known[after]
            wakes = status[nxt] == _CODE["STARTING"] and isinstance(messages[nxt], str) \
                and WAKE.search(messages[nxt]) is not None
            if not (st == _CODE["SLEEPING"] if wakes else _MAY_PRECEDE[status[nxt], st]):
                continue
        status[j], rule[j] = st, "learned"


def _outlasts(status: np.ndarray, durations: np.ndarray, normal: np.ndarray,
              following: np.ndarray) -> np.ndarray:
    """Per status code, how long a passing status may last before a lost event is likelier.

    The reference is the same data's spans of that status followed by a status no steady
    one can precede (STARTING then HEALTHY, UNHEALTHY then HEALTHY): no event can be missing
    inside those. A start that fails, or an UNHEALTHY that ends in a stop, takes about as
    long as one that recovers, so a span over three times their 99th percentile (and over
    ten minutes) hides a lost steady status. With fewer than 20 reference spans the bound
    stays at a day (the caller's hundred-medians-and-an-hour rule then decides).
    """
    limit = np.full(len(STATUSES), 24 * HOUR_US, np.int64)
    nxt = np.r_[following, -1]  # the status after each span, -1 at an instance's last
    clean = normal & (nxt >= 0) & ~_STEADY_BEFORE[np.clip(nxt, 0, None)]
    for name in ("ALLOCATING", "STARTING", "UNHEALTHY"):
        ref = durations[clean & (status == _CODE[name])]
        if len(ref) >= 20:
            limit[_CODE[name]] = max(HOUR_US // 6, 3 * int(np.percentile(ref, 99)))
    return limit


class LostEvents(tuple):  # type: ignore[type-arg]
    """The pairs of events that betray (or may hide) a lost one, as ``lifecycles`` lists
    them in ``attrs["lost_events"]``: read-only, and shared by every frame derived from the
    intervals (pandas copies ``attrs`` deeply at each operation: a thousand pairs copied
    at each would cost seconds)."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> LostEvents:
        return self


@dataclass
class _Lost:
    """The spans once gaps are filled, and each pair of events that betrayed a lost one
    or may hide one: instance position, the two events' times, whether the pair betrayed
    it, whether platform lines placed it."""

    spans: _Spans
    code: np.ndarray
    after: np.ndarray
    before: np.ndarray
    betrayed: np.ndarray
    placed: np.ndarray


def _platform_codes(platform: pd.DataFrame | None, ids: pd.Index,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Platform lines that announce a status, as (instance position, time in us, status
    code) sorted by instance and time; lines of no known instance or status are left out."""
    if platform is None or not len(platform):
        return None
    code = ids.get_indexer(platform["instance_id"].astype(object))
    when = _us(platform["ts"])
    texts, uniques = pd.factorize(platform["msg"].astype(object), use_na_sentinel=True)
    said = np.array([_CODE.get(status_from_message(t)[0] or "", -1) for t in uniques] + [-1],
                    np.int8)
    status = said[np.where(texts >= 0, texts, len(uniques))]
    told = np.flatnonzero((status >= 0) & (code >= 0) & (when != _NAT))
    order = told[np.lexsort((when[told], code[told]))]
    return code[order], when[order], status[order]


def _placed(platform: tuple[np.ndarray, np.ndarray, np.ndarray] | None, code: int,
            after: int, before: int, first: int, second: int,
            allowed_last: tuple[str, ...]) -> list[tuple[int, int]] | None:
    """The status changes the platform's lines say between two events (strictly between
    their times), as (status code, time); None unless there is at least one and each
    status may follow the one before it, from ``first`` to a status in ``allowed_last``
    (those that may precede the second event, whose status is ``second``: its own line,
    written just before its event's time, is not a change of its own)."""
    if platform is None:
        return None
    pc, pw, ps = platform
    lo, hi = np.searchsorted(pc, [code, code + 1])
    a, b = lo + np.searchsorted(pw[lo:hi], [after], side="right")[0], \
        lo + np.searchsorted(pw[lo:hi], [before], side="left")[0]
    changes: list[tuple[int, int]] = []
    current = first
    for st, t in zip(ps[a:b].tolist(), pw[a:b].tolist(), strict=True):
        if st != current:
            # a start after a sleep is a wake, whatever its line says
            if not (_MAY_PRECEDE[st, current] or (current, st) == _WAKE_PAIR):
                return None
            changes.append((st, t))
            current = st
    if changes and changes[-1][0] == second:
        changes.pop()
        current = changes[-1][0] if changes else first
    if not changes or STATUSES[current] not in allowed_last:
        return None
    return changes


def _fill_gaps(spans: _Spans, messages: np.ndarray,
               platform: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> _Lost:
    """Find where an event between two status events was lost, and fill the gap.

    Two consecutive events betray a lost one when the second cannot follow the first
    (:func:`~koyeb_analytics.analysis._classify.possible_previous`), or when a passing status
    (ALLOCATING, STARTING, UNHEALTHY) before an event that a steady status can precede
    (a crash after a health-check flap whose recovery never arrived) outlasts the bound
    of :func:`_outlasts`, or a hundred times its median and an hour. A genuinely long passing status
    is then read as a lost recovery: the spans say so (source ``gap``) and the
    findings count them. The first status keeps its median duration
    (over the spans that end normally); the rest of the gap is the steady status the
    second event implies (HEALTHY before SLEEPING), with source ``gap``. Where the
    first status is itself steady, the lost event's own status (the one status that can
    follow the first and precede the second, e.g. UNHEALTHY between two HEALTHY) takes
    its median duration before the second event, with source ``gap``. Where the
    platform's lines between the two events say what happened (:func:`_placed`), they
    decide instead, each change at its own time, with source ``platform``.
    """
    n = len(spans.code)
    none = np.empty(0, np.int64)
    if n < 2:
        return _Lost(spans, none, none, none, none.astype(bool), none.astype(bool))
    same = spans.code[1:] == spans.code[:-1]
    a, b = spans.status[:-1], spans.status[1:]
    prev_of: dict[tuple[int, Any], tuple[str, ...]] = {}

    def previous(i: int) -> tuple[str, ...]:
        key = (int(b[i]), messages[i + 1] if b[i] == _CODE["STARTING"] else None)
        if key not in prev_of:
            prev_of[key] = possible_previous(STATUSES[key[0]], key[1])
        return prev_of[key]

    alive = same & ~np.isin(a, _TERMINAL_CODES)
    # Which status may precede which, as tables over status codes; a start that wakes
    # from sleep (told by its message) may follow SLEEPING only.
    wake = np.zeros(n - 1, bool)
    starts = np.flatnonzero(alive & (b == _CODE["STARTING"]))
    if len(starts):
        wake[starts] = pd.Series(messages[starts + 1], dtype=object).fillna("").astype(
            str).str.contains(WAKE).to_numpy()
    # A start after a sleep is a wake whatever its message says (a message of no known
    # family, or a vocabulary that does not say "waking up"): no event is missing there.
    slept = (a == _CODE["SLEEPING"]) & (b == _CODE["STARTING"])
    bad = alive & ~slept & np.where(wake, a != _CODE["SLEEPING"], ~_MAY_PRECEDE[b, a])
    durations = spans.end - spans.start
    normal = np.r_[same & ~bad, False] & (spans.end != _NAT)
    medians = {int(c): int(np.median(durations[normal & (spans.status == c)]))
               for c in np.unique(spans.status[normal])}
    limit = _outlasts(spans.status, durations, normal, np.where(same, b, -1))
    for c, med in medians.items():
        limit[c] = min(limit[c], max(HOUR_US, 100 * med))
    passing = np.isin(a, [_CODE["ALLOCATING"], _CODE["STARTING"], _CODE["UNHEALTHY"]])
    bad |= alive & passing & (durations[:-1] > limit[np.clip(a, 0, None)]) \
        & (wake | _STEADY_BEFORE[b])
    maybe = alive & ~bad & ~wake & (a >= 0) & (b >= 0) \
        & _MAY_HIDE[np.clip(b, 0, None), np.clip(a, 0, None)]
    lost = np.flatnonzero(bad | maybe)
    if not len(lost):
        return _Lost(spans, none, none, none, none.astype(bool), none.astype(bool))
    pairs = (spans.code[lost].copy(), spans.start[lost].copy(), spans.end[lost].copy(),
             bad[lost].copy())
    placed = np.zeros(len(lost), bool)
    extra: list[tuple[int, int, int, int, str]] = []
    for k, i in enumerate(lost):
        said = _placed(platform, int(spans.code[i]), int(spans.start[i]), int(spans.end[i]),
                       int(a[i]), int(b[i]), previous(int(i)))
        if said is not None:
            ends = [t for _, t in said[1:]] + [int(spans.end[i])]
            extra += [(int(spans.code[i]), st, t, e, "platform")
                      for (st, t), e in zip(said, ends, strict=True)]
            spans.end[i] = said[0][1]
            placed[k] = True
            continue
        if not bad[i]:
            continue
        if int(a[i]) in _STEADY_CODES:
            # A steady status lasts until the lost event's own stretch, which the second
            # event ends: a flap's UNHEALTHY before a recovery, a STOPPING before STOPPED.
            lost_one = [c for c in previous(int(i))
                        if STATUSES[int(a[i])] in possible_previous(c)]
            if len(lost_one) == 1:
                cut = max(spans.end[i] - medians.get(_CODE[lost_one[0]], 0), spans.start[i])
                if cut < spans.end[i]:
                    extra.append((int(spans.code[i]), _CODE[lost_one[0]], cut,
                                  int(spans.end[i]), "gap"))
                    spans.end[i] = cut
            continue
        fill = [c for c in STEADY if c in previous(int(i))]
        if not fill:
            # No steady status fits: the one status that can follow the first and
            # precede the second (STARTING between ALLOCATING and HEALTHY) fills it,
            # when the data has seen how long both last.
            fill = [c for c in previous(int(i)) if STATUSES[int(a[i])] in possible_previous(c)]
            if len(fill) != 1 or int(a[i]) not in medians or _CODE[fill[0]] not in medians:
                continue
        cut = min(spans.start[i] + medians.get(int(a[i]), 0), spans.end[i])
        if cut >= spans.end[i]:
            continue
        extra.append((int(spans.code[i]), _CODE[fill[0]], cut, int(spans.end[i]), "gap"))
        spans.end[i] = cut
    if extra:
        arr = np.array([e[:4] for e in extra], np.int64)
        filled = _Spans(arr[:, 0], arr[:, 1].astype(np.int8), arr[:, 2], arr[:, 3],
                        np.array([e[4] for e in extra], object))
        spans = _Spans.concat([spans, filled])
        spans = spans.take(np.lexsort((spans.start, spans.code)))
    return _Lost(spans, *pairs, placed)


def _join_records(inst: pd.DataFrame, ids: pd.Index, spans: _Spans, first: np.ndarray,
                  findings: list[dict[str, Any]]) -> list[_Spans]:
    """Join each instance's events with its record, the anchor every instance has.

    A record that says STOPPED or ERROR while the events stop short of it ends the
    last event span where the record says the instance ended (that span's source is
    then ``both``) and adds the terminal status from the record. A record whose status
    disagrees with the last event, after it, is a finding. Changes ``spans`` in place.
    """
    if not len(first):
        return []
    last = np.r_[first[1:] - 1, len(spans.code) - 1].astype(int)
    pos = spans.code[last]
    record = _status_codes(inst["status"].astype(object).to_numpy()[pos])
    updated = _us(inst["updated_at"])[pos]
    ended = _us(inst["terminated_at"])[pos] if "terminated_at" in inst else \
        np.full(len(pos), _NAT)
    ended = np.where(ended == _NAT, updated, ended)
    started = spans.start[last]
    record_terminal = np.isin(record, _TERMINAL_CODES)
    fix = record_terminal & ~np.isin(spans.status[last], _TERMINAL_CODES) & \
        (ended != _NAT) & (ended >= started)
    rows = last[fix]
    spans.end[rows] = ended[fix]
    spans.source[rows] = "both"
    for p, st in zip(pos[fix], record[fix], strict=True):
        findings.append({"instance_id": ids[p], "kind": "terminal_from_record",
                         "detail": f"the events stop before the instance's end; "
                                   f"{STATUSES[st]} taken from its record"})
    differs = ~record_terminal & (record >= 0) & (record != spans.status[last]) & \
        (updated != _NAT) & (updated > started)
    for p, st, ev_st in zip(pos[differs], record[differs], spans.status[last][differs],
                            strict=True):
        findings.append({"instance_id": ids[p], "kind": "record_disagrees",
                         "detail": f"the record says {STATUSES[st]} since its last update, "
                                   f"the last event {STATUSES[ev_st]}; the record's status "
                                   "is used from then on"})
    # The event of the last change never arrived: the record says what and when.
    rows = last[differs & ~np.isin(spans.status[last], _TERMINAL_CODES)]
    keep = differs & ~np.isin(spans.status[last], _TERMINAL_CODES)
    spans.end[rows] = updated[keep]
    return [_Spans(pos[fix], record[fix], ended[fix], ended[fix],
                   np.full(int(fix.sum()), "timestamps", object)),
            _Spans(pos[keep], record[keep], updated[keep], np.full(int(keep.sum()), _NAT),
                   np.full(int(keep.sum()), "record", object))]


def _ignored_events(events: pd.DataFrame, rule: np.ndarray, code: np.ndarray,
                    when: np.ndarray) -> list[dict[str, Any]]:
    """Findings for events that could not be used: unclassified, unknown instances, no
    readable time."""
    out: list[dict[str, Any]] = []
    unknown = rule == "unclassified"
    if unknown.any():
        counts = events.loc[unknown, "type"].astype(object).fillna("<none>").value_counts()
        shown = ", ".join(f"{t} ({n})" for t, n in counts.head(10).items())
        more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
        out.append({"instance_id": "", "kind": "unknown_event_types",
                    "detail": f"{int(unknown.sum())} of {len(events)} events "
                              f"({unknown.mean():.1%}) match no rule, by type: {shown}{more}; "
                              "instances without usable events fall back to their "
                              "timestamps. See event_vocabulary(); pass mapping= to use "
                              "them."})
    orphans = int((code < 0).sum())
    if orphans:
        out.append({"instance_id": "", "kind": "events_without_instance",
                    "detail": f"{orphans} events belong to instances missing from the "
                              "instance listing; they were left out"})
    timeless = int((when == _NAT).sum())
    if timeless:
        out.append({"instance_id": "", "kind": "events_without_time",
                    "detail": f"{timeless} events have no readable time; they were left "
                              "out"})
    return out


def _event_findings(ids: pd.Index, code: np.ndarray, status: np.ndarray,
                    when: np.ndarray) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not len(code):
        return out
    same = np.r_[False, code[1:] == code[:-1]]
    prev_status = np.r_[-1, status[:-1]]
    after_terminal = same & np.isin(prev_status, _TERMINAL_CODES)
    for c in np.unique(code[after_terminal]):
        out.append({"instance_id": ids[c], "kind": "event_after_terminal",
                    "detail": "a status event follows STOPPED or ERROR"})
    tie = same & (when == np.r_[_NAT, when[:-1]])
    for c in np.unique(code[tie]):
        out.append({"instance_id": ids[c], "kind": "simultaneous_events",
                    "detail": "two status events share a timestamp; their order is a guess"})
    return out


def _terminal_findings(inst: pd.DataFrame, spans: _Spans) -> list[dict[str, Any]]:
    terminal = np.flatnonzero(inst["status"].isin(TERMINAL_STATUSES).to_numpy())
    ended = np.unique(spans.code[np.isin(spans.status, _TERMINAL_CODES)])
    missing = np.setdiff1d(terminal, ended)
    return [{"instance_id": inst["id"].iloc[c], "kind": "missing_terminal_event",
             "detail": "the instance is STOPPED/ERROR but no span records its end"}
            for c in missing]


def _clip(spans: _Spans, since: pd.Timestamp | None, until: pd.Timestamp) -> _Spans:
    hi = until.value // 1000
    start, end = spans.start, spans.end
    open_ended = (end == _NAT) | (end > hi)
    keep = start < hi
    if since is not None:
        lo = since.value // 1000
        zero = end == start
        keep &= (end > lo) | (end == _NAT) | (zero & (start >= lo))
    out = spans.take(np.flatnonzero(keep))
    open_ended = open_ended[keep]
    if since is not None:
        out.start = np.maximum(out.start, since.value // 1000)
    out.end = np.where(open_ended, hi, out.end)
    out.open_ended = open_ended
    return out


def _build(spans: _Spans, inst: pd.DataFrame) -> pd.DataFrame:
    spans = spans.take(np.lexsort((spans.end, spans.start, spans.code)))
    open_ended = spans.open_ended
    assert open_ended is not None, "spans are clipped before they are built"
    out: dict[str, Any] = {"instance_id": inst["id"].take(spans.code).reset_index(drop=True)}
    for col in ATTRIBUTE_COLUMNS:
        if col in inst:
            out[col] = inst[col].take(spans.code).reset_index(drop=True)
        else:
            out[col] = pd.Series(None, index=range(len(spans.code)), dtype=object)
    out["status"] = pd.Series(pd.Categorical.from_codes(spans.status.astype(int),
                                                        dtype=status_dtype()))
    out["start"] = _times(spans.start)
    out["end"] = _times(spans.end)
    out["duration"] = out["end"] - out["start"]
    out["open_ended"] = pd.Series(np.asarray(open_ended, bool))
    out["source"] = pd.Series(pd.Categorical(spans.source, categories=list(SOURCES)))
    return pd.DataFrame(out)


def findings(intervals: pd.DataFrame) -> pd.DataFrame:
    """Return the data-quality findings of :func:`lifecycles` as a DataFrame.

    Kinds: ``no_events`` (spans rebuilt from timestamps), ``missing_terminal_event``,
    ``terminal_from_record`` (the end taken from the instance record),
    ``record_disagrees`` (the record's status is not the last event's),
    ``event_after_terminal``, ``simultaneous_events``, ``unknown_event_types`` (events
    no rule maps to a status), ``events_without_instance``, ``events_without_time``
    (events whose time could not be read, left out), ``unknown_status`` (a
    stretch whose status nothing tells), ``missing_events`` (two events that cannot
    follow each other: one between them never arrived; how many the platform's lines
    placed), ``hidden_events`` (the platform's lines show a change between two events
    that could follow each other), ``start_status`` (how the status at ``since`` was
    found).

    Parameters
    ----------
    intervals
        From :func:`lifecycles`.

    Returns
    -------
    DataFrame
        ``instance_id, kind, detail``; fleet-wide findings have an empty instance id.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2, vocabulary="opaque") as sim:
    ...     c = sim.client()
    ...     iv = ka.lifecycles(ka.load_instances(c, progress=False),
    ...                        ka.load_events(c, progress=False).assign(message="?"))
    >>> "unknown_event_types" in set(ka.findings(iv)["kind"])
    True
    """
    rows = list(intervals.attrs.get("findings", []))
    if len(intervals):
        unknown = intervals.loc[intervals["status"].isna(), "instance_id"].unique()
        rows += [{"instance_id": i, "kind": "unknown_status",
                  "detail": "a stretch before the first known status"} for i in unknown]
    return pd.DataFrame(rows, columns=list(FINDING_COLUMNS)).astype("str")

