"""What changed, and which changes come just before each incident.

:func:`changes` turns the deployments and activities frames into one frame of change
events (a deployment created, healthy, failed, canceled or superseded; a service
autoscaled, manually scaled, paused or resumed; any other activity, kept), each
deployment's ``created`` row carrying a diff of its definition against its parent's:
the image or git sha, env **keys** added, removed or changed (values never leave the
definition), instance types, scaling, regions, strategy and health checks.

:func:`suspects` joins them to incidents: for each incident, the changes of its group
within a look-back before its start, nearest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..schema import STRING_DTYPE, TIME_DTYPE
from ..timewindow import parse_duration

CHANGE_COLUMNS: tuple[str, ...] = (
    "changed_at", "service_id", "app_id", "kind", "event", "change_id", "deployment_id",
    "source", "summary", "what", "image_from", "image_to", "env_added", "env_removed",
    "env_changed", "count_from", "count_to", "region", "status", "trigger_type",
    "trigger_actor", "git_sha", "git_message", "actor",
)
"""Columns of :func:`changes`, in order."""
SUSPECT_EVENTS: frozenset[str] = frozenset({
    "created", "healthy", "manually-scaled", "manual_scaling_deleted", "paused",
    "resumed", "updated", "deleted"})
"""Events that are changes made to a service: deployments (created, healthy), manual
scaling, pauses, resumes, updates, deletions. Outcomes are not suspects: ``failed``,
``canceled``, ``superseded`` (the next deployment is the suspect), nor ``autoscaled``
(the autoscaler follows the load it measures: its decisions stay on the charts, as
context; pass ``events=`` to weigh them too). Activities of unknown verbs are kept as
suspects: nothing says they are harmless."""
_KINDS = {"autoscaled": "scale", "manually-scaled": "scale",
          "manual_scaling_deleted": "scale", "paused": "pause", "resumed": "resume"}
_DEPLOYMENT_VERBS = frozenset({"created", "succeeded", "failed", "canceled", "deleted"})


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _keyed(items: Any, key: str) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for item in _list(items):
        item = _obj(item)
        scopes = tuple(sorted(str(s) for s in _list(item.get("scopes"))))
        out[(item.get(key), scopes)] = item
    return out


def _scope_text(scopes: tuple[str, ...]) -> str:
    return f" ({', '.join(s.removeprefix('region:') for s in scopes)})" if scopes else ""


def _source(definition: dict[str, Any]) -> str | None:
    docker = _obj(definition.get("docker"))
    if docker.get("image"):
        return str(docker["image"])
    git = _obj(definition.get("git"))
    if git.get("sha"):
        return f"sha {str(git['sha'])[:7]}"
    return None


def diff_definitions(old: Any, new: Any) -> dict[str, Any]:
    """What changed from ``old`` to ``new`` (two deployment definitions).

    Env entries are compared by key and scopes; only their keys are reported, never a
    value or a secret's name.

    Parameters
    ----------
    old, new
        Definitions as the API sends them (``None``: unknown).

    Returns
    -------
    dict
        ``what`` (the aspects changed, in a fixed order), ``image_from``, ``image_to``,
        ``env_added``, ``env_removed``, ``env_changed`` (keys) and ``summary`` (text).

    Examples
    --------
    >>> d = diff_definitions({"env": [{"key": "A", "value": "1"}]},
    ...                      {"env": [{"key": "A", "value": "2"}, {"key": "B"}]})
    >>> d["summary"]
    'env +B ~A'
    """
    out: dict[str, Any] = {"what": [], "image_from": None, "image_to": None,
                           "env_added": [], "env_removed": [], "env_changed": [],
                           "summary": ""}
    if not isinstance(new, dict):
        out["what"], out["summary"] = ["unreadable"], "definition unreadable"
        return out
    if not isinstance(old, dict):
        out["summary"] = "first deployment known" if old is None else \
            "parent definition unreadable"
        out["image_to"] = _source(new)
        return out
    parts: list[str] = []
    a, b = _source(old), _source(new)
    if a != b:
        out["what"].append("image")
        out["image_from"], out["image_to"] = a, b
        parts.append(f"image {a or '?'} → {b or '?'}")
    envs_a, envs_b = _keyed(old.get("env"), "key"), _keyed(new.get("env"), "key")
    added = sorted(str(k[0]) for k in envs_b.keys() - envs_a.keys())
    removed = sorted(str(k[0]) for k in envs_a.keys() - envs_b.keys())
    changed = sorted(str(k[0]) for k in envs_a.keys() & envs_b.keys()
                     if (envs_a[k].get("value"), envs_a[k].get("secret"))
                     != (envs_b[k].get("value"), envs_b[k].get("secret")))
    if added or removed or changed:
        out["what"].append("env")
        out["env_added"], out["env_removed"], out["env_changed"] = added, removed, changed
        parts.append("env " + " ".join([f"+{k}" for k in added] + [f"-{k}" for k in removed]
                                       + [f"~{k}" for k in changed]))
    ta = {s: v.get("type") for (_, s), v in _keyed(old.get("instance_types"), "_").items()}
    tb = {s: v.get("type") for (_, s), v in _keyed(new.get("instance_types"), "_").items()}
    if ta != tb:
        out["what"].append("instance_types")
        parts.append("instance type " + ", ".join(
            f"{ta.get(s, '-')} → {tb.get(s, '-')}{_scope_text(s)}"
            for s in sorted(ta.keys() | tb.keys()) if ta.get(s) != tb.get(s)))
    sa = {k[1]: v for k, v in _keyed(old.get("scalings"), "_").items()}
    sb = {k[1]: v for k, v in _keyed(new.get("scalings"), "_").items()}
    if sa != sb:
        out["what"].append("scaling")
        bits = []
        for s in sorted(sa.keys() | sb.keys()):
            x, y = _obj(sa.get(s)), _obj(sb.get(s))
            for field in ("min", "max"):
                if x.get(field) != y.get(field):
                    bits.append(f"{field} {x.get(field, '-')} → {y.get(field, '-')}"
                                f"{_scope_text(s)}")
            if x.get("targets") != y.get("targets"):
                bits.append("targets")
        parts.append("scaling " + ", ".join(dict.fromkeys(bits)))
    ra, rb = set(_list(old.get("regions"))), set(_list(new.get("regions")))
    if ra != rb:
        out["what"].append("regions")
        parts.append("regions " + " ".join([f"+{r}" for r in sorted(rb - ra)]
                                           + [f"-{r}" for r in sorted(ra - rb)]))
    st_a = _obj(old.get("strategy")).get("type")
    st_b = _obj(new.get("strategy")).get("type")
    if st_a != st_b:
        out["what"].append("strategy")
        parts.append(f"strategy {st_a} → {st_b}")
    if old.get("health_checks") != new.get("health_checks"):
        out["what"].append("health_checks")
        parts.append("health checks")
    out["summary"] = "; ".join(parts) if parts else "no definition change"
    return out


def _empty() -> pd.DataFrame:
    kinds = {"changed_at": TIME_DTYPE, "count_from": "Int64", "count_to": "Int64",
             "what": object, "env_added": object, "env_removed": object,
             "env_changed": object}
    return pd.DataFrame({c: pd.Series(dtype=kinds.get(c, STRING_DTYPE))
                         for c in CHANGE_COLUMNS})


def _value(row: Any, name: str) -> Any:
    value = row.get(name) if hasattr(row, "get") else None
    if value is None or (np.ndim(value) == 0 and not isinstance(value, (str, dict))
                         and bool(pd.isna(value))):
        return None
    return value


def changes(deployments: pd.DataFrame | None,
            activities: pd.DataFrame | None = None) -> pd.DataFrame:
    """Build one frame of change events from deployments and activities.

    Parameters
    ----------
    deployments
        From :func:`~koyeb_analytics.load_deployments` (or a store); ``STASHED`` rows
        were never deployed and give no event. ``None`` for none.
    activities
        From :func:`~koyeb_analytics.load_activities`; a deployment's own activities
        (created, succeeded, failed) are left out when the deployment is in
        ``deployments``. Activities of unknown verbs are kept (``kind`` ``"other"``).

    Returns
    -------
    DataFrame
        :data:`CHANGE_COLUMNS`, sorted by ``changed_at``. ``kind`` is ``"deploy"``,
        ``"scale"``, ``"pause"``, ``"resume"`` or ``"other"``; ``event`` says what
        happened (``created``, ``healthy``, ``failed``, ``canceled``, ``superseded``, or
        the activity's verb). A deployment's ``created`` row has the diff against its
        parent (``what``, ``image_from``/``image_to``, ``env_*`` keys, ``summary``).
        ``attrs["notes"]`` says what could not be read (definitions kept raw).

    Examples
    --------
    >>> dep = pd.DataFrame({"id": ["d1", "d2"], "service_id": ["s", "s"],
    ...     "parent_id": [None, "d1"], "status": ["STOPPED", "HEALTHY"],
    ...     "created_at": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True),
    ...     "definition": [{"docker": {"image": "app:1"}}, {"docker": {"image": "app:2"}}]})
    >>> changes(dep)["summary"].tolist()
    ['first deployment known', 'image app:1 → app:2']
    """
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    dep = deployments if deployments is not None else pd.DataFrame()
    definitions = dict(zip(dep["id"], dep["definition"], strict=False)) \
        if "id" in dep and "definition" in dep else {}
    unreadable = 0
    for row in dep.to_dict("records"):
        status = str(_value(row, "status") or "")
        if status == "STASHED":
            continue
        parent = _value(row, "parent_id")
        old = definitions.get(parent) if parent is not None else None
        if parent is not None and parent not in definitions:
            old = None
        diff = diff_definitions(old, row.get("definition"))
        if diff["what"] == ["unreadable"]:
            unreadable += 1
        if parent is not None and parent not in definitions:
            diff["summary"] = f"parent {str(parent)[:8]} not loaded"
        base = {"service_id": _value(row, "service_id"), "app_id": _value(row, "app_id"),
                "kind": "deploy", "change_id": _value(row, "id"),
                "deployment_id": _value(row, "id"), "source": "deployment",
                "status": status or None, "trigger_type": _value(row, "trigger_type"),
                "trigger_actor": _value(row, "trigger_actor"),
                "git_sha": _value(row, "git_sha"), "git_message": _value(row, "git_message"),
                "actor": _value(row, "created_by")}
        events: list[tuple[str, Any, dict[str, Any] | None]] = [
            ("created", _value(row, "created_at"), diff)]
        events.append(("healthy", _value(row, "succeeded_at"), None))
        end = _value(row, "terminated_at")
        if status in ("ERROR", "ERRORING", "UNHEALTHY"):
            events.append(("failed", end, None))
        elif status in ("CANCELED", "CANCELING"):
            events.append(("canceled", end, None))
        elif status in ("STOPPED", "STOPPING"):
            events.append(("superseded", end, None))
        for event, at, d in events:
            if at is None:
                continue
            rows.append({**base, "event": event, "changed_at": at,
                         **({k: d[k] for k in ("what", "image_from", "image_to",
                                               "env_added", "env_removed", "env_changed",
                                               "summary")} if d else
                            {"summary": f"deployment {event}"})})
    if unreadable:
        notes.append(f"{unreadable} deployment definition(s) could not be read: kept raw "
                     "in the deployments frame, their diff says 'definition unreadable'")
    known = set(dep["id"]) if "id" in dep else set()
    act = activities if activities is not None else pd.DataFrame()
    for row in act.to_dict("records"):
        verb = str(_value(row, "verb") or "")
        otype = _value(row, "object_type")
        if otype == "deployment" and _value(row, "object_id") in known \
                and verb in _DEPLOYMENT_VERBS:
            continue
        kind = "deploy" if otype == "deployment" else _KINDS.get(verb, "other")
        count, prev = _value(row, "count"), _value(row, "previous_count")
        region = _value(row, "region")
        if verb in ("autoscaled", "manually-scaled"):
            text = f"{verb} {'' if prev is None else f'{prev} → '}{count}" + \
                (f" ({region})" if region else "")
        else:
            text = f"{otype or 'object'} {_value(row, 'object_name') or ''} {verb}".strip()
        rows.append({"changed_at": _value(row, "created_at"),
                     "service_id": _value(row, "service_id"), "app_id": _value(row, "app_id"),
                     "kind": kind, "event": verb or "unknown", "change_id": _value(row, "id"),
                     "deployment_id": _value(row, "object_id") if otype == "deployment"
                     else None, "source": "activity", "summary": text,
                     "count_from": prev, "count_to": count, "region": region,
                     "actor": _value(row, "actor_name")})
    if not rows:
        out = _empty()
        out.attrs["notes"] = notes
        return out
    out = pd.DataFrame(rows)
    for c in CHANGE_COLUMNS:
        if c not in out:
            out[c] = None
    out = out[list(CHANGE_COLUMNS)]
    out["changed_at"] = pd.to_datetime(out["changed_at"], utc=True).astype(TIME_DTYPE)
    for c in ("count_from", "count_to"):
        out[c] = pd.array([None if v is None or v != v else int(v) for v in out[c]],
                          dtype="Int64")
    for c in ("what", "env_added", "env_removed", "env_changed"):
        out[c] = [v if isinstance(v, list) else [] for v in out[c]]
    for c in CHANGE_COLUMNS:
        if c not in ("changed_at", "count_from", "count_to", "what", "env_added",
                     "env_removed", "env_changed"):
            out[c] = out[c].astype(STRING_DTYPE)
    order = {"created": 0, "healthy": 1, "failed": 2, "canceled": 2, "superseded": 3}
    out["_o"] = out["event"].map(order).fillna(4)
    out = out.sort_values(["changed_at", "_o", "change_id"], kind="stable").drop(columns="_o")
    out = out.reset_index(drop=True)
    out.attrs["notes"] = notes
    return out


def _is_suspect(ch: pd.DataFrame, events: frozenset[str], *, unknown: bool) -> np.ndarray:
    event = ch["event"].astype(object)
    up = (ch["count_to"].astype("Float64") > ch["count_from"].astype("Float64")).fillna(False)
    known = event.isin(events)
    if unknown:
        known |= ch["kind"].astype(object).eq("other")
    mask: np.ndarray = (known & ~up.astype(bool)).to_numpy(bool)
    return mask


def suspects(incidents: pd.DataFrame, changes: pd.DataFrame, *,
             lookback: str | pd.Timedelta = "1h", by: str | None = None,
             events: Iterable[str] | None = None) -> pd.DataFrame:
    """For each incident, the changes of its group within ``lookback`` before it.

    Parameters
    ----------
    incidents
        From :func:`~koyeb_analytics.incidents` (its first column is the group).
    changes
        From :func:`changes`.
    lookback
        How far before an incident's start a change may be (default one hour).
    by
        The group column shared by both frames (default: the incidents' first column,
        ``service_id``).
    events
        Which change events may be suspects (default :data:`SUSPECT_EVENTS` and any
        activity of an unknown verb). A scale-up is never one: it adds capacity.

    Returns
    -------
    DataFrame
        One row per incident and change: ``incident`` (the incident's row number),
        the group, ``incident_start``, ``rank`` (1: nearest), ``before`` (the time
        from the change to the incident), then the change's columns. A change with
        several events appears once, at its latest event before the incident.

    Examples
    --------
    >>> inc = pd.DataFrame({"service_id": ["s"], "start": pd.to_datetime(
    ...     ["2026-01-01 12:00"], utc=True), "end": pd.to_datetime(["2026-01-01 12:20"],
    ...     utc=True)})
    >>> ch = pd.DataFrame({"service_id": ["s", "s"], "change_id": ["a", "b"],
    ...     "event": ["created", "created"], "kind": ["deploy", "deploy"],
    ...     "changed_at": pd.to_datetime(["2026-01-01 11:10", "2026-01-01 11:50"], utc=True)})
    >>> suspects(inc, ch)[["change_id", "rank"]].values.tolist()
    [['b', 1], ['a', 2]]
    """
    window = parse_duration(lookback, "lookback")
    if window < pd.Timedelta(0):
        raise ValueError(f"lookback must not be negative, got {lookback!r}")
    if not isinstance(incidents, pd.DataFrame) or not isinstance(changes, pd.DataFrame):
        raise TypeError("suspects takes the incidents frame and the changes frame")
    key = by or (incidents.columns[0] if len(incidents.columns) else "service_id")
    for name, frame, need in (("incidents", incidents, (key, "start")),
                              ("changes", changes, (key, "changed_at", "change_id"))):
        missing = [c for c in need if c not in frame]
        if missing:
            raise ValueError(f"{name} lacks the column(s) {missing}")
    ch = changes.copy()
    for c in ("event", "kind"):
        if c not in ch:
            ch[c] = "created" if c == "event" else "deploy"
    for c in ("count_from", "count_to"):
        if c not in ch:
            ch[c] = pd.array([None] * len(ch), dtype="Int64")
    keep = _is_suspect(ch, SUSPECT_EVENTS if events is None else frozenset(events),
                       unknown=events is None)
    ch = ch[keep & ch[key].notna().to_numpy(bool) & ch["changed_at"].notna().to_numpy(bool)]
    inc = pd.DataFrame({"incident": np.arange(len(incidents)),
                        key: incidents[key].astype(object).to_numpy(),
                        "incident_start": pd.to_datetime(incidents["start"].reset_index(
                            drop=True), utc=True).astype(TIME_DTYPE)})
    left = ch.assign(**{key: ch[key].astype(object)})
    pairs = inc.merge(left, on=key, how="inner")
    pairs["incident_start"] = pairs["incident_start"].astype(TIME_DTYPE)
    pairs["changed_at"] = pairs["changed_at"].astype(TIME_DTYPE)
    before = pairs["incident_start"] - pairs["changed_at"]
    pairs = pairs[(before >= pd.Timedelta(0)) & (before <= window)].copy()
    pairs["before"] = pairs["incident_start"] - pairs["changed_at"]
    pairs = pairs.sort_values(["incident", "before", "change_id"], kind="stable")
    pairs = pairs.drop_duplicates(["incident", "change_id"], keep="first")
    pairs["rank"] = pairs.groupby("incident").cumcount() + 1
    first = ["incident", key, "incident_start", "rank", "before", "changed_at"]
    rest = [c for c in changes.columns if c not in first]
    out = pairs[first + rest].reset_index(drop=True)
    out.attrs["lookback"] = str(window)
    return out
