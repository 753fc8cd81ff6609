"""Column conversion and collection: the fast paths agree with pandas' own parsing."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koyeb_analytics.load._frames import Collector, convert
from koyeb_analytics.schema import EVENT_COLUMNS, STATUSES, TIME_DTYPE

TIMES = [
    "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00.123456Z",
    "2026-01-01T02:00:00+02:00", "2026-01-01T02:00:00+0200", "2026-01-01 00:00:00Z",
    "2026-01-01T00:00Z", None,
]
# Finer than microseconds: cut to six digits before Arrow's cast, as pandas does.
NANOS = ["2026-01-01T00:00:00.123456789Z", "2026-01-01T00:00:00.999999999Z",
         "2026-01-01T00:00:00.1234567+02:00", None]
# Arrow's parser refuses these; pandas' ISO 8601 parser accepts them.
PANDAS_ONLY = ["2026-01-01", "2026-01-01T00:00:00", "", "20260101T000000Z"]


def pandas_times(values):
    return pd.to_datetime(pd.Series(values, dtype=object), utc=True,
                          format="ISO8601").astype(TIME_DTYPE)


@pytest.mark.parametrize("values", [TIMES, NANOS, TIMES + NANOS, TIMES + PANDAS_ONLY,
                                    PANDAS_ONLY, [None, None], []])
def test_times_agree_with_pandas(values):
    got = convert(values, "time")
    assert str(got.dtype) == TIME_DTYPE
    pd.testing.assert_series_equal(got, pandas_times(values))


def test_unparseable_values_become_missing_and_are_counted():
    coerced: dict[str, int] = {}
    got = convert(["2026-01-01T00:00:00Z", "garbage", None, 5], "time", name="t",
                  coerced=coerced)
    assert got.iloc[0] == pd.Timestamp("2026-01-01", tz="UTC") and got.iloc[1:].isna().all()
    assert str(got.dtype) == "datetime64[us, UTC]"
    ints = convert([1, 1.0, 1.5, 2**70, "3", True, None], "int", name="i", coerced=coerced)
    assert ints.tolist()[:2] == [1, 1] and ints.iloc[2:4].isna().all() and ints.iloc[4] == 3
    strs = convert(["a", ["x"], 3, {"k": 1}], "str", name="s", coerced=coerced)
    assert strs.iloc[0] == "a" and strs.iloc[2] == "3" and strs.iloc[[1, 3]].isna().all()
    # None is missing, not wrong: only values of another kind are counted.
    assert coerced == {"t": 2, "i": 3, "s": 2}


@pytest.mark.parametrize("values", [["a", None, "b"], ["a", 1, 2.5], [], [None]])
def test_strings_agree_with_pandas(values):
    pd.testing.assert_series_equal(convert(values, "str"), pd.Series(values, dtype="str"))


def test_statuses_in_lifecycle_order_with_unknown_ones_last():
    got = convert(["HEALTHY", None, "ZOMBIE", 3, "ALLOCATING"], "status")
    assert list(got.cat.categories) == [*STATUSES, "ZOMBIE"] and got.cat.ordered
    assert got.isna().tolist() == [False, True, False, True, False]
    assert [got.iloc[i] for i in (0, 2, 4)] == ["HEALTHY", "ZOMBIE", "ALLOCATING"]


KEYS = list(EVENT_COLUMNS)
row_st = st.fixed_dictionaries(
    {},
    optional={**{k: st.sampled_from(["x", "y", None]) for k in KEYS if k != "id"},
              "future": st.integers(0, 3), "other": st.just("o")},
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(row_st, max_size=30), full=st.lists(st.booleans(), max_size=30),
       cut=st.integers(1, 10))
def test_collector_matches_a_row_by_row_reference(rows, full, cut):
    # Mix rows with exactly the schema's keys (the transposed path) and ragged rows
    # (missing keys, unknown keys, both at the same width): same frame either way.
    data = []
    for i, row in enumerate(rows):
        row = dict(row, id=f"id{i}", when="2026-01-01T00:00:00Z")
        if i < len(full) and full[i]:
            row = {k: row.get(k) for k in KEYS}
        data.append(row)
    c = Collector(EVENT_COLUMNS)
    for start in range(0, len(data), cut):
        c.add(data[start:start + cut])
    df = c.frame()
    extra = sorted(set().union(*data) - set(KEYS)) if data else []
    assert list(df.columns) == KEYS + extra and len(df) == len(data)
    for name in KEYS + extra:
        if name == "when":
            continue
        got = [None if pd.isna(v) else v for v in df[name].astype(object)]
        assert got == [r.get(name) for r in data], name
