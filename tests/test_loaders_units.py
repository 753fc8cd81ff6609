"""The loaders' parts one by one: argument checks, the queries sent (read by a scripted
server that is not the simulator), attrs, id chunks, read-ahead estimates, metadata."""

from __future__ import annotations

import math
import threading
import time
import warnings
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.api._checks import (
    check_bool,
    check_client,
    check_ids,
    check_statuses,
    check_str,
)
from koyeb_analytics.load._loaders import (
    MAX_QUERY_CHARS,
    _expand_metadata,
    _id_chunks,
    _pages_left,
    _time,
    overlapping,
)
from koyeb_analytics.timewindow import resolve_window

from .hostile import TOKEN, HostileServer, rest

BASE = pd.Timestamp("2026-11-20T00:00:00Z")
IID = "5b1f7f0e-1111-4222-8333-{:012d}"


def instance(k, status="HEALTHY", **extra):
    t = (BASE + pd.Timedelta(hours=k)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": IID.format(k), "created_at": t, "updated_at": t, "status": status, **extra}


def event(k, **extra):
    return {"id": f"ev-{k:04d}", "when": (BASE + pd.Timedelta(minutes=k)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"), "instance_id": IID.format(k % 3), "type": "t",
        "message": f"m{k}", "metadata": {}, **extra}


def listing(instances=(), events=()):
    instances, events = list(instances), list(events)

    def route(req, srv):
        limit, offset = int(req.query.get("limit", 100)), int(req.query.get("offset", 0))
        if req.path == "/v1/instances":
            return 200, {"instances": instances[offset:offset + limit],
                         "count": len(instances), "limit": limit, "offset": offset}, {}
        if req.path == "/v1/instance_events":
            wanted = parse_qs(urlsplit(req.target).query).get("instance_ids")
            rows = [e for e in events[::-1] if wanted is None or e["instance_id"] in wanted]
            rows = rows[offset:offset + limit]
            return 200, {"events": rows, "count": len(events), "limit": limit,
                         "offset": offset}, {}
        if req.path.startswith("/v1/instances/"):
            iid = req.path.rsplit("/", 1)[1]
            found = [r for r in instances if r["id"] == iid]
            if not found:
                return 404, {"code": "not_found", "message": "no such instance"}, {}
            return 200, {"instance": {**found[0], "hypervisor": "hv"}}, {}
        return 404, {"code": "not_found"}, {}
    return HostileServer(rest(route))


def client_for(srv, **options):
    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 5)
    return ka.KoyebClient(TOKEN, base_url=srv.url, **options)


def queries(srv, path):
    return [r.raw.decode().split(" ")[1].split("?", 1)[1] for r in srv.requests
            if r.path == path]


# -- argument checks ----------------------------------------------------------------
def test_checks_return_what_they_were_given_cleaned():
    assert check_statuses(None) == list(ka.STATUSES)
    assert check_statuses("healthy") == ["HEALTHY"]
    assert check_statuses(("stopped", "STOPPED", "Error")) == ["STOPPED", "ERROR"]
    assert check_ids("ids", None) is None
    assert check_ids("ids", "a") == ["a"]
    assert check_ids("ids", ["b", "a", "b"]) == ["b", "a"]
    assert check_ids("ids", []) == []
    assert check_str("app_id", None) is None and check_str("app_id", "x") == "x"
    assert check_bool("details", False) is False and check_bool("details", True) is True
    client = ka.KoyebClient(TOKEN, base_url="http://127.0.0.1:9")
    assert check_client(client) is client


@pytest.mark.parametrize("call, exc, message", [
    (lambda: check_statuses(5), TypeError,
     "statuses must be a status name or a list of them, got 5"),
    (lambda: check_statuses(["HEALTHY", "RUNNING"]), ValueError,
     "statuses: unknown status 'RUNNING'; expected some of ALLOCATING, STARTING, HEALTHY, "
     "UNHEALTHY, STOPPING, STOPPED, ERROR, SLEEPING"),
    (lambda: check_statuses([3]), ValueError, "statuses: unknown status 3; expected some"),
    (lambda: check_statuses([]), ValueError,
     "statuses must name at least one status (None means all 8)"),
    (lambda: check_ids("types", b"x"), TypeError,
     "types must be a string or a list of strings, got b'x'"),
    (lambda: check_ids("types", {"a": 1}), TypeError, "types must be a string or a list"),
    (lambda: check_ids("types", 7), TypeError, "types must be a string or a list"),
    (lambda: check_ids("types", ["ok", ""]), TypeError,
     "types must hold non-empty strings, got ''"),
    (lambda: check_ids("types", [" a"]), TypeError, "types must hold non-empty strings, "
                                                    "got ' a'"),
    (lambda: check_ids("types", ["a", None]), TypeError,
     "types must hold non-empty strings, got None"),
    (lambda: check_str("app_id", ""), TypeError, "app_id must be a non-empty string, got ''"),
    (lambda: check_str("app_id", 5), TypeError, "app_id must be a non-empty string, got 5"),
    (lambda: check_bool("names", 1), TypeError, "names must be True or False, got 1"),
    (lambda: check_client("x"), TypeError,
     "client must be a KoyebClient (sim.client() for the simulator, "
     "KoyebClient.from_env() for the API), got str"),
])
def test_checks_name_the_problem(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("kwargs, message", [
    ({"replica_index": -1}, "replica_index must be a non-negative integer, got -1"),
    ({"replica_index": True}, "replica_index must be a non-negative integer, got True"),
    ({"replica_index": 1.0}, "replica_index must be a non-negative integer, got 1.0"),
    ({"details": "yes"}, "details must be True or False"),
    ({"names": None}, "names must be True or False"),
    ({"progress": 0}, "progress must be True or False"),
    ({"service_id": ""}, "service_id must be a non-empty string"),
    ({"deployment_id": 1}, "deployment_id must be a non-empty string"),
    ({"regional_deployment_id": 1}, "regional_deployment_id must be a non-empty string"),
    ({"allocation_id": 1}, "allocation_id must be a non-empty string"),
    ({"app_id": 1}, "app_id must be a non-empty string"),
])
def test_load_instances_refuses_bad_arguments_before_any_request(kwargs, message):
    with listing() as srv:
        with pytest.raises((TypeError, ValueError)) as info:
            ka.load_instances(client_for(srv), **kwargs)
        assert str(info.value).startswith(message) and srv.requests == []


@pytest.mark.parametrize("kwargs, message", [
    ({"instance_ids": []}, "instance_ids is empty; pass None for every instance"),
    ({"instance_ids": [1]}, "instance_ids must hold non-empty strings"),
    ({"types": [""]}, "types must hold non-empty strings"),
    ({"expand_metadata": 1}, "expand_metadata must be True or False"),
    ({"progress": None}, "progress must be True or False"),
])
def test_load_events_refuses_bad_arguments_before_any_request(kwargs, message):
    with listing() as srv:
        with pytest.raises((TypeError, ValueError)) as info:
            ka.load_events(client_for(srv), **kwargs)
        assert str(info.value).startswith(message) and srv.requests == []


# -- what is sent, what is recorded -------------------------------------------------
def test_load_instances_sends_every_filter_and_records_the_query():
    rows = [instance(k) for k in range(3)]
    with listing(rows) as srv:
        df = ka.load_instances(
            client_for(srv, read_ahead="none"), app_id="a1", service_id="s/1",
            deployment_id="d1", regional_deployment_id="r1", allocation_id="al1",
            replica_index=0, statuses=["healthy", "ERROR"], since=BASE,
            until=BASE + pd.Timedelta(hours=10), names=False, progress=False)
        sent = queries(srv, "/v1/instances")
    assert sent == [
        "app_id=a1&service_id=s%2F1&deployment_id=d1&regional_deployment_id=r1&"
        "allocation_id=al1&replica_index=0&statuses=HEALTHY&statuses=ERROR&"
        "starting_time=2026-11-20T00%3A00%3A00.000000Z&"
        "ending_time=2026-11-20T10%3A00%3A00.000000Z&order=asc&limit=100&offset=0"]
    assert df["id"].tolist() == [r["id"] for r in rows]
    assert df.attrs["query"] == {
        "app_id": "a1", "service_id": "s/1", "deployment_id": "d1",
        "regional_deployment_id": "r1", "allocation_id": "al1",
        "statuses": ["HEALTHY", "ERROR"], "since": "2026-11-20T00:00:00+00:00",
        "until": "2026-11-20T10:00:00+00:00", "replica_index": 0}
    assert {k: df.attrs[k] for k in ("source", "simulated", "pages", "pages_discarded",
                                     "rows_received", "duplicates_dropped", "complete",
                                     "notes")} == {
        "source": srv.url, "simulated": False, "pages": 1, "pages_discarded": 0,
        "rows_received": 3, "duplicates_dropped": 0, "complete": True, "notes": []}
    assert isinstance(df.attrs["fetched_at"], pd.Timestamp)


def test_load_instances_without_filters_asks_for_every_status():
    with listing([instance(0)]) as srv:
        df = ka.load_instances(client_for(srv, read_ahead="none"), names=False,
                               progress=False)
        sent = queries(srv, "/v1/instances")
    statuses = "&".join(f"statuses={s}" for s in ka.STATUSES)
    assert sent == [f"{statuses}&order=asc&limit=100&offset=0"]
    assert df.attrs["query"] == {"statuses": list(ka.STATUSES)}


def test_load_events_sends_types_and_splits_long_id_lists():
    ids = [IID.format(k) for k in range(250)]
    evs = [event(k, instance_id=ids[i]) for k, i in enumerate((0, 130, 245, 5, 249))]
    with listing(events=evs) as srv, warnings.catch_warnings():
        warnings.simplefilter("error")
        df = ka.load_events(client_for(srv, read_ahead="none"), instance_ids=ids,
                            types=["t", "u"], progress=False)
        sent = queries(srv, "/v1/instance_events")
    assert len(sent) == 3    # 120 ids fill a query of 6000 characters
    assert [q.count("instance_ids=") for q in sent] == [120, 120, 10]
    assert all(q.startswith("types=t&types=u&order=desc&instance_ids=") for q in sent)
    assert all(q.endswith("&limit=100&offset=0") for q in sent)
    assert df.attrs["query"] == {"instance_ids": ids, "types": ["t", "u"]}
    assert df["id"].tolist() == [e["id"] for e in evs]   # every chunk's rows, once
    assert (df.attrs["pages"], df.attrs["duplicates_dropped"]) == (3, 0)


def test_load_events_window_is_kept_exactly():
    evs = [event(k) for k in range(30)]
    with listing(events=evs) as srv:
        df = ka.load_events(client_for(srv, read_ahead="none"),
                            since=BASE + pd.Timedelta(minutes=10),
                            until=BASE + pd.Timedelta(minutes=20), progress=False)
        only_since = ka.load_events(client_for(srv, read_ahead="none"),
                                    since=BASE + pd.Timedelta(minutes=25), progress=False)
        only_until = ka.load_events(client_for(srv, read_ahead="none"),
                                    until=BASE + pd.Timedelta(minutes=3), progress=False)
    assert df["message"].tolist() == [f"m{k}" for k in range(10, 20)]
    assert df.attrs["query"] == {"since": "2026-11-20T00:10:00+00:00",
                                 "until": "2026-11-20T00:20:00+00:00"}
    assert only_since["message"].tolist() == [f"m{k}" for k in range(25, 30)]
    assert only_until["message"].tolist() == ["m0", "m1", "m2"]


def test_expand_metadata():
    evs = [event(0, metadata={"a": 1, "b": {"c": "x"}}), event(1, metadata=None),
           event(2, metadata={"type": "clash", "a": 2})]
    with listing(events=evs) as srv:
        df = ka.load_events(client_for(srv), expand_metadata=True, progress=False)
    assert df["metadata_a"].tolist()[0::2] == [1, 2] and pd.isna(df["metadata_a"][1])
    assert df["metadata_b_c"].tolist()[0] == "x"
    assert df["metadata_type"].tolist()[2] == "clash" and df["type"].tolist() == ["t"] * 3
    assert list(df.index) == [0, 1, 2]
    empty = df.iloc[:0]
    assert _expand_metadata(empty) is empty
    clash = pd.DataFrame({"metadata": [{"x": 1}], "metadata_x": ["kept"]})
    assert _expand_metadata(clash).columns.tolist() == ["metadata", "metadata_x"]
    assert _expand_metadata(clash)["metadata_x"].tolist() == ["kept"]


# -- details and one instance -------------------------------------------------------
def test_details_and_get_instance():
    rows = [instance(k, status="STOPPED", terminated_at=None) for k in range(3)]
    with listing(rows) as srv:
        client = client_for(srv)
        df = ka.load_instances(client, details=True, names=False, progress=False)
        row = ka.get_instance(client, rows[1]["id"])
    assert df["hypervisor"].tolist() == ["hv"] * 3 and "details_missing" not in df.attrs
    assert df.attrs["rows_received"] == 3 and df.attrs["pages"] == 1
    assert row.name == rows[1]["id"] and row["hypervisor"] == "hv"
    assert row["status"] == "STOPPED" and "notes" not in row.attrs
    assert row["created_at"] == BASE + pd.Timedelta(hours=1)


@pytest.mark.parametrize("iid, exc, message", [
    (5, TypeError, "instance_id must be a string, got int"),
    ("5b1f7f0e", ValueError, "instance_id must be a full instance id (a UUID), got "
                             "'5b1f7f0e'"),
])
def test_get_instance_refuses_bad_ids(iid, exc, message):
    with pytest.raises(exc) as info:
        ka.get_instance(ka.KoyebClient(TOKEN, base_url="http://127.0.0.1:9"), iid)
    assert str(info.value) == message


@pytest.mark.parametrize("reply, message", [
    ({"instance": None}, "'instance' is null, not an object"),
    ({"instance": [1]}, "'instance' is list, not an object"),
    ({}, "'instance' is null, not an object"),
    ({"instance": {"id": IID.format(9) + "x" * 40}},
     "answered with another instance ('5b1f7f0e-1111-4222-8333-000000000009xxxx')"),
])
def test_get_instance_refuses_replies_that_are_not_the_instance(reply, message):
    with HostileServer(rest(lambda req, srv: (200, reply, {}))) as srv, \
            pytest.raises(ka.MalformedResponseError) as info:
        ka.get_instance(client_for(srv), IID.format(1))
    assert str(info.value).endswith(message)
    assert "/v1/instances/5b1f7f0e-1111-4222-8333-000000000001" in str(info.value)


def test_get_instance_notes_what_it_could_not_read():
    body = {**instance(1), "created_at": "yesterday"}
    with HostileServer(rest(lambda req, srv: (200, {"instance": body}, {}))) as srv:
        row = ka.get_instance(client_for(srv), IID.format(1))
    assert pd.isna(row["created_at"]) and len(row.attrs["notes"]) == 1
    assert "created_at" in row.attrs["notes"][0]


def test_a_failed_detail_keeps_the_rows_read():
    rows = [instance(k) for k in range(4)]

    def route(req, srv):
        if req.path == "/v1/instances":
            return 200, {"instances": rows, "count": 4}, {}
        if req.path.endswith("000000000002"):
            return 500, {"code": "internal", "message": "boom"}, {}
        return 200, {"instance": {**rows[int(req.path[-1])], "hypervisor": "hv"}}, {}
    with HostileServer(rest(route)) as srv, \
            pytest.raises(ka.IncompleteListingError) as info:
        ka.load_instances(client_for(srv, concurrency=1), details=True, names=False,
                          progress=False)
    partial = info.value.partial
    assert partial["id"].tolist() == [r["id"] for r in rows]
    assert partial["hypervisor"].tolist()[:2] == ["hv", "hv"]
    assert partial["hypervisor"].isna().tolist()[2:] == [True, True]
    assert partial.attrs["pages"] == 1 and partial.attrs["rows_received"] == 4


# -- small parts --------------------------------------------------------------------
def test_id_chunks_fill_the_query_and_no_more():
    one = "x" * 36
    cost = len("&instance_ids=") + 36
    per = MAX_QUERY_CHARS // cost
    assert MAX_QUERY_CHARS == 6000 and per * cost == 6000
    assert [len(c) for c in _id_chunks([one] * per)] == [per]
    assert [len(c) for c in _id_chunks([one] * (per + 1))] == [per, 1]
    assert _id_chunks([]) == [[]]
    assert _id_chunks(["a/b"]) == [["a/b"]]
    # quoting counts: "/" becomes "%2F"
    slash = "/" * 20
    assert [len(c) for c in _id_chunks([slash] * 81)] == [81]
    assert [len(c) for c in _id_chunks([slash] * 82)] == [81, 1]
    huge = "y" * 7000
    assert _id_chunks([huge, "a"]) == [[huge], ["a"]]


def page(newest, oldest):
    """A page of three events, newest first (the middle one halfway)."""
    return [{"when": (BASE + pd.Timedelta(minutes=m)).isoformat()}
            for m in (newest, (newest + oldest) / 2, oldest)]


def test_pages_left_estimates_from_the_time_each_page_covered():
    left = _pages_left(BASE)
    assert left(page(100, 90)) == 9.0          # 10 min a page, 90 min to go
    assert left(page(90, 60)) == 3.0           # 40 min in two pages: 20 a page, 60 to go
    assert left(page(60, 0)) == 0.0
    assert left(page(0, -30)) == 0.0           # past since: nothing left, never negative
    fresh = _pages_left(BASE)
    assert math.isnan(fresh(page(50, 50)))     # a page covering no time: no idea
    assert math.isnan(fresh([{"when": None}, {}]))
    assert fresh(page(40, 20)) == 2.0     # 3 pages read for 30 min: 10 a page, 20 to go
    assert math.isnan(_pages_left(None)(page(10, 0)))
    newest_only = _pages_left(BASE)
    assert math.isnan(newest_only([{"when": "bad"}, page(30, 30)[0]]))  # one time: no span
    assert newest_only(page(30, 10)) == 1.0


def test_time_reads_only_zoned_timestamps():
    assert _time({"when": "2026-11-20T00:00:00Z"}) == BASE
    assert _time({"when": "2026-11-20T01:00:00+01:00"}) == BASE
    for row in ({"when": "2026-11-20T00:00:00"}, {"when": "soon"}, {"when": 5}, {},
                ["when"], {"when": "NaT"}, {"when": "9999-99-99T00:00:00Z"}):
        assert _time(row) is None, row


def test_overlapping():
    created = pd.Series(pd.to_datetime([BASE, BASE + pd.Timedelta(hours=5),
                                        BASE + pd.Timedelta(hours=10)], utc=True))
    cols = {"created_at": created, "updated_at": created + pd.Timedelta(hours=1),
            "status": pd.Series(["STOPPED", "HEALTHY", "ERROR"])}
    assert overlapping(cols, resolve_window(None, None, None)) is None
    window = resolve_window(BASE + pd.Timedelta(hours=1), BASE + pd.Timedelta(hours=10),
                            None)
    # the first ended exactly at since: kept; the third was created at until: not
    assert overlapping(cols, window).tolist() == [True, True, False]
    later = resolve_window(BASE + pd.Timedelta(minutes=61), None, None)
    assert overlapping(cols, later).tolist() == [False, True, True]
    before = resolve_window(None, BASE + pd.Timedelta(hours=5), None)
    assert overlapping(cols, before).tolist() == [True, False, False]
    ended = {**cols, "terminated_at": pd.Series(pd.to_datetime(
        [pd.NaT, BASE, BASE + pd.Timedelta(hours=12)], utc=True))}
    assert overlapping(ended, later).tolist() == [False, False, True]


def test_a_listing_whose_every_time_is_unreadable_is_kept_with_a_note():
    rows = [{**instance(0), "created_at": "yesterday", "updated_at": None}]
    with listing(rows) as srv:
        df = ka.load_instances(client_for(srv), names=False, progress=False)
    assert df["id"].tolist() == [rows[0]["id"]] and df["created_at"].isna().all()
    assert str(df["created_at"].dtype) == "datetime64[us, UTC]"
    assert any("created_at" in n for n in df.attrs["notes"])


def test_progress_bars_appear_only_when_asked_and_say_what_they_count(capfd):
    rows = [instance(k) for k in range(401)]      # 5 pages, 401 instances to detail
    with listing(rows) as srv:
        ka.load_instances(client_for(srv), details=True, names=False, progress=False)
        assert capfd.readouterr().err == ""
        ka.load_instances(client_for(srv), details=True, names=False)   # progress: default
        err = capfd.readouterr().err
    # leave=False: each bar is wiped when done; its first drawing says what it counts
    assert "\rinstances:   0%|          | 0/5 [00:00<?, ?page/s]" in err
    assert "\rinstance details:   0%|          | 0/401 [00:00<?, ?instance/s]" in err
    with listing(rows[:100]) as srv:            # 100 details: no bar
        ka.load_instances(client_for(srv), details=True, names=False)
        assert "instance details" not in capfd.readouterr().err


def test_details_columns_and_a_detail_reply_that_is_not_an_instance():
    rows = [instance(k) for k in range(3)]
    with listing(rows) as srv:
        df = ka.load_instances(client_for(srv), details=True, names=False, progress=False)
    assert list(df.columns) == [*ka.schema.INSTANCE_COLUMNS, *ka.schema.INSTANCE_DETAIL_COLUMNS]
    assert list(df.index) == [0, 1, 2]

    def route(req, srv):
        if req.path == "/v1/instances":
            return 200, {"instances": rows, "count": 3}, {}
        return 200, {"instance": None}, {}
    with HostileServer(rest(route)) as srv, pytest.raises(ka.IncompleteListingError) as info:
        ka.load_instances(client_for(srv, concurrency=1), details=True, names=False,
                          progress=False)
    assert str(info.value).startswith("listing /v1/instances/{id} stopped after 1 page(s); "
                                      "3 row(s) received are kept in .partial. Cause: GET "
                                      f"/v1/instances/{rows[0]['id']}: 'instance' is null")
    assert info.value.pages == 1


def test_ids_from_a_listing_are_quoted_in_detail_paths():
    rows = [{**instance(0), "id": "a/../b c"}]
    with listing(rows) as srv:
        ka.load_instances(client_for(srv), details=True, names=False, progress=False)
        paths = [r.target for r in srv.requests if r.path != "/v1/instances"]
    assert paths == ["/v1/instances/a%2F..%2Fb%20c"]


def test_a_listing_that_fails_part_way_names_itself():
    rows = [instance(k) for k in range(250)]

    def route(req, srv):
        offset = int(req.query.get("offset", 0))
        if offset >= 100:
            return 500, {"code": "internal", "message": "boom"}, {}
        return 200, {"instances": rows[:100], "count": 250}, {}
    with HostileServer(rest(route)) as srv, pytest.raises(ka.IncompleteListingError) as info:
        ka.load_instances(client_for(srv, read_ahead="none"), names=False, progress=False)
    assert str(info.value).startswith("listing /v1/instances stopped after 1 page(s); 100 "
                                      "row(s) received are kept in .partial. Cause: ")
    assert len(info.value.partial) == 100 and info.value.pages == 1


def in_flight(key, rows, pause):
    """A listing route answering after ``pause`` seconds; ``state["most"]`` is the most
    requests it held at once."""
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def route(req, srv):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(pause)
        with lock:
            state["now"] -= 1
        offset, limit = int(req.query["offset"]), int(req.query["limit"])
        return 200, {key: rows[offset:offset + limit], "count": len(rows)}, {}
    return route, state


@pytest.mark.parametrize("read_ahead, most", [("none", 1), ("pipelined", 1), ("threads", 4)])
def test_requests_in_flight_follow_read_ahead(read_ahead, most):
    route, state = in_flight("instances", [instance(k) for k in range(500)], 0.2)
    with HostileServer(rest(route)) as srv:
        df = ka.load_instances(client_for(srv, read_ahead=read_ahead, concurrency=4),
                               names=False, progress=False)
    assert len(df) == 500 and state["most"] == most


def test_metadata_that_is_not_an_object_expands_to_nothing():
    evs = [event(0, metadata="text"), event(1, metadata=[1, 2]), event(2, metadata={"k": 1})]
    with listing(events=evs) as srv:
        df = ka.load_events(client_for(srv), expand_metadata=True, progress=False)
    assert df["metadata_k"].isna().tolist() == [True, True, False]
    assert [c for c in df.columns if c.startswith("metadata_")] == ["metadata_k"]


def test_a_failed_listing_is_typed_by_its_cause():
    def route(req, srv):
        if req.path == "/v1/instance_events":
            return 200, b"[not an object", {}
        return 503, {"code": "unavailable"}, {}
    with HostileServer(rest(route)) as srv:
        with pytest.raises(ka.IncompleteListingError) as info:
            ka.load_instances(client_for(srv), names=False, progress=False)
        assert type(info.value) is ka.IncompleteListingError
        assert str(info.value).startswith("listing /v1/instances stopped after 0 page(s)")
        with pytest.raises(ka.MalformedListingError) as info:
            ka.load_events(client_for(srv), progress=False)
        assert str(info.value).startswith("listing /v1/instance_events stopped after 0 "
                                          "page(s); 0 row(s) received")


def test_an_events_window_stops_at_the_first_page_reaching_past_since():
    evs = [event(k) for k in range(300)]          # pages of 100, newest first
    with listing(events=evs) as srv:
        df = ka.load_events(client_for(srv, read_ahead="none"),
                            since=BASE + pd.Timedelta(minutes=250), progress=False)
        assert (len(df), df.attrs["pages"]) == (50, 1)
        assert isinstance(df.attrs["fetched_at"], pd.Timestamp)
        # the oldest event of page one is exactly at since: the next page may hold more
        # events of that very time, so it is read
        df = ka.load_events(client_for(srv, read_ahead="none"),
                            since=BASE + pd.Timedelta(minutes=200), progress=False)
        assert (len(df), df.attrs["pages"]) == (100, 2)


def test_a_short_window_read_ahead_on_threads_wastes_no_page():
    evs = [event(k) for k in range(1000)]
    with listing(events=evs) as srv:
        df = ka.load_events(client_for(srv, read_ahead="threads", concurrency=4),
                            since=BASE + pd.Timedelta(minutes=850), progress=False)
        asked = len(queries(srv, "/v1/instance_events"))
    assert len(df) == 150 and (df.attrs["pages"], df.attrs["pages_discarded"], asked) == (
        2, 0, 2)


def test_events_progress_bar_and_requests_in_flight(capfd):
    evs = [event(k) for k in range(450)]
    with listing(events=evs) as srv:
        ka.load_events(client_for(srv), progress=False)
        assert capfd.readouterr().err == ""
        ka.load_events(client_for(srv))
        assert "\revents: " in capfd.readouterr().err
    for read_ahead, most in (("none", 1), ("threads", 4)):
        route, state = in_flight("events", evs[::-1], 0.1)
        with HostileServer(rest(route)) as srv:
            df = ka.load_events(client_for(srv, read_ahead=read_ahead, concurrency=4),
                                progress=False)
        assert len(df) == 450 and state["most"] == most, read_ahead


def test_details_narrow_the_window_by_the_exact_end():
    rows = [instance(0, status="STOPPED", updated_at="2026-11-20T05:00:00Z"),
            instance(1, status="STOPPED", updated_at="2026-11-20T05:00:00Z"),
            instance(2)]
    ends = {rows[0]["id"]: "2026-11-20T02:00:00Z", rows[1]["id"]: "2026-11-20T04:30:00Z"}

    def route(req, srv):
        if req.path == "/v1/instances":
            return 200, {"instances": rows, "count": 3}, {}
        iid = req.path.rsplit("/", 1)[1]
        body = next(r for r in rows if r["id"] == iid)
        return 200, {"instance": {**body, "terminated_at": ends.get(iid)}}, {}
    since = BASE + pd.Timedelta(hours=4)
    with HostileServer(rest(route)) as srv:
        df = ka.load_instances(client_for(srv), since=since, details=True, names=False,
                               progress=False)
    assert df["id"].tolist() == [rows[1]["id"], rows[2]["id"]]
    assert list(df.index) == [0, 1]
    assert list(df.columns) == [*ka.schema.INSTANCE_COLUMNS, *ka.schema.INSTANCE_DETAIL_COLUMNS]
    assert df.attrs["query"]["since"] == "2026-11-20T04:00:00+00:00"
    assert isinstance(df.attrs["fetched_at"], pd.Timestamp)


def test_frames_from_the_simulator_say_so():
    with ka.simulate(seed=3, days=1, services=1) as sim:
        inst = ka.load_instances(sim.client(), progress=False)
        ev = ka.load_events(sim.client(), window="1h", progress=False)
    assert inst.attrs["simulated"] is True and ev.attrs["simulated"] is True
    assert inst["service_name"].notna().all()
