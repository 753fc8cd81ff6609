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
from typing import Any

import pandas as pd

from ..api._client import KoyebClient
from ..errors import IncompleteListingError, KoyebError
from ..schema import STRING_DTYPE
from ._streams import load_logs

PLATFORM_COLUMNS = ("ts", "instance_id", "msg")
MAX_PLATFORM_GAPS = 500
"""The most gaps one load reads platform lines for (one query each, the newest first);
the rest keep the median's guess, and the notes say how many."""
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
        line names none), ``msg``, sorted by instance and time. A line that names
        another instance is left out. ``attrs``: ``gaps`` (read), ``skipped`` (over
        ``max_gaps``), ``requests``, ``lines``, ``failed`` (gaps whose read failed;
        what they had received is kept) and ``notes``.

    Examples
    --------
    >>> gaps = ka.lifecycles(inst, events).attrs["lost_events"]
    >>> lines = ka.load.read_platform(client, gaps)
    >>> list(lines.columns)
    ['ts', 'instance_id', 'msg']
    """
    if isinstance(max_gaps, bool) or not isinstance(max_gaps, int) or max_gaps < 0:
        raise ValueError(f"max_gaps must be a non-negative integer, got {max_gaps!r}")
    gaps = sorted(({"instance_id": str(g["instance_id"]), "after": pd.Timestamp(g["after"]),
                    "before": pd.Timestamp(g["before"])} for g in lost),
                  key=lambda g: g["before"], reverse=True)
    gaps = [g for g in gaps if g["after"] < g["before"]]
    chosen, skipped = gaps[:max_gaps], max(0, len(gaps) - max_gaps)
    notes: list[str] = []
    failed = 0

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
        lines = got[["ts", "instance_id", "msg"]]
        named = lines["instance_id"].astype(object)
        lines = lines[named.isna().to_numpy() | (named == gap["instance_id"]).to_numpy()]
        out = pd.DataFrame({"ts": lines["ts"].to_numpy(), "instance_id": gap["instance_id"],
                            "msg": lines["msg"].astype(object).to_numpy()})
        return out, int(got.attrs.get("pages", 0)), error, list(got.attrs.get("notes", []))

    parts: list[pd.DataFrame] = []
    requests = 0
    if chosen:
        with ThreadPoolExecutor(max_workers=max(1, min(client.concurrency, len(chosen))),
                                thread_name_prefix="koyeb-platform") as pool:
            for frame, pages, error, said in pool.map(read, chosen):
                parts.append(frame)
                requests += pages
                notes += [n for n in said if n not in notes]
                if error is not None:
                    failed += 1
                    notes.append(f"platform lines of one gap could not be read in full "
                                 f"({error}); what arrived is kept")
    if skipped:
        notes.append(f"{skipped} older gap(s) over the bound of {max_gaps} were not read: "
                     "their lost events keep the median's guess")
    df = pd.concat([empty_platform(), *parts], ignore_index=True) if parts else \
        empty_platform()
    df["ts"] = pd.to_datetime(df["ts"], utc=True).astype(_NS_TIME_DTYPE)
    df["msg"] = df["msg"].astype(STRING_DTYPE)
    df = df.drop_duplicates().sort_values(["instance_id", "ts"], kind="stable") \
        .reset_index(drop=True)
    df.attrs.update({"gaps": len(chosen), "skipped": skipped, "requests": requests,
                     "lines": len(df), "failed": failed, "notes": notes})
    return df
