"""The status of each instance at a window's start, from evidence.

A window almost always opens in the middle of instances' lives. :func:`start_status`
says, for every instance alive at ``since``, what its status was then and what says so:
its record (when it has not changed since before ``since``) or its last event before
``since`` (a look-behind, read by :func:`~koyeb_analytics.load_window`).
"""

from __future__ import annotations

import pandas as pd

from ..schema import STATUSES, TERMINAL_STATUSES, TIME_DTYPE
from ..timewindow import TimeLike, parse_time
from ._classify import Mapping_, classify_events


def alive_at(instances: pd.DataFrame, since: pd.Timestamp) -> pd.Series:
    """Mask of instances created before ``since`` and not ended before it.

    Examples
    --------
    >>> w = ka.load_window(client, window="6h")
    >>> alive = ka.analysis.alive_at(w.instances, w.since)
    >>> bool(alive.any()), len(alive) == len(w.instances)
    (True, True)
    """
    created = instances["created_at"]
    ended = instances["updated_at"].where(instances["status"].isin(TERMINAL_STATUSES))
    if "terminated_at" in instances:
        ended = instances["terminated_at"].fillna(ended)
    return ((created < since) & ~(ended < since)).fillna(False).astype(bool)


def start_status(instances: pd.DataFrame, before: pd.DataFrame | None,
                 since: TimeLike, *, mapping: Mapping_ = None) -> pd.DataFrame:
    """Each instance's status at ``since``, from evidence, with the evidence named.

    For every instance alive at ``since``: its record, when it has not changed since
    before ``since`` (``updated_at < since``: the status it lists held then; exact);
    else the last event before ``since`` that announces a status (``lookbehind``).
    Instances neither tells are left out (:func:`lifecycles` then reads what the first
    event in the window implies, or says the status is unknown).

    Parameters
    ----------
    instances
        From :func:`~koyeb_analytics.load_instances`.
    before
        Events read before ``since`` (a look-behind), or None; events after ``since``
        may be included: they are not used as evidence, only to learn what opaque
        types mean (:func:`~koyeb_analytics.classify.classify_events`).
    since
        The window's start.
    mapping
        As for :func:`lifecycles`.

    Returns
    -------
    DataFrame
        ``instance_id, status, source, evidence_at`` (the time of the evidence), one
        row per instance whose status at ``since`` is known.

    Examples
    --------
    >>> inst = pd.DataFrame({"id": ["a", "b"], "status": ["HEALTHY", "HEALTHY"],
    ...     "created_at": pd.to_datetime(["2026-01-01", "2026-01-01"], utc=True),
    ...     "updated_at": pd.to_datetime(["2026-01-02", "2026-01-09"], utc=True)})
    >>> start_status(inst, None, "2026-01-05")[["instance_id", "source"]].values.tolist()
    [['a', 'record']]
    """
    since_ts = parse_time(since, "since")
    alive = instances[alive_at(instances, since_ts).to_numpy()].drop_duplicates("id")
    quiet = alive[(alive["updated_at"] < since_ts).fillna(False).to_numpy()
                  & alive["status"].notna().to_numpy()]
    rows = [pd.DataFrame({"instance_id": quiet["id"].astype(object).to_numpy(),
                          "status": quiet["status"].astype(object).to_numpy(),
                          "source": "record",
                          "evidence_at": quiet["updated_at"].to_numpy()})]
    if before is not None and len(before):
        decided = classify_events(before, mapping)
        ev = before.assign(_status=decided["status"].astype(object))
        ev = ev[(ev["when"] < since_ts).to_numpy()]
        ev = ev[ev["_status"].notna() & ev["instance_id"].isin(alive["id"])
                & ~ev["instance_id"].isin(quiet["id"])]
        last = ev.sort_values(["when", "id"], kind="stable").drop_duplicates(
            "instance_id", keep="last")
        rows.append(pd.DataFrame({"instance_id": last["instance_id"].astype(object).to_numpy(),
                                  "status": last["_status"].to_numpy(),
                                  "source": "lookbehind",
                                  "evidence_at": last["when"].to_numpy()}))
    out = pd.concat(rows, ignore_index=True)
    out["evidence_at"] = pd.to_datetime(out["evidence_at"], utc=True).astype(TIME_DTYPE)
    out["status"] = pd.Categorical(out["status"], categories=list(STATUSES), ordered=True)
    out["source"] = out["source"].astype(object)
    return out.sort_values("instance_id", kind="stable").reset_index(drop=True)
