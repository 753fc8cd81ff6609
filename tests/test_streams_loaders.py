"""load_logs and load_metrics against the simulator and against servers that lie: a
window read whole by time-slice cursors, every line once, retention said, units and
labels kept, bad input refused before any request, partial results kept on faults."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import koyeb_analytics as ka
from tests.hostile import TOKEN, HostileServer, rest

NOW = "2026-11-20T12:00:00Z"


@pytest.fixture(scope="module")
def lsim():
    with ka.simulate(seed=4, days=3, services=5, now=NOW) as sim:
        yield sim


@pytest.fixture
def c(lsim):
    client = lsim.client(backoff_factor=0.01, backoff_max=0.05)
    yield client
    client.close()


def _svc(sim):
    return sim.fleet.services[0].service_id


def _reference(c, **params):
    """The CLI's loop: one cursor, oldest first, limit 1000."""
    seen, params = [], {**params, "order": "asc", "limit": 1000}
    for _ in range(10_000):
        r = c.get("/v1/streams/logs/query", params)
        seen += [(pd.Timestamp(e["created_at"]), e["labels"].get("instance_id"),
                  e["labels"]["stream"], e["msg"]) for e in r["data"]]
        if not r["pagination"]["has_more"]:
            break
        params.update(start=r["pagination"]["next_start"], end=r["pagination"]["next_end"])
    return sorted(set(seen))


def _keys(df):
    return sorted(zip(df["ts"], df["instance_id"].astype(object).where(df["instance_id"].notna(),
                                                                      None),
                      df["stream"].astype(str), df["msg"], strict=True))


@pytest.mark.parametrize("slices", [1, 7])
def test_logs_are_read_whole_and_once_whatever_the_slicing(lsim, c, slices):
    window = dict(since="2026-11-20T08:00Z", until="2026-11-20T10:00Z")
    df = ka.load_logs(c, service_id=_svc(lsim), slices=slices, progress=False, **window)
    ref = _reference(c, service_id=_svc(lsim), start="2026-11-20T08:00:00Z",
                     end="2026-11-20T10:00:00Z")
    assert len(ref) > 2000
    assert _keys(df) == ref
    assert df["ts"].is_monotonic_increasing and df.attrs["slices"] == slices
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    assert df["ts"].dt.nanosecond.any()  # the API's nanoseconds are kept
    # the cursor sends tied lines again; they are dropped, and counted
    assert df.attrs["rows_received"] == len(df) + df.attrs["duplicates_dropped"]
    assert df.attrs["pages"] >= len(ref) // 1000 and df.attrs["complete"]


def test_koyeb_lines_have_no_instance_and_filters_pass_through(lsim, c):
    df = ka.load_logs(c, service_id=_svc(lsim), since="2026-11-19T00:00Z",
                      until="2026-11-20T00:00Z", streams=["koyeb", "stderr"], progress=False)
    assert set(df["stream"].astype(str)) == {"koyeb", "stderr"}
    assert df.loc[df["stream"] == "koyeb", "instance_id"].isna().all()
    assert df.loc[df["stream"] == "stderr", "instance_id"].notna().all()
    rx = ka.load_logs(c, service_id=_svc(lsim), since="2026-11-19T00:00Z",
                      until="2026-11-20T00:00Z", regex=r"slow query took \d+ms", progress=False)
    assert len(rx) and rx["msg"].str.contains("slow query took").all()


def test_a_window_past_the_retention_is_clipped_and_said(lsim, c):
    # The loader's present is the wall clock, the simulator's is fixed: a retention
    # reaching back to the simulator's last day.
    keep = pd.Timestamp.now(tz="UTC") - (lsim.now - pd.Timedelta("1D"))
    lsim.streams.retention_days = keep / pd.Timedelta("1D")
    try:
        df = ka.load_logs(c, service_id=_svc(lsim), since=lsim.now - pd.Timedelta("26h"),
                          until=lsim.now - pd.Timedelta("20h"), retention=keep, progress=False)
    finally:
        lsim.streams.retention_days = 30.0
    floor = pd.Timestamp(df.attrs["since"])
    assert lsim.now - pd.Timedelta("25h") < floor < lsim.now - pd.Timedelta("23h")
    assert len(df) and df["ts"].min() >= floor
    assert any("before the log retention" in n for n in df.attrs["notes"])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"since": "2026-11-20T10:00Z", "until": "2026-11-20T09:00Z"}, "earlier than"),
    ({"regex": "(unclosed"}, "does not compile"),
    ({"regex": "a", "text": "b"}, "not both"),
    ({"streams": ["stdio"]}, "unknown stream 'stdio'"),
    ({"type": "deploy"}, "type must be"),
    ({"slices": 0}, "slices"),
])
def test_bad_log_input_is_refused_before_any_request(lsim, c, kwargs, match):
    before = len(lsim.requests)
    args = {"service_id": _svc(lsim), "since": "2026-11-20T09:00Z",
            "until": "2026-11-20T10:00Z", **kwargs}
    with pytest.raises(ValueError, match=match):
        ka.load_logs(c, progress=False, **args)
    assert len(lsim.requests) == before


def test_logs_need_to_know_whose(c):
    with pytest.raises(ValueError, match="whose lines"):
        ka.load_logs(c, window="1h", progress=False)


def test_lines_that_are_not_utf8_are_kept_and_counted(lsim, c):
    lsim.streams.bad_utf8_share = 0.05
    try:
        df = ka.load_logs(c, service_id=_svc(lsim), since="2026-11-20T09:00Z",
                          until="2026-11-20T09:30Z", progress=False)
    finally:
        lsim.streams.bad_utf8_share = 0.0
    bad = df["msg"].str.contains("\ufffd")
    assert bad.sum() == df.attrs["bad_text"] > 0
    assert any("not UTF-8" in n for n in df.attrs["notes"])
    clean = ka.load_logs(c, service_id=_svc(lsim), since="2026-11-20T09:00Z",
                         until="2026-11-20T09:30Z", progress=False)
    assert len(clean) == len(df)


def test_metrics_are_one_long_frame_with_units_and_labels(lsim, c):
    svc = lsim.fleet.services[0]
    m = ka.load_metrics(c, service_id=svc.service_id, since="2026-11-20T06:00Z",
                        until="2026-11-20T10:00Z", step="15m")
    assert list(m.columns[:7]) == list(ka.schema.METRIC_COLUMNS)
    assert set(m["metric"].astype(str)) == set(ka.schema.METRIC_NAMES)
    assert m.attrs["requests"] == 9 and m.attrs["complete"]
    units = m.groupby("metric", observed=True)["unit"].first().astype(str).to_dict()
    assert units == ka.schema.METRIC_UNITS
    cpu = m[m["metric"] == "CPU_TOTAL_PERCENT"]
    assert cpu["instance_id"].notna().all() and cpu["code"].isna().all()
    assert cpu["value"].between(0, 100).all()
    http = m[m["metric"] == "HTTP_THROUGHPUT"]
    assert sorted(http["code"].unique()) == ["2xx", "3xx", "4xx", "5xx"]
    assert http["instance_id"].isna().all()
    assert (m["ts"].dt.minute % 15 == 0).all() and str(m["ts"].dtype) == "datetime64[us, UTC]"


def test_non_finite_samples_are_kept_as_missing_and_counted(lsim, c):
    lsim.streams.nan_share = 0.2
    try:
        m = ka.load_metrics(c, names="CPU_TOTAL_PERCENT", service_id=_svc(lsim),
                            since="2026-11-20T06:00Z", until="2026-11-20T10:00Z")
    finally:
        lsim.streams.nan_share = 0.0
    missing = int(m["value"].isna().sum())
    assert missing == m.attrs["non_finite"]["CPU_TOTAL_PERCENT"] > 0
    assert any("finite" in n for n in m.attrs["notes"])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"names": ["CPU"]}, "unknown metric 'CPU'"),
    ({"step": "90s"}, "step"),
    ({"instance_id": "x"}, "exactly one"),
    ({"since": "2026-11-20T10:00Z", "until": "2026-11-20T09:00Z"}, "earlier than"),
])
def test_bad_metric_input_is_refused_before_any_request(lsim, c, kwargs, match):
    before = len(lsim.requests)
    with pytest.raises(ValueError, match=match):
        ka.load_metrics(c, **{"service_id": _svc(lsim), **kwargs})
    assert len(lsim.requests) == before


def test_the_instance_catalog_reads_memory_as_bytes(c):
    types = ka.load_instance_types(c).set_index("type")
    assert types.loc["small", "memory_bytes"] == 2 ** 30
    assert types.loc["nano", "vcpu_shares"] == 0.25


# -- servers that lie --------------------------------------------------------------------

def _line(t: str, msg: str, iid: str = "i-1", stream: str = "stdout") -> dict:
    return {"msg": msg, "created_at": t,
            "labels": {"stream": stream, "instance_id": iid, "service_id": "s"}}


def _client(srv):
    return ka.KoyebClient(TOKEN, base_url=srv.url, max_retries=0, timeout=5,
                          read_ahead="none", concurrency=2)


def test_a_cursor_that_stands_still_ends_with_a_note():
    def route(req, srv):
        srv.state["n"] = srv.state.get("n", 0) + 1
        return 200, {"data": [_line("2026-11-20T10:00:00.000000001Z", f"x {srv.state['n']}")],
                     "pagination": {"has_more": True, "next_start": "2026-11-20T09:00:00Z",
                                    "next_end": "2026-11-20T11:00:00Z"}}, {}
    with HostileServer(rest(route)) as srv:
        df = ka.load_logs(_client(srv), service_id="s", since="2026-11-20T09:59Z",
                          until="2026-11-20T10:01Z", slices=1, progress=False)
    assert len(srv.requests) == 1
    assert not df.attrs["complete"] and df.attrs["gaps"]
    assert any("went back or stood still" in n for n in df.attrs["notes"])


def test_more_tied_lines_than_a_page_step_past_the_time_with_a_note():
    tie = "2026-11-20T10:00:00.000000007Z"

    def route(req, srv):
        if req.query["start"].startswith("2026-11-20T10:00:00.000000007"):
            return 200, {"data": [_line(tie, f"same {k}") for k in range(1000)],
                         "pagination": {"has_more": True, "next_start": tie,
                                        "next_end": req.query["end"]}}, {}
        if req.query["start"] > tie:
            return 200, {"data": [_line("2026-11-20T10:00:01Z", "after")],
                         "pagination": {"has_more": False}}, {}
        return 200, {"data": [_line(tie, f"same {k}") for k in range(1000)],
                     "pagination": {"has_more": True, "next_start": tie,
                                    "next_end": req.query["end"]}}, {}
    with HostileServer(rest(route)) as srv:
        df = ka.load_logs(_client(srv), service_id="s", since="2026-11-20T09:59Z",
                          until="2026-11-20T10:01Z", slices=1, progress=False)
    assert len(srv.requests) <= 4
    assert len(df) == 1001 and df.attrs["duplicates_dropped"] >= 1000
    assert any("share the time" in n for n in df.attrs["notes"])


def test_lines_outside_the_window_and_repeats_across_pages_are_dropped():
    def route(req, srv):
        page = srv.state.get("page", 0)
        srv.state["page"] = page + 1
        lines = [_line("2026-11-20T08:00:00Z", "too early"),
                 _line("2026-11-20T10:00:00Z", "kept"),
                 _line("2026-11-20T10:00:00Z", "kept")]  # the same line twice
        more = page == 0
        return 200, {"data": lines, "pagination": {
            "has_more": more, "next_start": "2026-11-20T10:00:00Z" if more else None,
            "next_end": req.query["end"]}}, {}
    with HostileServer(rest(route)) as srv:
        df = ka.load_logs(_client(srv), service_id="s", since="2026-11-20T09:00Z",
                          until="2026-11-20T11:00Z", slices=1, progress=False)
    assert df["msg"].tolist() == ["kept"]
    assert df.attrs["outside_window"] == 2 and df.attrs["duplicates_dropped"] == 3


def test_a_failure_keeps_what_was_read_and_names_the_gap():
    def route(req, srv):
        if req.query["start"] >= "2026-11-20T10":
            return 503, {"code": "unavailable", "message": "down"}, {}
        return 200, {"data": [_line(req.query["start"], "early")],
                     "pagination": {"has_more": False}}, {}
    with HostileServer(rest(route)) as srv, pytest.raises(ka.IncompleteListingError) as info:
        ka.load_logs(_client(srv), service_id="s", since="2026-11-20T09:00Z",
                     until="2026-11-20T11:00Z", slices=2, progress=False)
    partial = info.value.partial
    assert partial["msg"].tolist() == ["early"]
    assert partial.attrs["gaps"] == [("2026-11-20T10:00:00+00:00", "2026-11-20T11:00:00+00:00")]


def test_raw_bytes_and_lone_surrogates_in_a_reply_keep_the_line():
    body = json.dumps({"data": [_line("2026-11-20T10:00:00Z", "PLACEHOLDER"),
                                _line("2026-11-20T10:00:01Z", "\udcff escaped")],
                       "pagination": {"has_more": False}})
    raw = body.replace("PLACEHOLDER", "bad \xff byte").encode("latin-1")

    def handler(conn, srv):
        from tests.hostile import http_reply
        while srv.next_request(conn) is not None:
            http_reply(conn, 200, raw)
    with HostileServer(handler) as srv:
        df = ka.load_logs(_client(srv), service_id="s", since="2026-11-20T09:00Z",
                          until="2026-11-20T11:00Z", slices=1, progress=False)
    assert df["msg"].tolist() == ["bad \ufffd byte", "\ufffd escaped"]
    assert df.attrs["bad_text"] == 2


def test_metric_samples_in_every_bad_shape():
    def route(req, srv):
        return 200, {"metrics": [
            {"labels": {"instance_id": "i-1", "region": "fra"}, "samples": [
                {"timestamp": "2026-11-20T10:00:00Z", "value": 1.5},
                {"timestamp": "2026-11-20T10:05:00Z", "value": "NaN"},
                {"timestamp": "2026-11-20T10:10:00Z"},
                {"timestamp": "2026-11-20T10:15:00Z", "value": None},
                {"timestamp": "not a time", "value": 3},
                {"timestamp": "2026-11-20T10:20:00Z", "value": "Infinity"}]},
            "garbage"]}, {}
    with HostileServer(rest(route)) as srv:
        m = ka.load_metrics(_client(srv), names="CPU_TOTAL_PERCENT", service_id="s",
                            since="2026-11-20T10:00Z", until="2026-11-20T11:00Z")
    assert len(m) == 5 and m["value"].isna().sum() == 4
    assert m.attrs["non_finite"] == {"CPU_TOTAL_PERCENT": 4} and m.attrs["bad_time"] == 1
    assert m["region"].tolist() == ["fra"] * 5
    assert np.isclose(m["value"].iloc[0], 1.5)


def test_a_failed_metric_keeps_the_others():
    def route(req, srv):
        if req.query.get("name") == "MEM_RSS":
            return 500, {"code": "internal", "message": "boom"}, {}
        return 200, {"metrics": [{"labels": {}, "samples": [
            {"timestamp": "2026-11-20T10:00:00Z", "value": 2}]}]}, {}
    with HostileServer(rest(route)) as srv, pytest.raises(ka.IncompleteListingError) as info:
        ka.load_metrics(_client(srv), names=["CPU_TOTAL_PERCENT", "MEM_RSS"], service_id="s",
                        since="2026-11-20T10:00Z", until="2026-11-20T11:00Z")
    assert info.value.partial["metric"].astype(str).tolist() == ["CPU_TOTAL_PERCENT"]
    assert info.value.partial.attrs["missing"] == ["MEM_RSS"]
