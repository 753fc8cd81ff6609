"""The fast forms must give exactly what the plain forms give: the simulator's log lines
rendered a family at a time and its instances' metrics computed at once, the loader's
labels coded column by column and metric replies read by Arrow instead of decoded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.load._streams import (
    _Columns,
    _log_frame,
    _metric_frame,
    _read_metric,
    _Slice,
)
from koyeb_analytics.schema import METRIC_NAMES
from koyeb_analytics.simulator._metrics import grid
from koyeb_analytics.simulator._story import FAMILIES, Lines

NOW = "2026-11-20T12:00:00Z"

# Integers at the edges of what the renderers mask, shift and format (negative ones too:
# the numpy forms must wrap as Python's masks do).
EDGES = [[0, 0, 0], [2**63 - 1, 2**63 - 1, 2**63 - 1], [-2**63, -1, -2**63],
         [2**32 - 1, 2**32, 2**16 - 1], [0xFFFF, 0x10000, 99999]]


@pytest.mark.parametrize("seed", [0, 1])
def test_lines_rendered_together_are_each_familys_own_texts(seed):
    rng = np.random.default_rng(seed)
    params = np.concatenate([rng.integers(0, 2**40, (4000, 3)),
                             rng.integers(-2**62, 2**62, (400, 3)),
                             np.array(EDGES * len(FAMILIES))])
    family = rng.integers(0, len(FAMILIES), len(params))
    family[-len(EDGES) * len(FAMILIES):] = np.repeat(np.arange(len(FAMILIES)), len(EDGES))
    lines = Lines(np.arange(len(params)), np.zeros(len(params), np.int64), family, params)
    want = [FAMILIES[f].render(a, b, c)
            for f, (a, b, c) in zip(family.tolist(), params.tolist(), strict=True)]
    assert lines.texts() == want
    assert Lines.empty().texts() == []


def _entry(t: int, msg: str, labels: object) -> dict[str, object]:
    return {"created_at": f"2026-11-20T10:00:00.{t:09d}Z", "msg": msg, "labels": labels}


def test_labels_of_every_shape_are_coded_as_each_line_says():
    page = [
        _entry(1, "a", {"stream": "stdout", "instance_id": "i-1", "service_id": "s"}),
        _entry(2, "b", {"stream": "koyeb", "service_id": "s"}),             # no instance
        _entry(3, "c", {"service_id": "s", "stream": "stderr", "instance_id": "i-2",
                        "region": "fra"}),                                    # extra label
        _entry(4, "d", {"stream": "stdout", "instance_id": 7, "service_id": "s"}),  # number
        _entry(5, "e", None),                                                 # no labels
        _entry(6, "f", {"stream": "stdout", "instance_id": "i-1", "service_id": "s"}),
    ]
    part = _Slice(0, 2**62)
    part.add(page)
    part.add([_entry(7, "g", {"stream": "stdout", "instance_id": "i-3", "service_id": "s"}),
              _entry(8, "h", {"stream": "stdout", "instance_id": ["i-4"],   # unhashable
                              "service_id": "s"})])
    df = _log_frame([part])
    assert df["msg"].tolist() == list("abcdefgh")
    assert df["instance_id"].astype(object).where(df["instance_id"].notna(), None).tolist() \
        == ["i-1", None, "i-2", "7", None, "i-1", "i-3", "['i-4']"]
    assert df["stream"].astype(object).where(df["stream"].notna(), None).tolist() \
        == ["stdout", "koyeb", "stderr", "stdout", None, "stdout", "stdout", "stdout"]
    assert df["region"].astype(object).where(df["region"].notna(), None).tolist() \
        == [None, None, "fra", None, None, None, None, None]


@pytest.fixture(scope="module")
def week():
    with ka.simulate(seed=4, days=3, services=2, now=NOW) as sim:
        yield sim


def test_instance_samples_at_once_are_each_instances_series(week):
    metrics = week.streams.metrics
    story = metrics.story
    story.refresh()
    now = story.now()
    for step in (300, 3600):
        t = grid(now - 3 * 86400 * 10**6 + 1, now, step * 10**6)
        for svc in range(len(week.fleet.services)):
            targets = np.flatnonzero(story.inst_service == svc).tolist()
            for name in ("CPU_TOTAL_PERCENT", "MEM_RSS"):
                inst, k, value = metrics.instance_samples(name, targets, t)
                want_inst, want_k, want_value = [], [], []
                for i in targets:
                    series = metrics.instance_series(name, i, t)
                    ok = np.flatnonzero(~np.isnan(series))
                    want_inst += [i] * len(ok)
                    want_k += ok.tolist()
                    want_value += series[ok].tolist()
                assert inst.tolist() == want_inst and k.tolist() == want_k
                assert value.tolist() == want_value  # the same floats, not close ones


def _metric_replies(sim, nan_share):
    sim.streams.nan_share = nan_share
    svc = sim.fleet.services[0].service_id
    client = sim.client()
    try:
        bodies = {name: client.get_parsed(
            "/v1/streams/metrics", {"service_id": svc, "name": name, "step": "1h",
                                    "start": "2026-11-18T12:00:00Z",
                                    "end": "2026-11-20T12:00:00Z"}, lambda body: body)
            for name in METRIC_NAMES}
    finally:
        client.close()
        sim.streams.nan_share = 0.0
    return bodies


@pytest.mark.parametrize("nan_share", [0.0, 0.05])
def test_metric_replies_read_by_arrow_or_decoded_give_one_frame(week, nan_share):
    bodies = _metric_replies(week, nan_share)
    columns = {name: _read_metric(body) for name, body in bodies.items()}
    # plain replies are read as columns; "NaN" strings among numbers are left to the decoder
    taken = [isinstance(c, _Columns) for c in columns.values()]
    assert all(taken) if nan_share == 0 else not all(taken)
    decoded = {name: json.loads(body) for name, body in bodies.items()}
    mixed = {name: c if c is not None else decoded[name] for name, c in columns.items()}
    a, counts_a = _metric_frame([(n, 0, r) for n, r in mixed.items()], "svc")
    b, counts_b = _metric_frame([(n, 0, r) for n, r in decoded.items()], "svc")
    pd.testing.assert_frame_equal(a, b)
    assert counts_a == counts_b
    assert len(a) > 500, len(a)


@pytest.mark.parametrize("body", [
    b'{"metrics":[{"labels":{"instance_id":"i-1"},"samples":[{"timestamp":"2026-11-20T10:0'
    b'0:00Z","value":1.5},{"timestamp":"2026-11-20T10:05:00Z","value":"NaN"}]}]}',
    b'{"metrics":[{"labels":{"instance_id":"i-1","code":null},"samples":[]}]}',
    b'{"metrics":[{"labels":{"instance_id":3},"samples":[]}]}',
    b'{"metrics":[null]}',
    b'{"metrics":[{"labels":{},"samples":[null]}]}',
    b'{"metrics":[{"labels":{},"samples":[{"timestamp":"not a time","value":1}]}]}',
    b'{"metrics":[{"labels":{},"samples":[{"value":1}]}]}',
    b'{"metrics":\n[]}',
    b'{"metrics":"no"}',
    b'[1, 2]',
    b'not json',
    b'',
])
def test_replies_arrow_does_not_take_are_left_to_the_decoder(body):
    assert _read_metric(body) is None


def test_missing_values_and_labels_read_by_arrow_as_decoded():
    body = (b'{"metrics":[{"labels":{"instance_id":"i-1"},"samples":['
            b'{"timestamp":"2026-11-20T10:00:00Z","value":1},'
            b'{"timestamp":"2026-11-20T10:05:00Z"},'
            b'{"timestamp":"2026-11-20T10:10:00Z","value":null},'
            b'{"timestamp":"2026-11-20T09:55:00Z","value":2.5}]},'
            b'{"samples":[{"timestamp":"2026-11-20T10:00:00Z","value":7}]},'
            b'{"labels":{"instance_id":"i-2"}}]}')
    columns = _read_metric(body)
    assert isinstance(columns, _Columns)
    a, counts_a = _metric_frame([("MEM_RSS", 0, columns)], None)
    b, counts_b = _metric_frame([("MEM_RSS", 0, json.loads(body))], None)
    pd.testing.assert_frame_equal(a, b)
    assert counts_a == counts_b and counts_a["non_finite"] == {"MEM_RSS": 2}
    assert a["value"].tolist()[:2] == [7.0, 2.5]


def test_a_long_window_read_in_time_slices_is_the_window_read_whole(week, monkeypatch):
    from koyeb_analytics.load import _streams

    svc = week.fleet.services[0].service_id
    client = week.client()
    try:
        args = dict(service_id=svc, since="2026-11-17T12:00Z", until="2026-11-20T12:00Z",
                    step="5m")
        sliced = ka.load_metrics(client, **args)
        monkeypatch.setattr(_streams, "MAX_METRIC_SLICES", 1)
        whole = ka.load_metrics(client, **args)
    finally:
        client.close()
    assert sliced.attrs["slices"] > 1 and whole.attrs["slices"] == 1
    assert sliced.attrs["requests"] == 7 + 2 * sliced.attrs["slices"]
    pd.testing.assert_frame_equal(sliced, whole)
    assert not sliced.duplicated(["metric", "instance_id", "code", "ts"]).any()


def test_a_sample_sent_in_two_slices_is_kept_once():
    def reply(times):
        return {"metrics": [{"labels": {"instance_id": "i-1"}, "samples": [
            {"timestamp": f"2026-11-20T10:{m:02d}:00Z", "value": m} for m in times]}]}
    df, _ = _metric_frame([("CPU_TOTAL_PERCENT", 0, reply([0, 5, 10])),
                           ("CPU_TOTAL_PERCENT", 1, reply([10, 15]))], None)
    assert df["value"].tolist() == [0, 5, 10, 15]
    # within one reply, two series of the same instance are the server's to explain: kept
    df, _ = _metric_frame([("CPU_TOTAL_PERCENT", 0, {"metrics": reply([0])["metrics"] * 2})],
                          None)
    assert len(df) == 2


def test_series_of_one_reply_are_each_put_in_time_order_and_cleaned_alone():
    def sample(minute, value):
        return {"timestamp": f"2026-11-20T10:{minute:02d}:00Z", "value": value}
    reply = {"metrics": [
        {"labels": {"instance_id": "i-2"}, "samples": [
            sample(10, 1), {"timestamp": "bad", "value": 2}, sample(0, 3)]},
        {"labels": {"instance_id": "i-1"}, "samples": [sample(5, 4), sample(0, "NaN")]}]}
    df, counts = _metric_frame([("CPU_TOTAL_PERCENT", 0, reply)], None)
    assert df["instance_id"].tolist() == ["i-1", "i-1", "i-2", "i-2"]
    assert df["ts"].dt.minute.tolist() == [0, 5, 0, 10]
    assert df["value"].tolist()[1:] == [4, 3, 1] and np.isnan(df["value"].iloc[0])
    assert counts["bad_time"] == 1 and counts["non_finite"] == {"CPU_TOTAL_PERCENT": 1}
