"""The platform's own lines around events that never arrived.

Two consecutive instance events that cannot follow each other betray a lost event
between them (:func:`~koyeb_analytics.lifecycles`, ``attrs["lost_events"]``). The
``koyeb`` log stream carries the same lifecycle messages with their own times
(koyeb-api-facts.md §15: the texts are SEEN there), through another path than the
events endpoint; :func:`read_platform` reads that stream for each such gap, one
instance and one gap per query (``koyeb`` lines carry no instance id, so a query by
several instances could not say whose a line is), several queries at once.

Whether the API's ``instance_ids`` filter selects ``koyeb`` lines is not known: an
empty answer leaves the gap to the median's guess, and the counts say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..api._client import KoyebClient
from ..errors import IncompleteListingError, KoyebError
from ..schema import STRING_DTYPE
from ._streams import load_logs

PLATFORM_COLUMNS = ("ts", "instance_id", "msg")
MAX_PLATFORM_GAPS = 2000
"""The most gaps one load reads platform lines for (one query each, the newest first);
the rest keep the median's guess, and the notes say how many. A week of a 300-service
fleet losing 1 % of its events has about 500 (``bench_report --window 7d --vocabulary
opaque``): the bound is for a server that loses far more."""
_NS_TIME_DTYPE = "datetime64[ns, UTC]"


def empty_platform() -> pd.DataFrame:
    """Return a platform frame with no row (``ts``, ``instance_id``, ``msg``)."""
    return pd.DataFrame({"ts": pd.Series(dtype=_NS_TIME_DTYPE),
                         "instance_id": pd.Series(dtype=object),
                         "msg": pd.Series(dtype=STRING_DTYPE)})


def read_platform(client: KoyebClient, lost: Iterable[Mapping[str, Any]], *,
                  max_gaps: int = MAX_PLATFORM_GAPS) -> pd.DataFrame:
    """Read the ``koyeb`` stream's lines between the two events of each lost-event gap.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    lost
        Gaps as ``lifecycles(...).attrs["lost_events"]`` lists them: dicts with
        ``instance_id``, ``after`` and ``before`` (the two events' times).
    max_gaps
        At most this many gaps are read (the newest first).

    Returns
    -------
    DataFrame
        ``ts`` (ns, UTC), ``instance_id`` (the instance the query asked for, where the
        line names none), ``msg``, sorted by instance, time and text. A line that names
        another instance is left out. ``attrs``: ``gaps`` (read), ``skipped`` (over
        ``max_gaps``), ``requests``, ``lines``, ``failed`` (gaps whose read failed;
        what they had received is kept) and ``notes``.

    Examples
    --------
    >>> w = ka.load_window(client, window="1d", platform="none", progress=False)
    >>> gaps = ka.lifecycles(w.instances, w.events).attrs["lost_events"]
    >>> lines = ka.load.read_platform(client, gaps)
    >>> list(lines.columns), lines.attrs["gaps"] == len(gaps)
    (['ts', 'instance_id', 'msg'], True)
    """
    got = read_gaps(client, lost, max_gaps=max_gaps)
    df = got.lines
    if got.skipped:
        df.attrs["notes"].append(f"{len(got.skipped)} older gap(s) over the bound of "
                                 f"{max_gaps} were not read: their lost events keep the "
                                 "median's guess")
    if got.failed:
        errors = ", ".join(sorted({error for _, error in got.failed}))
        df.attrs["notes"].append(f"platform lines of {len(got.failed)} gap(s) could not be "
                                 f"read in full ({errors}); what arrived is kept")
    return df


@dataclass(frozen=True)
class GapReads:
    """What :func:`read_gaps` read, gap by gap."""

    lines: pd.DataFrame
    """As :func:`read_platform` returns them (its ``notes`` say nothing of the gaps
    failed or skipped: the caller says what becomes of them)."""
    read: list[dict[str, Any]]
    """The gaps read in full (``instance_id``, ``after``, ``before``)."""
    failed: list[tuple[dict[str, Any], str]]
    """The gaps whose read failed, each with the error's class name."""
    skipped: list[dict[str, Any]]
    """The gaps over ``max_gaps``, not read."""


def read_gaps(client: KoyebClient, lost: Iterable[Mapping[str, Any]], *,
              max_gaps: int = MAX_PLATFORM_GAPS) -> GapReads:
    """Read the platform lines of each gap as :func:`read_platform` does, and say which
    gaps were read in full, which failed and which were over ``max_gaps`` (a history
    store reads the last two again at its next sync)."""
    if isinstance(max_gaps, bool) or not isinstance(max_gaps, int) or max_gaps < 0:
        raise ValueError(f"max_gaps must be a non-negative integer, got {max_gaps!r}")
    gaps = sorted(({"instance_id": str(g["instance_id"]), "after": pd.Timestamp(g["after"]),
                    "before": pd.Timestamp(g["before"])} for g in lost),
                  key=lambda g: g["before"], reverse=True)
    gaps = [g for g in gaps if g["after"] < g["before"]]
    chosen, skipped = gaps[:max_gaps], gaps[max_gaps:]
    notes: list[str] = []
    read_in_full: list[dict[str, Any]] = []
    failed: list[tuple[dict[str, Any], str]] = []

    def read(gap: dict[str, Any]) -> tuple[pd.DataFrame, int, str | None, list[str]]:
        try:
            got = load_logs(client, instance_ids=[gap["instance_id"]], streams="koyeb",
                            since=gap["after"], until=gap["before"], slices=1,
                            progress=False)
            error = None
        except IncompleteListingError as exc:
            got, error = exc.partial, f"{type(exc.cause).__name__}"
        except KoyebError as exc:
            return empty_platform(), 0, type(exc).__name__, []
        lines = got[list(PLATFORM_COLUMNS)]
        named = lines["instance_id"].astype(object)
        lines = lines[named.isna().to_numpy() | (named == gap["instance_id"]).to_numpy()]
        out = pd.DataFrame({"ts": lines["ts"].to_numpy(), "instance_id": gap["instance_id"],
                            "msg": lines["msg"].astype(object).to_numpy()})
        return out, int(got.attrs.get("pages", 0)), error, list(got.attrs.get("notes", []))

    parts: list[pd.DataFrame] = []
    requests = 0
    if chosen:
        pool = ThreadPoolExecutor(max_workers=max(1, min(client.concurrency, len(chosen))),
                                  thread_name_prefix="koyeb-platform")
        try:
            for gap, (frame, pages, error, said) in zip(chosen, pool.map(read, chosen),
                                                        strict=True):
                parts.append(frame)
                requests += pages
                notes += [n for n in said if n not in notes]
                if error is None:
                    read_in_full.append(gap)
                else:
                    failed.append((gap, error))
        finally:
            # Interrupted (Ctrl-C), the queries not started are not sent.
            pool.shutdown(wait=True, cancel_futures=True)
    df = pd.concat([empty_platform(), *parts], ignore_index=True) if parts else \
        empty_platform()
    df["ts"] = pd.to_datetime(df["ts"], utc=True).astype(_NS_TIME_DTYPE)
    df["msg"] = df["msg"].astype(STRING_DTYPE)
    df = df.drop_duplicates().sort_values(["instance_id", "ts", "msg"], kind="stable") \
        .reset_index(drop=True)
    df.attrs.update({"gaps": len(chosen), "skipped": len(skipped), "requests": requests,
                     "lines": len(df), "failed": len(failed), "notes": notes})
    return GapReads(df, read_in_full, failed, skipped)
