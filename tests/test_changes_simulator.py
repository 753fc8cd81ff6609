"""The simulator's deployments and activities: the real shapes (koyeb-sdk parses every
reply, with no field it does not know), consistent with the instances it serves, and a
ground truth of which change caused which incident."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import BaseModel

import koyeb_analytics as ka

from .conftest import NOW, fast_client


@pytest.fixture(scope="module")
def story():
    with ka.simulate(seed=4, days=4, services=8, now=NOW, outages=2) as sim:
        client = fast_client(sim)
        deployments, offset = [], 0
        while True:
            page = client.get("/v1/deployments", [("limit", "25"), ("offset", str(offset))])
            deployments += page["deployments"]
            offset += 25
            if not page["has_next"]:
                break
        activities = client.get("/v1/activities", [("limit", "20")])
        yield sim, client, deployments, activities, page


def _unknown(model: BaseModel, raw: object, where: str = "") -> list[str]:
    """Keys of ``raw`` the model does not declare, at any depth."""
    if not isinstance(raw, dict):
        return []
    known = set(type(model).model_fields)
    out = [f"{where}.{k}" for k in raw if k not in known]
    for name in known & set(raw):
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out += _unknown(value, raw[name], f"{where}.{name}")
        elif isinstance(value, list):
            for k, (v, r) in enumerate(zip(value, raw[name] or [], strict=False)):
                if isinstance(v, BaseModel):
                    out += _unknown(v, r, f"{where}.{name}[{k}]")
    return out


def test_koyeb_sdk_parses_every_reply_and_knows_every_field(story):
    # Imported here: the SDK takes seconds to import, which every process collecting
    # this file (each test worker) would pay.
    from koyeb.api.models import Activity, ActivityList, GetDeploymentReply, ListDeploymentsReply

    sim, client, deployments, activities, last = story
    parsed = ListDeploymentsReply.from_dict({**last, "deployments": deployments})
    assert len(parsed.deployments) == len(deployments) > 10
    for raw, item in zip(deployments, parsed.deployments, strict=True):
        assert _unknown(item, raw) == []
        assert item.status is not None and item.definition is not None
    one = client.get(f"/v1/deployments/{deployments[0]['id']}")
    reply = GetDeploymentReply.from_dict(one)
    assert _unknown(reply.deployment, one["deployment"]) == []
    assert reply.deployment.role is not None and reply.deployment.skip_build is not None
    acts = ActivityList.from_dict(activities)
    assert acts.has_next is True and len(acts.activities) == 20
    assert "count" not in activities  # the API's ActivityList has none
    for raw, item in zip(activities["activities"], acts.activities, strict=True):
        assert _unknown(item, raw) == [] and isinstance(item, Activity)


def test_listing_is_newest_first_with_count_stashed_nulls_and_org_tokens(story):
    sim, client, deployments, _, last = story
    created = [pd.Timestamp(d["created_at"]) for d in deployments]
    assert created == sorted(created, reverse=True)
    assert last["count"] == len(deployments) and last["has_next"] is False
    statuses = {d["status"] for d in deployments}
    assert {"HEALTHY", "STOPPED", "ERROR"} <= statuses
    assert any(d["succeeded_at"] is None for d in deployments)  # null, not absent
    assert any("created_by" not in d for d in deployments)      # organisation tokens
    assert any("created_by" in d for d in deployments)
    only = client.get("/v1/deployments", [("statuses", "ERROR"), ("limit", "100")])
    assert only["deployments"] and {d["status"] for d in only["deployments"]} == {"ERROR"}


def test_stashed_rows_are_served():
    with ka.simulate(seed=5, days=2, services=10, now=NOW) as sim:
        rows = fast_client(sim).get("/v1/deployments", [("limit", "100"),
                                                         ("statuses", "STASHED")])
    assert rows["deployments"], "a fleet of ten services has pending changes"
    for d in rows["deployments"]:
        assert d["started_at"] is None and d["parent_id"] and not d["child_id"]


def test_every_instance_deployment_exists_and_deployments_chain(story):
    sim, client, deployments, _, _ = story
    ids = {d["id"] for d in deployments}
    inst = ka.load_instances(client, progress=False, names=False)
    assert set(inst["xyz_deployment_id"]) <= ids
    by_service: dict[str, list[dict]] = {}
    for d in sorted(deployments, key=lambda d: d["created_at"]):
        if d["status"] != "STASHED":
            by_service.setdefault(d["service_id"], []).append(d)
    for chain in by_service.values():
        assert chain[0]["parent_id"] == ""
        for older, newer in zip(chain, chain[1:], strict=False):
            assert newer["parent_id"] == older["id"] and older["child_id"] == newer["id"]
        assert chain[-1]["child_id"] == ""
    # each deployment was created before its first instance
    first = inst.groupby("xyz_deployment_id")["created_at"].min()
    created = {d["id"]: pd.Timestamp(d["created_at"]) for d in deployments}
    assert all(created[dep] < t for dep, t in first.items())


def test_unknown_deployment_is_a_404(story):
    sim, client, *_ = story
    with pytest.raises(ka.NotFoundError):
        client.get("/v1/deployments/00000000-0000-4000-8000-000000000000")


def test_truth_names_a_change_shortly_before_each_caused_incident(story):
    sim, client, deployments, _, _ = story
    truth = sim.changes.truth()
    acts = []
    offset = 0
    while True:
        page = client.get("/v1/activities", [("limit", "100"), ("offset", str(offset))])
        acts += page["activities"]
        offset += 100
        if not page["has_next"]:
            break
    when = {d["id"]: pd.Timestamp(d["created_at"]) for d in deployments}
    when |= {a["id"]: pd.Timestamp(a["created_at"]) for a in acts}
    caused = truth[truth["cause_id"].notna()]
    assert len(caused) >= 2 and truth["cause_id"].isna().sum() >= 2
    for row in caused.itertuples():
        lead = row.start - when[row.cause_id]
        assert pd.Timedelta("3min") <= lead <= pd.Timedelta("15min")
    assert set(caused["kind"]) <= {"bad_image", "env_change", "scale_down"}
    # every outage the fleet was given has its cause
    outages = [(s.service_id, a) for s in sim.fleet.services for a, _ in s.outages]
    for sid, a in outages:
        at = pd.Timestamp(a * 1000, tz="UTC")
        hit = truth[(truth["service_id"] == sid) & (truth["start"] <= at + pd.Timedelta(
            "5min")) & (truth["end"] >= at)]
        assert len(hit) == 1 and hit["kind"].iloc[0] == "bad_image"


def test_a_chain_of_configuration_changes_that_removes_every_variable_still_builds():
    # Once earlier env changes have removed every variable, the next one adds one back
    # (it used to pick from an empty list: a 500 on /v1/deployments for some clocks).
    from koyeb_analytics.simulator._changes import Deployment

    with ka.simulate(seed=1, days=1, services=1) as sim:
        svc = sim.fleet.services[0]
        chain = [Deployment(id=f"d{k}", service_id=svc.service_id, app_id=svc.app_id,
                            created=k, cause="env_change") for k in range(60)]
        sim.changes._definitions(sim.fleet, svc, chain, ["u"])
    sizes = [len(d.definition["env"]) for d in chain]
    assert 0 in sizes  # the variables did run out on the way
    assert all(b >= 1 for a, b in zip(sizes, sizes[1:], strict=False) if a == 0)
