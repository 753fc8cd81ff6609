from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from koyeb_analytics.timewindow import parse_duration, parse_time, resolve_window, to_rfc3339

NOW = pd.Timestamp("2026-11-20T12:00:00Z")


@pytest.mark.parametrize("text, expected", [
    ("90m", pd.Timedelta(minutes=90)), ("24h", pd.Timedelta(hours=24)),
    ("7d", pd.Timedelta(days=7)), ("2w", pd.Timedelta(weeks=2)), ("30s", pd.Timedelta(seconds=30)),
    ("1.5h", pd.Timedelta(minutes=90)), (timedelta(hours=2), pd.Timedelta(hours=2)),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["24", "3 fortnights", "h", "-2h", "0m"])
def test_bad_durations_name_the_argument(bad):
    with pytest.raises(ValueError, match="window="):
        parse_duration(bad)


def test_times_are_utc():
    assert parse_time("2026-11-20", "since") == pd.Timestamp("2026-11-20T00:00Z")
    assert parse_time("2026-11-20T02:00+02:00", "since") == pd.Timestamp("2026-11-20T00:00Z")
    assert parse_time(datetime(2026, 11, 20, 1), "since").tz is not None
    assert parse_time("now", "until", NOW) == NOW
    with pytest.raises(ValueError, match="since="):
        parse_time("not a date", "since")
    with pytest.raises(TypeError, match="until"):
        parse_time(12, "until")


def test_window_forms():
    w = resolve_window(window="24h", now=NOW)
    assert (w.since, w.until) == (NOW - pd.Timedelta("24h"), NOW)
    w = resolve_window(window="1h", until="2026-11-19T00:00Z", now=NOW)
    assert w.since == pd.Timestamp("2026-11-18T23:00Z")
    assert resolve_window(now=NOW) == resolve_window(None, None, None, NOW)
    with pytest.raises(ValueError, match="since .* must be earlier than until"):
        resolve_window(since="2026-11-21", until="2026-11-20")
    with pytest.raises(ValueError, match="either window or since"):
        resolve_window(since="2026-11-21", window="1h")


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC)))
def test_rfc3339_round_trip(dt):
    ts = pd.Timestamp(dt)
    text = to_rfc3339(ts)
    assert text.endswith("Z")
    assert parse_time(text, "t") == ts


@given(st.integers(1, 10_000), st.sampled_from(["s", "m", "h", "d"]))
def test_window_length_matches_duration(n, unit):
    w = resolve_window(window=f"{n}{unit}", now=NOW)
    assert w.until - w.since == parse_duration(f"{n}{unit}")
    assert w.since.tz is not None and w.until == NOW
