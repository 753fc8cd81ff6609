"""The simulator's logs, metrics and catalog: the shapes of the real endpoints, a cursor
that pages a window whole, lines and samples that agree with the fleet's story."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.errors import BadRequestError

NOW = "2026-11-20T12:00:00Z"
NS_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")


@pytest.fixture(scope="module")
def story_sim():
    with ka.simulate(seed=3, days=2, services=5, now=NOW) as sim:
        yield sim


@pytest.fixture
def c(story_sim):
    client = story_sim.client(backoff_factor=0.01, backoff_max=0.05)
    yield client
    client.close()


def _service(sim) -> str:
    return sim.fleet.services[0].service_id


def _query(c, **params):
    return c.get("/v1/streams/logs/query", params)


def test_a_reply_has_the_api_shape(story_sim, c):
    r = _query(c, service_id=_service(story_sim), start="2026-11-20T10:00:00Z",
               end="2026-11-20T10:30:00Z", limit=5)
    assert set(r) == {"data", "pagination"}
    assert set(r["pagination"]) == {"has_more", "next_start", "next_end"}
    assert r["pagination"]["has_more"] is True and len(r["data"]) == 5
    for entry in r["data"]:
        assert set(entry) == {"msg", "created_at", "labels"}
        assert NS_TIME.match(entry["created_at"])
        labels = entry["labels"]
        assert labels["stream"] in ("stdout", "stderr", "koyeb")
        assert labels["service_id"] == _service(story_sim)
        assert ("instance_id" in labels) == (labels["stream"] != "koyeb")
    # desc is the default: newest first
    times = [e["created_at"] for e in r["data"]]
    assert times == sorted(times, reverse=True)


def _page_all(c, order, limit, **params):
    seen, pages = [], 0
    while True:
        r = _query(c, order=order, limit=limit, **params)
        pages += 1
        seen += [(e["created_at"], e["labels"].get("instance_id"), e["labels"]["stream"],
                  e["msg"]) for e in r["data"]]
        if not r["pagination"]["has_more"]:
            return seen, pages
        params = {**params, "start": r["pagination"]["next_start"],
                  "end": r["pagination"]["next_end"]}
        assert pages < 500


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_the_cursor_pages_a_window_whole_in_order(story_sim, c, order):
    window = dict(service_id=_service(story_sim), start="2026-11-20T09:00:00Z",
                  end="2026-11-20T09:15:00Z")
    whole = _query(c, order="asc", limit=1000, **window)
    assert not whole["pagination"]["has_more"]
    truth = [(e["created_at"], e["labels"].get("instance_id"), e["labels"]["stream"],
              e["msg"]) for e in whole["data"]]
    assert len(truth) > 100
    paged, pages = _page_all(c, order, 37, **window)
    assert pages >= len(truth) // 37
    assert sorted(set(paged)) == sorted(set(truth))
    assert paged == sorted(paged, reverse=(order == "desc"))


def test_lines_are_the_same_whatever_the_query(story_sim, c):
    sid = _service(story_sim)
    a = _query(c, service_id=sid, start="2026-11-20T09:00:00Z", end="2026-11-20T09:20:00Z",
               order="asc", limit=1000)["data"]
    b = _query(c, service_id=sid, start="2026-11-20T09:10:00Z", end="2026-11-20T09:30:00Z",
               order="asc", limit=1000)["data"]
    overlap = [e for e in a if e["created_at"] >= "2026-11-20T09:10:00"]
    assert overlap and overlap == [e for e in b if e["created_at"] < "2026-11-20T09:20:00"]


@pytest.mark.parametrize(("params", "field"), [
    ({"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T09:00:00Z"}, "start"),
    ({"limit": "1001"}, "limit"),
    ({"regex": "(unclosed"}, "regex"),
    ({"regex": "a", "text": "b"}, "regex"),
    ({"streams": "stdio"}, "streams"),
    ({"order": "sideways"}, "order"),
])
def test_bad_queries_are_refused_naming_the_field(story_sim, c, params, field):
    with pytest.raises(BadRequestError) as info:
        _query(c, service_id=_service(story_sim), **params)
    assert info.value.fields[0]["field"] == field


def test_a_query_must_name_what_it_reads(c):
    with pytest.raises(BadRequestError, match="at least one of"):
        _query(c, start="2026-11-20T10:00:00Z")


def test_text_regex_and_stream_filters(story_sim, c):
    window = dict(service_id=_service(story_sim), start="2026-11-20T06:00:00Z",
                  end="2026-11-20T10:00:00Z", limit=200)
    text = _query(c, text="healthz", **window)["data"]
    assert text and all("healthz" in e["msg"] for e in text)
    rx = _query(c, regex=r"processed job [0-9a-f]{8}", **window)["data"]
    assert rx and all(re.search(r"processed job [0-9a-f]{8}", e["msg"]) for e in rx)
    err = _query(c, streams="stderr", **window)["data"]
    assert err and {e["labels"]["stream"] for e in err} == {"stderr"}


def test_the_koyeb_stream_tells_the_lifecycle(story_sim, c):
    truth = story_sim.truth_intervals()
    inst = story_sim.fleet.inst
    flap = truth[(truth["status"] == "UNHEALTHY") & truth["end"].notna()
                 & ((truth["end"] - truth["start"]) > pd.Timedelta("45s"))
                 & (truth["start"] > pd.Timestamp(NOW) - pd.Timedelta("47h"))].iloc[0]
    sid = inst["service"][list(inst["id"]).index(flap["instance_id"])]
    r = _query(c, instance_ids=flap["instance_id"], streams="koyeb", order="asc", limit=1000,
               start=flap["start"].isoformat(), end=flap["end"].isoformat())
    msgs = [e["msg"] for e in r["data"]]
    assert msgs[0] == ka.simulator.STATUS_MESSAGES["UNHEALTHY"]
    # a failed health check every 10 s while unhealthy
    expected = (flap["end"] - flap["start"]) // pd.Timedelta("10s")
    assert abs(len(msgs) - 1 - expected) <= 1
    assert all(e["labels"]["service_id"] == sid for e in r["data"])


def test_app_errors_come_before_their_incidents(story_sim, c):
    truth = story_sim.streams.truth()
    app = truth[(truth["cause"] == "app_error") & (truth["kind"] == "flap")]
    assert len(app) >= 3
    for ep in app.head(3).itertuples():
        r = _query(c, instance_ids=ep.instance_id, streams="stderr", order="asc", limit=1000,
                   start=(ep.start - pd.Timedelta("30s")).isoformat(),
                   end=(ep.end + pd.Timedelta("1ms")).isoformat())
        hits = [e for e in r["data"] if ep.error_line in e["msg"]]
        assert hits, ep
        # and none of that error in the hour before
        before = _query(c, instance_ids=ep.instance_id, text=ep.error_line, limit=10,
                        start=(ep.start - pd.Timedelta("90min")).isoformat(),
                        end=(ep.start - pd.Timedelta("31s")).isoformat())["data"]
        assert before == []


def test_retention_hides_old_lines(story_sim, c):
    sid = _service(story_sim)
    story_sim.streams.retention_days = 1.0
    try:
        old = _query(c, service_id=sid, start="2026-11-19T00:00:00Z",
                     end="2026-11-19T06:00:00Z", limit=10)
    finally:
        story_sim.streams.retention_days = 30.0
    assert old["data"] == [] and old["pagination"]["has_more"] is False


def test_metrics_have_the_api_shape_and_labels(story_sim, c):
    sid = _service(story_sim)
    window = dict(service_id=sid, start="2026-11-20T10:00:00Z", end="2026-11-20T11:00:00Z")
    cpu = c.get("/v1/streams/metrics", {"name": "CPU_TOTAL_PERCENT", **window})["metrics"]
    assert cpu and all(set(m["labels"]) == {"instance_id"} for m in cpu)
    samples = cpu[0]["samples"]
    assert [s["timestamp"] for s in samples[:2]] == ["2026-11-20T10:00:00Z",
                                                       "2026-11-20T10:05:00Z"]
    assert all(0 <= s["value"] <= 100 for m in cpu for s in m["samples"])
    http = c.get("/v1/streams/metrics", {"name": "HTTP_THROUGHPUT", "step": "15m",
                                         **window})["metrics"]
    assert [m["labels"]["code"] for m in http] == ["2xx", "3xx", "4xx", "5xx"]
    assert len(http[0]["samples"]) == 5
    p99 = c.get("/v1/streams/metrics", {"name": "HTTP_RESPONSE_TIME_99P", **window})["metrics"]
    assert len(p99) == 1 and p99[0]["labels"] == {}
    with pytest.raises(BadRequestError, match="unknown metric"):
        c.get("/v1/streams/metrics", {"name": "CPU", **window})
    with pytest.raises(BadRequestError, match="step"):
        c.get("/v1/streams/metrics", {"name": "MEM_RSS", "step": "90s", **window})


def test_five_hundreds_follow_outages(story_sim, c):
    svc = next(s for s in story_sim.fleet.services if s.outages)
    oa, ob = (pd.Timestamp(x * 1000, tz="UTC") for x in svc.outages[0])
    r = c.get("/v1/streams/metrics", {
        "name": "HTTP_THROUGHPUT", "service_id": svc.service_id, "step": "1m",
        "start": (oa - pd.Timedelta("2h")).isoformat(), "end": ob.isoformat()})["metrics"]
    series = {m["labels"]["code"]: pd.Series(
        [s["value"] for s in m["samples"]],
        index=pd.to_datetime([s["timestamp"] for s in m["samples"]])) for m in r}
    share = series["5xx"] / sum(series.values())
    assert share[: oa - pd.Timedelta("30min")].max() < 0.1
    assert share[oa + pd.Timedelta("6min"):].max() > 0.5


def test_memory_climbs_before_an_out_of_memory_kill():
    with ka.simulate(seed=5, days=3, services=8, now=NOW) as sim:
        c = sim.client()
        truth = sim.streams.truth()
        oom = truth[truth["cause"] == "oom"].iloc[0]
        t = oom["start"]
        r = c.get("/v1/streams/metrics", {
            "name": "MEM_RSS", "instance_id": oom["instance_id"], "step": "1m",
            "start": (t - pd.Timedelta("1h")).isoformat(), "end": t.isoformat()})["metrics"]
        values = [s["value"] for s in r[0]["samples"]]
        catalog = {i["id"]: i["memory"] for i in c.get("/v1/catalog/instances")["instances"]}
        kind = sim.fleet.inst["type"][list(sim.fleet.inst["id"]).index(oom["instance_id"])]
        assert catalog[kind].endswith(("MB", "GB"))
        assert values[-1] > 1.3 * values[0]
        koyeb = c.get("/v1/streams/logs/query", {
            "instance_ids": oom["instance_id"], "streams": "koyeb", "text": "out of memory",
            "start": (t - pd.Timedelta("1min")).isoformat(),
            "end": (t + pd.Timedelta("1s")).isoformat()})["data"]
        assert len(koyeb) == 1


def test_a_bucket_of_platform_lines_alone_is_exactly_the_koyeb_part_of_the_whole_bucket():
    from koyeb_analytics.simulator._story import STREAMS, Lines

    with ka.simulate(seed=5, days=3, services=6, vocabulary="opaque",
                     now="2026-11-20T12:00:00Z") as sim:
        story = sim.streams.story
        koyeb = STREAMS.index("koyeb")
        span = story.platform_span
        last = int(story.now() // (story.bucket_us * span))
        checked = 0
        for b in range(last - 12, last):
            whole = Lines.concat([story.bucket(k) for k in range(b * span, (b + 1) * span)])
            want = whole.take(whole.stream() == koyeb)
            got = story.bucket(b, platform_only=True)
            assert np.array_equal(got.t, want.t) and np.array_equal(got.inst, want.inst)
            assert np.array_equal(got.family, want.family)
            assert np.array_equal(got.params, want.params)
            checked += len(got)
        assert checked > 100
