"""App and service names for the ids instances carry: one listing each, never an error.

``GET /v1/apps`` and ``GET /v1/services`` page like the instance listing (``limit``,
``offset``, ``count``, ``has_next``). A token that may not list them (403), an API that
does not serve them (404), or any other failure leaves short ids standing in for names,
with a note: names are a convenience, never a reason to lose the data.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from ..api._client import KoyebClient
from ..api._paging import PageStats
from ..errors import KoyebError, NotFoundError, PermissionDeniedError
from ..schema import STRING_DTYPE

__all__ = ["add_names", "load_names"]


class _Quiet(PageStats):
    """Paging notes kept, not warned: names are a convenience."""

    def warn(self, message: str) -> None:
        self.notes.append(message)


def load_names(client: KoyebClient) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """``(app names, service names, notes)``, each name keyed by its id.

    Examples
    --------
    >>> apps, services, notes = ka.load.load_names(client)
    >>> len(services), notes
    (3, [])
    """
    found: dict[str, dict[str, str]] = {"apps": {}, "services": {}}
    notes: list[str] = []

    def listing(key: str) -> None:
        path = f"/v1/{key}"
        stats = _Quiet()
        try:
            # Count paging, as the Koyeb CLI pages these: an app created meanwhile may
            # be missed, and a short id then stands in (names are a convenience).
            pages = list(client.pages(path, key=key, paging="count", stats=stats))
            for page in pages:
                for row in page:
                    if isinstance(row, dict) and isinstance(row.get("id"), str) \
                            and isinstance(row.get("name"), str) and row["name"]:
                        found[key][row["id"]] = row["name"]
        except (PermissionDeniedError, NotFoundError) as exc:
            notes.append(f"names: {path} answered {exc.status}; short ids stand in for "
                         f"{key[:-1]} names")
        except KoyebError as exc:
            notes.append(f"names: {path} failed ({type(exc).__name__}); short ids stand "
                         f"in for {key[:-1]} names")
        notes.extend(f"names: {n}" for n in stats.notes)

    # Both listings at once: on a remote API they cost one round of requests, not two.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="koyeb-names") as pool:
        list(pool.map(listing, ("apps", "services")))
    return found["apps"], found["services"], notes


def add_names(df: pd.DataFrame, client: KoyebClient,
              found: tuple[dict[str, str], dict[str, str], list[str]] | None = None,
              ) -> pd.DataFrame:
    """``df`` with ``app_name`` and ``service_name`` columns (short ids where unknown).

    ``found`` is what :func:`load_names` returned, when it was loaded beforehand (the
    loaders list names while the instances are listed).

    Examples
    --------
    >>> inst = ka.load.add_names(ka.load_instances(client, window="6h"), client)
    >>> inst[["app_name", "service_name"]].notna().all().tolist()
    [True, True]
    """
    if found is None:
        found = load_names(client) if len(df) else ({}, {}, [])
    apps, services, notes = found[0], found[1], list(found[2])
    out = df.copy()
    for column, id_column, names in (("app_name", "app_id", apps),
                                     ("service_name", "service_id", services)):
        ids = out[id_column].astype(object)
        named = ids.map(names)
        short = ids.map(lambda v: v[:8] if isinstance(v, str) else None)
        missing = int((named.isna() & ids.notna()).sum())
        if missing and names:
            notes.append(f"names: {missing} row(s) with a {id_column} the listing does not "
                         "name; short ids stand in")
        out[column] = pd.Series(named.astype(object).where(named.notna(), short),
                                index=out.index, dtype=STRING_DTYPE)
    out.attrs = {**df.attrs, "notes": list(df.attrs.get("notes", [])) + notes}
    return out
