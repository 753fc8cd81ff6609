"""The simulator against the spec subset, over real sockets."""

from __future__ import annotations

import pandas as pd
import pytest
import requests

import koyeb_analytics as ka
from koyeb_analytics.schema import STATUSES

from .conftest import NOW, SPEC, validator


def raw(sim, path, params=None, token=True):
    headers = {"Authorization": f"Bearer {sim.token}"} if token else {}
    return requests.get(sim.url + path, params=params, headers=headers, timeout=10)


def response_validator(path, status, **kw):
    ref = SPEC["paths"][path]["get"]["responses"][str(status)]["schema"]["$ref"]
    return validator(ref.rsplit("/", 1)[1], **kw)


def item_keys(definition):
    return set(SPEC["definitions"][definition]["properties"])


@pytest.mark.parametrize("emit_nulls", [True, False])
def test_every_reply_validates_against_the_spec(emit_nulls):
    with ka.simulate(seed=3, days=2, services=4, now=NOW, emit_nulls=emit_nulls) as sim:
        checks = [
            ("/v1/instances", "/v1/instances", {"limit": "100"}, 200),
            ("/v1/instances", "/v1/instances", {"statuses": ["HEALTHY", "ERROR"]}, 200),
            ("/v1/instance_events", "/v1/instance_events", {"limit": "100"}, 200),
            ("/v1/instances", "/v1/instances", {"limit": "0"}, 400),
            ("/v1/instances", "/v1/instances", {"statuses": "BOGUS"}, 400),
            ("/v1/instance_events", "/v1/instance_events", {"order": "sideways"}, 400),
            ("/v1/instances/{id}", "/v1/instances/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12,
             None, 404),
        ]
        iid = raw(sim, "/v1/instances", {"limit": "1"}).json()["instances"][0]["id"]
        checks.append(("/v1/instances/{id}", f"/v1/instances/{iid}", None, 200))
        for spec_path, path, params, status in checks:
            resp = raw(sim, path, params)
            assert resp.status_code == status, (path, params, resp.text)
            # strict spec when fields are omitted; null timestamps allowed when emitted
            response_validator(spec_path, status, nullable_times=emit_nulls).validate(resp.json())
        resp = raw(sim, "/v1/instances", token=False)
        assert resp.status_code == 401
        response_validator("/v1/instances", 401).validate(resp.json())
        assert resp.json() == {"status": 401, "code": "authentication_error",
                               "message": "Request unauthenticated with bearer"}


def test_every_field_is_emitted_with_null_for_unset(sim):
    items = raw(sim, "/v1/instances", {"limit": "100"}).json()["instances"]
    assert all(set(i) == item_keys("InstanceListItem") for i in items)
    running = [i for i in items if i["status"] == "HEALTHY"]
    one = raw(sim, f"/v1/instances/{running[0]['id']}").json()["instance"]
    assert set(one) == item_keys("Instance")
    assert one["terminated_at"] is None
    events = raw(sim, "/v1/instance_events", {"limit": "50"}).json()["events"]
    assert all(set(e) == item_keys("InstanceEvent") for e in events)


def test_omitting_mode_drops_unset_fields():
    with ka.simulate(seed=3, days=1, services=3, now=NOW, emit_nulls=False) as sim:
        items = raw(sim, "/v1/instances", {"limit": "100", "statuses": "HEALTHY"}).json()
        one = raw(sim, f"/v1/instances/{items['instances'][0]['id']}").json()["instance"]
        assert "terminated_at" not in one and "started_at" in one


def test_integers_are_numbers_and_replies_echo_paging(sim):
    body = raw(sim, "/v1/instances", {"limit": "7", "offset": "3", "order": "asc"}).json()
    assert (body["limit"], body["offset"], body["order"]) == (7, 3, "asc")
    assert isinstance(body["count"], int) and body["count"] == len(sim.fleet.inst["id"])
    assert len(body["instances"]) == 7
    assert all(isinstance(i["replica_index"], int) for i in body["instances"])
    ev = raw(sim, "/v1/instance_events", {"limit": "5"}).json()
    assert ev["has_next"] is True and "count" not in ev
    assert ev["order"] == "desc"  # the simulator's default order


def test_default_limit_is_20_and_limit_bounds(sim):
    assert raw(sim, "/v1/instances").json()["limit"] == 20
    for bad in ("0", "101", "-1", "ten"):
        resp = raw(sim, "/v1/instances", {"limit": bad})
        assert resp.status_code == 400
        assert resp.json()["fields"][0]["field"] == "limit"
    with ka.simulate(seed=1, days=1, services=1, now=NOW, limit_policy="cap") as capped:
        assert raw(capped, "/v1/instances", {"limit": "500"}).json()["limit"] == 100


def test_order_and_timestamps(sim):
    asc = raw(sim, "/v1/instance_events", {"limit": "100", "order": "asc"}).json()["events"]
    whens = pd.to_datetime([e["when"] for e in asc], format="ISO8601", utc=True)
    assert whens.is_monotonic_increasing
    assert all(e["when"].endswith("Z") for e in asc)
    desc = raw(sim, "/v1/instance_events", {"limit": "100", "order": "desc"}).json()["events"]
    whens = pd.to_datetime([e["when"] for e in desc], format="ISO8601", utc=True)
    assert whens.is_monotonic_decreasing



def test_event_rendering_matches_the_fleet():
    # Events are rendered a page at a time; ids, times (no fraction when it is zero, as
    # isoformat does) and instance ids must be exactly the fleet's.
    import numpy as np

    from koyeb_analytics.simulator._server import _ts

    sim = ka.Simulator(seed=4, days=1, services=2, now=NOW)
    ev = sim.fleet.ev
    ev["when"][0] -= ev["when"][0] % 1_000_000
    rows = np.arange(len(ev["when"]))
    got = sim._events_json(rows)
    assert [e["id"] for e in got] == sim.fleet.event_ids()
    assert [e["when"] for e in got] == [_ts(u) for u in ev["when"]]
    assert "." not in got[0]["when"] and "." in got[1]["when"]
    assert [e["instance_id"] for e in got] == [sim.fleet.inst["id"][i] for i in ev["instance"]]

def test_filters_use_repeated_keys(sim):
    body = raw(sim, "/v1/instances",
               [("statuses", "STOPPED"), ("statuses", "ERROR"), ("limit", "100")]).json()
    codes = sim.fleet.inst["status"]
    want = {STATUSES.index("STOPPED"), STATUSES.index("ERROR")}
    assert body["count"] == sum(int(c) in want for c in codes)
    # Both values are honoured, not only the last one.
    assert {i["status"] for i in body["instances"]} == {"STOPPED", "ERROR"}
    svc = body["instances"][0]["service_id"]
    by_svc = raw(sim, "/v1/instances", {"service_id": svc, "limit": "100"}).json()
    assert by_svc["count"] == int((sim.fleet.inst["service"] == svc).sum())
    ids = [i["id"] for i in body["instances"][:2]]
    ev = raw(sim, "/v1/instance_events",
             [("instance_ids", ids[0]), ("instance_ids", ids[1]), ("limit", "100")]).json()
    assert {e["instance_id"] for e in ev["events"]} == set(ids)
    typed = raw(sim, "/v1/instance_events", {"types": "instance.error", "limit": "100"}).json()
    assert {e["type"] for e in typed["events"]} == {"instance.error"}


def test_time_filters_select_overlapping_instances(sim):
    truth = sim.truth_intervals()
    life = truth.groupby("instance_id").agg(start=("start", "min"), end=("end", "max"),
                                             open=("end", lambda s: s.isna().any()))
    a, b = pd.Timestamp("2026-11-17T00:00:00Z"), pd.Timestamp("2026-11-17T06:00:00Z")
    expected = set(life.index[(life.start <= b) & (life.open | (life.end >= a))])
    got = set()
    offset = 0
    while True:
        page = raw(sim, "/v1/instances", {"starting_time": "2026-11-17T00:00:00Z",
                                          "ending_time": "2026-11-17T06:00:00Z",
                                          "limit": "100", "offset": str(offset)}).json()
        got |= {i["id"] for i in page["instances"]}
        offset += 100
        if offset >= page["count"]:
            break
    assert got == expected and got
    bad = raw(sim, "/v1/instances", {"starting_time": "yesterday"})
    assert bad.status_code == 400 and bad.json()["fields"][0]["field"] == "starting_time"


def test_unknown_instance_is_404_with_configurable_code():
    missing = "/v1/instances/5b1f7f0e-1111-4222-8333-444455556666"
    for code in ("not_found", "unknown_resource"):
        with ka.simulate(seed=1, days=1, services=1, now=NOW, not_found_code=code) as s:
            resp = raw(s, missing)
            assert resp.status_code == 404 and resp.json()["code"] == code


def test_wrong_token_is_401_and_token_is_fresh_each_start():
    with ka.simulate(seed=1, days=1, services=1, now=NOW) as a, \
            ka.simulate(seed=1, days=1, services=1, now=NOW) as b:
        assert a.token != b.token and len(a.token) == 64
        assert raw(a, "/v1/instances").status_code == 200
        resp = requests.get(a.url + "/v1/instances",
                            headers={"Authorization": f"Bearer {b.token}"}, timeout=5)
        assert resp.status_code == 401


def test_listens_on_loopback_only():
    with pytest.raises(ValueError, match="loopback"):
        ka.Simulator(host="0.0.0.0")
    with ka.simulate(seed=1, days=1, services=1, now=NOW) as s:
        assert s.url.startswith("http://127.0.0.1:")


def test_same_seed_same_fleet_and_truth_is_consistent_with_records():
    a = ka.Simulator(seed=5, days=2, services=5, now=NOW)
    b = ka.Simulator(seed=5, days=2, services=5, now=NOW)
    pd.testing.assert_frame_equal(a.truth_intervals(), b.truth_intervals())
    assert list(a.fleet.inst["id"]) == list(b.fleet.inst["id"])
    assert a.fleet.event_ids() == b.fleet.event_ids()
    truth = a.truth_intervals()
    # per instance, spans tile its life: each ends where the next starts
    for _, spans in truth.groupby("instance_id"):
        assert (spans["end"].iloc[:-1].to_numpy() == spans["start"].iloc[1:].to_numpy()).all()
    # the record's status is the last span's status
    last = truth.groupby("instance_id").tail(1).set_index("instance_id")["status"]
    status = pd.Series([STATUSES[c] for c in a.fleet.inst["status"]], index=a.fleet.inst["id"])
    assert (last.astype(str) == status[last.index]).all()


def test_fleet_has_the_lifecycles_an_analyst_meets(sim):
    truth = sim.truth_intervals()
    seen = set(truth["status"].astype(str))
    assert seen == set(STATUSES)
    # a replica slot that crashed got a new instance with the same replica index
    inst = sim.fleet.inst
    keys = pd.DataFrame({"rd": inst["regional_deployment"], "slot": inst["replica_index"]})
    assert keys.duplicated().any()


def test_planned_and_random_faults(fresh_sim):
    sim = fresh_sim
    sim.inject("503", times=2)
    assert [raw(sim, "/v1/instances").status_code for _ in range(3)] == [503, 503, 200]
    sim.inject("429", times=1, after=1, path="/v1/instance_events")
    assert raw(sim, "/v1/instances").status_code == 200
    assert raw(sim, "/v1/instance_events").status_code == 200
    resp = raw(sim, "/v1/instance_events")
    # As the real API, as far as is known: no body and no Retry-After by default.
    assert resp.status_code == 429 and resp.content == b"" and "Retry-After" not in resp.headers
    sim.faults.retry_after = 2
    sim.inject("429", times=1, path="/v1/instance_events")
    assert raw(sim, "/v1/instance_events").headers["Retry-After"] == "2"
    sim.faults.retry_after = None
    sim.inject("malformed")
    with pytest.raises(ValueError):
        raw(sim, "/v1/instances").json()
    sim.inject("drop")
    with pytest.raises(requests.ConnectionError):
        requests.get(sim.url + "/v1/instances", timeout=5,
                     headers={"Authorization": f"Bearer {sim.token}"})
    sim.faults.error_rate = 1.0
    assert raw(sim, "/v1/instances").status_code == 503
    sim.clear_faults()
    assert raw(sim, "/v1/instances").status_code == 200
    with pytest.raises(ValueError, match="unknown fault kind"):
        sim.inject("418")


def test_churn_adds_rows_between_requests(fresh_sim):
    sim = fresh_sim
    before = raw(sim, "/v1/instances").json()["count"]
    sim.faults.churn_per_request = 2
    after = raw(sim, "/v1/instances").json()["count"]
    assert after == before + 2
    newest = raw(sim, "/v1/instance_events", {"limit": "2"}).json()["events"]
    assert {e["type"] for e in newest} == {"instance.allocating"}


def test_apps_and_services_name_every_id_and_match_the_spec(sim):
    from .conftest import validator

    for path, key, definition, ids in (
            ("/v1/apps", "apps", "ListAppsReply", set(sim.fleet.inst["app"])),
            ("/v1/services", "services", "ListServicesReply", set(sim.fleet.inst["service"]))):
        seen: dict[str, str] = {}
        offset = 0
        while True:
            reply = raw(sim, path, {"limit": 3, "offset": offset}).json()
            validator(definition).validate(reply)
            seen.update({r["id"]: r["name"] for r in reply[key]})
            offset += len(reply[key])
            if not reply["has_next"]:
                break
        assert set(seen) == ids and reply["count"] == len(ids)
        assert all(name and len(name) < 40 for name in seen.values())
