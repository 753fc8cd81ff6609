"""Loaders of what changed: deployments and activities, as typed frames.

Neither listing has a time filter. Deployments come newest first by all evidence
(``koyeb-api-beyond-instances.md`` §1) with ``count`` and ``has_next``; activities have
no ``count`` and no documented order (§2). Both are read newest first until a page is
wholly older than the window. The deployments' order is checked as the rows arrive:
if it is ever not newest first, the early stop is not trusted, the listing is read to
its end and a finding says so. Activities stop at a wholly older page whatever the
order (a finding says when it was not newest first).

Paging is :meth:`KoyebClient.pages` (has_next style, with a stop rule per listing),
bounded whatever the server says.

Long because two listings of different promises (count and order for one, neither for
the other), the by-id fetches of the context and their findings share one module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import pandas as pd

from ..api._checks import check_bool, check_client, check_ids, check_statuses, check_str
from ..api._client import KoyebClient
from ..api._paging import Page, PageStats
from ..errors import (
    IncompleteListingError,
    KoyebError,
    MalformedListingError,
    MalformedResponseError,
    NotFoundError,
)
from ..schema import (
    ACTIVITY_COLUMNS,
    DEPLOYMENT_COLUMNS,
    DEPLOYMENT_STATUSES,
    deployment_status_dtype,
    is_full_id,
)
from ..timewindow import DurationLike, TimeLike, TimeWindow, resolve_window, utcnow
from ._frames import Collector

KNOWN_VERBS: frozenset[str] = frozenset({
    "created", "updated", "deleted", "succeeded", "failed", "paused", "resumed",
    "autoscaled", "manually-scaled", "manual_scaling_deleted", "attached", "detached",
})
"""Activity verbs the console's guards name (``activity-guards.ts``); others are kept,
with ``verb_known`` False."""
MAX_CHAIN = 20
"""The most parents fetched by id, one after the other, for one service."""


def _raw_schema(schema: dict[str, str]) -> dict[str, str]:
    # The collector knows str/time/int/object; these two are typed after it.
    return {k: ("str" if v == "deployment_status" else "object" if v == "bool" else v)
            for k, v in schema.items()}


def typed(df: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    """Give the columns the collector cannot type their dtypes (status, booleans)."""
    for name, kind in schema.items():
        if name not in df:
            continue
        if kind == "deployment_status":
            values = df[name].astype(object)
            known = {v for v in values.dropna().unique() if isinstance(v, str)}
            df[name] = pd.Categorical(values.where(values.notna(), None),
                                      dtype=deployment_status_dtype(known))
        elif kind == "bool":
            df[name] = df[name].map(lambda v: bool(v) if v is not None and v == v
                                    else False).astype(bool)
    return df


def _obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (a server may send anything)."""
    return value if isinstance(value, dict) else {}


def _time(value: Any) -> pd.Timestamp | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if ts is pd.NaT or ts.tzinfo is None:
        return None
    return ts.tz_convert("UTC")


class _Order:
    """Watch a newest-first listing: notice rows newer than what came before them."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.oldest: pd.Timestamp | None = None
        self.broken = 0

    def page(self, page: Page) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        """Check ``page``; return its newest and oldest times."""
        times = [t for t in (_time(r.get(self.field)) if isinstance(r, dict) else None
                             for r in page) if t is not None]
        for t in times:
            if self.oldest is not None and t > self.oldest:
                self.broken += 1
            self.oldest = t if self.oldest is None else min(self.oldest, t)
        return (max(times), min(times)) if times else (None, None)


class _Older:
    """Whether a page is wholly older than ``since``, judged once per page.

    The pager may ask about a page before the loop reads it (when it reads ahead), so
    the order is checked the first time a page is seen and the answer kept.
    """

    def __init__(self, order: _Order, since: pd.Timestamp | None) -> None:
        self.order, self.since = order, since
        self.judged: dict[int, tuple[Page, bool]] = {}  # the page is held: ids stay unique

    def __call__(self, page: Page) -> bool:
        key = id(page)
        if key not in self.judged:
            newest, _ = self.order.page(page)
            self.judged[key] = (page, self.since is not None and newest is not None
                                and newest < self.since)
        return self.judged[key][1]


def _fail(exc: KoyebError, what: str, partial: pd.DataFrame, pages: int) -> Exception:
    cls = MalformedListingError if isinstance(exc, MalformedResponseError) else \
        IncompleteListingError
    return cls(what, partial, pages, exc)


def _attrs(df: pd.DataFrame, client: KoyebClient, query: dict[str, Any], stats: PageStats,
           collector: Collector, fetched_at: pd.Timestamp, **extra: Any) -> pd.DataFrame:
    df.attrs.update({
        "source": client.base_url,
        "simulated": bool(getattr(client, "simulated", False)),
        "query": query, "fetched_at": fetched_at, "pages": stats.pages,
        "rows_received": stats.rows, "duplicates_dropped": collector.duplicates,
        "complete": stats.complete, "notes": list(stats.notes) + collector.notes(), **extra})
    return df


# ---------------------------------------------------------------------- deployments

def _flat_deployment(raw: Any) -> Any:
    """A deployment row with the trigger, git and image fields lifted out of ``metadata``,
    ``provisioning_info`` and ``definition``; unset ids (``""``) become missing."""
    if not isinstance(raw, dict):
        return raw
    row = dict(raw)
    meta = _obj(row.get("metadata"))
    trigger = _obj(meta.get("trigger"))
    git = _obj(trigger.get("git"))
    prov = _obj(row.get("provisioning_info"))
    definition = _obj(row.get("definition"))
    docker = _obj(definition.get("docker"))
    gsource = _obj(definition.get("git"))
    row["trigger_type"] = trigger.get("type")
    row["trigger_actor"] = trigger.get("actor")
    row["git_sha"] = git.get("sha") or prov.get("sha") or gsource.get("sha") or None
    row["git_message"] = git.get("message") or None
    row["image"] = docker.get("image") or prov.get("image") or None
    for key in ("parent_id", "child_id", "created_by", "organization_id", "app_id",
                "service_id"):
        if row.get(key) == "":
            row[key] = None
    return row


def _deployment_of(reply: dict[str, Any], path: str) -> dict[str, Any]:
    body = reply.get("deployment")
    if not isinstance(body, dict):
        kind = "null" if body is None else type(body).__name__
        raise MalformedResponseError(f"GET {path}: 'deployment' is {kind}, not an object")
    return body


def _check_deployment_id(deployment_id: Any) -> str:
    if not isinstance(deployment_id, str):
        raise TypeError(f"deployment_id must be a string, got {type(deployment_id).__name__}")
    if not is_full_id(deployment_id):
        raise ValueError(f"deployment_id must be a full deployment id (a UUID), got "
                         f"{deployment_id!r}")
    return deployment_id


def _fetch_deployment(client: KoyebClient, deployment_id: str) -> dict[str, Any]:
    path = f"/v1/deployments/{quote(deployment_id, safe='')}"
    try:
        body = _deployment_of(client.get(path), path)
    except NotFoundError as exc:
        raise NotFoundError(exc.status, exc.code, f"deployment {deployment_id} does not "
                            "exist", exc.fields, path=path) from exc
    if body.get("id") != deployment_id:
        raise MalformedResponseError(
            f"GET {path} answered with another deployment ({str(body.get('id'))[:40]!r})")
    return body


def get_deployment(client: KoyebClient, deployment_id: str) -> pd.Series:
    """Fetch one deployment with every field.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    deployment_id
        The full deployment id (a UUID); checked before any request.

    Returns
    -------
    Series
        Indexed by the deployment columns (plus ``role``, ``skip_build`` and any field
        the API adds); named after the id.

    Raises
    ------
    NotFoundError
        No deployment has this id (the message names it).

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     c = sim.client()
    ...     dep = ka.load_deployments(c, progress=False)["id"][0]
    ...     row = ka.get_deployment(c, dep)
    >>> row["id"] == dep
    True
    """
    _check_deployment_id(deployment_id)
    check_client(client)
    body = _fetch_deployment(client, deployment_id)
    collector = Collector(_raw_schema(DEPLOYMENT_COLUMNS))
    row = _flat_deployment(body)
    row["in_window"] = True
    collector.add([row])
    out = typed(collector.frame(), DEPLOYMENT_COLUMNS).iloc[0].copy()
    out.name = deployment_id
    return out


def load_deployments(
    client: KoyebClient,
    *,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    window: DurationLike | None = None,
    app_id: str | None = None,
    service_id: str | None = None,
    statuses: Iterable[str] | str | None = None,
    context: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Load the deployments created in a window, and those in force when it opened.

    The API has no time filter: the listing is read newest first and stops once a page
    is wholly older than ``since`` (one page beyond those holding the window). If the
    rows are ever not newest first, the stop is not trusted: the listing is read to the
    end and ``attrs["notes"]`` says so. With ``context``, two kinds of deployment older
    than the window are kept too (``in_window`` False): per service, the one in force
    at ``since`` and the parent of the first one in the window; those not among the
    pages read are fetched by id (outside the one-page bound).

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    since, until, window
        Keep deployments created in ``[since, until)``; ``window="7d"``: the last week.
    app_id, service_id
        Filters passed to the API.
    statuses
        Deployment statuses to list (the API's sixteen, ``STASHED`` included); all by
        default.
    context
        Keep the deployments in force at ``since`` and the parents (see above).
    progress
        Accepted for symmetry with the other loaders (deployments are few pages).

    Returns
    -------
    DataFrame
        One row per deployment, sorted by ``created_at`` then ``id``; see
        :data:`koyeb_analytics.schema.DEPLOYMENT_COLUMNS`. ``attrs`` holds the query,
        pages read, ``pages_beyond`` (pages read wholly older than ``since``),
        ``fetched_by_id`` and the notes.

    Raises
    ------
    IncompleteListingError
        The listing failed part way; ``.partial`` holds every row received.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=2, services=3) as sim:
    ...     dep = ka.load_deployments(sim.client(), window="1d", progress=False)
    >>> str(dep["status"].dtype)
    'category'
    """
    check_client(client)
    tw = resolve_window(since, until, window)
    filters = {name: check_str(name, value) for name, value in (
        ("app_id", app_id), ("service_id", service_id))}
    status_list = None if statuses is None else check_statuses(
        statuses, known=DEPLOYMENT_STATUSES, kind="deployment status")
    check_bool("context", context)
    check_bool("progress", progress)
    params = [(k, v) for k, v in filters.items() if v is not None]
    params += [("statuses", s) for s in status_list or []]
    query: dict[str, Any] = {**{k: v for k, v in filters.items() if v is not None},
                             **{k: v for k, v in tw.as_dict().items() if v is not None}}
    if status_list is not None:
        query["statuses"] = status_list
    stats = PageStats()
    order = _Order("created_at")
    fetched_at = utcnow()
    beyond = [0]
    by_id: list[str] = []
    rows: list[dict[str, Any]] = []
    ids: set[str] = set()

    def new_rows(page: Page) -> int:
        return sum(1 for r in page if isinstance(r, dict) and isinstance(r.get("id"), str)
                   and r["id"] not in ids)

    def finish() -> pd.DataFrame:
        collector = Collector(_raw_schema(DEPLOYMENT_COLUMNS))
        collector.add(_select(rows, tw, context))
        df = typed(collector.frame(order=("created_at", "id")), DEPLOYMENT_COLUMNS)
        return _attrs(df, client, query, stats, collector, fetched_at,
                      pages_beyond=beyond[0], fetched_by_id=len(by_id),
                      order_broken=order.broken)

    try:
        older = _Older(order, tw.since)

        def stop(page: Page) -> bool:
            # A page wholly older than the window ends the listing, unless rows came
            # out of order before it.
            return older(page) and not order.broken

        for page in client.pages("/v1/deployments", params, key="deployments",
                                 paging="has_next", stats=stats, seen=new_rows, stop=stop):
            flat = [_flat_deployment(r) for r in page if isinstance(r, dict)]
            ids.update(r["id"] for r in flat if isinstance(r.get("id"), str))
            rows.extend(flat)
            beyond[0] += older(page)
        if order.broken:
            stats.note(f"/v1/deployments: {order.broken} row(s) came newer than rows "
                       "before them (the listing is not newest first): read to the end "
                       "instead of stopping at the window's start")
        if context and tw.since is not None:
            _fetch_context(client, rows, tw, stats, by_id)
    except KoyebError as exc:
        raise _fail(exc, "/v1/deployments", finish(), stats.pages) from exc
    return finish()


def _dedupe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[Any] = set()
    out = []
    for r in rows:
        key = r.get("id")
        if key is not None and key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out


def _fetch_context(client: KoyebClient, rows: list[dict[str, Any]], tw: TimeWindow,
                   stats: PageStats, by_id: list[str]) -> None:
    """Fetch by id, per service, the parents that reach back to before ``since``."""
    since = tw.since
    if since is None:
        return
    known = {r.get("id"): r for r in rows}
    first: dict[Any, tuple[pd.Timestamp, dict[str, Any]]] = {}
    for r in rows:
        t = _time(r.get("created_at"))
        if t is None or t < since or r.get("status") == "STASHED":
            continue
        sid = r.get("service_id")
        if sid not in first or t < first[sid][0]:
            first[sid] = (t, r)
    for sid, (_, row) in first.items():
        current = row
        for _ in range(MAX_CHAIN):
            parent = current.get("parent_id")
            if not isinstance(parent, str) or not parent:
                break
            found = known.get(parent)
            if found is None:
                if not is_full_id(parent):
                    stats.note(f"deployment {current.get('id')}: parent_id {parent[:40]!r} "
                               "is not a deployment id")
                    break
                try:
                    found = _flat_deployment(_fetch_deployment(client, parent))
                except NotFoundError:
                    stats.note(f"deployment {current.get('id')}: its parent {parent} no "
                               "longer exists")
                    break
                by_id.append(parent)
                known[parent] = found
                rows.append(found)
            t = _time(found.get("created_at"))
            if t is None or t < since:
                break
            current = found
        else:
            stats.note(f"service {sid}: more than {MAX_CHAIN} parents in the window were "
                       "not listed; the deployment in force at the window's start is "
                       "unknown")


def _select(rows: list[dict[str, Any]], tw: TimeWindow, context: bool) -> list[dict[str, Any]]:
    """The window's rows, and (with ``context``) per service the newest one before it
    and the parents of the window's rows, marked ``in_window`` False."""
    out: list[dict[str, Any]] = []
    before: dict[Any, tuple[pd.Timestamp, dict[str, Any]]] = {}
    parents: set[Any] = set()
    for r in _dedupe(rows):
        t = _time(r.get("created_at"))
        if tw.until is not None and t is not None and t >= tw.until:
            continue
        if tw.since is None or (t is not None and t >= tw.since):
            out.append({**r, "in_window": True})
            parents.add(r.get("parent_id"))
        elif t is not None and r.get("status") != "STASHED":
            sid = r.get("service_id")
            if sid not in before or t > before[sid][0]:
                before[sid] = (t, r)
    if context and tw.since is not None:
        chosen = {id(r) for _, r in before.values()}
        for r in _dedupe(rows):
            t = _time(r.get("created_at"))
            if t is not None and t < tw.since and (id(r) in chosen or r.get("id") in parents):
                out.append({**r, "in_window": False})
    return out


# ---------------------------------------------------------------------- activities

def _flat_activity(raw: Any) -> Any:
    if not isinstance(raw, dict):
        return raw
    row = dict(raw)
    obj = _obj(raw.get("object"))
    actor = _obj(raw.get("actor"))
    meta = _obj(raw.get("metadata"))
    ometa = _obj(obj.get("metadata"))
    verb = raw.get("verb")
    row["verb_known"] = isinstance(verb, str) and verb in KNOWN_VERBS
    row["object_type"] = obj.get("type")
    row["object_id"] = obj.get("id") or None
    row["object_name"] = obj.get("name")
    row["app_id"] = ometa.get("app_id") or (obj.get("id") if obj.get("type") == "app"
                                            else None) or None
    row["service_id"] = ometa.get("service_id") or (
        obj.get("id") if obj.get("type") == "service" else None) or None
    row["actor_type"] = actor.get("type")
    row["actor_name"] = actor.get("name")
    for key in ("count", "previous_count", "region"):
        row[key] = meta.get(key)
    messages = meta.get("messages")
    row["messages"] = list(messages) if isinstance(messages, list) else []
    row.pop("object", None)
    row.pop("actor", None)
    row["object"], row["actor"] = raw.get("object"), raw.get("actor")
    return row


def load_activities(
    client: KoyebClient,
    *,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    window: DurationLike | None = None,
    types: Iterable[str] | str | None = None,
    app_id: str | None = None,
    service_id: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Load the organisation's activities (the console's audit feed) of a window.

    The API has no time filter, no ``count`` and no documented order: pages are read
    until one is wholly older than ``since``, whatever the order; ``attrs["notes"]``
    says when rows were not newest first. Verbs no known guard names are kept, with
    ``verb_known`` False, and counted in the notes.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    since, until, window
        Keep activities created in ``[since, until)``.
    types
        Object types to list (``"deployment"``, ``"service"``...), passed to the API.
    app_id, service_id
        Keep only activities on this app or service (applied here: the API has no such
        filter).
    progress
        Accepted for symmetry with the other loaders.

    Returns
    -------
    DataFrame
        One row per activity, sorted by ``created_at`` then ``id``; see
        :data:`koyeb_analytics.schema.ACTIVITY_COLUMNS`. ``object`` and ``actor`` are
        kept whole as extra columns.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=2, services=3) as sim:
    ...     act = ka.load_activities(sim.client(), window="1d", progress=False)
    >>> "verb" in act
    True
    """
    check_client(client)
    tw = resolve_window(since, until, window)
    type_list = check_ids("types", types)
    app = check_str("app_id", app_id)
    service = check_str("service_id", service_id)
    check_bool("progress", progress)
    params = [("types", t) for t in type_list or []]
    query: dict[str, Any] = {k: v for k, v in tw.as_dict().items() if v is not None}
    for k, v in (("types", type_list), ("app_id", app), ("service_id", service)):
        if v is not None:
            query[k] = v
    collector = Collector(_raw_schema(ACTIVITY_COLUMNS))
    stats = PageStats()
    order = _Order("created_at")
    fetched_at = utcnow()
    beyond = [0]

    def keep(cols: Any) -> Any:
        t = cols["created_at"]
        mask = pd.Series(True, index=t.index)
        if tw.since is not None:
            mask &= t >= tw.since
        if tw.until is not None:
            mask &= ~(t >= tw.until)
        if app is not None:
            mask &= cols["app_id"] == app
        if service is not None:
            mask &= cols["service_id"] == service
        return mask.fillna(False)

    def finish() -> pd.DataFrame:
        df = typed(collector.frame(order=("created_at", "id"),
                                   needs=("app_id", "service_id"), select=keep),
                   ACTIVITY_COLUMNS)
        unknown = int((~df["verb_known"]).sum()) if len(df) else 0
        out = _attrs(df, client, query, stats, collector, fetched_at,
                     pages_beyond=beyond[0], order_broken=order.broken)
        if unknown:
            verbs = sorted({str(v) for v in df.loc[~df["verb_known"], "verb"].dropna()})
            out.attrs["notes"].append(f"{unknown} activit{'y' if unknown == 1 else 'ies'} "
                                      f"of unknown verb(s) kept: {', '.join(verbs[:10])}")
        return out

    try:
        older = _Older(order, tw.since)
        for page in client.pages("/v1/activities", params, key="activities",
                                 paging="has_next", stats=stats, seen=collector.count_new,
                                 stop=older):
            collector.add([_flat_activity(r) for r in page])
            beyond[0] += older(page)
        if order.broken:
            stats.note(f"/v1/activities: {order.broken} row(s) came newer than rows "
                       "before them (the feed is not newest first); the listing still "
                       "stopped at the first page wholly older than the window")
    except KoyebError as exc:
        raise _fail(exc, "/v1/activities", finish(), stats.pages) from exc
    return finish()


def select_window(df: pd.DataFrame, tw: TimeWindow, *, context: bool = True) -> pd.DataFrame:
    """The rows of a deployments frame that ``load_deployments`` would return for
    ``tw``: those created in it, and (with ``context``) per service the newest one
    before it and the parents of the window's rows, with ``in_window`` set.

    For frames read elsewhere (a history store), so that every source yields the same
    rows.
    """
    created = df["created_at"]
    inside = pd.Series(True, index=df.index)
    if tw.since is not None:
        inside &= created >= tw.since
    if tw.until is not None:
        inside &= ~(created >= tw.until)
    inside = inside.fillna(False).astype(bool)
    keep = inside.copy()
    if context and tw.since is not None:
        before = (created < tw.since).fillna(False).astype(bool) & \
            (df["status"].astype(object) != "STASHED")
        newest = df[before].sort_values(["created_at", "id"]).groupby(
            "service_id", observed=True).tail(1).index
        keep |= df.index.isin(newest)
        keep |= before & df["id"].isin(set(df.loc[inside, "parent_id"].dropna()))
    out = df[keep].copy()
    out["in_window"] = inside[keep].to_numpy(bool)
    return out.sort_values(["created_at", "id"], kind="stable").reset_index(drop=True)
