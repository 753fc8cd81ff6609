"""Build logs (``type=build``): the simulator serves each deployment's build and deploy
step, filtered by deployment; ``ka.build_errors`` finds, for every incident a bad image
caused, the line of the failed deployment's build log that names the cause (graded
against the simulator's truth on three seeds)."""

from __future__ import annotations

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.load._builds import is_error_line

from .conftest import NOW, fast_client

SEEDS = (0, 1, 7)


@pytest.fixture(scope="module")
def small():
    with ka.simulate(seed=7, days=7, services=12, now=NOW) as sim:
        yield sim


def _query(c, **params):
    return c.get("/v1/streams/logs/query", params)


def _build_lines(c, deployment_id: str, created: pd.Timestamp, **extra) -> list[dict]:
    r = _query(c, type="build", deployment_id=deployment_id, order="asc", limit=1000,
               start=(created - pd.Timedelta("1h")).strftime("%Y-%m-%dT%H:%M:%SZ"),
               end=(created + pd.Timedelta("2h")).strftime("%Y-%m-%dT%H:%M:%SZ"), **extra)
    assert r["pagination"]["has_more"] is False
    return r["data"]


def test_build_logs_are_served_per_deployment_in_the_query_shape(small):
    truth = small.streams.build_truth()
    c = fast_client(small)
    dep = ka.load_deployments(c, progress=False)
    assert len(truth) and set(truth["deployment_id"]) <= set(dep["id"])
    a, b = truth.iloc[0], truth.iloc[1]
    lines_a = _build_lines(c, a["deployment_id"], a["created"])
    lines_b = _build_lines(c, b["deployment_id"], b["created"])
    assert lines_a and lines_b and lines_a != lines_b
    for entry in lines_a:
        assert set(entry) == {"msg", "created_at", "labels"}
        labels = entry["labels"]
        assert labels["type"] == "build" and "instance_id" not in labels
        assert labels["service_id"] == a["service_id"]
        assert labels["stream"] in ("stdout", "stderr", "koyeb")
    assert [e["created_at"] for e in lines_a] == sorted(e["created_at"] for e in lines_a)
    # The runtime query of the same deployment holds no build line, and a build query by
    # instance finds none (build lines belong to no instance).
    runtime = _query(c, deployment_id=a["deployment_id"], limit=1000,
                     start=(a["created"] - pd.Timedelta("1h")).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     end=(a["created"] + pd.Timedelta("2h")).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert all(e["labels"]["type"] == "runtime" for e in runtime["data"])
    some_instance = small.fleet.inst["id"][0]
    assert _build_lines(c, a["deployment_id"], a["created"],
                        instance_ids=some_instance) == []
    # The cursor pages a build log whole, in the loader too.
    paged = ka.load_logs(c, deployment_id=a["deployment_id"], type="build",
                         since=a["created"] - pd.Timedelta("1h"),
                         until=a["created"] + pd.Timedelta("2h"), slices=2, progress=False)
    assert paged["msg"].tolist() == [e["msg"] for e in lines_a]
    assert set(paged["type"].astype(str)) == {"build"}


def test_every_deployment_has_a_build_that_agrees_with_its_status(small):
    truth = small.streams.build_truth()
    c = fast_client(small)
    status = dict(zip(*(ka.load_deployments(c, progress=False)[k] for k in ("id", "status")),
                      strict=True))
    for row in truth.itertuples():
        msgs = [e["msg"] for e in _build_lines(c, row.deployment_id, row.created)]
        assert msgs[0].startswith(("Cloning ", "Pulling image ")), msgs[:2]
        assert any(m.startswith("Deploying ") for m in msgs)
        errors = [m for m in msgs if is_error_line(m)]
        if status[row.deployment_id] == "ERROR":
            assert row.error_line and any(row.error_line in m for m in msgs)
            assert any(m.startswith("Deployment failed") for m in msgs)
        else:
            assert not errors, (row.deployment_id, errors)
            if status[row.deployment_id] == "HEALTHY":
                assert msgs[-1].startswith("Deployment is healthy")
    # only the bad images' logs carry the cause itself
    assert set(truth.loc[truth["carries_cause"], "kind"]) == {"bad_image"}


def _graded(seed: int) -> tuple[int, int, list[str]]:
    """Bad-image incidents of a week, and how many have the cause's line in the build
    errors of their suspects."""
    with ka.simulate(seed=seed, days=7, services=12, now=NOW) as sim:
        c = fast_client(sim)
        w = ka.load_window(c, window="6D", until=sim.now, progress=False)
        ch = ka.load_changes(c, since=w.since, until=w.until)
        inc = ka.analyse(w).incidents
        sus = ka.suspects(inc, ch)
        truth = sim.changes.truth()
        builds = sim.streams.build_truth().set_index("deployment_id")
        bad = truth[(truth["kind"] == "bad_image") & (truth["start"] >= w.since)]
        errors = ka.build_errors(c, sus)
    found, missed = 0, []
    for row in bad.itertuples():
        hit = inc.index[(inc["service_id"] == row.service_id) & (inc["start"] <= row.end)
                        & (inc["end"] >= row.start)]
        positions = [inc.index.get_loc(h) for h in hit]
        mine = errors[errors["incident"].isin(positions)
                      & (errors["deployment_id"] == row.cause_id)]
        line = builds.loc[row.cause_id, "error_line"]
        if mine["msg"].str.contains(line, regex=False).any():
            found += 1
        else:
            missed.append(row.cause_id)
    return len(bad), found, missed


@pytest.mark.parametrize("seed", SEEDS)
def test_the_failed_deployments_error_line_is_found_for_every_bad_image_incident(seed):
    caused, found, missed = _graded(seed)
    assert caused >= 1
    assert found == caused, missed


def test_build_errors_checks_its_arguments_before_any_request():
    # A client of a closed port: a request would fail as a transport error, not these.
    c = ka.KoyebClient("t0ken", base_url="http://127.0.0.1:9", max_retries=0, timeout=1)
    with pytest.raises(TypeError, match="suspects must be a DataFrame"):
        ka.build_errors(c, [{"deployment_id": "d"}])
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['changed_at'\]"):
        ka.build_errors(c, pd.DataFrame({"deployment_id": ["d"]}))
    with pytest.raises(ValueError, match="around=.* must be a positive duration"):
        ka.build_errors(c, pd.DataFrame({"deployment_id": ["d"], "changed_at": [
            pd.Timestamp(NOW)]}), around="0min")
    with pytest.raises(TypeError, match="client must be a KoyebClient"):
        ka.build_errors("not a client", pd.DataFrame())
    # no deployment among the suspects: nothing to read, the same columns
    none = ka.build_errors(c, pd.DataFrame({"deployment_id": [None], "changed_at": [
        pd.Timestamp(NOW)]}))
    assert list(none.columns) == list(ka.load.BUILD_ERROR_COLUMNS) and none.empty
