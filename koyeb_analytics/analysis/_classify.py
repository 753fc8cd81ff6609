"""Events to statuses: one place for the rules, each with the evidence it rests on.

The real API's event ``type`` values are not public and no Koyeb client reads them
(``koyeb-api-facts.md`` §15), so nothing here may assume a type it was not told. The
rules are tried in order, and the first that decides wins:

1. ``mapping``: the user's table ``{type: status}`` or a callable taking the event row
   (returning a status, ``None`` for "no status change", or ``...`` to pass);
2. ``metadata``: a status-like key in the event's metadata (:data:`STATUS_KEYS`) whose
   value is one of the eight statuses;
3. ``type``: the known type table (:data:`KNOWN_TYPES`; empty until real types are
   seen: the simulator's invented ones carry their status in metadata);
4. ``message``: patterns built from the message texts seen on the ``koyeb`` log stream
   and in instance ``messages``, both eras (:data:`MESSAGE_RULES`);
5. ``informational``: texts known to carry no status change (download progress,
   network and mesh propagation);
6. ``learned``: a message nobody has catalogued, on an event whose ``type`` is, in the
   same data, almost always (:data:`LEARN_PURITY`, at least :data:`LEARN_MIN` events)
   decided by the rules above to one status: the type is taken to mean that status;
7. otherwise ``unclassified``.

Messages also say something about the status *before* them
(:data:`TRANSITIONS`): "Instance is unhealthy" follows a state that was up, "Instance
stopped." follows "Instance is stopping.". :func:`previous_from_message` reads it, for
the stretch before a window's first event when nothing better is known.

:func:`event_vocabulary` shows, per type, what was decided and by which rule: review
it before trusting figures computed from events of a new source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..schema import STATUSES

STATUS_KEYS: tuple[str, ...] = ("status", "new_status", "newStatus", "to", "state",
                                "to_status", "toStatus", "current_status", "currentStatus")
"""Metadata keys read, in order, for the status an event announces."""

PREVIOUS_KEYS: tuple[str, ...] = ("previousStatus", "previous_status", "from",
                                  "old_status", "oldStatus")
"""Metadata keys read for the status before an event."""

KNOWN_TYPES: dict[str, str] = {}
"""Event types whose status is known from evidence. None is public yet."""

RULES = ("mapping", "metadata", "type", "message", "informational", "learned",
         "unclassified")

LEARN_PURITY = 0.98
"""Share of a type's decided events that must agree before the type is learned."""
LEARN_MIN = 10
"""Decided events of a type needed before it is learned."""

MESSAGE_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), s) for p, s in (
        # Sleeping first: its text mentions waking up.
        (r"\binstance (is )?(going to sleep|sleeping|asleep)\b|\bscaled to zero\b", "SLEEPING"),
        (r"\bwak(e|es|ing) up\b|\bwoken\b", "STARTING"),
        (r"^instance created\b|\ballocated in nomad\b|\bpreparing to start\b|"
         r"\binstance (is )?(being )?allocat", "ALLOCATING"),
        (r"\binstance is healthy\b|\ball health checks are passing\b", "HEALTHY"),
        (r"\bhealth ?check(s)? (has |have )?failed\b|\binstance is unhealthy\b|"
         r"\bfailing health checks?\b", "UNHEALTHY"),
        (r"\binstance is starting\b|\bstarting instance\b", "STARTING"),
        (r"\binstance is stopping\b|\bstopping instance\b", "STOPPING"),
        (r"\binstance (has )?stopped\b|\bterminated in nomad\b|\binstance (was )?terminated\b",
         "STOPPED"),
        (r"\bapplication exited with code\b|^error: |\bexited with (code|status) [1-9]|"
         r"\bcrash(ed)?\b|\bout of memory\b|\boomkilled\b|\binstance (is in )?error\b",
         "ERROR"),
    ))
"""Message patterns to the status they announce, tried in order."""

INFORMATIONAL: re.Pattern[str] = re.compile(
    r"\bdownload(ing)? (progress|complete|started)\b|^starting download\b|"
    r"\bpulling image\b|\bimage pulled\b|\bnetwork configuration propagated\b|"
    r"\bpropagating network\b|\bservice mesh\b|\bmesh is\b", re.IGNORECASE)
"""Texts that carry no status change."""

Mapping_ = Mapping[str, Any] | Callable[[pd.Series], Any] | None

WAKE: re.Pattern[str] = re.compile(r"\bwak(?:e|es|ing) up\b|\bwoken\b", re.IGNORECASE)

TRANSITIONS: dict[str, tuple[str, ...]] = {
    # Written from the lifecycle (koyeb-api-facts.md §7) and the message families
    # (§5, §15); checked against the invented vocabulary's truth, not fitted to it.
    "ALLOCATING": (),                                   # an instance's first status
    "STARTING": ("ALLOCATING",),                        # "Instance is starting..."
    "HEALTHY": ("STARTING", "UNHEALTHY"),               # checks pass: after a start or a flap
    "UNHEALTHY": ("HEALTHY",),                          # "Instance is unhealthy": it was up
    "STOPPING": ("ALLOCATING", "STARTING", "HEALTHY", "UNHEALTHY", "SLEEPING"),
    "STOPPED": ("STOPPING",),                           # "Instance stopped." ends a stop
    "ERROR": ("ALLOCATING", "STARTING", "HEALTHY", "UNHEALTHY"),
    "SLEEPING": ("HEALTHY",),                           # scaled to zero while idle
}
"""For each status an event announces, the statuses that can come just before it (a
start that wakes from sleep follows SLEEPING: see :func:`previous_from_message`)."""


def possible_previous(status: str, message: Any = None) -> tuple[str, ...]:
    """The statuses that can precede an event announcing ``status`` with ``message``.

    Examples
    --------
    >>> possible_previous("STOPPED")
    ('STOPPING',)
    >>> possible_previous("STARTING", "Instance is waking up. Waiting for health checks.")
    ('SLEEPING',)
    """
    if status == "STARTING" and isinstance(message, str) and WAKE.search(message):
        return ("SLEEPING",)
    return TRANSITIONS.get(status, ())


def previous_from_message(status: str, message: Any = None) -> str | None:
    """The status just before an event, when its status and message leave one choice.

    Examples
    --------
    >>> previous_from_message("UNHEALTHY", "TCP health check failed on port 8000.")
    'HEALTHY'
    >>> previous_from_message("HEALTHY") is None
    True
    """
    choices = possible_previous(status, message)
    return choices[0] if len(choices) == 1 else None


def _status_of(value: Any) -> str | None:
    if isinstance(value, str):
        upper = value.strip().upper()
        if upper in STATUSES:
            return upper
        if upper.startswith("INSTANCE_STATUS_") and upper[16:] in STATUSES:
            return upper[16:]
    return None


def status_from_metadata(metadata: Any, keys: tuple[str, ...] = STATUS_KEYS) -> str | None:
    """The status a metadata object names under one of ``keys``, or None."""
    if not isinstance(metadata, dict) or not metadata:
        return None
    for key in keys:
        status = _status_of(metadata.get(key))
        if status is not None:
            return status
    return None


def status_from_message(message: Any) -> tuple[str | None, str]:
    """``(status, rule)`` from a message text: rule ``message``, ``informational`` or
    ``unclassified``."""
    if not isinstance(message, str) or not message.strip():
        return None, "unclassified"
    text = message.strip()
    for pattern, status in MESSAGE_RULES:
        if pattern.search(text):
            return status, "message"
    if INFORMATIONAL.search(text):
        return None, "informational"
    return None, "unclassified"


def check_mapping(mapping: Mapping_) -> None:
    """Raise ``TypeError``/``ValueError`` naming what is wrong with ``mapping``."""
    if mapping is None or callable(mapping):
        return
    if not isinstance(mapping, Mapping):
        raise TypeError("mapping must be a dict {type: status}, a callable taking the event "
                        f"row, or None; got {type(mapping).__name__}")
    bad = sorted(str(v) for v in mapping.values() if v is not None and _status_of(v) is None)
    if bad:
        raise ValueError(f"mapping: unknown statuses {bad}; expected some of "
                         f"{', '.join(STATUSES)} (or None for no status change)")


def classify_events(events: pd.DataFrame, mapping: Mapping_ = None) -> pd.DataFrame:
    """The status each event announces, and the rule that decided it.

    Parameters
    ----------
    events
        From :func:`~koyeb_analytics.load_events` (``type``, ``message``, ``metadata``).
    mapping
        ``{type: status}`` (a status, or None for "no status change"), or a callable
        taking the event row and returning a status, None, or ``...`` to let the other
        rules decide.

    Returns
    -------
    DataFrame
        Indexed like ``events``: ``status`` (one of the eight, or missing) and ``rule``
        (one of :data:`RULES`).

    Examples
    --------
    >>> ev = pd.DataFrame({"type": ["x", "y"], "metadata": [{}, {}],
    ...                    "message": ["Instance is healthy. All health checks are passing.",
    ...                                "Download progress: 100%"]})
    >>> classify_events(ev)["rule"].tolist()
    ['message', 'informational']
    """
    check_mapping(mapping)
    n = len(events)
    none = np.full(n, None, dtype=object)
    types = events["type"].astype(object).to_numpy() if "type" in events else none
    meta = events["metadata"].to_numpy() if "metadata" in events else none
    messages = events["message"].astype(object).to_numpy() if "message" in events else none
    status = np.full(n, None, dtype=object)
    rule = np.full(n, "unclassified", dtype=object)
    todo = np.ones(n, bool)
    if callable(mapping):
        for i in range(n):
            got = mapping(events.iloc[i])
            if got is not ...:
                status[i] = _status_of(got) if got is not None else None
                rule[i], todo[i] = "mapping", False
    elif mapping:
        codes, names = pd.factorize(pd.Series(types, dtype=object))
        known = np.array([t in mapping for t in names] + [False], bool)
        value = np.array([_status_of(mapping[t]) if t in mapping else None for t in names]
                         + [None], dtype=object)
        hit = known[codes]
        status[hit], rule[hit], todo[hit] = value[codes][hit], "mapping", False
    # Metadata, row by row but cheaply: most rows answer on the first key.
    for i in np.flatnonzero(todo).tolist():
        found = status_from_metadata(meta[i])
        if found is not None:
            status[i], rule[i], todo[i] = found, "metadata", False
    # Type table and messages, decided once per distinct (type, message).
    rows = np.flatnonzero(todo)
    if len(rows):
        pairs = pd.MultiIndex.from_arrays([pd.Series(types[rows], dtype=object),
                                           pd.Series(messages[rows], dtype=object)])
        codes, uniques = pd.factorize(pairs)
        decided = [(KNOWN_TYPES[t], "type") if isinstance(t, str) and t in KNOWN_TYPES
                   else status_from_message(m) for t, m in uniques]
        status[rows] = np.array([d[0] for d in decided] + [None], dtype=object)[codes]
        rule[rows] = np.array([d[1] for d in decided] + ["unclassified"], dtype=object)[codes]
    _learn_types(types, status, rule)
    return pd.DataFrame({"status": pd.Categorical(status, categories=list(STATUSES),
                                                  ordered=True),
                         "rule": pd.Categorical(rule, categories=list(RULES))},
                        index=events.index)


def _learn_types(types: np.ndarray, status: np.ndarray, rule: np.ndarray) -> None:
    """Give unclassified events the status their type almost always means (in place)."""
    todo = rule == "unclassified"
    if not todo.any() or todo.all():
        return
    decided = (rule != "unclassified") & (rule != "informational") & (rule != "mapping")
    frame = pd.DataFrame({"type": pd.Series(types, dtype=object),
                          "status": pd.Series(status, dtype=object)})
    counts = frame[decided & pd.notna(frame["status"]).to_numpy()].value_counts()
    if counts.empty:
        return
    totals = frame[decided].groupby("type", dropna=True).size()
    learned: dict[Any, str] = {}
    for (etype, st), n in counts.items():
        total = int(totals.get(etype, 0))
        if n >= LEARN_MIN and n >= LEARN_PURITY * total:
            learned[etype] = str(st)
    if not learned:
        return
    mapped = frame["type"].map(learned).to_numpy()
    hit = todo & pd.notna(mapped)
    status[hit], rule[hit] = mapped[hit], "learned"


def previous_status(metadata: Any) -> str | None:
    """The status before an event, when its metadata tells."""
    return status_from_metadata(metadata, PREVIOUS_KEYS)


def event_vocabulary(events: pd.DataFrame, mapping: Mapping_ = None) -> pd.DataFrame:
    """What the toolkit makes of each event type: review it before trusting the numbers.

    Parameters
    ----------
    events
        From :func:`~koyeb_analytics.load_events`.
    mapping
        As for :func:`classify_events`.

    Returns
    -------
    DataFrame
        One row per (type, inferred status, rule), most frequent first: ``type``,
        ``example_message``, ``count``, ``share`` (of all events), ``status``,
        ``rule`` and ``after`` (the statuses that can come just before it, from
        :data:`TRANSITIONS`, which the stretch before a window's first event is read
        from when nothing better tells). ``attrs["unclassified_share"]`` is the share of
        events no rule understood.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2, vocabulary="opaque") as sim:
    ...     ev = ka.load_events(sim.client(), progress=False)
    >>> voc = ka.event_vocabulary(ev)
    >>> set(voc["rule"]) <= {"message", "informational", "learned", "unclassified"}
    True
    """
    columns = ["type", "example_message", "count", "share", "status", "rule", "after"]
    if events is None or len(events) == 0:
        out = pd.DataFrame({c: pd.Series(dtype="int64" if c == "count" else
                                         "float64" if c == "share" else object)
                            for c in columns})
        out.attrs["unclassified_share"] = 0.0
        return out
    decided = classify_events(events, mapping)
    frame = pd.DataFrame({"type": events["type"].astype(object).fillna("<none>"),
                          "message": events.get("message", pd.Series(index=events.index,
                                                                     dtype=object)),
                          "status": decided["status"].astype(object).fillna("—"),
                          "rule": decided["rule"].astype(str)})
    grouped = frame.groupby(["type", "status", "rule"], sort=False, dropna=False)
    out = grouped.agg(example_message=("message", "first"), count=("message", "size"))
    out = out.reset_index().sort_values(["count", "type"], ascending=[False, True])
    out["share"] = out["count"] / len(events)
    out["status"] = out["status"].replace("—", None)
    out["after"] = [", ".join(possible_previous(st, msg)) if isinstance(st, str) else ""
                    for st, msg in zip(out["status"], out["example_message"], strict=True)]
    out = out[columns].reset_index(drop=True)
    out.attrs["unclassified_share"] = float(np.mean(decided["rule"] == "unclassified"))
    return out
