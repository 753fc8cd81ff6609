"""load_deployments and load_activities: the early stop at the window's start, the
guard against a listing that is not newest first, the deployments older than the
window fetched by id, clear errors, unknown verbs kept, partial rows on faults."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

import koyeb_analytics as ka

from .conftest import NOW, fast_client
from .hostile import TOKEN, HostileServer, rest

T0 = pd.Timestamp(NOW)


@pytest.fixture(scope="module")
def busy():
    """A fleet that redeploys often: a week of deployments spans several pages."""
    with ka.simulate(seed=2, days=21, services=10, now=NOW, redeploys_per_day=3) as sim:
        yield sim


def _all_deployments(client) -> list[dict]:
    rows, offset = [], 0
    while True:
        page = client.get("/v1/deployments", [("limit", "100"), ("offset", str(offset))])
        rows += page["deployments"]
        offset += 100
        if not page["has_next"]:
            return rows


def test_a_week_reads_at_most_one_page_beyond_the_window(busy):
    client = fast_client(busy)
    everything = _all_deployments(client)
    since = T0 - pd.Timedelta("7D")
    inside = [i for i, d in enumerate(everything) if pd.Timestamp(d["created_at"]) >= since]
    holding = max(inside) // 100 + 1
    assert len(everything) > (holding + 1) * 100, "the history must go on past the window"
    busy.requests.clear()
    dep = ka.load_deployments(client, since=since, until=T0, progress=False)
    listed = [r for r in busy.requests if r.path == "/v1/deployments"]
    assert len(listed) <= holding + 1 and dep.attrs["pages"] == len(listed)
    assert dep.attrs["pages_beyond"] == 1
    assert set(dep.loc[dep["in_window"], "id"]) == {everything[i]["id"] for i in inside}
    assert dep["created_at"].is_monotonic_increasing and dep.index.equals(
        pd.RangeIndex(len(dep)))
    assert str(dep["status"].dtype) == "category" and "STASHED" in dep["status"].cat.categories


def test_the_deployment_in_force_at_since_and_the_parents_are_kept(busy):
    client = fast_client(busy)
    since = T0 - pd.Timedelta("2D")
    dep = ka.load_deployments(client, since=since, until=T0, progress=False)
    before = dep[~dep["in_window"]]
    assert len(before) and (before["created_at"] < since).all()
    inside = dep[dep["in_window"] & (dep["status"] != "STASHED")]
    for _sid, rows in inside.groupby("service_id"):
        first = rows.sort_values("created_at").iloc[0]
        assert first["parent_id"] in set(before["id"])  # the one in force at since
    # every window row's parent is in the frame
    assert set(inside["parent_id"].dropna()) <= set(dep["id"])


def _deployment(created: pd.Timestamp, parent: str | None, service: str = "s1") -> dict:
    return {"id": str(uuid.uuid4()), "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "service_id": service, "app_id": "a1", "parent_id": parent or "",
            "child_id": "", "status": "HEALTHY", "definition": {"env": []}, "metadata": {}}


def _api(rows: list[dict], hidden: dict[str, dict] | None = None, *, count: bool = True,
         key: str = "deployments"):
    """A fake API serving ``rows`` in the order given; ``hidden`` ones only by id."""
    by_id = {r["id"]: r for r in rows} | (hidden or {})

    def route(req, srv):
        assert req.headers.get("authorization") == f"Bearer {TOKEN}"
        if req.path.startswith("/v1/deployments/"):
            row = by_id.get(req.path.rsplit("/", 1)[1])
            if row is None:
                return 404, {"status": 404, "code": "not_found", "message": "Not found"}, {}
            return 200, {"deployment": row}, {}
        limit, offset = int(req.query.get("limit", 20)), int(req.query.get("offset", 0))
        page = rows[offset: offset + limit]
        body = {key: page, "limit": limit, "offset": offset,
                "has_next": offset + len(page) < len(rows)}
        if count:
            body["count"] = len(rows)
        return 200, body, {}
    return route


def _chain(n: int, start: pd.Timestamp, step: str) -> list[dict]:
    rows, parent = [], None
    for k in range(n):
        row = _deployment(start + k * pd.Timedelta(step), parent)
        rows.append(row)
        parent = row["id"]
    return rows  # oldest first


def test_a_listing_not_newest_first_is_read_to_the_end_and_said():
    chain = _chain(250, T0 - pd.Timedelta("250h"), "1h")
    # oldest first: the first page is wholly older than the window
    with HostileServer(rest(_api(chain))) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url)
        dep = ka.load_deployments(client, window="10h", until=T0, progress=False)
    assert dep["in_window"].sum() == 10
    assert dep.attrs["order_broken"] > 0 and dep.attrs["pages"] == 3
    assert any("not newest first" in n for n in dep.attrs["notes"])


def test_newest_first_stops_early_and_fetches_an_unlisted_parent_by_id():
    chain = _chain(250, T0 - pd.Timedelta("250h"), "1h")
    listed = chain[::-1]
    hidden_parent = _deployment(T0 - pd.Timedelta("30D"), None, "s2")
    child = _deployment(T0 - pd.Timedelta("1h"), hidden_parent["id"], "s2")
    listed.insert(0, child)
    with HostileServer(rest(_api(listed, {hidden_parent["id"]: hidden_parent}))) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url)
        dep = ka.load_deployments(client, window="10h", until=T0, progress=False)
        paths = [r.path for r in srv.requests]
    # the page holding the window, then one wholly older; never the third
    assert dep.attrs["pages"] == 2 and dep.attrs["order_broken"] == 0
    assert paths.count("/v1/deployments") == 2 and dep.attrs["pages_beyond"] == 1
    assert f"/v1/deployments/{hidden_parent['id']}" in paths and dep.attrs["fetched_by_id"] == 1
    row = dep.set_index("id").loc[hidden_parent["id"]]
    assert not row["in_window"]
    # s1: the deployment in force at since came on the page read, without a fetch
    assert (dep["service_id"].eq("s1") & ~dep["in_window"]).sum() == 1


def test_a_parent_that_no_longer_exists_is_a_finding_not_a_failure():
    orphan = _deployment(T0 - pd.Timedelta("1h"), str(uuid.uuid4()))
    with HostileServer(rest(_api([orphan]))) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url)
        dep = ka.load_deployments(client, window="10h", until=T0, progress=False)
    assert len(dep) == 1 and any("no longer exists" in n for n in dep.attrs["notes"])


def test_bad_deployment_ids_fail_clearly(client):
    with HostileServer(rest(_api([]))) as srv:
        hostile = ka.KoyebClient(TOKEN, base_url=srv.url)
        with pytest.raises(ValueError, match="full deployment id"):
            ka.get_deployment(hostile, "dep-1")
        with pytest.raises(TypeError, match="deployment_id must be a string"):
            ka.get_deployment(hostile, 42)
        with pytest.raises(ValueError, match="unknown deployment status 'BROKEN'"):
            ka.load_deployments(hostile, statuses=["BROKEN"])
        assert srv.requests == []  # nothing was sent
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(ka.NotFoundError, match=f"deployment {missing} does not exist"):
        ka.get_deployment(client, missing)


def test_get_deployment_has_every_field(client):
    dep = ka.load_deployments(client, progress=False)
    one = ka.get_deployment(client, dep["id"].iloc[-1])
    assert one["id"] == dep["id"].iloc[-1] and "role" in one and "skip_build" in one
    assert isinstance(one["definition"], dict)


def test_activities_keep_unknown_verbs_and_stop_at_a_wholly_older_page(busy):
    client = fast_client(busy)
    busy.requests.clear()
    act = ka.load_activities(client, window="1D", until=T0, progress=False)
    assert act.attrs["pages_beyond"] == 1
    assert len([r for r in busy.requests if r.path == "/v1/activities"]) == act.attrs["pages"]
    every = ka.load_activities(client, progress=False)
    assert act.attrs["pages"] < every.attrs["pages"]
    unknown = every[~every["verb_known"]]
    assert len(unknown) and set(unknown["verb"]) == {"payment_succeeded"}
    assert any("unknown verb" in n for n in every.attrs["notes"])
    scaled = every[every["verb"] == "autoscaled"]
    assert len(scaled) and scaled["count"].notna().all() and scaled["previous_count"].notna().all()
    assert (scaled["count"] != scaled["previous_count"]).all()
    one = every.loc[every["service_id"].notna(), "service_id"].iloc[0]
    mine = ka.load_activities(client, service_id=one, progress=False)
    assert len(mine) and (mine["service_id"] == one).all()


def test_activities_out_of_order_are_said_and_still_stop():
    def act(t):
        return {"id": str(uuid.uuid4()), "created_at": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "verb": "created", "object": {"type": "secret"}, "actor": {}, "metadata": {}}
    rows = [act(T0 - pd.Timedelta(hours=h)) for h in (1, 3, 2, 30, 31, 50, 51)]
    with HostileServer(rest(_api(rows, count=False, key="activities"))) as srv:
        client = ka.KoyebClient(TOKEN, base_url=srv.url)
        out = ka.load_activities(client, window="10h", until=T0, progress=False)
        # pages of 100: one page, everything on it
    assert len(out) == 3 and out.attrs["order_broken"] == 1
    assert any("not newest first" in n for n in out.attrs["notes"])


def test_a_fault_part_way_keeps_the_rows_received(busy):
    client = fast_client(busy, max_retries=1)
    busy.inject("503", times=None, after=1, path="/v1/deployments")
    try:
        with pytest.raises(ka.IncompleteListingError) as info:
            ka.load_deployments(client, window="7D", until=T0, progress=False)
    finally:
        busy.clear_faults()
    assert len(info.value.partial) == 100 and info.value.pages == 1
    assert str(info.value.partial["status"].dtype) == "category"
