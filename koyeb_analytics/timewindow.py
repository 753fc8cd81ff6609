"""Time arguments (``since``, ``until`` and ``window``, always tz-aware UTC), and the
:class:`Window` value every source yields and the analysis reads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeAlias

import pandas as pd

from .schema import START_STATUS_COLUMNS, STATUSES, TIME_DTYPE

TimeLike: TypeAlias = "str | datetime | date | pd.Timestamp"
DurationLike: TypeAlias = "str | timedelta | pd.Timedelta"
"""A length of time: ``"90m"``, ``"24h"``, ``"7d"``, ``"2w"``, or a timedelta."""

_UNITS = {"s": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days",
          "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")


def parse_duration(value: DurationLike, name: str = "window") -> pd.Timedelta:
    """Turn ``"90m"``, ``"24h"``, ``"7d"``, ``"2w"`` or a timedelta into a positive Timedelta.

    Examples
    --------
    >>> parse_duration("90m")
    Timedelta('0 days 01:30:00')
    """
    if isinstance(value, (timedelta, pd.Timedelta)):
        delta = pd.Timedelta(value)
    elif isinstance(value, str):
        match = _DURATION.match(value.lower())
        if not match or match.group(2) not in _UNITS:
            raise ValueError(
                f"{name}={value!r} is not a duration; use a number and one of the units "
                f"{', '.join(sorted(_UNITS))} (e.g. '90m', '24h', '7d'), or a Timedelta"
            )
        try:
            delta = pd.Timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        except (OverflowError, ValueError):
            raise ValueError(f"{name}={value!r} is too long a duration") from None
    else:
        raise TypeError(f"{name} must be a string like '24h' or a Timedelta, "
                        f"got {type(value).__name__}")
    if delta <= pd.Timedelta(0):
        raise ValueError(f"{name}={value!r} must be a positive duration")
    return delta


def parse_time(value: TimeLike, name: str, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """Turn a datetime, Timestamp, ISO string or ``"now"`` into a UTC Timestamp.

    A naive value is taken as UTC.

    Examples
    --------
    >>> parse_time("2026-11-20", "since")
    Timestamp('2026-11-20 00:00:00+0000', tz='UTC')
    """
    if isinstance(value, str) and value.strip().lower() == "now":
        return now if now is not None else utcnow()
    if not isinstance(value, (str, datetime, date, pd.Timestamp)):
        raise TypeError(f"{name} must be a datetime, Timestamp or ISO string, "
                        f"got {type(value).__name__}")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}={value!r} is not a date or time: {exc}") from None
    if ts is pd.NaT:
        raise ValueError(f"{name}={value!r} is not a date or time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def utcnow() -> pd.Timestamp:
    """Return the current time as a UTC Timestamp."""
    return pd.Timestamp.now(tz="UTC")


@dataclass(frozen=True)
class TimeWindow:
    """A half-open interval ``[since, until)``; either end may be open (``None``)."""

    since: pd.Timestamp | None = None
    until: pd.Timestamp | None = None

    def as_dict(self) -> dict[str, str | None]:
        """Return the ends as ISO strings, for ``df.attrs`` and manifests."""
        return {"since": self.since.isoformat() if self.since is not None else None,
                "until": self.until.isoformat() if self.until is not None else None}


def resolve_window(since: TimeLike | None = None, until: TimeLike | None = None,
                   window: DurationLike | None = None,
                   now: pd.Timestamp | None = None) -> TimeWindow:
    """Resolve the three time arguments into a :class:`TimeWindow`.

    ``window`` alone means the last ``window`` up to now (taken at call time);
    ``window`` with ``until`` means the ``window`` before ``until``. ``window`` and
    ``since`` together are ambiguous and rejected.

    Examples
    --------
    >>> w = resolve_window(since="2026-11-20", until="2026-11-21T06:00Z")
    >>> w.until - w.since
    Timedelta('1 days 06:00:00')
    """
    now = now if now is not None else utcnow()
    if window is not None and since is not None:
        raise ValueError("pass either window or since, not both "
                         "(window counts back from until, or from now)")
    until_ts = parse_time(until, "until", now) if until is not None else None
    if window is not None:
        end = until_ts if until_ts is not None else now
        delta = parse_duration(window)
        try:
            start = end - delta
        except (OverflowError, ValueError):
            start = None
        if start is None or start.year < 1970:
            raise ValueError(f"window={window!r} reaches back before 1970; use a shorter "
                             "window, or since= and until=")
        return TimeWindow(start, end)
    since_ts = parse_time(since, "since", now) if since is not None else None
    if since_ts is not None and until_ts is not None and since_ts >= until_ts:
        raise ValueError(f"since ({since_ts.isoformat()}) must be earlier than "
                         f"until ({until_ts.isoformat()})")
    return TimeWindow(since_ts, until_ts)


def to_rfc3339(ts: pd.Timestamp) -> str:
    """Format a UTC Timestamp as RFC 3339 with a ``Z``, as the API expects."""
    return str(ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


@dataclass(frozen=True)
class Window:
    """The instances and events of a time window, with the window itself.

    Parameters
    ----------
    instances, events
        From :func:`~koyeb_analytics.load_instances` and
        :func:`~koyeb_analytics.load_events`.
    since, until
        The window, resolved (``until`` is when the data was fetched when not given).
    start_status
        Each instance's status at ``since`` and the evidence for it (``instance_id,
        status, source, evidence_at``; see :func:`~koyeb_analytics.start_status`).
    lookbehind
        How far before ``since`` events were read for it, and what that cost
        (``{"duration", "pages", "per_instance", "requests"}``).
    platform
        The platform's log lines (``ts``, ``instance_id``, ``msg``) between the two
        events of each gap where an event never arrived; ``attrs`` say how many gaps
        were read and what it cost (:func:`~koyeb_analytics.load.read_platform`).

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=1) as sim:
    ...     w = ka.load_window(sim.client(), window="6h", progress=False)
    >>> sorted(vars(w))
    ['events', 'instances', 'lookbehind', 'platform', 'since', 'start_status', 'until']
    """

    instances: pd.DataFrame
    events: pd.DataFrame
    since: pd.Timestamp | None
    until: pd.Timestamp
    start_status: pd.DataFrame = field(default_factory=lambda: empty_start_status())
    lookbehind: dict[str, Any] = field(default_factory=dict)
    platform: pd.DataFrame | None = None


def empty_start_status() -> pd.DataFrame:
    """Return ``Window.start_status`` with no row, its columns and dtypes kept."""
    return pd.DataFrame({"instance_id": pd.Series(dtype=object),
                         "status": pd.Categorical([], categories=list(STATUSES), ordered=True),
                         "source": pd.Series(dtype=object),
                         "evidence_at": pd.Series(dtype=TIME_DTYPE)})[
                             list(START_STATUS_COLUMNS)]
